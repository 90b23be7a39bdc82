"""What the notebook uses but is not about, in the notebook's order: checking its parameters, loading the data,
`tf.data` pipelines, devices and precision, the bookkeeping around training, pictures, measuring quality, and
exporting and generating. The machinery behind them is in facegen/, one module per responsibility."""

import argparse
import json
import os
import sys
from pathlib import Path


def _library_logs_to_the_terminal():
    """In a Jupyter kernel, send what compiled libraries write to stderr to the terminal, not into the cells.

    TensorFlow's C++ side logs straight to file descriptor 2: CUDA and CPU notes at start-up, graph
    optimizer errors, lines that differ from one machine to the next. ipykernel forwards that descriptor
    into the running cell's output. While a cell runs, it points here to the kernel's own stderr instead
    (the terminal that started Jupyter or papermill), as in any script; between cells, back to ipykernel's
    pipe, which ipykernel closes on shutdown. Python's own output, warnings and errors still show in the cell.
    """
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    terminal = getattr(sys.stderr, "_original_stdstream_copy", None)  # there when ipykernel forwards descriptor 2
    if shell is None or terminal is None or os.path.sameopenfile(2, terminal):  # not a kernel, or done already
        return
    pipe = os.dup(2)
    shell.events.register("pre_run_cell", lambda *_: os.dup2(terminal, 2))
    shell.events.register("post_run_cell", lambda *_: os.dup2(pipe, 2))
    os.dup2(terminal, 2)  # for the rest of this cell, which imports TensorFlow next


_library_logs_to_the_terminal()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# What the lesson calls from the machinery, in its order (hence the re-exports: noqa F401).
from facegen.mnist import load_mnist  # noqa: E402, F401
from facegen.celeba import STANDIN_NAME, load_celeba  # noqa: E402, F401
from facegen.disk import said_plainly_if_full  # noqa: E402
from facegen.face_cache import face_cache  # noqa: E402
from facegen.pixels import to_uint8, to_unit_range  # noqa: E402
from facegen.precision import float32_policy  # noqa: E402
from facegen.training_run import TrainingRun, total_steps  # noqa: E402, F401
from facegen.digit_quality import MnistQuality, describe_quality, save_quality  # noqa: E402, F401
from facegen.face_quality import FaceQuality, describe_face_quality  # noqa: E402, F401
from facegen.quality import fid  # noqa: E402, F401

# In a notebook, TensorFlow lowers its Python logger to INFO (in scripts it stays at WARNING): its notes on
# devices and all-reduces would fill the cells. Its warnings and errors still show.
tf.get_logger().setLevel("WARNING")

# --- The notebook's parameters ------------------------------------------------------------


def _whole(low):
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= low


def _positive_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")


def _fraction(value):
    # At most 0.9999: nearer 1, float32 rounds it to 1 (at 1 - 2**-25), and Adam's bias correction divides by 0.
    return value == 0 and not isinstance(value, bool) or _positive_number(value) and value <= 0.9999


def _folder(value):
    return isinstance(value, (str, os.PathLike)) and str(value) != "" and not Path(value).is_file()


PARAMETER_RULES = {  # name: (test, what is allowed)
    "data_dir": (_folder, "a folder's path (a file of that name is in the way)"),
    "output_dir": (_folder, "a folder's path (a file of that name is in the way)"),
    "images_dir": (_folder, "a folder's path (a file of that name is in the way)"),
    "seed": (lambda v: _whole(0)(v) and v < 2**32, "a whole number from 0 to 4294967295 (NumPy's seeds)"),
    "z_dim": (_whole(1), "a whole number, at least 1"),
    "beta1": (_fraction, "a number from 0 to 0.9999"),
    "mnist_epochs": (_whole(1), "a whole number, at least 1 (the MNIST stage always runs)"),
    "mnist_batch_size": (_whole(1), "a whole number, at least 1"),
    "mnist_learning_rate": (lambda v: _positive_number(v) and v <= 1, "a number above 0, at most 1"),
    "mnist_filters": (_whole(1), "a whole number, at least 1"),
    "mnist_full_resolution_layer": (lambda v: isinstance(v, bool), "True or False"),
    "celeba_images": (lambda v: v is None or _whole(0)(v),
                      "None (by device), or a whole number, 0 or more (0 skips the faces)"),
    "celeba_batch_size": (_whole(1), "a whole number, at least 1"),
    "celeba_learning_rate": (lambda v: v is None or _positive_number(v) and v <= 1,
                             "None (by the run's length) or a number above 0, at most 1"),
    "celeba_filters": (_whole(1), "a whole number, at least 1"),
    "celeba_full_resolution_layer": (lambda v: isinstance(v, bool), "True or False"),
    "celeba_ema": (_fraction, "a number from 0 to 0.9999"),
    "celeba_cooldown": (lambda v: v is None or v == 0 and not isinstance(v, bool) or _positive_number(v) and v <= 1,
                        "None (by the run's length) or a number from 0 to 1"),
    "celeba_image_size": (lambda v: v in (28, 32, 64) and not isinstance(v, bool), "28, 32 or 64"),
    "max_images": (lambda v: v is None or _whole(1)(v), "None (all of them) or a whole number, at least 1"),
    "sample_every": (lambda v: v is None or _whole(1)(v), "None (ten per stage) or a whole number, at least 1"),
    "download_celeba": (lambda v: isinstance(v, bool), "True or False"),
    "quality_images": (_whole(2), "a whole number, at least 2"),
    "fid_images": (lambda v: v == 0 or _whole(2)(v), "0 (no FID) or a whole number, at least 2"),
    "mnist_time_budget": (lambda v: v is None or _positive_number(v), "None (no limit) or a number of seconds above 0"),
    "mixed_precision": (lambda v: isinstance(v, bool) or v is None, "None (decide by the GPU), True or False"),
    "jit_compile": (lambda v: isinstance(v, bool) or v is None, "None (decide by the GPU), True or False"),
}


