"""Two published DCGAN recipes, ready to train from scratch on 28x28 digits: the baselines that
`bench_recipes.py` trains next to the notebook's recipe. Not a command."""

from typing import Callable, NamedTuple

import keras
import tensorflow as tf

from tools.training_speed import forward_flops, training_flops

RECIPE_Z_DIM = 100  # all three recipes draw z from 100 normal(0, 1) values


class Baseline(NamedTuple):
    """A published DCGAN recipe, ready to train from scratch on 28x28 digits."""

    generator: keras.Model
    discriminator: keras.Model
    train_step: Callable  # compiled: (real images, z) -> (d_loss, g_loss)
    batch_size: int
    flops: int  # per real image, counted as `training_flops` counts the notebook's
    z_dim: int = RECIPE_Z_DIM
    draw: Callable | None = None  # z -> images as the recipe draws them; None: the generator in inference mode
    state: dict | None = None  # what a checkpoint needs beyond the two networks (optimizers, a trained generator)


def _cross_entropy(logits, label):
    """Sigmoid cross-entropy of logits against one label for all of them: 1 real, 0 fake."""
    return keras.losses.BinaryCrossentropy(from_logits=True)(keras.ops.full_like(logits, label), logits)


def tf_tutorial_baseline():
    """The DCGAN of TensorFlow's tutorial (tensorflow.org/tutorials/generative/dcgan), in Keras 3.

    Batch 256, Adam 1e-4 for both networks, Keras' default initializers and batch norm, and
    LeakyReLU's slope 0.3 (tf.keras' default then, Keras 3's now). Like the notebook's, its step
    updates both networks from one forward pass: 3 G + 7 D FLOPs. Tracing it, TensorFlow's graph
    optimizer logs a "remapper failed" error over a convolution's bias before a LeakyReLU (the
    notebook's networks have no such biases); the step runs all the same.
    """
    layers = keras.layers
    generator = keras.Sequential([
        keras.Input((RECIPE_Z_DIM,)),
        layers.Dense(7 * 7 * 256, use_bias=False), layers.BatchNormalization(), layers.LeakyReLU(0.3),
        layers.Reshape((7, 7, 256)),
        layers.Conv2DTranspose(128, 5, 1, "same", use_bias=False), layers.BatchNormalization(), layers.LeakyReLU(0.3),
        layers.Conv2DTranspose(64, 5, 2, "same", use_bias=False), layers.BatchNormalization(), layers.LeakyReLU(0.3),
        layers.Conv2DTranspose(1, 5, 2, "same", use_bias=False, activation="tanh"),
    ], name="tf_tutorial_generator")
    discriminator = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(64, 5, 2, "same"), layers.LeakyReLU(0.3), layers.Dropout(0.3),
        layers.Conv2D(128, 5, 2, "same"), layers.LeakyReLU(0.3), layers.Dropout(0.3),
        layers.Flatten(), layers.Dense(1),
    ], name="tf_tutorial_discriminator")
    g_optimizer, d_optimizer = keras.optimizers.Adam(1e-4), keras.optimizers.Adam(1e-4)

    @tf.function
    def train_step(real_images, z):
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake_images = generator(z, training=True)
            real_logits = discriminator(real_images, training=True)
            fake_logits = discriminator(fake_images, training=True)
            g_loss = _cross_entropy(fake_logits, 1)
            d_loss = _cross_entropy(real_logits, 1) + _cross_entropy(fake_logits, 0)
        g_gradients = g_tape.gradient(g_loss, generator.trainable_variables)
        d_gradients = d_tape.gradient(d_loss, discriminator.trainable_variables)
        g_optimizer.apply(g_gradients, generator.trainable_variables)
        d_optimizer.apply(d_gradients, discriminator.trainable_variables)
        return d_loss, g_loss

    return Baseline(generator, discriminator, train_step, 256, training_flops(discriminator, generator))


