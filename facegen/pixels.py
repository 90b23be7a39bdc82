"""Pixels between their two forms: uint8 [0, 255] as stored and shown, float32 [-1, 1] as the networks see them."""

import numpy as np
import tensorflow as tf


def to_unit_range(images):
    """uint8 pixels [0, 255] -> float32 in [-1, 1], the range of the generator's tanh."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def to_uint8(images):
    """[-1, 1] floats -> uint8 pixels [0, 255]; uint8 images are returned as they are."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.round((np.clip(images, -1, 1) + 1) * 127.5).astype(np.uint8)