def check_parameters(parameters):
    """Stop with one plain sentence per bad value if any of the notebook's `parameters` (a dict, e.g.
    `globals()`) is not allowed: which parameter, the value it got, and what it may be."""
    problems = [f"{name} = {parameters[name]!r} is not allowed: it must be {allowed}."
                for name, (test, allowed) in PARAMETER_RULES.items()
                if name in parameters and not test(parameters[name])]
    if "celeba_epochs" in parameters:  # papermill only warns about a parameter the notebook does not have
        problems.append("celeba_epochs is no longer a parameter: say how long the faces train in images seen, "
                        "celeba_images (e.g. 80000; None: by device; 0: no faces).")
    max_images = parameters.get("max_images")
    if not problems and max_images is not None:
        stages = ["mnist"] + ["celeba"] * (parameters.get("celeba_images") != 0)
        for stage in stages:
            batch_size = parameters.get(f"{stage}_batch_size")
            if batch_size and max_images < batch_size:
                problems.append(f"max_images = {max_images} is fewer than one batch ({stage}_batch_size = "
                                f"{batch_size}): raise max_images to at least {batch_size} or lower "
                                f"{stage}_batch_size.")
    if problems:
        raise ValueError("\n".join(problems))


# --- tf.data pipelines --------------------------------------------------------------------


