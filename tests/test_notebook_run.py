"""The notebook as users run it headless: papermill with parameters, then the exported generator."""

import json

import keras
import numpy as np
import papermill
import tensorflow as tf

from tools.notebook import NOTEBOOK


def test_mnist_stage_alone_exports_a_plain_keras_generator(tmp_path, monkeypatch):
    monkeypatch.delenv("DLND_QUICK_TEST")  # run with the parameters given here, not the test profile
    monkeypatch.chdir(NOTEBOOK.parent)
    papermill.execute_notebook(
        NOTEBOOK, tmp_path / "out.ipynb", progress_bar=False,
        parameters=dict(mnist_epochs=1, celeba_epochs=0, max_images=256, data_dir=str(tmp_path / "data"),
                        output_dir=str(tmp_path / "output"), images_dir=str(tmp_path / "images")),
    )

    # celeba_epochs=0 runs the MNIST stage alone: CelebA is neither fetched nor stood in for.
    assert sorted(p.name for p in (tmp_path / "output").iterdir()) == ["mnist"]
    assert not (tmp_path / "data" / "standin").exists()

    config = json.loads((tmp_path / "output" / "mnist" / "config.json").read_text())
    assert {"z_dim", "z_distribution", "image_shape", "output_range"} <= config.keys()
    assert config["image_shape"] == [28, 28, 1] and config["output_range"] == [-1, 1]

    generator = keras.saving.load_model(tmp_path / "output" / "mnist" / "generator.keras")  # no custom objects
    images = generator(keras.random.normal((8, config["z_dim"]), seed=0)).numpy()
    assert images.shape == (8, 28, 28, 1)
    assert -1 <= images.min() and images.max() <= 1

    # The export holds the trained weights: restoring the last checkpoint into it changes nothing.
    exported = [w.numpy() for w in generator.weights]
    checkpoint = tf.train.latest_checkpoint(tmp_path / "output" / "mnist" / "checkpoints")
    tf.train.Checkpoint(generator=generator).restore(checkpoint).expect_partial().assert_existing_objects_matched()
    for before, after in zip(exported, generator.weights):
        np.testing.assert_array_equal(before, after.numpy())

    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [
        "mnist_latent_walk.png", "mnist_losses.png", "mnist_real.png", "mnist_real_vs_generated.png",
        "mnist_samples.png", "mnist_training.gif"]
