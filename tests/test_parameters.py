"""Bad parameters stop the notebook at once with one plain sentence; a resumed run with changed parameters is
honoured or refused plainly, never ignored or looping."""

import json
import re

import numpy as np
import keras
import papermill
import pytest

import helper
from facegen.notebook import NOTEBOOK, ROOT, notebook_parameters
from support.notebook import notebook_functions
from support.train_worker import STEPS_PER_EPOCH, digits, train_options

DEFAULTS = notebook_parameters()  # the parameters cell is their one source: the rules are checked against it


def test_the_rules_cover_every_parameter_of_the_notebook():
    assert set(helper.PARAMETER_RULES) == set(DEFAULTS)


def test_the_defaults_pass():
    helper.check_parameters(DEFAULTS)


def readme_parameter_table(readme):
    """The README's parameter table (after its `<!-- parameters` mark) as {name: (default, what it does, may be)}."""
    table = readme.split("<!-- parameters", 1)[1].split("\n\n", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split(" | ")] for line in table.splitlines()
            if line.startswith("| `")]
    return {name.strip("`"): (default.strip("`"), what, allowed) for name, default, what, allowed in rows}


def test_the_readme_documents_every_parameter_with_its_default_and_rule():
    table = readme_parameter_table((ROOT / "README.md").read_text())
    assert list(table) == list(DEFAULTS), "the README's parameter table must list the parameters cell's, in its order"
    for name, (default, what, allowed) in table.items():
        assert default == repr(DEFAULTS[name]), f"README: {name}'s default is {default}, the cell's {DEFAULTS[name]!r}"
        assert allowed == helper.PARAMETER_RULES[name][1], f"README: what {name} may be differs from PARAMETER_RULES"
        assert len(what.split()) >= 4, f"README: say what {name} does"


def test_the_readme_table_check_catches_a_missing_row_and_a_stale_default():
    readme = (ROOT / "README.md").read_text()
    without = re.sub(r"\n\| `celeba_ema` \|[^\n]*", "", readme)
    with pytest.raises(AssertionError):
        assert list(readme_parameter_table(without)) == list(DEFAULTS)
    stale = readme.replace("| `celeba_filters` | `32` |", "| `celeba_filters` | `64` |")
    assert readme_parameter_table(stale)["celeba_filters"][0] != repr(DEFAULTS["celeba_filters"])


@pytest.mark.parametrize("name, value, allowed", [
    ("mnist_batch_size", 0, "a whole number, at least 1"),
    ("celeba_batch_size", 64.5, "a whole number, at least 1"),
    ("mnist_epochs", -1, "a whole number, at least 1 (the MNIST stage always runs)"),
    ("celeba_images", "5", "None (by device), or a whole number, 0 or more (0 skips the faces)"),
    ("celeba_images", -1, "None (by device), or a whole number, 0 or more (0 skips the faces)"),
    ("z_dim", True, "a whole number, at least 1"),
    ("mnist_learning_rate", 0, "a number above 0, at most 1"),
    ("celeba_learning_rate", float("nan"), "None (by the run's length) or a number above 0, at most 1"),
    ("celeba_learning_rate", 0, "None (by the run's length) or a number above 0, at most 1"),
    ("beta1", 1, "a number from 0 to 0.9999"),
    ("beta1", 1 - 2**-53, "a number from 0 to 0.9999"),
    ("celeba_ema", 1.0, "a number from 0 to 0.9999"),
    ("celeba_ema", False, "a number from 0 to 0.9999"),
    ("celeba_cooldown", 1.5, "None (by the run's length) or a number from 0 to 1"),
    ("celeba_cooldown", -0.5, "None (by the run's length) or a number from 0 to 1"),
    ("celeba_cooldown", True, "None (by the run's length) or a number from 0 to 1"),
    ("celeba_image_size", 48, "28, 32 or 64"),
    ("max_images", 0, "None (all of them) or a whole number, at least 1"),
    ("sample_every", 0, "None (ten per stage) or a whole number, at least 1"),
    ("fid_images", 1, "0 (no FID) or a whole number, at least 2"),
    ("quality_images", 1, "a whole number, at least 2"),
    ("mnist_full_resolution_layer", 1, "True or False"),
    ("mnist_time_budget", -5, "None (no limit) or a number of seconds above 0"),
    ("mixed_precision", "yes", "None (decide by the GPU), True or False"),
    ("jit_compile", 1, "None (decide by the GPU), True or False"),
    ("download_celeba", "False", "True or False"),
    ("mnist_filters", 0, "a whole number, at least 1"),
    ("seed", -1, "a whole number from 0 to 4294967295 (NumPy's seeds)"),
    ("seed", 2**32, "a whole number from 0 to 4294967295 (NumPy's seeds)"),
])
def test_a_bad_value_is_named_with_what_is_allowed(name, value, allowed):
    with pytest.raises(ValueError) as error:
        helper.check_parameters({**DEFAULTS, name: value})
    assert str(error.value) == f"{name} = {value!r} is not allowed: it must be {allowed}."


