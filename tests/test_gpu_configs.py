"""The notebook in each configuration it can choose on a GPU box, emulated on the CPU.

Each test is a papermill run of the real notebook in its quick profile (toy sizes), as a user
would run it, in one of the configurations the notebook picks:
- one GPU with Tensor Cores: mixed precision and XLA;
- several GPUs: two replicas under `MirroredStrategy` (the CPU split in two by the kernel's startup file
  `support/two_cpu_replicas.py`, in place of two GPUs), mixed precision; here the MNIST stage alone
  (`celeba_images=0`), as the faces' stage runs the same `train` (its average generator and cooled rate
  on two replicas: test_distribute.py's worker);
- an older GPU, or the CPU: float32 without XLA. That is what this CPU chooses, so nbval's run of the
  whole notebook and the README's step 1 take it, faces and all.
Then it checks what the run produced: every cell ran, finite losses, quality figures in range,
exported generators that load and draw float32 images, and the progress lines in the terminal.
"""

import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import nbformat
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from facegen.notebook import NOTEBOOK, ROOT, papermill_arguments, quick_parameters

# On a GPU box the faces' default run (a million images) takes 2e-4 and cools it down; the quick profile's few
# images would not, so the GPU configurations ask for both.
COOLED = ("The learning rate: 0.0002, held for", "then lowered to 0 over the last")
CONFIGS = {
    "one Tensor-Core GPU": dict(parameters=dict(mixed_precision=True, jit_compile=True, celeba_learning_rate=2e-4,
                                                celeba_cooldown=0.5),
                                replicas=1, said=COOLED,
                                devices="_DefaultDistributionStrategy, 1 replica. Precision: mixed_float16. XLA: on."),
    "two GPUs, MNIST alone": dict(parameters=dict(mixed_precision=True, celeba_images=0), replicas=2,
                                  devices="MirroredStrategy, 2 replicas. Precision: mixed_float16. XLA: off."),
}
SHAPES = {"mnist": (28, 28, 1), "celeba-standin": (32, 32, 3)}  # the quick profile's sizes


def stages(config):
    """The stages a configuration's run trains: both, or MNIST alone with celeba_images=0."""
    return ["mnist"] if config["parameters"].get("celeba_images") == 0 else list(SHAPES)


def ipython_folder(folder, replicas):
    """A fresh IPython folder for the notebook's kernel; with 2 replicas, its startup file splits the CPU in two."""
    startup = folder / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    if replicas == 2:
        shutil.copy(Path(__file__).parent / "support" / "two_cpu_replicas.py", startup)
    return folder / "ipython"


