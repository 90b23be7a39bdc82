"""The notebook's own functions, for tests: its imports and the cells that end with a check; and the same
functions computing in float64, for the tests that compare two ways of running the same maths."""

import keras
import tensorflow as tf

from facegen.notebook import notebook_definitions

NEEDED = ["helper", "tests", "halvings", "discriminator", "generator", "cross_entropy", "model_loss",
          "model_opt", "update_average", "train"]


def notebook_functions():
    """A namespace with the notebook's network functions, defined by its cells, without running the checks."""
    namespace = notebook_definitions()
    missing = [name for name in NEEDED if name not in namespace]
    assert not missing, f"The notebook no longer defines {missing}."
    keras.utils.set_random_seed(0)  # as the notebook's import cell does
    return namespace


def float64_copy(model):
    """The same network with the same weights, every layer computing in float64."""
    copy = keras.models.clone_model(model, clone_function=lambda layer: layer.__class__.from_config(
        {**layer.get_config(), "dtype": "float64"}))
    copy.set_weights(model.get_weights())
    return copy


def float64_notebook_functions():
    """The notebook's functions with networks and losses in float64 throughout.

    The notebook keeps its logits, images and losses in float32 on purpose (for mixed precision);
    here they are float64 too, so that two ways of running the same maths (XLA or not, one device
    or two) differ only by float64's rounding, 2.2e-16 relative, which no flip of a ReLU's side
    or of a near-zero gradient's sign can turn into a visible difference. The networks start from
    the weights the notebook's own functions draw, so a seed gives the same start as in float32.
    """
    namespace = notebook_functions()
    discriminator, generator = namespace["discriminator"], namespace["generator"]
    namespace["discriminator"] = lambda *args, **kwargs: float64_copy(discriminator(*args, **kwargs))
    namespace["generator"] = lambda *args, **kwargs: float64_copy(generator(*args, **kwargs))
    namespace["cross_entropy"] = lambda labels, logits: tf.nn.compute_average_loss(
        tf.nn.sigmoid_cross_entropy_with_logits(tf.cast(labels, tf.float64), tf.cast(logits, tf.float64)))
    return namespace


class RepeatableNoise(tf.Module):
    """Noise that XLA draws as plain TensorFlow does (their random generators give different numbers).

    Computed in `dtype`: XLA's float32 sine differs from TensorFlow's in the last bit, float64's does not.
    """

    def __init__(self, dtype=tf.float32):
        super().__init__()
        self.dtype = dtype
        self.calls = tf.Variable(0.0, dtype=dtype)

    def normal(self, shape):
        self.calls.assign_add(1.0)
        count = tf.cast(tf.reduce_prod(shape), self.dtype)
        return tf.reshape(2 * tf.sin(tf.range(count) * 0.37 + 5 * self.calls), shape)
