"""What does a face recipe become after the training a GPU box gives it? Trains one recipe (the notebook's, or a
published one of `face_baselines.py`) from scratch on real CelebA faces for many images, and every `--every`
images records: the face measure (SWD of as many faces as the reference holds, on a fixed set of z, as
`bench_faces.py` measures), the last 100 steps' losses, a grid of 25 faces, and whether the discriminator is
learning the training faces by heart. For that, 1,000 faces are held out of training: the discriminator's mean
probability of "real" on them is set against the same on 1,000 faces it trains on, and ADA's r_t (the mean sign of
its logits on training faces; ADA holds it near 0.6) is kept too.

    python -m tools.long_run --out-dir runs/long [--recipe notebook] [--seeds 0 1] [--images 300000]
        [--every 25000] [--size 64] [--threads N]
    python -m tools.long_run --report runs/long/*/curve.json [--plot docs/long-run.png]

Each recipe and seed trains in `<out-dir>/<recipe>-seed<seed>/`, saving a checkpoint at every point: run the same
command again after a stop and it resumes there, with the data in the order of an uninterrupted run. The points are
counted in images, not seconds, so the curve does not depend on the machine or on what else runs beside it.
"""

import argparse
import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

import helper
from tools.bench_faces import FACE_BASELINES, notebook_recipe, parse_recipe, real_faces

HELD_OUT = 1000  # faces never trained on, for the discriminator's overfitting signal


def split_faces(data_dir, size):
    """The sample's faces at `size`, the SWD reference and held-out rows, and the rows and files to train on.

    The reference is the same half of the faces that `bench_faces.py` measures against, so the figures compare;
    the held-out faces are 1,000 others, never trained on.
    """
    files, faces, rows, order = real_faces(data_dir, size, "The long run")
    half = len(order) // 2
    reference, held_out = np.sort(order[:half]), np.sort(order[half:half + HELD_OUT])
    training_rows = np.setdiff1d(rows, held_out)  # sorted
    return faces, reference, held_out, training_rows, [files[row] for row in training_rows]


def discriminator_signal(discriminator, trained, held_out):
    """The discriminator's mean probability of "real" on faces it trained on and on held-out ones, and ADA's r_t.

    In batches of 64, in training mode, as training shows it real faces."""
    def logits(faces):
        return np.concatenate([np.asarray(discriminator(helper.to_unit_range(faces[i:i + 64]), training=True)).ravel()
                               for i in range(0, len(faces), 64)])

    seen, unseen = logits(trained), logits(held_out)
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    return {"d_real_trained": float(sigmoid(seen).mean()), "d_real_held_out": float(sigmoid(unseen).mean()),
            "r_t": float(np.sign(seen).mean())}