@pytest.fixture(scope="module", params=list(CONFIGS))
def run(request, tmp_path_factory):
    """The configuration, the executed notebook, its folder (data, outputs, pictures) and papermill's terminal output.

    papermill runs from the command line, as the README's command does; its terminal output
    includes what the notebook's kernel writes there (the progress lines).
    """
    config = CONFIGS[request.param]
    folder = tmp_path_factory.mktemp("config")
    parameters = papermill_arguments(quick_parameters(folder, **config["parameters"]))
    done = subprocess.run(
        [sys.executable, "-m", "papermill", "--no-progress-bar", str(NOTEBOOK), str(folder / "run.ipynb"), *parameters],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
        env={**os.environ, "IPYTHONDIR": str(ipython_folder(folder, config["replicas"]))},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (folder / "terminal.txt").write_text(done.stderr)
    return config, nbformat.read(folder / "run.ipynb", as_version=4), folder, done.stderr


def test_every_cell_ran_without_error(run):
    _, notebook, _, _ = run
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "a code cell did not run"
    assert not [output for cell in code for output in cell.outputs if output.output_type == "error"]


def test_the_notebook_ran_in_the_configuration(run):
    config, notebook, _, _ = run
    texts = ["".join(output.get("text", "")) for cell in notebook.cells if cell.cell_type == "code"
             for output in cell.outputs]
    assert any(config["devices"] in text for text in texts), f"expected {config['devices']!r}"
    for said in config.get("said", ()):
        assert any(said in text for text in texts), f"expected {said!r}"


def test_each_course_check_passes_in_the_configuration(run):
    """Each check of problem_unittests.py on the notebook's functions, under this configuration's precision (mixed)."""
    _, notebook, _, _ = run
    checks = [cell for cell in notebook.cells if cell.cell_type == "code" and "tests.test_" in cell.source]
    assert len(checks) == 8
    for cell in checks:  # under load the kernel may send one print in two pieces of stdout
        assert {(output.output_type, output.get("name")) for output in cell.outputs} == {("stream", "stdout")} and \
            "".join(output.text for output in cell.outputs) == "Tests Passed\n", cell.source[-200:]


def test_losses_are_finite_and_one_row_per_step(run):
    config, _, folder, _ = run
    for stage in stages(config):
        saved = tf.train.load_checkpoint(tf.train.latest_checkpoint(folder / stage / "checkpoints"))
        losses = saved.get_tensor("losses/.ATTRIBUTES/VARIABLE_VALUE")
        steps = saved.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")
        assert losses.shape == (steps, 2) and steps > 0 and np.isfinite(losses).all(), stage


def test_digit_quality_is_in_range(run):
    _, _, folder, _ = run
    quality = json.loads((folder / "mnist" / "quality.json").read_text())
    assert 0 <= quality["fd"] < 1000 and 1 <= quality["score"] <= 10
    assert len(quality["shares"]) == 10 and abs(sum(quality["shares"]) - 1) < 1e-6  # float64 shares of 1,000 images


def test_face_quality_is_reported_and_in_range(run):
    config, notebook, _, _ = run
    texts = "".join("".join(output.get("text", "")) for cell in notebook.cells if cell.cell_type == "code"
                    for output in cell.outputs)
    swd = re.findall(r"^SWD (\d+\.\d) over ([\d,]+) faces \(by level: 32x32: \d+\.\d, 16x16: \d+\.\d\)", texts,
                     re.MULTILINE)
    if "celeba-standin" in stages(config):
        [(figure, count)] = swd
        assert 0 < float(figure) < 2000 and int(count.replace(",", "")) > 0  # untrained networks score about 600
    else:
        assert swd == []


def test_exported_generators_load_and_draw_float32_images(run):
    config, _, folder, _ = run
    for stage in stages(config):
        exported = json.loads((folder / stage / "config.json").read_text())
        assert exported["image_shape"] == list(SHAPES[stage]) and exported["output_range"] == [-1, 1]
        generator = keras.saving.load_model(folder / stage / "generator.keras")  # no custom objects needed
        assert {layer.dtype_policy.name for layer in generator.layers} == {"float32"}  # runs anywhere, CPU included
        images = generator(np.random.default_rng(0).standard_normal((4, exported["z_dim"])).astype("float32"))
        assert images.dtype == tf.float32 and images.shape == (4, *SHAPES[stage])
        assert -1 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1
        # The export holds the trained average generator: restoring the last checkpoint's into it changes nothing.
        exported_weights = [w.numpy() for w in generator.weights]
        checkpoint = tf.train.latest_checkpoint(folder / stage / "checkpoints")
        tf.train.Checkpoint(average_generator=generator).restore(checkpoint).expect_partial().assert_existing_objects_matched()
        for before, after in zip(exported_weights, generator.weights):
            np.testing.assert_array_equal(before, after.numpy())


def test_each_stage_saves_its_pictures_and_nothing_runs_for_a_skipped_one(run):
    config, _, folder, _ = run
    for stage in stages(config):
        assert {f"{stage}_{name}" for name in ("real.jpg", "samples.jpg", "losses.png", "training.gif",
                                               "real_vs_generated.jpg", "latent_walk.jpg")} <= {
            p.name for p in folder.iterdir()}
    if stages(config) == ["mnist"]:  # celeba_images=0: CelebA is neither fetched nor stood in for
        assert not (folder / "standin").exists() and not (folder / "celeba-standin").exists()
        assert not list(folder.glob("celeba*"))


# The export of a generator trained in mixed precision, the one that could carry float16 along (each configuration's
# export is loaded above): the command in a process of its own takes seconds, once is enough.
@pytest.mark.parametrize("run", ["one Tensor-Core GPU"], indirect=True)
def test_generate_command_runs_the_export_on_a_cpu_only_machine(run, tmp_path):
    _, _, folder, _ = run
    out = tmp_path / "digits.png"
    done = subprocess.run([sys.executable, "helper.py", "generate", str(folder / "mnist"), "--count", "9", "--out",
                           str(out)], cwd=ROOT, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Image.open(out).size[0] >= 3 * 28


def test_the_terminal_shows_each_stages_progress_and_the_notebook_does_not(run):
    config, notebook, _, terminal = run
    # MNIST is "MNIST" online, "MNIST sample (offline: ...)" without a network; the quick profile never fetches CelebA.
    names = {"mnist": r"MNIST( sample \(offline[^)]*\))?", "celeba-standin": re.escape("stand-in faces (NOT CelebA)")}
    for name in (names[stage] for stage in stages(config)):
        final = rf"^{name}: step (?P<step>\d+) of (?P=step), d_loss \d+\.\d+, g_loss \d+\.\d+"
        assert re.search(final, terminal, re.MULTILINE), f"no final progress line for {name} in:\n{terminal[-2000:]}"
    texts = "".join("".join(output.get("text", "")) for cell in notebook.cells if cell.cell_type == "code"
                    for output in cell.outputs)
    assert "d_loss" not in texts  # the cells show the progress bar, not these lines


def test_library_logs_go_to_the_terminal_not_into_the_cells(run):
    """TensorFlow's C++ lines (CUDA, CPU features, graph optimizer) differ from machine to machine: helper sends them
    to the terminal that runs papermill, so no cell of the run holds stderr."""
    _, notebook, _, _ = run
    stderr = [(number, output.text[:300]) for number, cell in enumerate(notebook.cells) if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "stream" and output.name == "stderr"]
    assert stderr == []
