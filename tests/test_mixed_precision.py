"""After mixed-precision training: the same quality figures as in float32, checkpoints that resume, a float32 export."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import helper
from facegen import mnist
from support.notebook import notebook_functions
from support.train_worker import digits

pytestmark = pytest.mark.numerics  # compares float16 and float32 results


@pytest.fixture
def mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(scope="module")
def train():
    return notebook_functions()["train"]


def sample_digits(count):
    with np.load(mnist.MNIST_SAMPLE, allow_pickle=False) as sample:
        return sample["test_images"][:count, ..., None], sample["train_images"][:count, ..., None]


def test_mnist_quality_is_the_same_under_mixed_precision(mixed_precision):
    reference, images = sample_digits(1000)
    noisy = np.clip(images + np.random.default_rng(0).normal(0, 40, images.shape), 0, 255).astype(np.uint8)
    mixed = helper.MnistQuality(reference=reference)(noisy)
    keras.config.set_dtype_policy("float32")
    plain = helper.MnistQuality(reference=reference)(noisy)
    # Both build the classifier in float32 and run it on the same pixels in this one process: the same
    # operations in the same order, so the same bits, whatever the policy the notebook trained under.
    assert (mixed["fd"], mixed["score"]) == (plain["fd"], plain["score"])
    np.testing.assert_array_equal(mixed["shares"], plain["shares"])


def test_fid_is_the_same_under_mixed_precision(mixed_precision):
    reference, images = sample_digits(64)
    keras.utils.set_random_seed(0)  # weights=None: a randomly initialised InceptionV3, the same one twice
    mixed = helper.fid(reference, images, weights=None, size=75)
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    plain = helper.fid(reference, images, weights=None, size=75)
    assert mixed == plain  # InceptionV3 is built in float32 either way: the same operations, the same bits


def test_a_mixed_precision_run_resumes_and_refuses_float32(tmp_path, train, mixed_precision, capsys):
    # Narrow networks (filters=8): float16 convolutions are slow on a CPU, and resuming does not depend on width.
    options = dict(z_dim=8, learning_rate=2e-4, beta1=0.5, run_dir=tmp_path, images_dir=tmp_path / "images",
                   sample_every=5, filters=8)
    _, first = train(digits(), "mixed", 1, **options)
    generator, losses = train(digits(), "mixed", 2, **options)
    assert "Resumed from" in capsys.readouterr().out
    assert losses.shape == (20, 2) and np.isfinite(losses).all()
    np.testing.assert_array_equal(losses[:10], first)
    assert generator.layers[-1].compute_dtype == "float32"
    keras.config.set_dtype_policy("float32")
    with pytest.raises(ValueError, match=r"precision mixed_float16 there, float32 now.*delete .* or choose another"):
        train(digits(), "float32", 3, **options)


def test_exported_generator_of_a_mixed_precision_run_is_float32(tmp_path, mixed_precision):
    generator = notebook_functions()["generator"](8, (28, 28, 1), 16)
    assert generator.layers[1].compute_dtype == "float16"
    z = tf.random.normal([4, 8], seed=1)
    helper.export_generator(generator, tmp_path, z_dim=8)
    keras.config.set_dtype_policy("float32")
    exported = keras.saving.load_model(tmp_path / "generator.keras")
    assert {layer.dtype_policy.name for layer in exported.layers} == {"float32"}
    # The same weights, now computed in float32. float16 keeps 11 significant bits (rounding 2**-11 relative) at
    # about 5 operations per layer (inputs, weights, output, batch norm's shift and scale): over the generator's
    # 3 layers, within 15 such roundings of the images' size.
    images = generator(z, training=False)
    size = float(tf.reduce_max(tf.abs(images)))
    np.testing.assert_allclose(exported(z, training=False), images, atol=15 * 2.0**-11 * size)
