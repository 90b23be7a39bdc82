"""How fast the notebook's training step runs on this machine with and without XLA, on digits and on faces,
at the notebook's default sizes, batch sizes and widths. A measurement, not a test.

    python -m tools.bench_xla [--steps 20]
"""

import argparse


import tensorflow as tf

from facegen.notebook import notebook_parameters
from tools.training_speed import training_rate


def benchmark_xla(steps=20):
    """Print how fast the notebook's training step runs here with and without XLA, on digits and on faces.

    At the notebook's default sizes, batch sizes and widths for each. Random pixels stand in for
    the images: a step's speed depends only on their shape.
    """
    device = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    print(f"The notebook's training step on this {device}, {steps} steps timed after 2 warm-up steps (images/s):")
    defaults = notebook_parameters()
    face_size = defaults["celeba_image_size"]
    stages = [("MNIST", (28, 28, 1), defaults["mnist_batch_size"], defaults["mnist_filters"],
               defaults["mnist_full_resolution_layer"]),
              ("faces", (face_size, face_size, 3), defaults["celeba_batch_size"], defaults["celeba_filters"],
               defaults["celeba_full_resolution_layer"])]
    speedups = {}
    for name, shape, batch_size, filters, full_resolution_layer in stages:
        images = tf.random.uniform([batch_size, *shape], -1, 1, seed=0)
        plain, xla = (training_rate(images, steps, jit_compile, filters, full_resolution_layer)[0]
                      for jit_compile in (False, True))
        speedups[name] = xla / plain
        print(f"  {name} {'x'.join(map(str, shape))}, batches of {batch_size}, width {filters}: "
              f"{plain:,.0f} without XLA, {xla:,.0f} with XLA")
    verdicts = [f"{max(speedup, 1 / speedup):.2f}x {'faster' if speedup > 1 else 'slower'} on {name}"
                for name, speedup in speedups.items()]
    print(f"With XLA the step is {' and '.join(verdicts)}. The notebook keeps XLA off by default on the CPU, and "
          f"turns it on for a single GPU with Tensor Cores.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20,
                        help="steps timed for each, after 2 warm-up steps (default 20)")
    benchmark_xla(parser.parse_args().steps)
