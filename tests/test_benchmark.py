"""Tests for the recipes benchmark (`python -m tools.bench_recipes`):
the two published baselines it trains, the loop that trains them to time budgets, how it runs the notebook,
and its table. They run on the committed offline MNIST sample, with tiny budgets."""

import json
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import helper
from facegen import pixels
from tools import bench_recipes
from facegen.notebook import NOTEBOOK, ROOT
from tools.baselines import RECIPE_Z_DIM, Baseline, dcgan_paper_baseline, tf_tutorial_baseline
from tools.training_speed import forward_flops

BASELINES = [tf_tutorial_baseline, dcgan_paper_baseline]


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """Real training and test digits, from the committed sample: nothing is downloaded."""
    data_dir = tmp_path_factory.mktemp("data")
    return helper.load_mnist(data_dir, "train", mirrors=())[0], helper.load_mnist(data_dir, "test", mirrors=())[0]


def weights(model):
    return [w.numpy().copy() for w in model.trainable_weights]


# --- The baselines ------------------------------------------------------------------------


@pytest.mark.parametrize("make_baseline, generator_params, discriminator_params", [
    (tf_tutorial_baseline, 2_330_944, 212_865),  # the tutorial's model summaries
    # G: 7*7*100*256 + 4*256 (batch norm's 4 per channel) + 4*4*256*128 + 4*128 + 4*4*128*1, no biases;
    # D: 4*4*1*64 + 4*4*64*128 + 4*128 + 7*7*128*1
    (dcgan_paper_baseline, 1_782_272, 138_880),
], ids=["TF tutorial", "DCGAN paper"])
def test_baseline_networks_have_the_published_sizes(make_baseline, generator_params, discriminator_params):
    baseline = make_baseline()
    assert baseline.generator.count_params() == generator_params
    assert baseline.discriminator.count_params() == discriminator_params


@pytest.mark.parametrize("make_baseline", BASELINES, ids=["TF tutorial", "DCGAN paper"])
def test_baseline_networks_turn_z_into_digits_and_digits_into_logits(make_baseline, mnist):
    baseline = make_baseline()
    images = baseline.generator(helper.noise(16, RECIPE_Z_DIM), training=False).numpy()
    assert images.shape == (16, 28, 28, 1)
    assert -1 <= images.min() and images.max() <= 1 and images.std() > 0
    logits = baseline.discriminator(pixels.to_unit_range(mnist[0][:16]), training=False).numpy()
    assert logits.shape == (16, 1) and np.isfinite(logits).all()


def test_dcgan_paper_flops_count_the_1x1_start_and_the_extra_discriminator_pass():
    baseline = dcgan_paper_baseline()
    # A transposed convolution uses each weight once per input position, a convolution once per output position.
    g = 2 * (1 * 7 * 7 * 100 * 256 + 7 * 7 * 4 * 4 * 256 * 128 + 14 * 14 * 4 * 4 * 128 * 1)
    d = 2 * (14 * 14 * 4 * 4 * 1 * 64 + 7 * 7 * 4 * 4 * 64 * 128 + 1 * 7 * 7 * 128 * 1)
    assert (forward_flops(baseline.generator), forward_flops(baseline.discriminator)) == (g, d)
    assert baseline.flops == 3 * g + 8 * d


@pytest.mark.parametrize("make_baseline", BASELINES, ids=["TF tutorial", "DCGAN paper"])
def test_a_baseline_step_trains_both_networks(make_baseline, mnist):
    keras.utils.set_random_seed(0)
    baseline = make_baseline()
    before = weights(baseline.generator), weights(baseline.discriminator)
    real_images = pixels.to_unit_range(mnist[0][:baseline.batch_size])
    losses = baseline.train_step(real_images, tf.random.normal([baseline.batch_size, RECIPE_Z_DIM]))
    assert all(np.isfinite(float(loss)) and float(loss) > 0 for loss in losses)
    for model, old in zip((baseline.generator, baseline.discriminator), before):
        assert all(not np.array_equal(a, b) for a, b in zip(old, weights(model))), f"{model.name} kept some weights"


# --- Training to budgets ------------------------------------------------------------------


