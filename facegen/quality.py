"""Distances between sets of images: the Fréchet distance of two sets of features, the classifier score, and the
FID (the Fréchet distance in InceptionV3's features, whose ImageNet weights must be downloaded)."""

import contextlib
import io
import socket

import keras
import numpy as np
import tensorflow as tf

from facegen import downloads
from facegen.pixels import to_uint8
from facegen.precision import float32_policy


def frechet_distance(features_a, features_b):
    """Fréchet distance between Gaussians fitted to two sets of feature vectors ([N, D] each).

    ||mu_a - mu_b||^2 + Tr(C_a) + Tr(C_b) - 2 Tr((C_a^1/2 C_b C_a^1/2)^1/2): the FID when the features come from
    InceptionV3, or any network's penultimate layer. The last trace is the sum of the square roots of C_a C_b's
    eigenvalues; with the centred features A and B, the non-zero ones are the squared singular values of
    A B^T / sqrt((N_a - 1)(N_b - 1)), so it is that matrix's nuclear norm; and with A = Q_a R_a, B = Q_b R_b, it is
    R_a R_b^T's, at most D x D. No square root of a D x D matrix (2,048 x 2,048 for InceptionV3, seconds each), and
    exact for sets smaller than D, whose covariances are singular.
    """
    features_a, features_b = (np.asarray(f, np.float64) for f in (features_a, features_b))
    mu_a, mu_b = features_a.mean(0), features_b.mean(0)
    centred_a, centred_b = features_a - mu_a, features_b - mu_b
    count_a, count_b = len(features_a) - 1, len(features_b) - 1  # np.cov's unbiased estimates divide by these
    r_a, r_b = (np.linalg.qr(centred, mode="r") for centred in (centred_a, centred_b))
    cross = np.linalg.svd(r_a @ r_b.T, compute_uv=False).sum() / np.sqrt(count_a * count_b)
    traces = np.sum(centred_a**2) / count_a + np.sum(centred_b**2) / count_b
    return float(np.sum((mu_a - mu_b) ** 2) + traces - 2 * cross)


def classifier_score(probabilities):
    """exp(E_x[KL(p(y|x) || p(y))]) of a classifier's softmax outputs ([N, classes]): the Inception score's formula.

    From 1 (every image given the same probabilities) to the number of classes (each image sure of
    one class, every class equally often): it rewards images that are clearly something, and variety.
    Computed over all the images at once, not averaged over ten splits as the Inception score is.
    """
    p = np.asarray(probabilities, np.float64)
    tiny = np.finfo(np.float64).tiny  # so that 0 log 0 counts as 0
    kl = np.sum(p * (np.log(np.maximum(p, tiny)) - np.log(np.maximum(p.mean(0), tiny))), axis=1)
    return float(np.exp(kl.mean()))


def _inception(weights, size):
    """InceptionV3 up to its 2,048 average-pooled features, or None (said in one line) if its weights cannot be had."""
    timeout = socket.getdefaulttimeout()
    # Keras downloads with urlretrieve, which would wait forever on a silent network.
    socket.setdefaulttimeout(downloads.TIMEOUT)
    try:
        # Keras's "Downloading data from" line goes: ours says it all.
        with contextlib.redirect_stdout(io.StringIO()), float32_policy():
            return keras.applications.InceptionV3(
                include_top=False, weights=weights, input_shape=(size, size, 3), pooling="avg"
            )
    except Exception as error:
        # Keras reports a failed download as a bare Exception, a timeout as an OSError; anything else is a bug.
        if type(error) is not Exception and not isinstance(error, OSError):
            raise
        print(f"FID skipped: could not download InceptionV3's ImageNet weights ({error}). Run it again when online.")
        return None
    finally:
        socket.setdefaulttimeout(timeout)


def _inception_features(model, images, batch_size):
    """The model's features of images (uint8 or [-1, 1] floats, grey or RGB), a batch at a time to bound memory."""
    size = model.input_shape[1]

    def features(batch):
        batch = tf.image.resize(tf.cast(to_uint8(batch), tf.float32), (size, size))  # the pixels as saved
        if batch.shape[-1] == 1:  # InceptionV3 takes RGB
            batch = tf.image.grayscale_to_rgb(batch)
        return model(keras.applications.inception_v3.preprocess_input(batch), training=False)

    return np.concatenate([features(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def fid(images_a, images_b, weights="imagenet", size=299, batch_size=50):
    """Fréchet Inception Distance between two sets of images (uint8 or [-1, 1] floats, NHWC); lower is closer.

    The images are resized to `size` x `size` (InceptionV3's own 299; 75 at least) for its features.
    `weights=None` uses a randomly initialised network, for tests: its numbers are not FIDs. FID is
    biased upward for small sets, so compare FIDs only between sets of the same size (thousands;
    InceptionV3 at 299 is 6 GFLOPs per image, minutes per thousand images on a CPU).
    Returns None, saying so in one line, when InceptionV3's ImageNet weights cannot be downloaded.
    """
    model = _inception(weights, size)
    if model is None:
        return None
    return frechet_distance(*(_inception_features(model, images, batch_size) for images in (images_a, images_b)))
