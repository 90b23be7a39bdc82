"""Tests for helper.py's pipelines (`tf.data` batches of digits and faces) and image grids."""

import numpy as np
import pytest
from PIL import Image

import helper
from facegen import celeba, face_cache


# --- tf.data pipelines --------------------------------------------------------------------


@pytest.fixture(scope="module")
def standin_jpegs(tmp_path_factory):
    folder = celeba.standin_faces(tmp_path_factory.mktemp("faces"), 6)
    return sorted(str(p) for p in folder.glob("*.jpg"))


@pytest.mark.parametrize("size", [28, 32, 64])
def test_celeba_dataset_batches(standin_jpegs, size):
    batch = next(iter(helper.celeba_dataset(standin_jpegs, size, batch_size=4))).numpy()
    assert (batch.shape, batch.dtype) == ((4, size, size, 3), np.float32)
    assert -1 <= batch.min() and batch.max() <= 1
    assert batch.std() > 0.1  # faces, not a blank


def test_celeba_face_takes_the_centered_square(tmp_path):
    height, width = celeba.CELEBA_SHAPE
    top, left, side = (height - 108) // 2, (width - 108) // 2, 108
    picture = np.zeros((height, width, 3), np.uint8)
    picture[top : top + side, left : left + side] = 255
    path = tmp_path / "square.jpg"
    Image.fromarray(picture).save(path, "JPEG", quality=100)
    decoded = np.asarray(Image.open(path))
    # Black one pixel outside the square on every side: a crop off by a pixel would show it.
    around = (decoded[top - 1, left : left + side], decoded[top + side, left : left + side],
              decoded[top : top + side, left - 1], decoded[top : top + side, left + side])
    assert max(line.max() for line in around) < 40

    face = face_cache.celeba_face(str(path), 64).numpy()
    assert (face.shape, face.dtype) == ((64, 64, 3), np.float32)
    assert face.min() > 0.9  # white everywhere ([-1, 1] range)


def test_mnist_dataset_batches_reshuffled_each_epoch():
    pixel = np.arange(256, dtype=np.uint8)
    images = np.broadcast_to(pixel[:, None, None, None], (256, 28, 28, 1))  # image i is all i
    dataset = helper.mnist_dataset(images, batch_size=16)
    epochs = []
    for _ in range(2):
        batches = list(dataset.as_numpy_iterator())
        assert all((batch.shape, batch.dtype) == ((16, 28, 28, 1), np.float32) for batch in batches)
        epochs.append(np.concatenate(batches)[:, 0, 0, 0])
    # Every image once, mapped from [0, 255] onto [-1, 1]: in float32, 2 roundings (2**-24 relative) of values up to 2.
    for epoch in epochs:
        np.testing.assert_allclose(np.sort(epoch), np.linspace(-1, 1, 256), atol=2 * 2 * 2.0**-24)
    assert not np.array_equal(epochs[0], epochs[1])


# --- Image grids --------------------------------------------------------------------------


def test_image_grid_maps_floats_to_bytes_and_grey_to_2d():
    values = np.array([-1, 0, 1, -3, 3], np.float32)
    images = np.broadcast_to(values[:, None, None, None], (5, 2, 3, 1))
    grid = helper.image_grid(images)  # 5 images: 3 columns, 2 rows
    expected = np.array([[0, 128, 255], [0, 255, 0]])  # clipped to [-1, 1]; the sixth cell is empty
    assert (grid.shape, grid.dtype) == ((4, 9), np.uint8)
    np.testing.assert_array_equal(grid, np.kron(expected, np.ones((2, 3))))


@pytest.mark.parametrize(
    "count, cols, grid_shape", [(4, None, (4, 6, 3)), (5, None, (4, 9, 3)), (5, 5, (2, 15, 3)), (3, 1, (6, 3, 3))]
)
def test_image_grid_tiles_uint8_images_unchanged(count, cols, grid_shape):
    images = np.random.default_rng(0).integers(0, 256, (count, 2, 3, 3), dtype=np.uint8)
    grid = helper.image_grid(images, cols)
    assert (grid.shape, grid.dtype) == (grid_shape, np.uint8)
    columns = grid_shape[1] // 3
    for i, image in enumerate(images):
        row, col = divmod(i, columns)
        np.testing.assert_array_equal(grid[row * 2 : row * 2 + 2, col * 3 : col * 3 + 3], image)


# --- How long the faces train: celeba_images -----------------------------------------------------


@pytest.mark.parametrize("images, count, gpu, epochs, said", [
    (None, 15_722, False, 5, "5 passes over 15,722 faces: 78,400 images in 1,225 steps of 64 (celeba_images = "
                             "80,000, the default on a CPU)."),
    (None, 202_599, True, 5, "5 passes over 202,599 faces: 1,012,800 images in 15,825 steps of 64 (celeba_images = "
                             "1,000,000, the default on a GPU)."),
    (None, 15_722, True, 20, "20 passes over 15,722 faces: 313,600 images in 4,900 steps of 64 (celeba_images = "
                             "1,000,000, the default on a GPU, at most 20 passes over a set this small)."),
    (1_000_000, 15_722, True, 64, "64 passes over 15,722 faces"),  # a length asked for is not capped
    (300_000, 15_722, False, 19, "19 passes over 15,722 faces: 297,920 images in 4,655 steps of 64 (celeba_images "
                                 "= 300,000)."),
    (1, 300, False, 1, "1 pass over 300 faces: 256 images in 4 steps of 64 (celeba_images = 1)."),  # at least one
])
def test_face_epochs_train_about_the_images_asked_in_whole_passes(images, count, gpu, epochs, said, capsys):
    assert helper.face_epochs(images, count, 64, gpu=gpu) == epochs
    assert said in capsys.readouterr().out


def test_face_epochs_refuse_fewer_faces_than_a_batch():
    with pytest.raises(ValueError, match=r"^There are only 63 faces, fewer than one batch of 64: lower "
                                         r"celeba_batch_size, or use more images\.$"):
        helper.face_epochs(None, 63, 64, gpu=False)