def test_a_file_in_the_way_of_a_folder_is_named(tmp_path):
    (tmp_path / "out").write_text("")
    with pytest.raises(ValueError, match=r"^output_dir = '.*out' is not allowed: it must be a folder's path"):
        helper.check_parameters({**DEFAULTS, "output_dir": str(tmp_path / "out")})


def test_fewer_images_than_a_batch_is_refused_up_front():
    with pytest.raises(ValueError) as error:
        helper.check_parameters({**DEFAULTS, "max_images": 20})
    assert str(error.value).splitlines() == [
        "max_images = 20 is fewer than one batch (mnist_batch_size = 64): raise max_images to at least 64 or lower "
        "mnist_batch_size.",
        "max_images = 20 is fewer than one batch (celeba_batch_size = 64): raise max_images to at least 64 or lower "
        "celeba_batch_size."]
    helper.check_parameters({**DEFAULTS, "max_images": 100, "mnist_batch_size": 100, "celeba_images": 0})


def test_data_smaller_than_a_batch_is_refused_by_the_pipeline():
    with pytest.raises(ValueError, match=r"^There are only 20 images, fewer than one batch of 128: lower the batch"):
        helper.mnist_dataset(np.zeros((20, 28, 28, 1), np.uint8), 128)


@pytest.mark.parametrize("parameter, value, message", [
    ("mnist_batch_size", 0, "mnist_batch_size = 0 is not allowed: it must be a whole number, at least 1."),
    ("max_images", 20, "max_images = 20 is fewer than one batch (mnist_batch_size = 64)"),
])
def test_the_notebook_stops_at_its_parameter_check(tmp_path, parameter, value, message):
    with pytest.raises(papermill.PapermillExecutionError) as error:
        papermill.execute_notebook(NOTEBOOK, tmp_path / "out.ipynb", progress_bar=False, cwd=NOTEBOOK.parent,
                                   parameters={parameter: value, "data_dir": str(tmp_path / "data"),
                                               "output_dir": str(tmp_path / "out"), "images_dir": str(tmp_path)})
    assert error.value.ename == "ValueError" and message in error.value.evalue
    assert error.value.exec_count <= 4  # the check cell, before any data or network
    assert not (tmp_path / "data").exists() and not (tmp_path / "out").exists()


# --- What the check lets through runs ---------------------------------------------------------------
# Each rule's edge values, fed to the code that uses them: a value the check accepts must not fail later.

SMALLEST_NUMBER = 5e-324  # the smallest float above 0: `_positive_number` accepts it
BELOW_ONE = 0.9999  # the largest fraction `_fraction` accepts


def test_the_edge_values_are_accepted_by_the_check():
    edges = dict(seed=2**32 - 1, z_dim=1, beta1=0, mnist_learning_rate=1, celeba_learning_rate=SMALLEST_NUMBER,
                 celeba_images=1, celeba_ema=BELOW_ONE, mnist_batch_size=1, celeba_batch_size=1, mnist_filters=1,
                 celeba_filters=1, sample_every=1, max_images=1, quality_images=2, fid_images=2,
                 mnist_time_budget=SMALLEST_NUMBER)
    helper.check_parameters({**DEFAULTS, **edges})
    helper.check_parameters({**DEFAULTS, "beta1": BELOW_ONE, "celeba_ema": 0, "seed": 0})


@pytest.mark.parametrize("edges", [
    # the largest learning rate, as the whole number papermill's `-p ... 1` gives; beta1 and the average at 0;
    # the largest seed; the smallest z_dim, width, batch and sample_every; a resume at the same values
    dict(learning_rate=1, beta1=0, ema=0, seed=2**32 - 1, z_dim=1, filters=1, batch_size=1, sample_every=1),
    # the smallest learning rate and time budget; beta1 and the average just below 1
    dict(learning_rate=SMALLEST_NUMBER, beta1=BELOW_ONE, ema=BELOW_ONE, seed=0, time_budget=SMALLEST_NUMBER),
], ids=["largest", "smallest"])
def test_the_edge_values_train(tmp_path, train, edges):
    edges = dict(edges)
    keras.utils.set_random_seed(edges["seed"])  # as the notebook's imports cell does with `seed`
    batches = helper.mnist_dataset(np.zeros((4, 28, 28, 1), np.uint8), edges.pop("batch_size", 2), edges["seed"])
    for epochs in (1, 2):  # the second call resumes, restoring the optimizers with those values
        generator, losses = train(batches, "edges", epochs, run_dir=tmp_path, images_dir=tmp_path / "images",
                                  **{"z_dim": 8, **edges})
    assert np.isfinite(losses).all() and np.isfinite(generator(helper.noise(2, generator.input_shape[-1]))).all()