def test_the_clock_stops_while_the_generator_is_measured(mnist):
    """With a step that costs next to nothing, the steps count the seconds of training alone."""
    generator = keras.Sequential([keras.Input((RECIPE_Z_DIM,)), keras.layers.Dense(784, activation="tanh"),
                                  keras.layers.Reshape((28, 28, 1))])
    step = tf.function(lambda images, z: (tf.reduce_mean(images), tf.reduce_mean(z)))
    make_batches = lambda batch_size: helper.mnist_dataset(mnist[0][:256], batch_size)  # noqa: E731
    step(next(iter(make_batches(32))), tf.zeros([32, RECIPE_Z_DIM]))  # traced now: tracing is not next to nothing
    baseline = Baseline(generator, None, step, 32, 0)

    def slow_quality(images):
        time.sleep(1)
        return {"fd": 1.0, "score": 1.0, "shares": np.eye(10)[len(images) % 10]}

    runs = bench_recipes.train_to_budgets(baseline, make_batches, [1, 0.5], slow_quality, samples=20)
    assert [run["budget"] for run in runs] == [0.5, 1]
    for run in runs:
        assert run["budget"] <= run["train_seconds"] < run["budget"] + 0.5
        assert run["images_per_second"] == pytest.approx(run["steps"] * 32 / run["train_seconds"])
        # The last 100 steps' mean outputs: here the mean of 32 x 100 z values, 0 within 0.1 (5 of its standard errors).
        assert run["g_loss"] == pytest.approx(0.0, abs=0.1) and -1 <= run["d_loss"] <= 1
    # Had the second of measuring counted, the clock would be past 1 s when it ended, and no step would follow it
    # (a step rate that varies with load is not this test's business).
    assert runs[1]["steps"] > runs[0]["steps"]
    assert runs[0]["shares"][0] == 1  # measured on 20 samples


def test_a_baseline_trained_to_tiny_budgets_is_measured_at_each(mnist):
    keras.utils.set_random_seed(0)
    quality = helper.MnistQuality(reference=mnist[1][:500])
    runs = bench_recipes.train_to_budgets(dcgan_paper_baseline(),
                                          lambda batch_size: helper.mnist_dataset(mnist[0][:1024], batch_size), [1, 2],
                                          quality, samples=200)
    assert [run["budget"] for run in runs] == [1, 2]
    assert 1 <= runs[0]["steps"] <= runs[1]["steps"]
    for run in runs:
        assert run["train_seconds"] >= run["budget"]
        assert np.isfinite(run["fd"]) and run["fd"] > 0 and 1 <= run["score"] <= 10
        assert run["shares"].sum() == pytest.approx(1)


# --- The notebook and the report ----------------------------------------------------------


def test_the_notebook_runs_from_scratch_with_the_budget(tmp_path, monkeypatch):
    calls = []
    measured = {"fd": 2.5, "score": 9.1, "shares": [0.1] * 10, "steps": 700, "train_seconds": 60.2,
                "images_per_second": 744.0, "batch_size": 64}

    def execute_notebook(notebook, output, **kwargs):
        calls.append((notebook, output, kwargs))
        quality = kwargs["parameters"]["output_dir"] + "/mnist/quality.json"
        Path(quality).parent.mkdir(parents=True)
        Path(quality).write_text(json.dumps(measured))

    monkeypatch.setattr("papermill.execute_notebook", execute_notebook)
    run = bench_recipes.notebook_mnist_run("data", 60, tmp_path)
    [(notebook, output, kwargs)] = calls
    assert notebook == NOTEBOOK and output == tmp_path / "notebook-60s" / "run.ipynb"
    assert kwargs["cwd"] == ROOT
    assert kwargs["parameters"] == {
        "data_dir": str(Path("data").resolve()), "output_dir": str(tmp_path / "notebook-60s"),
        "images_dir": str(tmp_path / "notebook-60s"), "celeba_images": 0, "mnist_time_budget": 60,
        "mnist_epochs": 1000}
    assert run == {"budget": 60, **measured}


def test_the_table_gives_speed_against_the_peak_and_fd_at_each_budget():
    runs = [{"budget": b, "fd": fd, "score": 8.5, "images_per_second": 500.0} for b, fd in [(60, 3.0), (150, 1.25)]]
    recipes = {"notebook": {"batch_size": 64, "flops": 200e6, "runs": runs}}
    table = bench_recipes.recipes_table(recipes, [60, 150], 400e9)
    assert table.splitlines() == [
        "| recipe | batch | MFLOP/image | images/s | GFLOP/s (% of conv peak) | FD at 60 s | FD at 150 s "
        "| score at 150 s |",
        "|---|---|---|---|---|---|---|---|",
        "| notebook | 64 | 200 | 500 | 100.0 (25%) | 3.00 | 1.25 | 8.50 |",
    ]


def test_the_benchmark_runs_as_a_program_of_its_own():
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "tools.bench_recipes", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "usage: bench_recipes.py" in run.stdout and "--budgets" in run.stdout
