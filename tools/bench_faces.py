"""How good are the notebook's faces for the time spent, next to published recipes? Trains the notebook's face
recipe and two published DCGAN recipes for faces (`face_baselines.py`) from scratch on real CelebA faces, each
with several seeds, measures their faces (`FaceQuality`, the sliced Wasserstein distance) after the same
wall-clock budgets, and prints a Markdown table of means and spreads, the real faces' own figure (the floor) and
whether the notebook's recipe is 2x better than the better baseline at every budget. A measurement, not a test:
run it alone on the machine, as other work changes the seconds. Each recipe and seed takes the longest budget
plus a minute of measuring.

    python -m tools.bench_faces [--data-dir data] [--size 64] [--budgets 120 300] [--seeds 0 1 2]
        [--recipe NAME=filters:32,learning_rate:5e-4 ...] [--only NAME ...] [--out faces.json]
    python -m tools.bench_faces --table faces.json [more.json ...]   # the report of saved runs, together

It needs real CelebA images in data/img_align_celeba/ (all of them, or part: the count is printed); half of them
are the reference, the other half give the floor, and each recipe draws as many faces as the reference holds.
"""

import argparse
import json
from pathlib import Path


import keras
import numpy as np
import tensorflow as tf

import helper
from facegen import face_cache
from tools.baselines import Baseline
from tools.bench_recipes import conv_peak_flops, train_to_budgets
from tools.face_baselines import keras_dcgan, pytorch_dcgan
from facegen.notebook import notebook_definitions, notebook_parameters
from tools.training_speed import training_flops

FACE_BASELINES = {"PyTorch DCGAN": pytorch_dcgan, "Keras DCGAN": keras_dcgan}


def hinge_loss(discriminator, generator, real_images, z):
    """The notebook's `model_loss` in the hinge form (Lim and Ye 2017; SAGAN's and BigGAN's): (d_loss, g_loss)."""
    fake_images = generator(z, training=True)
    real_logits = tf.cast(discriminator(real_images, training=True), tf.float32)
    fake_logits = tf.cast(discriminator(fake_images, training=True), tf.float32)
    d_loss = (tf.nn.compute_average_loss(tf.nn.relu(1 - real_logits))
              + tf.nn.compute_average_loss(tf.nn.relu(1 + fake_logits)))
    return d_loss, -tf.nn.compute_average_loss(fake_logits)


LOSSES = {"cross-entropy": None, "hinge": hinge_loss}  # None: the notebook's own


