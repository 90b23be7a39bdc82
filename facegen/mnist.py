"""MNIST: the official files from their mirrors, checked by their MD5, or offline the sample committed in data/."""

import gzip
from pathlib import Path

import numpy as np

from facegen import COMMITTED_DATA
from facegen.downloads import DownloadError, checksum_check, download

# Official MNIST mirrors, best first. LeCun's own page now answers 403, and it is plain HTTP,
# which is safe only because every file is checked against its official MD5.
MNIST_MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# MD5 of each file's *decompressed* content, so a recompressed copy is accepted too.
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# Committed for machines with no network: 10,000 real training digits and the whole test set.
MNIST_SAMPLE = COMMITTED_DATA / "mnist_sample.npz"


def read_idx(content):
    """Parse an IDX file (MNIST's format): a magic number, the dimensions, then uint8 data."""
    ndim = content[3]
    shape = np.frombuffer(content, ">u4", count=ndim, offset=4)
    return np.frombuffer(content, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _mnist_file(directory, name, mirrors):
    """The content of one MNIST file, verified: the local `.gz` if it is good, else downloaded."""
    path = Path(directory) / f"{name}.gz"
    if path.exists() and checksum_check(MNIST_MD5[name], decompress=True)(path):  # also when cut short
        print(f"{path} is not the official MNIST file (wrong checksum); downloading it again.")
        path.unlink()
    if not path.exists():
        download([m + path.name for m in mirrors], path, MNIST_MD5[name], decompress=True)
    return gzip.decompress(path.read_bytes())


def load_mnist(data_dir="data", split="train", mirrors=MNIST_MIRRORS):
    """MNIST digits as uint8 arrays `(images [N, 28, 28, 1], labels [N])` and the data's name.

    Uses the official `.gz` files in `<data_dir>/mnist/` (downloading what is missing). With
    no network, it falls back to the copy committed in `data/mnist_sample.npz`: the whole test
    split, but only 10,000 training digits, and then the returned name says so.
    """
    prefix = {"train": "train", "test": "t10k"}[split]
    directory = Path(data_dir) / "mnist"
    try:
        images, labels = (
            read_idx(_mnist_file(directory, f"{prefix}-{kind}", mirrors))
            for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
        )
        name = "MNIST" if split == "train" else "MNIST test set"
    except DownloadError as error:
        with np.load(MNIST_SAMPLE, allow_pickle=False) as sample:
            images, labels = sample[f"{split}_images"], sample[f"{split}_labels"]
        name = f"MNIST sample (offline: {len(images):,} of the 60,000 training digits)" if split == "train" \
            else "MNIST test set"
        print(f"{error}\nGoing on using the {name} committed in {MNIST_SAMPLE.parent.name}/. For all of "
              f"MNIST, run again when online, or put the official .gz files in {directory}/.")
    return images[..., np.newaxis], labels, name