def test_the_smallest_quality_counts_measure(tmp_path):
    reference = next(digits().unbatch().batch(100).as_numpy_iterator())
    figures = helper.MnistQuality(reference=reference)(reference[:2])  # quality_images = 2
    assert np.isfinite([figures["fd"], figures["score"]]).all()
    faces = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), np.uint8)
    assert np.isfinite(helper.FaceQuality(faces)(faces[::-1])["swd"])


# --- A resumed run with other parameters ------------------------------------------------------------


@pytest.fixture(scope="module")
def train():
    return notebook_functions()["train"]


def test_the_old_celeba_epochs_is_refused_naming_celeba_images():
    with pytest.raises(ValueError, match=r"^celeba_epochs is no longer a parameter: say how long the faces train in "
                                         r"images seen, celeba_images \(e\.g\. 80000"):
        helper.check_parameters({**DEFAULTS, "celeba_epochs": 1})


def test_a_fraction_of_an_epoch_counts_and_fewer_epochs_than_done_train_nothing(tmp_path, train, capsys):
    _, losses = train(digits(), "first", 1.5, **train_options(tmp_path))  # as celeba_images gives: 15 steps
    assert losses.shape == (3 * STEPS_PER_EPOCH // 2, 2)
    _, losses = train(digits(), "again", 1, **train_options(tmp_path))
    out = capsys.readouterr().out
    assert f"already trained to step {3 * STEPS_PER_EPOCH // 2} of {STEPS_PER_EPOCH}; nothing to train" in out
    assert losses.shape == (3 * STEPS_PER_EPOCH // 2, 2)  # the checkpoint's, untouched


def test_a_new_learning_rate_is_honoured_and_said(first_run, tmp_path, train, capsys, monkeypatch):
    seen = []
    real_run = helper.TrainingRun

    class Spy(real_run):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.extend(float(optimizer.learning_rate) for optimizer in self.optimizers.values())

    monkeypatch.setattr(helper, "TrainingRun", Spy)
    train(digits(), "again", 2, **train_options(tmp_path, learning_rate=5e-5))
    assert seen == [pytest.approx(5e-5)] * 2  # restored, then the new value put back in both optimizers
    assert "learning_rate was 0.0002 when the checkpoint was written; going on with 5e-05." in capsys.readouterr().out


@pytest.mark.parametrize("change, words", [
    (dict(dataset=digits(32)), "batch_size 64 there, 32 now"),
    (dict(filters=32), "filters 16 there, 32 now"),
    (dict(cooldown=0.5), "cooldown 0.0 there, 0.5 now; celeba_cooldown = None chooses the cooldown by the run's "
                         "length: -p celeba_cooldown 0.0 goes on as the checkpoint was trained"),
    # And the rate too, as a short face run's taken past 200,000 images, where None chooses another: keep both.
    (dict(cooldown=0.5, learning_rate=1e-4), "cooldown 0.0 there, 0.5 now; celeba_cooldown = None chooses the "
     "cooldown by the run's length: -p celeba_cooldown 0.0 -p celeba_learning_rate 0.0002 goes on as the checkpoint "
     "was trained"),
])
def test_another_batch_size_or_width_is_refused(first_run, tmp_path, train, change, words):
    dataset = change.pop("dataset", digits())
    with pytest.raises(ValueError, match=rf"{words}\). To resume it, set them back; to start a new run, delete"):
        train(dataset, "again", 2, **train_options(tmp_path, **change))


def test_a_checkpoint_from_before_the_cooldown_is_refused_a_cooldown_plainly(first_run, tmp_path, train):
    recipe = tmp_path / "checkpoints" / "recipe.json"
    written = json.loads(recipe.read_text())
    del written["cooldown"]  # as the notebook wrote it before the cooldown existed
    recipe.write_text(json.dumps(written))
    with pytest.raises(ValueError, match=r"cooldown 0 there, 0.5 now; .* -p celeba_cooldown 0 goes on as the "):
        train(digits(), "again", 2, **train_options(tmp_path, cooldown=0.5))
