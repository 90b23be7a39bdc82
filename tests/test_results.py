"""Tests for what helper.py does with a trained generator: latent walks, GIFs, generating more
images (also from the command line) and FID, on a tiny generator made here."""

import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

import helper
from facegen.notebook import ROOT
from facegen import downloads, pixels, quality

pytestmark = pytest.mark.numerics  # compares generated images and Fréchet distances within rounding tolerances

Z_DIM = 6
SHAPE = (8, 12, 3)
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/weights.h5"


@pytest.fixture(scope="module")
def generator():
    """A tiny generator: z -> Dense -> tanh, shaped as an image."""
    return keras.Sequential([
        keras.Input((Z_DIM,)),
        keras.layers.Dense(int(np.prod(SHAPE)), activation="tanh",
                           kernel_initializer=keras.initializers.RandomNormal(seed=0)),
        keras.layers.Reshape(SHAPE),
    ])


@pytest.fixture(scope="module")
def model_dir(generator, tmp_path_factory):
    """The tiny generator exported as the notebook exports its generators."""
    return helper.export_generator(
        generator, tmp_path_factory.mktemp("output") / "tiny", z_dim=Z_DIM, z_distribution="normal(0, 1)",
        image_shape=list(SHAPE), output_range=[-1, 1], data="tiny test generator",
    )


def enlarged_scale(grid):
    """The whole factor save_image enlarges `grid` by."""
    return 512 // max(grid.shape[:2])


# --- Latent walks -------------------------------------------------------------------------


def test_slerp_keeps_the_length_where_a_straight_line_would_not():
    a, b = np.random.default_rng(0).standard_normal((2, 100))
    b *= np.linalg.norm(a) / np.linalg.norm(b)
    path = helper.slerp(a, b, np.linspace(0, 1, 9))
    np.testing.assert_array_equal(path[[0, -1]], [a, b])
    # float64 sums of 100 terms are off by at most 100 roundings (2.2e-16 each) of their size (about 100 here):
    # within 1e-12 relative for the lengths, 100 x 100 x 2.2e-16 = 2.2e-12 for the dot products.
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), np.linalg.norm(a), rtol=1e-12)
    np.testing.assert_allclose(np.diff(np.sum(path[1:] * path[:-1], axis=1)), 0, atol=1e-11)  # equal angular steps
    assert np.linalg.norm((a + b) / 2) < 0.8 * np.linalg.norm(a)  # what a straight line would do midway


def test_latent_walk_goes_through_the_generators_images_at_its_points(generator):
    walk = helper.latent_walk(generator, Z_DIM, points=3, steps=5, seed=1)
    assert walk.shape == (2 * 5, *SHAPE)
    at_points = np.asarray(generator(helper.noise(3, Z_DIM, seed=1), training=False))
    # The same z, in batches of other sizes: the dense layer's 6 products (each below 1) may be summed in
    # another order, off by at most 6 float32 roundings (2**-24 relative), and tanh does not magnify them.
    np.testing.assert_allclose(walk[[0, 4, 5, 9]], at_points[[0, 1, 1, 2]], atol=6 * 2.0**-24)
    np.testing.assert_array_equal(walk, helper.latent_walk(generator, Z_DIM, points=3, steps=5, seed=1))
    assert not np.allclose(walk, helper.latent_walk(generator, Z_DIM, points=3, steps=5, seed=2))


# --- GIFs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_save_gif_writes_enlarged_looping_frames_holding_the_last(tmp_path, channels):
    colours = np.random.default_rng(0).integers(0, 256, (4, channels), dtype=np.uint8)  # GIFs hold 256 colours
    frames = [helper.image_grid(colours[np.random.default_rng(i).integers(0, 4, (6, *SHAPE[:2]))]) for i in range(3)]
    scale = enlarged_scale(frames[0])

    path = helper.save_gif(frames, tmp_path / "walk.gif")
    with Image.open(path) as gif:
        size = (frames[0].shape[1] * scale, frames[0].shape[0] * scale)
        assert (gif.n_frames, gif.size, gif.info["loop"]) == (3, size, 0)
        for i, frame in enumerate(frames):
            gif.seek(i)
            assert gif.info["duration"] == (2000 if i == 2 else 200)
            shown = np.asarray(gif.convert("RGB" if channels == 3 else "L"))
            np.testing.assert_array_equal(shown[::scale, ::scale], frame)


# --- Generating more ----------------------------------------------------------------------


def test_generate_loads_the_export_and_repeats_per_seed(generator, model_dir):
    images = helper.generate(model_dir, 5, seed=3)
    assert images.shape == (5, *SHAPE) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, helper.to_uint8(generator(helper.noise(5, Z_DIM, seed=3))))
    np.testing.assert_array_equal(images, helper.generate(model_dir, 5, seed=3))
    assert not np.array_equal(images, helper.generate(model_dir, 5, seed=4))