def notebook_recipe(size, images=None, **changes):
    """The notebook's face recipe (its celeba_* parameters and definitions), with `changes` to
    filters, batch_size, learning_rate, beta1, full_resolution_layer, ema, cooldown, d_learning_rate (the
    discriminator's own rate, for two time-scale updates; by default the generator's) or loss (`LOSSES`), as a
    `Baseline` whose generator is the moving average of the one trained, its batch norm statistics measured
    before it draws, as `train` makes and draws it.

    `images` is the run's length, which chooses the learning rate and its cooldown as the notebook does. Without
    it (a run to a time budget, whose length is not known ahead) a short run's rate is held throughout."""
    parameters = notebook_parameters()
    recipe = dict(filters=parameters["celeba_filters"], batch_size=parameters["celeba_batch_size"],
                  learning_rate=parameters["celeba_learning_rate"], beta1=parameters["beta1"],
                  full_resolution_layer=parameters["celeba_full_resolution_layer"], ema=parameters["celeba_ema"],
                  cooldown=parameters["celeba_cooldown"], d_learning_rate=None, loss="cross-entropy")
    unknown = set(changes) - set(recipe)
    if unknown:
        raise ValueError(f"--recipe: unknown setting(s) {sorted(unknown)}; the notebook's face recipe has "
                         f"{sorted(recipe)}.")
    recipe.update(changes)
    if recipe["loss"] not in LOSSES:
        raise ValueError(f"--recipe: loss {recipe['loss']!r} is not one of {sorted(LOSSES)}.")
    steps = -(-images // recipe["batch_size"]) if images else 0  # as many as long_run trains
    if images:
        learning_rate, cooldown = helper.face_learning_rate(recipe["learning_rate"], recipe["cooldown"],
                                                            steps * recipe["batch_size"])
    else:  # a run to a time budget, of unknown length: a short run's rate, held
        learning_rate = recipe["learning_rate"]
        if learning_rate is None:
            learning_rate = helper.FACE_LEARNING_RATES[False]
        cooldown = 0
    if recipe["d_learning_rate"] is not None and cooldown:  # a schedule's rate cannot be set after model_opt
        raise ValueError("--recipe: d_learning_rate is measured with the rate held (a run under 200,000 images, "
                         "or cooldown:0).")
    notebook = notebook_definitions()
    if LOSSES[recipe["loss"]]:
        notebook["model_loss"] = LOSSES[recipe["loss"]]  # the global model_opt's step calls
    discriminator = notebook["discriminator"]((size, size, 3), recipe["filters"])
    generator = notebook["generator"](parameters["z_dim"], (size, size, 3), recipe["filters"],
                                      recipe["full_resolution_layer"])
    learning_rate = notebook["learning_rate_schedule"](learning_rate, steps, cooldown)
    train_step, d_optimizer, g_optimizer = notebook["model_opt"](discriminator, generator, learning_rate,
                                                                 recipe["beta1"])
    if recipe["d_learning_rate"] is not None:
        d_optimizer.learning_rate = recipe["d_learning_rate"]
    average = keras.models.clone_model(generator)
    average.set_weights(generator.get_weights())

    @tf.function
    def step(real_images, z):  # as train's, on one device
        losses = train_step(real_images, z)
        notebook["update_average"](average, generator, recipe["ema"], g_optimizer.iterations)
        return losses

    statistics_z = helper.noise(512, parameters["z_dim"], 0)  # as train measures them (there, on its run's seed)

    def draw(z):
        notebook["measure_statistics"](average, statistics_z)
        return average.predict(z, batch_size=250, verbose=0)

    return Baseline(average, discriminator, step, recipe["batch_size"], training_flops(discriminator, generator),
                    parameters["z_dim"], draw,
                    state=dict(trained_generator=generator, d_optimizer=d_optimizer, g_optimizer=g_optimizer))


def parse_recipe(text):
    """`NAME=key:value,key:value` -> (NAME, {key: value}), values read as Python literals (32, 5e-4, True)."""
    import ast

    name, _, settings = text.partition("=")
    try:
        return name, {key: ast.literal_eval(value) for key, value in (s.split(":") for s in settings.split(",") if s)}
    except (ValueError, SyntaxError) as error:
        raise SystemExit(f"--recipe {text!r}: expected NAME=key:value,... (e.g. w32=filters:32), {error}") from None


def faces_table(recipes, budgets, peak):
    """The Markdown table: each recipe's speed, and its SWD at each budget as the mean (min-max) over seeds."""
    header = ["recipe", "batch", "MFLOP/image", "images/s", "GFLOP/s (% of conv peak)",
              *(f"SWD at {budget:g} s" for budget in budgets), f"steps at {budgets[-1]:g} s", "d / g loss at the end"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, recipe in recipes.items():
        seeds = recipe["seeds"].values()
        rate = np.mean([runs[-1]["images_per_second"] for runs in seeds])
        achieved = rate * recipe["flops"]
        swd = [[runs[i]["swd"] for runs in seeds] for i in range(len(budgets))]
        losses = np.mean([(runs[-1]["d_loss"], runs[-1]["g_loss"]) for runs in seeds], axis=0)
        cells = [f"{name} ({len(seeds)} seeds)", str(recipe["batch_size"]), f"{recipe['flops'] / 1e6:,.0f}",
                 f"{rate:,.0f}", f"{achieved / 1e9:.0f} ({achieved / peak:.0%})",
                 *(f"{np.mean(s):.1f} ({min(s):.1f}-{max(s):.1f})" for s in swd),
                 f"{np.mean([runs[-1]['steps'] for runs in seeds]):,.0f}", f"{losses[0]:.2f} / {losses[1]:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def two_times_better(recipes, budgets, name="notebook"):
    """At each budget: is `name` at least 2x better (lower SWD) than the better baseline, by means, and do the
    spreads not overlap? One line each."""
    lines = []
    for i, budget in enumerate(budgets):
        mine = [runs[i]["swd"] for runs in recipes[name]["seeds"].values()]
        best = min((n for n in recipes if n in FACE_BASELINES),
                   key=lambda n: np.mean([runs[i]["swd"] for runs in recipes[n]["seeds"].values()]))
        theirs = [runs[i]["swd"] for runs in recipes[best]["seeds"].values()]
        ratio = np.mean(theirs) / np.mean(mine)
        met = ratio >= 2 and max(mine) < min(theirs)
        spreads = "apart" if max(mine) < min(theirs) else "overlapping"
        lines.append(f"- {budget:g} s: {name} {np.mean(mine):.1f}, {best} {np.mean(theirs):.1f}: {ratio:.2f}x "
                     f"{'better' if ratio >= 1 else 'as good'}, spreads {spreads}: 2x {'met' if met else 'NOT met'}")
    return "\n".join(lines)


def real_faces(data_dir, size, who):
    """The real CelebA faces in `data_dir` at `size`: their files, the cached faces, the readable rows and those rows in
    a fixed shuffled order, whose first half is the reference every face benchmark measures against."""
    files, data_name = helper.load_celeba(data_dir, download_missing=False)
    if data_name == helper.STANDIN_NAME:
        raise SystemExit(f"{who} needs real CelebA images in {data_dir}/img_align_celeba/, not the {data_name}: see "
                         f"the README's Data section.")
    faces, rows = face_cache.face_cache(files, size)
    return files, faces, rows, np.random.default_rng(0).permutation(rows)


def benchmark_faces(data_dir="data", size=64, budgets=(120, 300), seeds=(0, 1, 2), variants=(), only=None, out=None):
    """Train and measure each recipe with each seed (see the module's docstring), and print the report."""
    budgets = sorted(budgets)
    files, faces, rows, order = real_faces(data_dir, size, "The face benchmark")
    half = len(order) // 2
    reference, others = faces[np.sort(order[:half])], faces[np.sort(order[half:2 * half])]
    quality = helper.FaceQuality(reference)
    floor = quality(others)["swd"]
    peak = conv_peak_flops()
    print(f"{len(rows):,} CelebA faces at {size}x{size}: {half:,} are the reference, and the other {half:,} "
          f"score SWD {floor:.1f} (the floor). Convolution peak of this machine: {peak / 1e9:.0f} GFLOP/s.", flush=True)

    makers = {"notebook": lambda: notebook_recipe(size)}
    makers.update({name: lambda make=make: make(size) for name, make in FACE_BASELINES.items()})
    makers.update({name: lambda changes=changes: notebook_recipe(size, **changes) for name, changes in variants})
    recipes = {}
    for name, make in makers.items():
        if only and name not in only:
            continue
        for seed in seeds:
            print(f"{name}, seed {seed}, from scratch, measured at each budget:", flush=True)
            keras.utils.set_random_seed(seed)
            recipe = make()
            record = recipes.setdefault(name, {"batch_size": recipe.batch_size, "flops": recipe.flops, "seeds": {}})
            record["seeds"][seed] = train_to_budgets(
                recipe, lambda batch_size, seed=seed: helper.celeba_dataset(files, size, batch_size, seed), budgets,
                quality, samples=half, seed=seed,
                describe=lambda run: f"SWD {run['swd']:.1f}; d / g loss {run['d_loss']:.2f} / {run['g_loss']:.2f}")
            if out:  # after every run, so that an interrupted benchmark keeps what it measured
                measurements = dict(size=size, faces=len(rows), floor_swd=floor, conv_peak_flops=peak, recipes=recipes)
                Path(out).write_text(json.dumps(measurements, indent=1) + "\n")
    report(recipes, budgets, peak, floor, half)


def report(recipes, budgets, peak, floor, half):
    """Print the table, the floor and the 2x check."""
    print(f"\n{faces_table(recipes, budgets, peak)}\n\n"
          f"Real faces: SWD {floor:.1f} (the floor, {half:,} against {half:,}).")
    if "notebook" in recipes and set(FACE_BASELINES) & set(recipes):
        print(two_times_better(recipes, budgets))


def report_saved(paths):
    """The report of runs saved by `--out`, from one or more files of the same size and faces, together."""
    saved = [json.loads(Path(path).read_text()) for path in paths]
    if len({(s["size"], s["faces"]) for s in saved}) != 1:
        raise SystemExit("--table: the files measure different sizes or sets of faces; report them one at a time.")
    recipes = {name: recipe for s in saved for name, recipe in s["recipes"].items()}
    budgets = [run["budget"] for run in next(iter(next(iter(recipes.values()))["seeds"].values()))]
    print(f"{saved[0]['faces']:,} CelebA faces at {saved[0]['size']}x{saved[0]['size']}.")
    report(recipes, budgets, saved[0]["conv_peak_flops"], saved[0]["floor_swd"], saved[0]["faces"] // 2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data", help="where CelebA is, in img_align_celeba/ (default data)")
    parser.add_argument("--size", type=int, choices=[32, 64], default=64, help="image size (default 64)")
    parser.add_argument("--budgets", type=float, nargs="+", default=[120, 300],
                        help="seconds of training after which each recipe is measured (default 120 300)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of each recipe (default 0 1 2)")
    parser.add_argument("--recipe", action="append", default=[], type=parse_recipe,
                        help="also train the notebook's recipe with changes: NAME=key:value,... (repeatable)")
    parser.add_argument("--only", nargs="+", help="train only these recipes (notebook, 'PyTorch DCGAN', ...)")
    parser.add_argument("--out", help="also write the measurements to this JSON file")
    parser.add_argument("--table", nargs="+", metavar="JSON",
                        help="train nothing: report the runs saved in these files")
    args = parser.parse_args()
    if args.table:
        raise SystemExit(report_saved(args.table))
    benchmark_faces(args.data_dir, args.size, args.budgets, args.seeds, args.recipe, args.only, args.out)
