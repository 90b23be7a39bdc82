"""Tests for the recipes benchmark (`python helper.py benchmark-recipes`): the two published
baselines it trains, the loop that trains them to time budgets, how it runs the notebook, and
its table. They run on the committed offline MNIST sample, with tiny budgets."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import helper

BASELINES = [helper.tf_tutorial_baseline, helper.dcgan_paper_baseline]


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """Real training and test digits, from the committed sample: nothing is downloaded."""
    data_dir = tmp_path_factory.mktemp("data")
    return helper.load_mnist(data_dir, "train", mirrors=())[0], helper.load_mnist(data_dir, "test", mirrors=())[0]


def weights(model):
    return [w.numpy().copy() for w in model.trainable_weights]


# --- The baselines ------------------------------------------------------------------------


@pytest.mark.parametrize("make_baseline, generator_params, discriminator_params", [
    (helper.tf_tutorial_baseline, 2_330_944, 212_865),  # the tutorial's model summaries
    # G: 7*7*100*256 + 4*256 (batch norm's 4 per channel) + 4*4*256*128 + 4*128 + 4*4*128*1, no biases;
    # D: 4*4*1*64 + 4*4*64*128 + 4*128 + 7*7*128*1
    (helper.dcgan_paper_baseline, 1_782_272, 138_880),
], ids=["TF tutorial", "DCGAN paper"])
def test_baseline_networks_have_the_published_sizes(make_baseline, generator_params, discriminator_params):
    baseline = make_baseline()
    assert baseline.generator.count_params() == generator_params
    assert baseline.discriminator.count_params() == discriminator_params


@pytest.mark.parametrize("make_baseline", BASELINES, ids=["TF tutorial", "DCGAN paper"])
def test_baseline_networks_turn_z_into_digits_and_digits_into_logits(make_baseline, mnist):
    baseline = make_baseline()
    images = baseline.generator(helper.noise(16, helper.RECIPE_Z_DIM), training=False).numpy()
    assert images.shape == (16, 28, 28, 1)
    assert -1 <= images.min() and images.max() <= 1 and images.std() > 0
    logits = baseline.discriminator(helper.to_unit_range(mnist[0][:16]), training=False).numpy()
    assert logits.shape == (16, 1) and np.isfinite(logits).all()


def test_dcgan_paper_flops_count_the_1x1_start_and_the_extra_discriminator_pass():
    baseline = helper.dcgan_paper_baseline()
    # A transposed convolution uses each weight once per input position, a convolution once per output position.
    g = 2 * (1 * 7 * 7 * 100 * 256 + 7 * 7 * 4 * 4 * 256 * 128 + 14 * 14 * 4 * 4 * 128 * 1)
    d = 2 * (14 * 14 * 4 * 4 * 1 * 64 + 7 * 7 * 4 * 4 * 64 * 128 + 1 * 7 * 7 * 128 * 1)
    assert (helper.forward_flops(baseline.generator), helper.forward_flops(baseline.discriminator)) == (g, d)
    assert baseline.flops == 3 * g + 8 * d


@pytest.mark.parametrize("make_baseline", BASELINES, ids=["TF tutorial", "DCGAN paper"])
def test_a_baseline_step_trains_both_networks(make_baseline, mnist):
    keras.utils.set_random_seed(0)
    baseline = make_baseline()
    before = weights(baseline.generator), weights(baseline.discriminator)
    real_images = helper.to_unit_range(mnist[0][:baseline.batch_size])
    losses = baseline.train_step(real_images, tf.random.normal([baseline.batch_size, helper.RECIPE_Z_DIM]))
    assert all(np.isfinite(float(loss)) and float(loss) > 0 for loss in losses)
    for model, old in zip((baseline.generator, baseline.discriminator), before):
        assert all(not np.array_equal(a, b) for a, b in zip(old, weights(model))), f"{model.name} kept some weights"