def test_generate_command_writes_a_grid(model_dir, tmp_path):
    out = tmp_path / "generated.png"
    run = subprocess.run(
        [sys.executable, str(ROOT / "helper.py"), "generate", str(model_dir), "--count", "6",
         "--seed", "2", "--out", str(out)], capture_output=True, text=True, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"Wrote 6 images from {model_dir} to {out}.\n"
    grid = helper.image_grid(helper.generate(model_dir, 6, seed=2))
    scale = enlarged_scale(grid)
    picture = np.asarray(Image.open(out))
    assert picture.shape == (grid.shape[0] * scale, grid.shape[1] * scale, 3)
    np.testing.assert_array_equal(picture[::scale, ::scale], grid)


def test_generate_command_refuses_an_unknown_option(model_dir, tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "helper.py"), "generate", str(model_dir), "--budgets", "60"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2 and "unrecognized arguments: --budgets 60" in run.stderr


def test_generate_command_writes_separate_files(model_dir, tmp_path, capsys):
    helper.main(["generate", str(model_dir), "--count", "3", "--seed", "2", "--separate",
                 "--out", str(tmp_path / "new")])
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["0000.png", "0001.png", "0002.png"]
    for i, image in enumerate(helper.generate(model_dir, 3, seed=2)):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "new" / f"{i:04d}.png")), image)
    assert capsys.readouterr().out == f"Wrote 3 images from {model_dir} to {tmp_path / 'new'}.\n"


# --- FID ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("mean", "scale"), [(0, 1), (0.5, 1), (0, 2), (0.5, 0.5)])
def test_frechet_distance_of_shifted_and_scaled_gaussians(mean, scale):
    """N(0, I) against N(mean, scale^2 I) in D dimensions: |mean|^2 + D (1 - scale)^2."""
    dims, samples = 8, 200_000
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((samples, dims)), mean + scale * rng.standard_normal((samples, dims))
    expected = dims * mean**2 + dims * (1 - scale) ** 2
    # Sampling error, not rounding: from 200,000 samples each mean is within 3 / sqrt(200,000) = 0.7 % of a unit
    # and each variance within 3 sqrt(2 / 200,000) = 1 % (three standard errors), so 1 % of the result, or 0.01.
    assert quality.frechet_distance(a, b) == pytest.approx(expected, rel=0.01, abs=0.01)


def symmetric_root(matrix):
    """The square root of a symmetric positive semi-definite matrix, its eigenvalues under 1e-12 of the largest taken
    as the zeros that rounding leaves them instead of (for a singular covariance)."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.where(values > 1e-12 * values.max(), values, 0))) @ vectors.T


@pytest.mark.parametrize(("samples", "dims"), [(500, 20), (40, 100)])  # more samples than dimensions, and fewer
def test_frechet_distance_is_the_formula_with_matrix_square_roots(samples, dims):
    """Correlated features, sets of different sizes: the textbook formula, with C_a^1/2 C_b C_a^1/2's square root."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((samples, dims)) @ rng.standard_normal((dims, dims))
    b = rng.standard_normal((samples + 7, dims)) @ rng.standard_normal((dims, dims)) + 0.3
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = symmetric_root(cov_a)
    expected = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                - 2 * np.trace(symmetric_root(root_a @ cov_b @ root_a)))
    # The two ways agree to about 1e-13 of the result; covariances divided by N, not N - 1, are 4e-2 off, and a
    # cross term off by 1e-6 of itself is caught too.
    assert quality.frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)


def test_fid_of_a_set_with_itself_is_zero(monkeypatch):
    compared = []

    def frechet_distance(features_a, features_b):
        compared.append((features_a, features_b))
        return helper_frechet_distance(features_a, features_b)

    helper_frechet_distance = quality.frechet_distance
    monkeypatch.setattr(quality, "frechet_distance", frechet_distance)
    digits = np.random.default_rng(0).integers(0, 256, (12, 28, 28, 1), dtype=np.uint8)  # grey, like MNIST
    same = helper.fid(digits, pixels.to_unit_range(digits).numpy(), weights=None, size=75, batch_size=5)

    [(features, features_again)] = compared
    assert features.shape == (12, 2048)
    np.testing.assert_array_equal(features_again, features)  # uint8 or [-1, 1] floats: the same pixels, the same bits
    spread = np.trace(np.cov(features, rowvar=False))
    # 0 in exact arithmetic: the sum of R R^T's singular values, R R^T being R's Gram matrix, is its trace, the
    # spread itself, so what is left is rounding, about 1e-15 of the spread.
    assert spread > 0 and abs(same) < 1e-12 * spread


@pytest.mark.parametrize("failure", [
    Exception(f"URL fetch failure on {WEIGHTS_URL}: None -- [Errno -2] Name or service not known"),  # no network
    TimeoutError("timed out"),  # a network that never answers
], ids=["no network", "silent network"])
def test_fid_offline_says_so_in_one_line_and_returns_none(monkeypatch, capsys, failure):
    timeouts = []

    def failed_download(**options):  # as keras.utils.get_file fails
        timeouts.append(socket.getdefaulttimeout())
        print(f"Downloading data from {WEIGHTS_URL}")
        raise failure

    monkeypatch.setattr(keras.applications, "InceptionV3", failed_download)
    images = np.zeros((2, 75, 75, 3), np.uint8)
    timeout = socket.getdefaulttimeout()
    assert helper.fid(images, images) is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("FID skipped: could not download InceptionV3's ImageNet weights")
    assert str(failure) in out
    assert timeouts == [downloads.TIMEOUT] and socket.getdefaulttimeout() == timeout


def test_fid_raises_other_errors():
    images = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="75"):  # InceptionV3 takes images of 75x75 and up
        helper.fid(images, images, weights=None, size=32)
