"""Tests for the face measure (`FaceQuality`, facegen/face_quality.py): its figures on known sets, the pyramid it
compares, and its errors. They use smooth random pictures, no faces: what the measure must see (blur, noise, a
lack of variety) does not depend on what the pictures show."""

import numpy as np
import pytest

import helper
from facegen.face_quality import laplacian_pyramid
from tools.check_face_measure import blurred, noisy, repeated

COUNT = 600


def pictures(count, size=32, seed=0):
    """Smooth random colour pictures with some fine detail: a random 4x4 picture upsampled, plus texture."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (count, 4, 4, 3), dtype=np.uint8)
    smooth = np.stack([np.asarray(Image.fromarray(c).resize((size, size), Image.BICUBIC)) for c in coarse])
    return np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def quality():
    return helper.FaceQuality(pictures(COUNT, seed=0))


@pytest.fixture(scope="module")
def others():
    return pictures(COUNT, seed=1)


def test_the_reference_against_itself_scores_zero():
    reference = pictures(COUNT, seed=0)
    result = helper.FaceQuality(reference)(reference)
    assert result == {"swd": 0.0, "levels": {32: 0.0, 16: 0.0}}


def test_pictures_of_the_same_kind_score_far_below_degraded_ones(quality, others):
    same = quality(others)["swd"]
    scores = {name: quality(images)["swd"] for name, images in {
        "blur 0.7": blurred(others, 0.7), "blur 1.5": blurred(others, 1.5),
        "noise 0.05": noisy(others, 0.05), "noise 0.15": noisy(others, 0.15),
        "20 repeated": repeated(others, 20), "3 repeated": repeated(others, 3),
    }.items()}
    assert all(score > 2 * same for score in scores.values()), (same, scores)
    # More of a degradation scores worse.
    assert scores["blur 0.7"] < scores["blur 1.5"] and scores["noise 0.05"] < scores["noise 0.15"], scores
    assert scores["20 repeated"] < scores["3 repeated"], scores


def test_floats_in_the_generators_range_score_as_the_pixels_they_round_to(quality, others):
    assert quality(others / 127.5 - 1)["swd"] == pytest.approx(quality(others)["swd"], abs=0)


def test_the_same_seed_gives_the_same_figure_and_another_seed_a_close_one(others):
    reference = pictures(COUNT, seed=0)
    first, again = helper.FaceQuality(reference)(others)["swd"], helper.FaceQuality(reference)(others)["swd"]
    assert first == again
    # Other patches and directions: the same sets, a figure that differs by its sampling only.
    assert helper.FaceQuality(reference, seed=1)(others)["swd"] == pytest.approx(first, rel=0.5)


@pytest.mark.parametrize("size, levels", [(16, [16]), (32, [32, 16]), (64, [64, 32, 16])])
def test_the_pyramid_goes_down_to_16x16_and_adds_back_up_to_the_image(size, levels):
    images = pictures(4, size).astype(np.float32) / 255
    pyramid = laplacian_pyramid(images)
    assert [level.shape[1] for level in pyramid] == levels
    # Each level holds the detail its smaller one lacks: upsampling and adding them rebuilds the picture.
    import tensorflow as tf

    rebuilt = pyramid[-1]
    for detail in reversed(pyramid[:-1]):
        rebuilt = detail + tf.image.resize(rebuilt, detail.shape[1:3], method="bilinear")
    np.testing.assert_allclose(rebuilt.numpy(), images, atol=1e-5)  # float32 rounding of a few sums of [0, 1] values


def test_a_set_of_another_count_or_size_is_refused_saying_what_was_expected(quality, others):
    with pytest.raises(ValueError, match=r"expected 600 faces of 32x32, .* got 599 of 32x32"):
        quality(others[:-1])
    with pytest.raises(ValueError, match=r"expected 600 faces of 32x32, .* got 600 of 64x64"):
        quality(pictures(COUNT, 64))


def test_grey_images_are_refused_with_their_shape(quality):
    with pytest.raises(ValueError, match=r"images: expected colour images .* got an array of shape \(600, 32, 32, 1\)"):
        quality(np.zeros((COUNT, 32, 32, 1), np.uint8))
