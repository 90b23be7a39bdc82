"""How fast the CelebA input pipeline runs on this machine, on stand-in faces, next to what a training step
consumes: the one-time preprocessing into a fresh cache, the batches streamed from it, the notebook's
training step, and estimated GPU rates from the step's FLOPs. A measurement, not a test.

    python -m tools.bench_pipeline [--count 10000] [--size 64] [--batch-size 64] [--data-dir data]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path


import tensorflow as tf

import helper
from facegen import celeba, face_cache
from tools.training_speed import training_rate

# Published peak FLOP/s of what TensorFlow runs a float32 model on by default: FP32 on the T4
# and the V100 (SXM2, as in AWS p3), TF32 tensor cores on the A100. NVIDIA publishes no A10G
# (AWS g5) datasheet; its figure is the A10's FP32 peak, the same GA102 chip.
GPU_PEAK_FLOPS = {"T4": 8.1e12, "V100": 15.7e12, "A10G": 31.2e12, "A100": 156e12}
GPU_UTILISATION = 0.3  # assumed: small convolutions at batch 64 keep a GPU far from its peak


def _steady_rate(dataset, seconds):
    """Images/s drawn from `dataset`, repeated, over `seconds` after a warm-up epoch."""
    batches = iter(dataset.repeat())
    for _ in range(int(dataset.cardinality())):  # fills the buffers and pages the cache in
        next(batches)
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        images += len(next(batches))
    return images / (time.perf_counter() - start)


def benchmark_pipeline(count=10_000, size=64, batch_size=64, data_dir="data", seconds=5, steps=5):
    """Print how fast the CelebA pipeline runs here, on `count` stand-in faces, next to a training step.

    The one-time preprocessing into a fresh cache, the steady-state rate of the batches streamed
    from it, what one step of the notebook's DCGAN consumes on this machine, and estimated GPU
    rates from the step's FLOPs. The stand-in faces are made once in `<data_dir>/standin/`.
    """
    folder = celeba.standin_faces(Path(data_dir) / "standin", count)
    files = sorted(str(path) for path in folder.glob("*.jpg"))
    print(f"{count:,} {helper.STANDIN_NAME} at {size}x{size}, batches of {batch_size}, on {os.cpu_count()} CPU cores:")
    with tempfile.TemporaryDirectory() as scratch:
        cache, start = Path(scratch, "faces.npy"), time.perf_counter()
        face_cache.face_cache(files, size, cache)
        preprocessing = count / (time.perf_counter() - start)
        dataset = helper.celeba_dataset(files, size, batch_size, cache=cache)
        steady = _steady_rate(dataset, seconds)
        training, flops = training_rate(next(iter(dataset)), steps)
    print(f"  one-time preprocessing (decode, crop, resize, write the cache): {preprocessing:,.0f} images/s")
    print(f"  pipeline, steady state (shuffled batches from the cache, after a warm-up epoch): {steady:,.0f} images/s")
    device = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    print(f"  training, the notebook's DCGAN on this {device} ({steps} steps timed after 2 warm-up steps): "
          f"{training:,.0f} images/s")
    print(f"  pipeline / training: {steady / training:,.0f}x (target: at least 20x)")
    print(f"Training FLOPs per image, counted from the layers' shapes: {flops / 1e9:.2f} GFLOP. Estimates, not "
          f"measurements, at {GPU_UTILISATION:.0%} of each GPU's peak, for a CelebA epoch "
          f"({celeba.CELEBA_COUNT:,} images):")
    for gpu, peak in GPU_PEAK_FLOPS.items():
        rate = peak * GPU_UTILISATION / flops
        print(f"  {gpu:>5}: {rate:7,.0f} images/s, {celeba.CELEBA_COUNT / rate:4.0f} s per epoch; "
              f"the pipeline measured here delivers {steady / rate:.1f}x that")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000,
                        help="stand-in faces, made once in <data-dir>/standin/ (default 10,000)")
    parser.add_argument("--size", type=int, default=64, help="the training size (default 64)")
    parser.add_argument("--batch-size", type=int, default=64, help="the batch size (default 64)")
    parser.add_argument("--data-dir", default="data", help="where the stand-in faces are made (default data)")
    parser.add_argument("--seconds", type=float, default=5,
                        help="how long the pipeline's steady rate is timed (default 5)")
    parser.add_argument("--steps", type=int, default=5, help="training steps timed, after 2 warm-up steps (default 5)")
    args = parser.parse_args()
    benchmark_pipeline(args.count, args.size, args.batch_size, args.data_dir, args.seconds, args.steps)
