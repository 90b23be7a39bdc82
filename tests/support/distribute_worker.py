"""One training step of the notebook's DCGAN on one device and on two replicas, for tests/test_distribute.py.

    python tests/support/distribute_worker.py OUT_DIR

The two replicas are the CPU split into two logical devices, which must happen before TensorFlow
starts: hence a process of its own. The step is the notebook's, computed in float64 throughout
(`float64_notebook_functions`), so that one device and two replicas can differ only by float64's
rounding. Each run writes OUT_DIR/<run>.npz: the global losses and every variable of both
networks (weights and batch-norm statistics) after the step. Last, the notebook's own `train`
runs a few steps on two replicas, as it is (float32, the learning rate cooling down), and writes its losses to
OUT_DIR/train.npz.
"""

import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from support.notebook import float64_notebook_functions, notebook_functions
from support.train_worker import WIDTH, digits

IMAGE_SHAPE, Z_DIM, BATCH, LEARNING_RATE = (28, 28, 1), 8, 16, 2e-4


def batch(dtype=tf.float32):
    """A global batch of real digits and its noise, the same in every process."""
    images, z = next(iter(digits(BATCH))), tf.random.stateless_normal([BATCH, Z_DIM], seed=[0, 1])
    return tf.cast(images, dtype), tf.cast(z, dtype)


def networks(notebook, initial=None):
    """The notebook's discriminator and generator, given the `initial` weights if any."""
    models = notebook["discriminator"](IMAGE_SHAPE, WIDTH), notebook["generator"](Z_DIM, IMAGE_SHAPE, WIDTH)
    for model, weights in zip(models, initial or []):
        model.set_weights(weights)
    return models


def variables(models):
    """The values of every variable of `models`, by names that are the same in every build."""
    return {f"{model.name} layer {i} {variable.name}": variable.numpy()
            for model in models for i, layer in enumerate(model.layers) for variable in layer.weights}


def one_step(notebook, strategy, initial, synchronized=True):
    """The global losses and all variables after one step from `initial` under `strategy`.

    Each replica trains on its share of `batch()`. `synchronized=False` makes batch norm use
    each replica's share alone: the mistake the test must be able to see.
    """
    images, z = batch(tf.float64)
    with strategy.scope():
        models = networks(notebook, initial)
        train_step = notebook["model_opt"](*models, LEARNING_RATE, beta1=0.5)[0]
    for layer in models[0].layers + models[1].layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = synchronized

    def share(context):
        size = BATCH // context.num_replicas_in_sync
        start = context.replica_id_in_sync_group * size
        return images[start:start + size], z[start:start + size]

    @tf.function
    def distributed_step(shares):
        # Compiled once around strategy.run, as train compiles it: TensorFlow refuses the cross-replica
        # sums (merge_call) of a tf.function nested inside strategy.run.
        losses = strategy.run(train_step, args=shares)
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None) for loss in losses]

    losses = distributed_step(strategy.experimental_distribute_values_from_function(share))
    return {"losses": np.array(losses), **variables(models)}


if __name__ == "__main__":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    out = Path(sys.argv[1])
    notebook = float64_notebook_functions()
    initial = [model.get_weights() for model in networks(notebook)]
    two_cpus = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    np.savez(out / "one_device.npz", **one_step(notebook, tf.distribute.get_strategy(), initial))
    np.savez(out / "two_replicas.npz", **one_step(notebook, two_cpus, initial))
    np.savez(out / "unsynchronized_batch_norm.npz", **one_step(notebook, two_cpus, initial, synchronized=False))
    # With the faces' average generator and cooled rate.
    _, losses = notebook_functions()["train"](digits(BATCH).take(3), "two replicas", 1, Z_DIM, LEARNING_RATE, 0.5,
                                              out / "run", out / "images", sample_every=2, strategy=two_cpus,
                                              filters=WIDTH, ema=0.9, cooldown=0.5)
    np.savez(out / "train.npz", losses=losses)
