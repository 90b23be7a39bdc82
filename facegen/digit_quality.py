"""How good generated digits are: the Fréchet distance in the features of our own MNIST classifier (trained by
tools/train_classifier.py, its weights committed in data/), its classifier score, and each digit's share."""

import json
from pathlib import Path

import keras
import numpy as np

from facegen import COMMITTED_DATA
from facegen.mnist import MNIST_MIRRORS, load_mnist
from facegen.pixels import to_uint8, to_unit_range
from facegen.precision import float32_policy
from facegen.quality import classifier_score, frechet_distance

# The weights of our own MNIST classifier (`mnist_classifier`, trained by tools/train_classifier.py), whose features
# measure generated digits. Weights, not a whole .keras model: a model saved by one Keras version may not load in an
# older one (Python 3.10 gets Keras 3.12), while the weights of the same layers do.
MNIST_CLASSIFIER = COMMITTED_DATA / "mnist_classifier.weights.h5"


def mnist_classifier():
    """A small CNN (90,000 weights) giving the ten digits' probabilities for 28x28x1 images in [-1, 1].

    Its 128-unit "features" layer, the last before the output, is what `MnistQuality` compares
    distributions with. Its trained weights are in data/mnist_classifier.weights.h5.
    """
    def block(filters, padding):  # no bias: batch norm's shift takes its place
        return [keras.layers.Conv2D(filters, 3, padding=padding, use_bias=False), keras.layers.BatchNormalization(),
                keras.layers.ReLU(), keras.layers.MaxPooling2D()]

    return keras.Sequential([
        keras.Input((28, 28, 1)),
        *block(32, "same"), *block(64, "same"), *block(64, "valid"),  # 28 -> 14 -> 7 -> 5 -> 2
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu", name="features"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(10, activation="softmax", name="probabilities"),
    ], name="mnist_classifier")


class MnistQuality:
    """How good generated digits are, measured with our MNIST classifier: `MnistQuality(data_dir)(images)`.

    Called with images (uint8 or [-1, 1] floats, [N, 28, 28, 1]; 10,000 to compare with the README's
    figures), it gives a dict:
    - `fd`: Fréchet distance between their "features" and those of the `reference` digits (by
      default the 10,000 MNIST test digits): lower is closer, and the FD depends on N;
    - `score`: the classifier score (`classifier_score`), from 1 to 10, higher is better;
    - `shares`: the fraction of the images classified as each digit, 0 to 9.
    The reference's features are computed once, when it is made.
    """

    def __init__(self, data_dir="data", reference=None, classifier=MNIST_CLASSIFIER, mirrors=MNIST_MIRRORS):
        with float32_policy():  # the same figures whether training ran in mixed precision or not
            if not isinstance(classifier, keras.Model):
                weights, classifier = classifier, mnist_classifier()
                classifier.load_weights(weights)
            # Both outputs the measures need, from one pass.
            self.model = keras.Model(classifier.inputs,
                                     [classifier.get_layer("features").output, classifier.outputs[0]])
        if reference is None:
            reference = load_mnist(data_dir, "test", mirrors)[0]
        self.reference_features = self.predict(reference)[0]

    def predict(self, images):
        """The "features" and the class probabilities of images, as saved (rounded to uint8 pixels)."""
        return self.model.predict(to_unit_range(to_uint8(images)), batch_size=500, verbose=0)

    def __call__(self, images):
        features, probabilities = self.predict(images)
        return {
            "fd": frechet_distance(features, self.reference_features),
            "score": classifier_score(probabilities),
            "shares": np.bincount(probabilities.argmax(1), minlength=10) / len(probabilities),
        }


def describe_quality(quality):
    """One line for a `MnistQuality` result: FD, classifier score, and each digit's share."""
    shares = " ".join(f"{digit}: {share:.1%}" for digit, share in enumerate(quality["shares"]))
    return f"FD {quality['fd']:.2f}, classifier score {quality['score']:.2f}; digits {shares}"


def save_quality(path, quality, steps, train_seconds, batch_size, **facts):
    """Write a `MnistQuality` result and how it was reached to a JSON file, for scripts (e.g. the benchmark)."""
    record = dict(fd=quality["fd"], score=quality["score"], shares=list(map(float, quality["shares"])), steps=steps,
                  train_seconds=train_seconds, batch_size=batch_size,
                  images_per_second=steps * batch_size / train_seconds, **facts)
    Path(path).write_text(json.dumps(record, indent=2))