def _batches(dataset, batch_size, seed, preprocess):
    """Shuffle anew each epoch, batch, preprocess the batches in parallel, and prefetch."""
    count = int(dataset.cardinality())
    if count < batch_size:  # else an epoch would hold no batch at all
        raise ValueError(f"There are only {count:,} images, fewer than one batch of {batch_size}: lower the batch "
                         f"size, or use more images (max_images).")
    return (
        dataset.shuffle(dataset.cardinality(), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size, drop_remainder=True)
        .map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def mnist_dataset(images, batch_size, seed=0):
    """Shuffled batches of MNIST digits in [-1, 1]."""
    return _batches(tf.data.Dataset.from_tensor_slices(images), batch_size, seed, to_unit_range)


def celeba_dataset(files, image_size, batch_size, seed=0, cache=None):
    """Shuffled batches of face crops in [-1, 1], streamed from the faces' cache (see `face_cache`).

    The first call for these files and this size decodes them once into the cache (`cache`, or
    beside their folder). Each batch is then a gather of random rows of the memory-mapped array:
    the process holds only the batches in flight, never the whole set (CelebA at 64x64: 2.5 GB).
    """
    faces, rows = face_cache(files, image_size, cache)
    if not len(rows):
        raise ValueError(f"None of the {len(files):,} images in {Path(files[0]).parent} could be read (each a corrupt "
                         f"or cut-short JPEG): replace them, or remove the folder to use CelebA.")
    shape = (batch_size, image_size, image_size, 3)

    def gather(indices):
        rows = tf.numpy_function(lambda i: faces[i], [indices], tf.uint8, stateful=False)
        return to_unit_range(tf.ensure_shape(rows, shape))

    return _batches(tf.data.Dataset.from_tensor_slices(rows), batch_size, seed, gather)


# --- Devices ------------------------------------------------------------------------------


def distribution_strategy():
    """`MultiWorkerMirroredStrategy` if `TF_CONFIG` names a cluster; else `MirroredStrategy` over this machine's
    GPUs if it has several; else TensorFlow's default strategy (the one GPU, or the CPU: no copies, no cost).

    Call it before TensorFlow runs anything: after that, the devices cannot change.
    """
    if os.environ.get("TF_CONFIG"):  # one of several machines (the README's "Several machines")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def gpu_capabilities():
    """The compute capability of each GPU, e.g. [(7, 5)] on a T4; [] without GPUs."""
    return [tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
            for gpu in tf.config.list_physical_devices("GPU")]


def has_tensor_cores(capabilities=None):
    """True if there are GPUs and all have compute capability 7.0 or more (Volta onwards: V100, T4, A10G, A100, L4).

    Those run float16 maths on Tensor Cores, where mixed precision and XLA pay off.
    """
    capabilities = gpu_capabilities() if capabilities is None else capabilities
    return bool(capabilities) and min(capabilities) >= (7, 0)


def choose_speedups(mixed_precision, jit_compile, replicas, capabilities=None):
    """The notebook's `(mixed_precision, jit_compile)`: the values given, or for `None` the default for this machine.

    Mixed precision by default on GPUs with Tensor Cores; XLA too, but only on a single one: across
    several replicas it failed in two-device CPU tests of an earlier version, not re-tried since.
    """
    tensor_cores = has_tensor_cores(capabilities)
    if mixed_precision is None:
        mixed_precision = tensor_cores
    if jit_compile is None:
        jit_compile = tensor_cores and replicas == 1
    return bool(mixed_precision), bool(jit_compile)


DEFAULT_FACE_IMAGES = {"GPU": 1_000_000, "CPU": 80_000}  # celeba_images = None: about 5 epochs of CelebA on a GPU
LONG_RUN_IMAGES = 200_000  # celeba_learning_rate, celeba_cooldown = None: a long run's rate (see face_learning_rate)
FACE_LEARNING_RATES = {False: 5e-4, True: 2e-4}  # for runs shorter than that, and as long or longer
DEFAULT_MOST_PASSES = 20  # over the 14,722 faces of the long run, the discriminator began to learn them by heart at 19


def face_passes(images, steps_per_pass, batch_size, gpu=None):
    """How many passes over the faces (`steps_per_pass` batches of `batch_size`) train on `images` images, as a
    number for `train`'s `epochs`: 2.5 is two passes and a half. At least one step.

    `images` is the notebook's `celeba_images`, so that a length means the same on any data. None picks it by
    device, 1,000,000 images on a GPU and 80,000 on a CPU, but at most 20 passes over a small set. Says what it chose.
    """
    gpu = bool(tf.config.list_physical_devices("GPU")) if gpu is None else gpu
    asked = DEFAULT_FACE_IMAGES["GPU" if gpu else "CPU"] if images is None else images
    steps = max(1, -(-asked // batch_size))  # rounded up: at least the images asked for
    why = f"celeba_images = {asked:,}"
    if images is None:
        why += f", the default on a {'GPU' if gpu else 'CPU'}"
        if steps > DEFAULT_MOST_PASSES * steps_per_pass:
            steps = DEFAULT_MOST_PASSES * steps_per_pass
            why += f", but at most {DEFAULT_MOST_PASSES} passes over a set this small"
    passes = steps / steps_per_pass
    print(f"{steps:,} step{'s' * (steps != 1)} of {batch_size}: {steps * batch_size:,} images, {passes:.3g} passes "
          f"over {steps_per_pass * batch_size:,} faces ({why}).")
    return passes


def face_learning_rate(learning_rate, cooldown, images):
    """The learning rate of a face run of `images` images, for `train`: `(learning_rate, cooldown)`, the rate and the
    share of the run over whose end it cools down to 0. They are the notebook's `celeba_learning_rate` and
    `celeba_cooldown`; for None, a run of 200,000 images or more takes the DCGAN paper's 2e-4 and cools down over its
    second half, and a shorter one holds 5e-4, 2.5x the paper's. Says what it chose.

    Over 300,000 images of the sample, 2e-4 cooled down ended at SWD 30.0, 37.4 and 33.3 on three seeds, against
    26.5, 53.5 and 51.0 for 5e-4 cooled down, while 5e-4 is far ahead up to 50,000 images and on average at 75,000.
    A held rate's faces stopped improving after 50,000 to 150,000 images and then wandered; over the second half of
    20,000 images (stand-in faces), cooling down hurt on all three seeds: the faces were still improving fast
    (docs/benchmarks.md, "Remedies, one change at a time").
    """
    long_run = images >= LONG_RUN_IMAGES
    asked_rate, asked_cooldown = learning_rate, cooldown
    if learning_rate is None:
        learning_rate = FACE_LEARNING_RATES[long_run]
    if cooldown is None:
        cooldown = 0.5 if long_run else 0.0
    held = images - round(cooldown * images)
    how = (f"held for {held:,} images, then lowered to 0 over the last {images - held:,}" if cooldown
           else f"held for all {images:,} images")
    length = f"runs of {LONG_RUN_IMAGES:,} images or more" if long_run else f"runs under {LONG_RUN_IMAGES:,} images"
    why = [f"celeba_learning_rate = {asked_rate}", f"celeba_cooldown = {asked_cooldown}"]
    if asked_rate is None:
        why[0] += f": {length} take {learning_rate:g}"
    if asked_cooldown is None:
        why[1] += f": {length} " + ("cool down over their second half" if cooldown else "hold it")
    print(f"The learning rate: {learning_rate:g}, {how} ({'; '.join(why)}).")
    return learning_rate, cooldown


def describe_devices(strategy, jit_compile):
    """One line: the devices, the strategy and its replicas, the precision policy and XLA."""
    devices = ", ".join(device.name for device in tf.config.list_logical_devices())
    replicas = strategy.num_replicas_in_sync
    return (f"Devices: {devices}. Strategy: {type(strategy).__name__}, {replicas} replica{'s' * (replicas > 1)}. "
            f"Precision: {keras.config.dtype_policy().name}. XLA: {'on' if jit_compile else 'off'}.")


# --- Pictures -----------------------------------------------------------------------------


def image_grid(images, cols=None):
    """Tile images ([-1, 1] floats or uint8, NHWC) into one uint8 picture, a square by default."""
    images = to_uint8(images)
    n, h, w, c = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.zeros((rows * h, cols * w, c), np.uint8)
    for i, image in enumerate(images):
        grid[i // cols * h : (i // cols + 1) * h, i % cols * w : (i % cols + 1) * w] = image
    return grid[..., 0] if c == 1 else grid


def _enlarged(grid):
    """A grid (as `image_grid` returns) as a PIL image, enlarged by a whole factor to about 512 pixels."""
    from PIL import Image

    scale = max(1, 512 // max(grid.shape[:2]))  # small images stay sharp at a viewable size
    return Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)


def save_image(grid, path):
    """Save a grid (as `image_grid` returns), enlarged to about 512 pixels, as its name says: a PNG, or for `.jpg` a
    JPEG (quality 90: photos in a tenth of a PNG's bytes); return the path."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with said_plainly_if_full(Path(path).parent, f"the picture {Path(path).name}"):
        _enlarged(grid).save(path, **({"quality": 90} if Path(path).suffix.lower() in (".jpg", ".jpeg") else {}))
    return path


def _show_as_jpeg(figure):
    """Show a matplotlib figure in the notebook as a JPEG, not the PNG Jupyter would embed: grids of photos take a
    tenth of the notebook's bytes. Outside a notebook, nothing is shown."""
    import io

    import IPython

    if IPython.get_ipython() is None:
        return
    buffer = io.BytesIO()
    figure.savefig(buffer, format="jpeg", bbox_inches="tight", pil_kwargs={"quality": 85})
    IPython.display.display(IPython.display.Image(buffer.getvalue(), format="jpeg"))


def show_grid(images, title, path=None, cols=None, width=5):
    """Show a grid of images inline (`width` inches wide), and save it (`save_image`) when `path` is given."""
    import matplotlib.pyplot as plt

    grid = image_grid(images, cols)
    if path:
        save_image(grid, path)
    figure = plt.figure(figsize=(width, width * grid.shape[0] / grid.shape[1]))
    plt.imshow(grid, cmap="gray" if grid.ndim == 2 else None)
    plt.title(title)
    plt.axis("off")
    _show_as_jpeg(figure)
    plt.close(figure)  # shown already; elsewhere (tests, scripts) figures would pile up



def plot_losses(losses, title, path=None):
    """Plot the per-step (d_loss, g_loss) pairs, smoothed, and save the figure when `path` is given."""
    import matplotlib.pyplot as plt

    losses = np.asarray(losses)
    window = max(1, len(losses) // 50)
    smooth = np.array([np.convolve(column, np.ones(window) / window, "valid") for column in losses.T]).T
    steps = np.arange(len(smooth)) + window
    plt.figure(figsize=(7, 3.5))
    plt.plot(steps, smooth[:, 0], label="discriminator")
    plt.plot(steps, smooth[:, 1], label="generator")
    plt.xlabel("step")
    plt.ylabel(f"loss (mean of {window} steps)" if window > 1 else "loss")
    plt.title(title)
    plt.legend()
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        plt.savefig(path, dpi=100, bbox_inches="tight")
    plt.show()
    plt.close()


# --- Results: exporting, walking the latent space, generating -----------------------------


def export_generator(generator, directory, **config):
    """Save the generator as `<directory>/generator.keras` with a `config.json` beside it.

    Saved in float32 even after mixed-precision training (the weights are float32 either way), so
    that it runs at full speed and precision on any machine, CPU included.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with float32_policy():
        plain = keras.models.clone_model(generator, clone_function=lambda layer: layer.__class__.from_config(
            {**layer.get_config(), "dtype": "float32"}))
    plain.set_weights(generator.get_weights())
    with said_plainly_if_full(directory, "the exported generator", kept="The checkpoints are kept. "):
        plain.save(directory / "generator.keras")
        (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory


def noise(count, z_dim, seed=0):
    """`count` z vectors from normal(0, 1), the exported generators' z_distribution; the same for the same seed."""
    return np.random.default_rng(seed).standard_normal((count, z_dim)).astype(np.float32)


def slerp(a, b, t):
    """Spherical interpolation: the points at fractions `t` along the arc from vector `a` to `b`, one per row."""
    omega = np.arccos(np.clip(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1))
    t = np.asarray(t, np.float64)[:, np.newaxis]
    weight_a, weight_b = np.sin((1 - t) * omega) / np.sin(omega), np.sin(t * omega) / np.sin(omega)
    return weight_a * a + weight_b * b


def latent_walk(generator, z_dim, points=4, steps=8, seed=0):
    """The generator's images along a smooth path through `points` random z vectors, in [-1, 1].

    One row of `steps` images per stretch, from one point to the next (both included): show it with
    `show_grid(walk, title, cols=steps)`. The same seed gives the same walk.
    """
    ends = noise(points, z_dim, seed)
    # Gaussian z in many dimensions lie near a sphere of radius sqrt(z_dim), at nearly right angles to each
    # other: a straight line between two cuts inside it (to ~0.7 of the radius midway), to z the generator
    # never saw in training. The arc keeps the length.
    z = np.concatenate([slerp(a, b, np.linspace(0, 1, steps)) for a, b in zip(ends[:-1], ends[1:])])
    return np.asarray(generator(z.astype(np.float32), training=False))


def save_gif(frames, path, duration=200, hold=2000):
    """Save grids (as `image_grid` returns) as a looping animated GIF, enlarged like `save_image`; return the path.

    Each frame shows for `duration` ms, the last for `hold` ms. A frame identical to the one before is merged
    into it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    first, *rest = [_enlarged(frame) for frame in frames]
    first.save(path, save_all=True, append_images=rest, duration=[duration] * len(rest) + [hold], loop=0)
    return path


def generate(model_dir, count, seed=0):
    """`count` new images (uint8, NHWC) from the generator exported in `model_dir`; the same for the same seed.

    Needs nothing but Keras: `generator.keras` is loaded with `keras.saving.load_model`, and z drawn
    as its `config.json` says.
    """
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    generator = keras.saving.load_model(model_dir / "generator.keras")
    return to_uint8(generator.predict(noise(count, config["z_dim"], seed), verbose=0))


# --- Command line -------------------------------------------------------------------------


def _generate_command(args):
    """`generate`: write new images from an exported generator, as one grid or one file each."""
    from PIL import Image

    images = generate(args.model_dir, args.count, args.seed)
    out = Path(args.out or ("generated" if args.separate else "generated.png"))
    if args.separate:
        out.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            Image.fromarray(image_grid(image[np.newaxis])).save(out / f"{i:04d}.png")  # at the generator's size
    else:
        save_image(image_grid(images), out)
    print(f"Wrote {len(images):,} images from {args.model_dir} to {out}.")


def main(argv=None):
    """`python helper.py <command> ...`: what can be done without the notebook. `--help` lists the commands."""
    parser = argparse.ArgumentParser(prog="helper.py", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    command = commands.add_parser("generate", help="new images from an exported generator, as a PNG grid or files")
    command.add_argument("model_dir", help="a folder with generator.keras and config.json, e.g. output/mnist")
    command.add_argument("--count", type=int, default=64, help="how many images (default 64)")
    command.add_argument("--seed", type=int, default=0, help="the same seed gives the same images (default 0)")
    command.add_argument("--out", help="the PNG grid to write (default generated.png), or the folder with --separate")
    command.add_argument("--separate", action="store_true",
                         help="one PNG per image, at the generator's size, into the folder --out (default generated/)")
    command.set_defaults(run=_generate_command)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
