"""How good are the notebook's digits for the time spent, next to published recipes? Trains the notebook's MNIST
recipe (through papermill, as users run it) and two published DCGAN recipes (`baselines.py`) from scratch on all
of MNIST, measures 10,000 digits of each after the same wall-clock budgets of training, and prints a Markdown
table, the real digits' FD (the floor) and whether the notebook meets its targets. A measurement, not a test:
over 20 minutes with the default budgets.

    python -m tools.bench_recipes [--data-dir data] [--budgets 60 150 300] [--out measurements.json]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path


import keras
import numpy as np
import tensorflow as tf

import helper
from facegen import downloads
from tools.baselines import BASELINES, RECIPE_Z_DIM
from facegen.notebook import NOTEBOOK, ROOT, notebook_definitions, notebook_parameters
from tools.training_speed import forward_flops, training_flops


def _describe_run(run, describe=helper.describe_quality):
    """One progress line for a measured budget."""
    steps = f"{run['steps']:,} step{'s' * (run['steps'] != 1)}"
    return f"  {run['budget']:g} s: {steps} in {run['train_seconds']:.0f} s; {describe(run)}"


def train_to_budgets(baseline, make_batches, budgets, measure, samples=10_000, seed=0,
                     describe=helper.describe_quality):
    """Train a `Baseline` from scratch on `make_batches(batch_size)`, measuring it at each budget; one dict per budget.

    The clock counts wall-clock seconds of training, tracing included. At each budget it stops
    while `measure` (a `MnistQuality`, say) scores `samples` generated images, z from
    `noise(samples, baseline.z_dim, seed)`, then training goes on. Each dict holds the budget, the
    measure's figures, and the steps, seconds and images/s of training so far.
    """
    batches = iter(make_batches(baseline.batch_size).repeat())
    random = tf.random.Generator.from_seed(seed)
    measured_z = helper.noise(samples, baseline.z_dim, seed)
    runs, steps, seconds, losses = [], 0, 0.0, []
    for budget in sorted(budgets):
        start = time.perf_counter()
        while seconds + time.perf_counter() - start < budget:
            d_loss, g_loss = baseline.train_step(next(batches), random.normal([baseline.batch_size, baseline.z_dim]))
            losses.append((float(d_loss), float(g_loss)))  # waits for the step, as the notebook's loop does
            steps += 1
        seconds += time.perf_counter() - start
        measures = measure(baseline.draw(measured_z) if baseline.draw else
                           baseline.generator.predict(measured_z, batch_size=250, verbose=0))
        # The last 100 steps': who is winning (from before this budget too, when its first step already passed it).
        d_loss, g_loss = np.mean(losses[-100:], axis=0)
        runs.append({"budget": budget, **measures, "steps": steps, "train_seconds": seconds,
                     "images_per_second": steps * baseline.batch_size / seconds,
                     "d_loss": float(d_loss), "g_loss": float(g_loss)})
        print(_describe_run(runs[-1], describe), flush=True)
    return runs


def notebook_mnist_run(data_dir, budget, scratch):
    """The notebook's MNIST stage trained for `budget` seconds from scratch, run by papermill in `scratch`.

    As users run it, with CelebA off. Returns the notebook's `mnist/quality.json` and the budget.
    """
    import papermill

    run_dir = Path(scratch, f"notebook-{budget:g}s")
    run_dir.mkdir(parents=True)
    papermill.execute_notebook(
        NOTEBOOK, run_dir / "run.ipynb", progress_bar=False, cwd=ROOT,
        parameters=dict(data_dir=str(Path(data_dir).resolve()), output_dir=str(run_dir), images_dir=str(run_dir),
                        celeba_images=0, mnist_time_budget=budget, mnist_epochs=1000),  # the budget stops it
    )
    return {"budget": budget, **json.loads((run_dir / "mnist" / "quality.json").read_text())}


def conv_peak_flops(batch_size=256, repeats=3):
    """This machine's convolution peak, in FLOP/s: the best of a few large Conv2D forward passes.

    Each shape is timed `repeats` times after a warm-up call that traces it.
    """
    best = 0.0
    for size, kernel in [(28, 3), (28, 5), (14, 5)]:
        model = keras.Sequential([keras.Input((size, size, 64)), keras.layers.Conv2D(128, kernel, padding="same",
                                                                                     use_bias=False)])
        run = tf.function(lambda x: tf.reduce_sum(model(x)))  # one number back: no copy of the output in the time
        images = tf.random.normal([batch_size, size, size, 64])
        float(run(images))
        for _ in range(repeats):
            start = time.perf_counter()
            float(run(images))
            best = max(best, batch_size * forward_flops(model) / (time.perf_counter() - start))
    return best


def recipes_table(recipes, budgets, peak):
    """The Markdown table of the recipes' speeds and qualities."""
    header = ["recipe", "batch", "MFLOP/image", "images/s", "GFLOP/s (% of conv peak)",
              *(f"FD at {budget:g} s" for budget in budgets), f"score at {budgets[-1]:g} s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, recipe in recipes.items():
        runs = recipe["runs"]
        rate = runs[-1]["images_per_second"]  # over the longest run
        achieved = rate * recipe["flops"]
        cells = [name, str(recipe["batch_size"]), f"{recipe['flops'] / 1e6:.0f}", f"{rate:,.0f}",
                 f"{achieved / 1e9:.1f} ({achieved / peak:.0%})", *(f"{run['fd']:.2f}" for run in runs),
                 f"{runs[-1]['score']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def benchmark_recipes(data_dir="data", budgets=(60, 150, 300), out=None, seed=0):
    """Train the notebook's MNIST recipe and two published DCGAN recipes side by side; print how good and how fast.

    Each recipe trains from scratch on all of MNIST and is measured (`MnistQuality`, 10,000
    digits) after each budget of wall-clock training seconds: the notebook once per budget,
    through papermill; the baselines (`BASELINES`) once, pausing at each budget. Prints a Markdown
    table, the real digits' FD (the floor), whether the notebook meets its targets after the longest
    budget (FD at most 5, every digit 7 to 13 %, classifier score at least 9, FD at least 4x lower
    than the better baseline's), and writes
    the measurements to the JSON file `out` if given. Training alone takes the budgets' sum plus
    twice the longest, and each notebook run adds its set-up: over 20 minutes with the defaults.
    """
    if "mnist_time_budget" not in notebook_parameters():
        raise ValueError(f"{NOTEBOOK.name} has no mnist_time_budget parameter, which the benchmark needs to stop "
                         f"the notebook's MNIST training after each budget.")
    budgets = sorted(budgets)
    images, _, data_name = helper.load_mnist(data_dir)
    if data_name != "MNIST":
        raise downloads.DownloadError(f"The benchmark needs all 60,000 MNIST training digits, not the {data_name}.")
    quality = helper.MnistQuality(data_dir)
    floor = quality(images[:10_000])["fd"]
    peak = conv_peak_flops()
    print(f"Real digits (the first 10,000 training ones): FD {floor:.2f}. "
          f"Convolution peak of this machine: {peak / 1e9:.0f} GFLOP/s.")

    print("notebook, through papermill, from scratch for each budget:")
    with tempfile.TemporaryDirectory() as scratch:
        runs = []
        for budget in budgets:
            runs.append(notebook_mnist_run(data_dir, budget, scratch))
            print(_describe_run(runs[-1]))
    notebook = notebook_definitions()
    filters, full_resolution_layer = runs[-1]["filters"], runs[-1]["full_resolution_layer"]  # as trained
    flops = training_flops(notebook["discriminator"](images.shape[1:], filters),
                           notebook["generator"](RECIPE_Z_DIM, images.shape[1:], filters, full_resolution_layer))
    recipes = {"notebook": {"batch_size": runs[-1]["batch_size"], "flops": flops, "runs": runs}}
    for name, make_baseline in BASELINES.items():
        print(f"{name}, from scratch, measured at each budget:")
        keras.utils.set_random_seed(seed)
        baseline = make_baseline()
        recipes[name] = {"batch_size": baseline.batch_size, "flops": baseline.flops,
                         "runs": train_to_budgets(baseline,
                                                  lambda batch_size: helper.mnist_dataset(images, batch_size, seed),
                                                  budgets, quality, seed=seed)}

    print(f"\n{recipes_table(recipes, budgets, peak)}\n")
    last = recipes["notebook"]["runs"][-1]
    print(f"Real digits: FD {floor:.2f} (the floor). The notebook's targets after {budgets[-1]:g} s:")
    best_baseline_fd = min(recipes[name]["runs"][-1]["fd"] for name in BASELINES)
    targets = {
        f"FD at most 5: {last['fd']:.2f}": last["fd"] <= 5,
        f"FD within 2x the floor ({2 * floor:.2f}), the stretch goal: {last['fd']:.2f}": last["fd"] <= 2 * floor,
        f"every digit 7 to 13 % of the samples: {min(last['shares']):.1%} to {max(last['shares']):.1%}":
            0.07 <= min(last["shares"]) and max(last["shares"]) <= 0.13,
        f"classifier score at least 9: {last['score']:.2f}": last["score"] >= 9,
        f"FD at least 4x lower than the better baseline's ({best_baseline_fd:.2f})": 4 * last["fd"] <= best_baseline_fd,
    }
    for target, met in targets.items():
        print(f"- {target}: {'met' if met else 'NOT met'}")
    if out:
        measurements = {"floor_fd": floor, "conv_peak_flops": peak, "recipes": recipes}
        Path(out).write_text(json.dumps(measurements, indent=1, default=lambda array: array.tolist()) + "\n")
        print(f"Measurements written to {out}.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data",
                        help="where MNIST is (in mnist/), or is downloaded to (default data)")
    parser.add_argument("--budgets", type=float, nargs="+", default=[60, 150, 300],
                        help="seconds of training after which each recipe is measured (default 60 150 300)")
    parser.add_argument("--out", help="also write the measurements to this JSON file")
    args = parser.parse_args()
    benchmark_recipes(args.data_dir, args.budgets, args.out)
