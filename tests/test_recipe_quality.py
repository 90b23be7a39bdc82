"""A training regression test: the notebook's MNIST recipe, a few hundred steps on the committed sample, must
draw digits the classifier recognises, all ten of them; a recipe that learns nothing must fail it."""

import numpy as np
import pytest

import helper
from facegen import mnist
from support.notebook import notebook_functions
from facegen.notebook import notebook_parameters

pytestmark = pytest.mark.numerics  # a training run's quality, which rounding steers

EPOCHS = 3  # of the committed sample's 10,000 digits: 468 steps of the default batch of 64
# With the default recipe (batch 64, Adam 5e-4, width 16, the generator's full-resolution layer, its batch norm
# statistics measured before drawing), seeds 0, 1 and 2 gave FD 36.0, 38.7 and 39.3 and smallest digit shares of
# 6.2 %, 5.3 % and 5.4 % (before the statistics were measured: 42.6-45.6, 3.4-4.1 %); with the learning rate at 0,
# FD 263.8 and one digit.
FD_CEILING = 70
SHARE_FLOOR = 0.02


def learned_digits(quality):
    """Whether generated digits are recognisably digits, all ten of them."""
    return quality["fd"] < FD_CEILING and min(quality["shares"]) > SHARE_FLOOR


def train_and_measure(tmp_path, seed=0, epochs=EPOCHS, steps=None, **changes):
    """Train the notebook's MNIST stage, at its defaults except `changes`, on the sample (each epoch its first
    `steps` batches, if given); measure 10,000 digits."""
    notebook, defaults = notebook_functions(), {**notebook_parameters(), **changes}
    with np.load(mnist.MNIST_SAMPLE, allow_pickle=False) as sample:
        images, reference = sample["train_images"][..., None], sample["test_images"][..., None]
    dataset = helper.mnist_dataset(images, defaults["mnist_batch_size"], seed).take(steps or -1)
    generator, _ = notebook["train"](dataset, "regression", epochs, defaults["z_dim"], defaults["mnist_learning_rate"],
                                     defaults["beta1"], tmp_path, tmp_path / "images", seed=seed,
                                     filters=defaults["mnist_filters"],
                                     full_resolution_layer=defaults["mnist_full_resolution_layer"])
    digits = generator(helper.noise(10_000, defaults["z_dim"], seed), training=False)
    return helper.MnistQuality(reference=reference)(digits)


def test_the_recipe_learns_all_ten_digits(tmp_path):
    quality = train_and_measure(tmp_path)
    assert learned_digits(quality), helper.describe_quality(quality)


def test_a_recipe_that_learns_nothing_fails_it(tmp_path):
    # At a learning rate of 0 the weights never move: one step draws what the full run would.
    quality = train_and_measure(tmp_path, epochs=1, steps=1, mnist_learning_rate=0.0)
    assert not learned_digits(quality), helper.describe_quality(quality)
