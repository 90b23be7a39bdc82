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


@pytest.mark.parametrize("images, steps_per_pass, gpu, said", [
    (None, 245, False, "1,250 steps of 64: 80,000 images, 5.1 passes over 15,680 faces (celeba_images = 80,000, "
                       "the default on a CPU)."),  # the sample
    (None, 3_165, False, "1,250 steps of 64: 80,000 images, 0.395 passes over 202,560 faces"),  # all of CelebA
    (None, 3_165, True, "15,625 steps of 64: 1,000,000 images, 4.94 passes over 202,560 faces (celeba_images = "
                        "1,000,000, the default on a GPU)."),
    (None, 245, True, "4,900 steps of 64: 313,600 images, 20 passes over 15,680 faces (celeba_images = 1,000,000, "
                      "the default on a GPU, but at most 20 passes over a set this small)."),
    (None, 4, False, "80 steps of 64: 5,120 images, 20 passes over 256 faces"),  # 300 photos of one's own
    (1_000_000, 245, True, "15,625 steps of 64: 1,000,000 images, 63.8 passes"),  # a length asked for is kept
    (300_000, 245, False, "4,688 steps of 64: 300,032 images, 19.1 passes over 15,680 faces (celeba_images = "
                          "300,000)."),
    (1, 4, False, "1 step of 64: 64 images, 0.25 passes over 256 faces (celeba_images = 1)."),  # at least a step
])
def test_face_passes_train_on_the_images_asked_whatever_the_data(images, steps_per_pass, gpu, said, capsys):
    passes = helper.face_passes(images, steps_per_pass, 64, gpu=gpu)
    assert said in capsys.readouterr().out
    steps = int(said.split(" step")[0].replace(",", ""))
    assert round(passes * steps_per_pass) == steps  # what TrainingRun makes of `epochs`


@pytest.mark.parametrize("learning_rate, cooldown, images, chosen, said", [
    (None, None, 300_000, (2e-4, 0.5),
     "0.0002, held for 150,000 images, then lowered to 0 over the last 150,000 (celeba_learning_rate = None: runs of "
     "200,000 images or more take 0.0002; celeba_cooldown = None: runs of 200,000 images or more cool down over their "
     "second half)"),
    (None, None, 80_000, (5e-4, 0.0),
     "0.0005, held for all 80,000 images (celeba_learning_rate = None: runs under 200,000 images take 0.0005; "
     "celeba_cooldown = None: runs under 200,000 images hold it)"),
    (None, None, 199_999, (5e-4, 0.0),
     "0.0005, held for all 199,999 images (celeba_learning_rate = None: runs under 200,000 images take 0.0005; "
     "celeba_cooldown = None: runs under 200,000 images hold it)"),
    (None, 0, 200_000, (2e-4, 0),
     "0.0002, held for all 200,000 images (celeba_learning_rate = None: runs of 200,000 images or more take 0.0002; "
     "celeba_cooldown = 0)"),
    (1e-3, None, 200_000, (1e-3, 0.5),
     "0.001, held for 100,000 images, then lowered to 0 over the last 100,000 (celeba_learning_rate = 0.001; "
     "celeba_cooldown = None: runs of 200,000 images or more cool down over their second half)"),
    (None, 0.25, 80_000, (5e-4, 0.25),
     "0.0005, held for 60,000 images, then lowered to 0 over the last 20,000 (celeba_learning_rate = None: runs under "
     "200,000 images take 0.0005; celeba_cooldown = 0.25)"),
    (5e-4, 0, 1_000_000, (5e-4, 0),
     "0.0005, held for all 1,000,000 images (celeba_learning_rate = 0.0005; celeba_cooldown = 0)"),
])
def test_the_faces_learning_rate_is_chosen_by_the_runs_length_unless_told(learning_rate, cooldown, images, chosen,
                                                                         said, capsys):
    assert helper.face_learning_rate(learning_rate, cooldown, images) == chosen
    assert capsys.readouterr().out == f"The learning rate: {said}.\n"
