"""The quality measures (`helper.MnistQuality`) of real digits, the first 10,000 MNIST training ones: the best a
generator can expect, the README's "real digits" figures. Under a minute.

    python -m tools.mnist_floor [--data-dir data] [--count 10000]
"""

import argparse


import helper
from facegen import mnist


def mnist_floor(data_dir="data", count=10_000, mirrors=mnist.MNIST_MIRRORS):
    """`MnistQuality` of real digits, the first `count` training ones: the best a generator can expect.

    Their FD to the test digits is not 0, as two samples of the same digits differ.
    """
    return helper.MnistQuality(data_dir, mirrors=mirrors)(helper.load_mnist(data_dir, "train", mirrors)[0][:count])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data",
                        help="where MNIST is (in mnist/), or is downloaded to (default data)")
    parser.add_argument("--count", type=int, default=10_000,
                        help="training digits measured (default 10,000; compare FDs only between sets of one size)")
    args = parser.parse_args()
    print(f"Real digits: {helper.describe_quality(mnist_floor(args.data_dir, args.count))}")
