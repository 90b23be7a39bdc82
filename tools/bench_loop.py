"""How much of the bare training step's speed the notebook's `train` loop keeps (not a test).

    python -m tools.bench_loop                      # the notebook here, at its MNIST and face sizes
    python -m tools.bench_loop --notebook old.ipynb  # another version of it, e.g. from git, for a before/after

For each stage, at the notebook's default image size, batch size and width, on random pixels (a
step's speed depends only on their shape):
- bare: the same compiled, distributed step as `train` runs, called in a plain loop that reads
  nothing back until the end;
- train: the notebook's whole `train`, timed for two step counts; the difference in time over
  the difference in steps is its cost per step, without the set-up both share (building and
  tracing, the last sample grid and checkpoint, the loss plot).
It prints the median images/s of each and the loop's share of the bare rate, measured in turns (target: at
least 97 %).
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")  # train's sample grids and plots, with no screen

import numpy as np
import tensorflow as tf

import helper
from facegen.notebook import NOTEBOOK, notebook_definitions, notebook_parameters

Z_DIM = 100
STAGES = ["MNIST", "faces"]  # at the notebook's sizes for each


def random_batches(shape, batch_size, steps, seed=0):
    """`steps` batches of random pixels in [-1, 1], prepared once and held in memory."""
    pixels = np.random.default_rng(seed).integers(0, 256, (steps * batch_size, *shape), np.uint8)
    dataset = helper.mnist_dataset(pixels, batch_size, seed).cache()
    for _ in dataset:  # fills the cache now, so that no measurement pays for it
        pass
    return dataset


def bare_rate(notebook, dataset, filters, full_resolution_layer, steps):
    """Images/s of the compiled step alone, in a loop that reads nothing back until the end."""
    image_shape = dataset.element_spec.shape[1:]
    discriminator = notebook["discriminator"](image_shape, filters)
    generator = notebook["generator"](Z_DIM, image_shape, filters, full_resolution_layer)
    train_step = notebook["model_opt"](discriminator, generator, 2e-4, 0.5)[0]
    noise = tf.random.Generator.from_seed(0)
    strategy = tf.distribute.get_strategy()

    @tf.function
    def distributed_step(images):  # as train's, with one device
        losses = strategy.run(lambda x: train_step(x, noise.normal([tf.shape(x)[0], Z_DIM])),
                              args=(images,))
        return tf.stack([strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None) for loss in losses])

    batches = iter(strategy.experimental_distribute_dataset(dataset.repeat()))  # as train reads them
    for _ in range(2):  # traces, then warms up
        distributed_step(next(batches)).numpy()
    start = time.perf_counter()
    for _ in range(steps):
        losses = distributed_step(next(batches))
    losses.numpy()
    return steps * dataset.element_spec.shape[0] / (time.perf_counter() - start)


def train_seconds(notebook, dataset, filters, full_resolution_layer, scratch):
    """Wall-clock seconds of the notebook's whole `train` on `dataset`, one epoch, from scratch."""
    run_dir = Path(tempfile.mkdtemp(dir=scratch))
    start = time.perf_counter()
    notebook["train"](dataset, "benchmark", 1, Z_DIM, 2e-4, 0.5, run_dir, run_dir / "images", sample_every=10**9,
                      filters=filters, full_resolution_layer=full_resolution_layer)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK, help="the notebook to measure (default: this one)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=STAGES,
                        help="which stages to measure (default: both)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="measurements of each, in turns; the median share is kept (default 5)")
    args = parser.parse_args(argv)
    notebook, defaults = notebook_definitions(args.notebook), notebook_parameters(args.notebook)
    face_size = defaults["celeba_image_size"]
    stages = {"MNIST": ((28, 28, 1), defaults["mnist_batch_size"], defaults["mnist_filters"],
                        defaults["mnist_full_resolution_layer"], 40, 640),
              "faces": ((face_size, face_size, 3), defaults["celeba_batch_size"], defaults["celeba_filters"],
                        defaults["celeba_full_resolution_layer"], 4, 24)}
    print(f"{args.notebook.name}: the training loop against the bare compiled step, median of {args.repeats}, "
          f"on {os.cpu_count()} CPU cores{' and a GPU' if tf.config.list_logical_devices('GPU') else ''}:")
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.stages:
            shape, batch_size, filters, full_resolution_layer, few, many = stages[name]
            datasets = {steps: random_batches(shape, batch_size, steps) for steps in (few, many)}
            bare, loop = [], []
            # In turns, and the share taken within each turn: this machine's speed drifts by 10 % or more
            # from one minute to the next, more than the loop's cost we are after.
            for _ in range(args.repeats):
                bare.append(bare_rate(notebook, datasets[many], filters, full_resolution_layer, many - few))
                seconds = [train_seconds(notebook, datasets[steps], filters, full_resolution_layer, scratch)
                           for steps in (many, few)]
                loop.append((many - few) * batch_size / (seconds[0] - seconds[1]))
            shares = np.array(loop) / np.array(bare)
            print(f"  {name} {'x'.join(map(str, shape))}, batches of {batch_size}, width {filters}: bare step "
                  f"{np.median(bare):,.0f} images/s, train {np.median(loop):,.0f} images/s: "
                  f"{np.median(shares):.1%} of the bare rate (each turn: "
                  f"{', '.join(f'{share:.1%}' for share in shares)})")


if __name__ == "__main__":
    main()