def dcgan_paper_baseline():
    """The DCGAN paper's recipe as PyTorch's DCGAN tutorial trains it, made for 28x28 digits.

    Batch 128; Adam 2e-4, beta1 0.5 (and PyTorch's epsilon) for both networks; weights from
    normal(0, 0.02), batch norm's scales from normal(1, 0.02), no biases; PyTorch's batch norm
    (its momentum 0.1 is Keras' 0.9). Each step updates D on the real batch and on the fake one,
    then G through a new pass of the updated D: one D forward pass more than the notebook's
    step, 3 G + 8 D FLOPs.
    """
    layers = keras.layers
    weights = keras.initializers.RandomNormal(stddev=0.02)

    convolution = dict(use_bias=False, kernel_initializer=weights)
    generator = keras.Sequential([
        keras.Input((RECIPE_Z_DIM,)),
        layers.Reshape((1, 1, RECIPE_Z_DIM)),
        layers.Conv2DTranspose(256, 7, **convolution), pytorch_batch_norm(), layers.ReLU(),  # 1x1 -> 7x7
        layers.Conv2DTranspose(128, 4, 2, "same", **convolution), pytorch_batch_norm(), layers.ReLU(),  # 14x14
        layers.Conv2DTranspose(1, 4, 2, "same", activation="tanh", **convolution),  # 28x28
    ], name="dcgan_paper_generator")
    discriminator = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(64, 4, 2, "same", **convolution), layers.LeakyReLU(0.2),  # 14x14
        layers.Conv2D(128, 4, 2, "same", **convolution), pytorch_batch_norm(), layers.LeakyReLU(0.2),  # 7x7
        layers.Conv2D(1, 7, **convolution),  # 1x1: the logit
        layers.Flatten(),
    ], name="dcgan_paper_discriminator")
    train_step, optimizers = pytorch_dcgan_step(generator, discriminator)
    flops = training_flops(discriminator, generator) + forward_flops(discriminator)
    return Baseline(generator, discriminator, train_step, 128, flops, state=optimizers)


def pytorch_batch_norm():
    """PyTorch's BatchNorm2d as the DCGAN tutorial initialises it: momentum 0.1 (Keras' 0.9), scales from N(1, 0.02)."""
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5,
                                           gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02))


def pytorch_dcgan_step(generator, discriminator, learning_rate=2e-4):
    """PyTorch's DCGAN tutorial's training step: Adam (beta1 0.5, PyTorch's epsilon) for both networks; D on the
    real batch and on the fake one, then G through a new pass of the updated D. Returns the step and its optimizers
    by name (for checkpoints)."""
    g_optimizer, d_optimizer = (keras.optimizers.Adam(learning_rate, beta_1=0.5, epsilon=1e-8) for _ in range(2))
    # Built now, not at their first step, so that a checkpoint restores their moments (tools/long_run.py resumes).
    g_optimizer.build(generator.trainable_variables)
    d_optimizer.build(discriminator.trainable_variables)

    @tf.function
    def train_step(real_images, z):
        with tf.GradientTape() as g_tape:
            fake_images = generator(z, training=True)
            with tf.GradientTape() as d_tape:  # each batch through D on its own, with its own batch statistics
                d_loss = _cross_entropy(discriminator(real_images, training=True), 1) + \
                    _cross_entropy(discriminator(fake_images, training=True), 0)
            d_optimizer.apply(d_tape.gradient(d_loss, discriminator.trainable_variables),
                              discriminator.trainable_variables)
            # Gradients do not flow through the update, so G's reach it through this new pass alone.
            g_loss = _cross_entropy(discriminator(fake_images, training=True), 1)
        g_optimizer.apply(g_tape.gradient(g_loss, generator.trainable_variables), generator.trainable_variables)
        return d_loss, g_loss

    return train_step, {"d_optimizer": d_optimizer, "g_optimizer": g_optimizer}


BASELINES = {"TF tutorial": tf_tutorial_baseline, "DCGAN paper (PyTorch tutorial)": dcgan_paper_baseline}
