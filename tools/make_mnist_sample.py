"""Write the offline copy of MNIST committed in data/mnist_sample.npz: the first 10,000 official training digits
and the whole test set, which `helper.load_mnist` falls back to with no network.

    python -m tools.make_mnist_sample [--data-dir data] [--count 10000] [--out data/mnist_sample.npz]

The digits come from the official files in <data-dir>/mnist/, downloaded (and checked) if missing; never from
the committed copy itself.
"""

import argparse
from pathlib import Path


import numpy as np

import helper
from facegen import downloads, mnist
from facegen.notebook import ROOT


def make_mnist_sample(data_dir="data", count=10_000, path=mnist.MNIST_SAMPLE, mirrors=mnist.MNIST_MIRRORS):
    """Write the first `count` official training digits and the whole test set to `path`, from `<data_dir>/mnist/`."""
    train_images, train_labels, _ = helper.load_mnist(data_dir, "train", mirrors)
    test_images, test_labels, _ = helper.load_mnist(data_dir, "test", mirrors)
    # load_mnist keeps the official files it used, and falls back to the committed copy only when it has none.
    directory = Path(data_dir) / "mnist"
    missing = [f"{name}.gz" for name in mnist.MNIST_MD5 if not (directory / f"{name}.gz").exists()]
    if missing:
        raise downloads.DownloadError(f"The sample is made from the official MNIST files, and {', '.join(missing)} "
                                   f"could not be had: run again when online, or put them in {directory}/.")
    np.savez_compressed(path, train_images=train_images[:count, ..., 0], train_labels=train_labels[:count],
                        test_images=test_images[..., 0], test_labels=test_labels)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data",
                        help="where the official MNIST files are (in mnist/), or are downloaded to (default data)")
    parser.add_argument("--count", type=int, default=10_000, help="training digits to keep (default 10,000)")
    parser.add_argument("--out", default=mnist.MNIST_SAMPLE,
                        help=f"the file to write (default {mnist.MNIST_SAMPLE.relative_to(ROOT)})")
    args = parser.parse_args()
    print(f"Wrote {make_mnist_sample(args.data_dir, args.count, args.out)}.")
