"""Fixtures for the download tests (local mirrors on 127.0.0.1, a port nobody listens on, and
the MNIST files they serve, written from the committed sample so that a fresh clone has them), and
a finished training run for the tests that resume or damage one."""

import gzip
import shutil
import socket
import struct
from pathlib import Path

import numpy as np
import pytest

from facegen import downloads, mnist
from support.http_server import Mirror
from support.notebook import notebook_functions
from support.train_worker import digits, train_options

MNIST_FILES = {  # each official MNIST file, and the committed sample's array it is written from
    "train-images-idx3-ubyte": "train_images",
    "train-labels-idx1-ubyte": "train_labels",
    "t10k-images-idx3-ubyte": "test_images",
    "t10k-labels-idx1-ubyte": "test_labels",
}


def idx_bytes(array):
    """A uint8 array in IDX, MNIST's format: 0, 0, 8 (uint8), the number of dimensions, each dimension, the data."""
    return struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@pytest.fixture(scope="session")
def mnist_gz():
    """The four MNIST files as a mirror serves them (gzip'ed IDX), by name, written from the committed
    sample: the whole official test split, and the first 10,000 of the 60,000 training digits."""
    with np.load(mnist.MNIST_SAMPLE, allow_pickle=False) as sample:
        return {f"{name}.gz": gzip.compress(idx_bytes(sample[key]), mtime=0) for name, key in MNIST_FILES.items()}


@pytest.fixture(scope="session")
def place_mnist_test_split(mnist_gz):
    """`place_mnist_test_split(data_dir)` puts the test split's two files where load_mnist looks,
    as a user would, and returns that folder."""

    def place(data_dir):
        directory = Path(data_dir) / "mnist"
        directory.mkdir()
        for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
            (directory / name).write_bytes(mnist_gz[name])
        return directory

    return place


@pytest.fixture
def start_mirror(monkeypatch):
    """`start_mirror(files, **behaviour)` starts a local `Mirror`; all are shut down after the test."""
    monkeypatch.setattr(downloads, "TIMEOUT", 1)  # a local mirror answers at once; silence means it hangs
    mirrors = []

    def start(files, **behaviour):
        mirrors.append(Mirror(files, **behaviour))
        return mirrors[-1]

    yield start
    for mirror in mirrors:
        mirror.close()


@pytest.fixture
def refused_url():
    """The URL of a local port with nothing listening, so connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="session")
def _first_digits_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("first-run")
    notebook_functions()["train"](digits(), "first", 1, **train_options(folder))
    return folder


@pytest.fixture
def first_run(_first_digits_run, tmp_path):
    """tmp_path, holding what `train(digits(), "first", 1, **train_options(tmp_path))` leaves there (checkpoints at
    steps 5 and 10): trained once per test worker, a copy for each test, which resumes it or damages it."""
    shutil.copytree(_first_digits_run, tmp_path, dirs_exist_ok=True)
    return tmp_path
