"""Runs the notebook's `train` on 640 real digits in a process of its own, for the tests that kill it.

    python tests/support/train_worker.py RUN_DIR EPOCHS SAMPLE_EVERY
"""

import os
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

import helper
from facegen import mnist, pixels
from support.notebook import notebook_functions

STEPS_PER_EPOCH = 10
# Narrow networks, the notebook's width for digits: what the tests check does not depend on width, and the default
# 64 takes far longer.
WIDTH = 16
WORKER = Path(__file__)  # run as a script: python train_worker.py RUN_DIR EPOCHS SAMPLE_EVERY


def worker_env(**variables):
    """A test worker's environment: this process's, with the project and tests/ importable, and no display."""
    tests = Path(__file__).parents[1]
    python_path = os.pathsep.join([str(tests.parent), str(tests)])
    return {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": python_path, **variables}


def digits(batch_size=64):
    """Ten batches of real MNIST digits in [-1, 1], in a fixed order."""
    with np.load(mnist.MNIST_SAMPLE, allow_pickle=False) as sample:
        images = sample["train_images"][: STEPS_PER_EPOCH * batch_size, ..., None]
    return tf.data.Dataset.from_tensor_slices(images).batch(batch_size, drop_remainder=True).map(pixels.to_unit_range)


def train_options(run_dir, **changes):
    """The notebook train's other arguments for these digits, with `changes`: narrow networks (WIDTH), a
    checkpoint every 5 steps."""
    return {**dict(z_dim=8, learning_rate=2e-4, beta1=0.5, filters=WIDTH, run_dir=run_dir,
                   images_dir=run_dir / "images", sample_every=5), **changes}


def checkpointed_step(run_dir):
    """The step stored in the latest checkpoint of `run_dir`, or None."""
    latest = tf.train.latest_checkpoint(Path(run_dir, "checkpoints"))
    return latest and int(tf.train.load_checkpoint(latest).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))


def shuffled_digits(batch_size=64):
    """The same digits through the notebook's own pipeline, reshuffled every epoch."""
    with np.load(mnist.MNIST_SAMPLE, allow_pickle=False) as sample:
        return helper.mnist_dataset(sample["train_images"][: STEPS_PER_EPOCH * batch_size, ..., None], batch_size)


if __name__ == "__main__":
    run_dir, epochs, sample_every = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    tf.config.experimental.enable_op_determinism()  # so that two runs can be compared exactly
    # Width 32: checkpoints of about 3 MB (the full-disk test's) and steps slow enough (about 0.2 s on a 2-core CPU,
    # 289 images/s) to be killed between two checkpoints.
    notebook_functions()["train"](shuffled_digits(), "worker", epochs,
                                  **train_options(run_dir, filters=32, sample_every=sample_every))
