"""Train the MNIST classifier whose features measure generated digits (`MnistQuality`), and save its weights
where facegen/digit_quality.py loads them: data/mnist_classifier.weights.h5. A few CPU minutes (3 epochs, about
4 minutes on 2 cores); the same seed gives the same weights. Needs all 60,000 official MNIST training digits.

    python -m tools.train_classifier [--data-dir data] [--epochs 3] [--seed 0] [--out data/mnist_classifier.weights.h5]
"""

import argparse
from pathlib import Path


import keras
import numpy as np
import tensorflow as tf

import helper
from facegen import digit_quality, downloads, mnist, pixels
from facegen.notebook import ROOT


def train_mnist_classifier(data_dir="data", path=digit_quality.MNIST_CLASSIFIER, epochs=3, seed=0,
                           mirrors=mnist.MNIST_MIRRORS):
    """Train `mnist_classifier()` on the 60,000 official training digits, print its test accuracy, save its weights to
    `path`.

    A few CPU minutes. The same seed gives the same weights: it turns on TensorFlow's op
    determinism, for the rest of the process.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()  # else parallel sums vary from run to run
    images, labels, name = helper.load_mnist(data_dir, "train", mirrors)
    if name != "MNIST":
        raise downloads.DownloadError(
            f"Training the classifier needs all 60,000 MNIST training digits, not the {name}.")
    batch_size = 128
    model = digit_quality.mnist_classifier()
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, epochs * int(np.ceil(len(images) / batch_size)))
    model.compile(keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(np.asarray(pixels.to_unit_range(images)), labels, batch_size=batch_size, epochs=epochs, verbose=2)
    test_images, test_labels, _ = helper.load_mnist(data_dir, "test", mirrors)
    accuracy = model.evaluate(np.asarray(pixels.to_unit_range(test_images)), test_labels, verbose=0, return_dict=True)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(path)  # the layers' weights alone: they load into mnist_classifier() in any Keras 3
    print(f"Test accuracy: {accuracy['accuracy']:.2%} of the {len(test_images):,} MNIST test digits. Saved to {path}.")
    return model


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data",
                        help="where MNIST is (in mnist/), or is downloaded to (default data)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of training (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same weights (default 0)")
    parser.add_argument("--out", default=digit_quality.MNIST_CLASSIFIER,
                        help=f"where to save it (default "
                             f"{digit_quality.MNIST_CLASSIFIER.relative_to(ROOT)})")
    args = parser.parse_args()
    train_mnist_classifier(args.data_dir, args.out, args.epochs, args.seed)