def long_run(recipe_name, make_recipe, seed, faces, reference_rows, held_out_rows, training_rows, training_files, size,
             images, every, run_dir):
    """Train `make_recipe()` with `seed` to `images` images, recording a point every `every`; resumable."""
    run_dir = Path(run_dir)
    curve_path = run_dir / "curve.json"
    keras.utils.set_random_seed(seed)
    recipe = make_recipe()
    noise = tf.random.Generator.from_seed(seed)
    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(generator=recipe.generator, discriminator=recipe.discriminator, noise=noise,
                                     step=step, **(recipe.state or {}))
    manager = tf.train.CheckpointManager(checkpoint, run_dir / "checkpoints", max_to_keep=1)
    curve = {"recipe": recipe_name, "seed": seed, "size": size, "batch_size": recipe.batch_size,
             "training_faces": len(training_files), "held_out_faces": len(held_out_rows),
             "reference_faces": len(reference_rows), "flops_per_image": recipe.flops, "points": []}
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_consumed()
        curve = json.loads(curve_path.read_text())
        print(f"{recipe_name}, seed {seed}: resumed from {manager.latest_checkpoint} "
              f"({int(step) * recipe.batch_size:,} images).", flush=True)

    quality = helper.FaceQuality(faces[reference_rows])
    measured_z = helper.noise(len(reference_rows), recipe.z_dim, seed)
    trained = np.asarray(faces[np.sort(training_rows[np.random.default_rng(1).choice(len(training_rows), HELD_OUT,
                                                                                    replace=False)])])
    held_out = np.asarray(faces[held_out_rows])
    # The training faces' own cache, as the notebook's pipeline reads a set of files: built once, beside the runs.
    dataset = helper.celeba_dataset(training_files, size, recipe.batch_size, seed,
                                    cache=run_dir.parent / f"training_faces_{size}.npy")

    done = int(step)
    batches = iter(dataset.repeat().skip(done))
    total_steps = -(-images // recipe.batch_size)
    point_steps = [-(-k // recipe.batch_size) for k in range(every, images + 1, every)]
    if total_steps not in point_steps:
        point_steps.append(total_steps)
    losses = []
    bar = tqdm(total=total_steps, initial=done, desc=f"{recipe_name}, seed {seed}", unit="step")
    for target in point_steps:
        if target <= done:
            continue
        pending = []
        while done < target:
            z = noise.normal([recipe.batch_size, recipe.z_dim])
            pending.append(tf.stack(recipe.train_step(next(batches), z)))
            done += 1
            if len(pending) == 100:  # read the losses back now and then, not after every step
                losses.extend(tf.stack(pending).numpy().tolist())
                bar.update(len(pending))
                pending = []
        if pending:
            losses.extend(tf.stack(pending).numpy().tolist())
            bar.update(len(pending))
        drawn = recipe.draw(measured_z) if recipe.draw else recipe.generator.predict(measured_z, batch_size=250,
                                                                                     verbose=0)
        point = {"images": done * recipe.batch_size, "steps": done, **quality(drawn),
                 **dict(zip(("d_loss", "g_loss"), np.mean(losses[-100:], axis=0).tolist())),
                 **discriminator_signal(recipe.discriminator, trained, held_out)}
        if not np.isfinite([point["d_loss"], point["g_loss"]]).all():
            raise SystemExit(f"{recipe_name}, seed {seed}: a loss became NaN or infinite before "
                             f"{point['images']:,} images; the checkpoint before it is kept.")
        helper.save_image(helper.image_grid(drawn[:25]), run_dir / "grids" / f"{point['images']:07d}.png")
        curve["points"].append(point)
        step.assign(done)
        manager.save(done)
        curve_path.write_text(json.dumps(curve, indent=1) + "\n")  # after the checkpoint: a resume finds both
        print(f"{recipe_name}, seed {seed}, {point['images']:,} images ({point['steps']:,} steps): "
              f"SWD {point['swd']:.1f}; d / g loss {point['d_loss']:.2f} / {point['g_loss']:.2f}; D(real) on trained "
              f"{point['d_real_trained']:.3f}, held out {point['d_real_held_out']:.3f}, r_t {point['r_t']:.2f}",
              flush=True)
    bar.close()
    return curve


def report(curve_paths, plot=None):
    """A Markdown table of the curves (one column per recipe and seed), and their plot when `plot` is given."""
    curves = [json.loads(Path(path).read_text()) for path in curve_paths]
    names = [f"{c['recipe']}, seed {c['seed']}" for c in curves]
    by_images = sorted({p["images"] for c in curves for p in c["points"]})
    lines = ["| images | " + " | ".join(f"{n}: SWD, D(real) trained / held out" for n in names) + " |",
             "|---|" + "---|" * len(curves)]
    for count in by_images:
        cells = []
        for c in curves:
            point = next((p for p in c["points"] if p["images"] == count), None)
            cells.append(f"{point['swd']:.1f}, {point['d_real_trained']:.2f} / {point['d_real_held_out']:.2f}"
                         if point else "")
        lines.append(f"| {count:,} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, (swd_axes, d_axes) = plt.subplots(1, 2, figsize=(11, 4))
        for name, c in zip(names, curves):
            seen = [p["images"] for p in c["points"]]
            swd_axes.plot(seen, [p["swd"] for p in c["points"]], marker="o", label=name)
            line, = d_axes.plot(seen, [p["d_real_trained"] for p in c["points"]], label=f"{name}: trained on")
            d_axes.plot(seen, [p["d_real_held_out"] for p in c["points"]], linestyle="--", color=line.get_color(),
                        label=f"{name}: held out")
        swd_axes.set(xlabel="images seen", ylabel="SWD (lower is better)", title="Face measure", yscale="log")
        d_axes.set(xlabel="images seen", ylabel="mean D(real)", title="The discriminator on real faces")
        for axes in (swd_axes, d_axes):
            axes.legend(fontsize=7)
            axes.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(plot, dpi=100)
        plt.close(figure)
        print(f"Plotted in {plot}.")
        grids = Path(plot).with_name(Path(plot).stem + "-grids.jpg")
        save_grids(curve_paths, curves, names, grids)
        print(f"The grids at four points of each run in {grids}.")


def save_grids(curve_paths, curves, names, path, points=4):
    """One row per run of its saved grids at `points` points spread over it (the first and the last included)."""
    import matplotlib.pyplot as plt
    from PIL import Image

    figure, axes = plt.subplots(len(curves), points, figsize=(3 * points, 3.2 * len(curves)), squeeze=False)
    for row, (curve_path, curve, name) in enumerate(zip(curve_paths, curves, names)):
        seen = [p["images"] for p in curve["points"]]
        chosen = [seen[round(i * (len(seen) - 1) / (points - 1))] for i in range(points)]
        for column, count in enumerate(chosen):
            grid = Image.open(Path(curve_path).parent / "grids" / f"{count:07d}.png")
            swd = next(p["swd"] for p in curve["points"] if p["images"] == count)
            axes[row][column].imshow(grid)
            axes[row][column].set_title(f"{name}: {count:,} images, SWD {swd:.1f}", fontsize=8)
            axes[row][column].axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100, pil_kwargs={"quality": 85})
    plt.close(figure)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data", help="where CelebA is, in img_align_celeba/ (default data)")
    parser.add_argument("--out-dir", default="runs/long", help="checkpoints, grids and curves (default runs/long)")
    parser.add_argument("--recipe", default="notebook",
                        help=f"notebook (default), one of {sorted(FACE_BASELINES)}, or NAME=key:value,... for the "
                             "notebook's recipe with changes (as bench_faces.py's --recipe)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds, one run each (default 0 1)")
    parser.add_argument("--images", type=int, default=300_000, help="images to train each run on (default 300000)")
    parser.add_argument("--every", type=int, default=25_000, help="images between points (default 25000)")
    parser.add_argument("--size", type=int, choices=[32, 64], default=64, help="image size (default 64)")
    parser.add_argument("--threads", type=int, help="CPU threads for TensorFlow (default: all)")
    parser.add_argument("--report", nargs="+", metavar="CURVE", help="train nothing: report these curve.json files")
    parser.add_argument("--plot", help="with --report: also plot the curves in this PNG")
    args = parser.parse_args()
    if args.report:
        return report(args.report, args.plot)
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if args.recipe == "notebook":
        name, make = "notebook", lambda: notebook_recipe(args.size, args.images)
    elif args.recipe in FACE_BASELINES:
        name, make = args.recipe, lambda: FACE_BASELINES[args.recipe](args.size)
    else:
        name, changes = parse_recipe(args.recipe)
        make = lambda: notebook_recipe(args.size, args.images, **changes)  # noqa: E731
    faces, reference, held_out, training_rows, training_files = split_faces(args.data_dir, args.size)
    for seed in args.seeds:
        run_dir = Path(args.out_dir, f"{name.replace(' ', '-')}-seed{seed}")
        long_run(name, make, seed, faces, reference, held_out, training_rows, training_files, args.size, args.images,
                 args.every, run_dir)


if __name__ == "__main__":
    main()
