"""What the notebook's training step costs: its FLOPs, counted from the layers' shapes, and its speed on this
machine. Shared by the benchmarks in tools/; not a command."""

import time

import keras
import numpy as np
import tensorflow as tf

from facegen.notebook import notebook_definitions


def forward_flops(model):
    """FLOPs (2 per multiply-add) of one input through a model's convolutions and dense layers.

    Counted from the layers' shapes. Batch norm and activations, a few FLOPs per value, are left
    out: well under 1% here.
    """
    flops = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.Dense)):
            # Each weight is used once per output position; per input position when transposed.
            transposed = isinstance(layer, keras.layers.Conv2DTranspose)
            positions = np.prod((layer.input if transposed else layer.output).shape[1:-1])
            flops += 2 * int(positions) * int(np.prod(layer.kernel.shape))
    return flops


def training_flops(discriminator, generator):
    """FLOPs of the notebook's training step per real image: 3 G + 7 D, G and D being forward passes.

    Forward: G once, D on the real and the fake batch (2 D). A backward pass costs about twice
    its forward pass (gradients of the inputs and of the weights): D on both batches for the
    discriminator's loss (4 D), then G for the generator's loss (2 G), whose gradient reaches G
    back through D on the fakes, for D's inputs only (1 D).
    """
    g, d = forward_flops(generator), forward_flops(discriminator)
    return 3 * g + 7 * d


def training_rate(images, steps, jit_compile=False, filters=64, full_resolution_layer=False):
    """Images/s of the notebook's own training step on this machine, on batches like `images`; and its FLOPs/image.

    `filters` is the networks' width, `full_resolution_layer` the generator's option; `jit_compile=True` times
    the step compiled with XLA.
    """
    notebook = notebook_definitions()
    discriminator = notebook["discriminator"](images.shape[1:], filters)
    generator = notebook["generator"](100, images.shape[1:], filters, full_resolution_layer)  # the notebook's z_dim
    train_step = notebook["model_opt"](discriminator, generator, 2e-4, 0.5)[0]
    train_step = tf.function(train_step, jit_compile=jit_compile)  # as train compiles it
    z = tf.random.normal([len(images), 100])
    for _ in range(2):  # traces and compiles the step, then warms it up
        float(train_step(images, z)[0])
    start = time.perf_counter()
    for _ in range(steps):
        float(train_step(images, z)[0])  # waits for the step to finish, as the notebook's loop does
    return steps * len(images) / (time.perf_counter() - start), training_flops(discriminator, generator)
