"""Tests for measuring generated digits: the committed MNIST classifier, and what `MnistQuality`
says of real digits, of noise and of digits of one class."""

import numpy as np
import pytest

import helper
from facegen import digit_quality, mnist, pixels
from facegen.quality import classifier_score

pytestmark = pytest.mark.numerics  # the classifier's accuracy and Fréchet distances

N = 1_000  # samples per measure: FDs of real digits stay far below those of wrong ones


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, place_mnist_test_split):
    """A data folder holding the official MNIST test split (written from the committed sample), so
    that nothing is downloaded."""
    return place_mnist_test_split(tmp_path_factory.mktemp("data")).parent


@pytest.fixture(scope="module")
def train():
    """The first 10,000 official training digits and their labels: the committed sample's."""
    with np.load(mnist.MNIST_SAMPLE, allow_pickle=False) as sample:
        return sample["train_images"][..., np.newaxis], sample["train_labels"]


@pytest.fixture(scope="module")
def quality(data_dir):
    return helper.MnistQuality(data_dir, mirrors=())


def test_committed_classifier_weights_load_and_know_99_percent_of_test_digits(data_dir):
    images, labels, _ = helper.load_mnist(data_dir, "test", mirrors=())
    classifier = digit_quality.mnist_classifier()
    classifier.load_weights(digit_quality.MNIST_CLASSIFIER)
    probabilities = classifier.predict(pixels.to_unit_range(images), batch_size=500, verbose=0)
    assert np.mean(probabilities.argmax(1) == labels) >= 0.99
    assert 64 <= classifier.get_layer("features").units <= 128
    assert classifier.count_params() < 150_000


def test_real_digits_measure_like_the_test_set(quality, train):
    images, _ = train
    result = quality(images[:N])
    assert result["fd"] < 5
    assert result["score"] > 9.5  # sure of each digit, and all ten digits about equally often
    assert result["shares"].sum() == pytest.approx(1)
    assert result["shares"].min() > 0.07


def test_uint8_and_unit_range_floats_measure_the_same(quality, train):
    images = train[0][:500]
    as_floats = quality(images.astype(np.float32) / 127.5 - 1)
    as_uint8 = quality(images)
    assert as_floats["fd"] == pytest.approx(as_uint8["fd"])
    np.testing.assert_array_equal(as_floats["shares"], as_uint8["shares"])


@pytest.mark.parametrize("kind", ["noise", "ones"])
def test_noise_or_a_single_digit_is_far_from_real_digits(quality, train, kind):
    images, labels = train
    if kind == "noise":
        images = np.random.default_rng(0).uniform(-1, 1, (N, 28, 28, 1))
    else:
        images = images[labels == 1]
    result = quality(images)
    assert result["fd"] > 50  # real digits: about 1
    assert result["score"] < 1.5
    assert result["shares"].sum() == pytest.approx(1)
    if kind == "ones":
        assert result["shares"][1] > 0.99


def test_a_repeated_image_scores_1(quality, train):
    assert quality(np.repeat(train[0][:1], 100, axis=0))["score"] == pytest.approx(1)


def test_classifier_score_counts_the_classes_images_are_sure_of_when_equally_frequent():
    for classes in (10, 2, 1):
        sure = np.eye(10)[np.arange(1000) % classes]
        assert classifier_score(sure) == pytest.approx(classes)
    assert classifier_score(np.full((1000, 10), 0.1)) == pytest.approx(1)  # sure of nothing
