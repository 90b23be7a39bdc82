"""Measuring and exporting in float32, whatever precision training used."""

import contextlib

import keras


@contextlib.contextmanager
def float32_policy():
    """Build Keras models in float32 inside this block, whatever the notebook's precision policy.

    Measuring (the MNIST classifier, InceptionV3) and exporting are done in float32: their figures
    must not depend on whether training ran in mixed precision.
    """
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(policy)
