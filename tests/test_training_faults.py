"""Training survives faults: a killed process, the stop button, a diverging run, a wrong checkpoint."""

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import helper

from support.notebook import notebook_functions
from support.train_worker import STEPS_PER_EPOCH, digits, worker_env

pytestmark = pytest.mark.numerics  # a resumed run must end bit for bit as an uninterrupted one

WORKER = Path(__file__).parent / "support" / "train_worker.py"


@pytest.fixture(scope="module")
def train():
    return notebook_functions()["train"]


def start_worker(run_dir, epochs, sample_every):
    return subprocess.Popen([sys.executable, str(WORKER), str(run_dir), str(epochs), str(sample_every)],
                            env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def checkpointed_step(run_dir):
    """The step stored in the latest checkpoint of `run_dir`, or None."""
    latest = tf.train.latest_checkpoint(Path(run_dir, "checkpoints"))
    return latest and int(tf.train.load_checkpoint(latest).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))


def wait_for(condition, process, seconds=120):
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"the worker ended early:\n{process.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "the worker did not get there in time"
        time.sleep(0.05)


def final_state(run_dir):
    """Every value of the latest checkpoint: both networks, both optimizers, the noise's state, the losses, the step."""
    saved = tf.train.load_checkpoint(tf.train.latest_checkpoint(Path(run_dir, "checkpoints")))
    return {name: saved.get_tensor(name) for name in saved.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def test_killed_run_resumes_in_mid_epoch_and_ends_as_an_uninterrupted_run(tmp_path):
    """kill -9 between two checkpoints, in the middle of an epoch of shuffled data; run again, to the end:
    the same weights, optimizer states, noise and losses as a run that was never stopped."""
    epochs, sample_every = 3, 7  # 30 steps, checkpoints at 7, 14, 21, 28 and 30: none on an epoch's edge
    uninterrupted = start_worker(tmp_path / "uninterrupted", epochs, sample_every)
    killed = start_worker(tmp_path / "killed", epochs, sample_every)
    wait_for(lambda: (checkpointed_step(tmp_path / "killed") or 0) >= sample_every, killed)
    killed.kill()  # SIGKILL: no chance to clean up
    killed.wait()
    killed_at = checkpointed_step(tmp_path / "killed")
    assert killed_at % sample_every == 0 and killed_at % STEPS_PER_EPOCH != 0 and killed_at < epochs * STEPS_PER_EPOCH

    resumed = start_worker(tmp_path / "killed", epochs, sample_every)
    outputs = [process.communicate(timeout=300) for process in (resumed, uninterrupted)]
    for process, (_, err) in zip((resumed, uninterrupted), outputs):
        assert process.returncode == 0, err[-2000:]
    assert "Resumed from" in outputs[0][0] and f"(step {killed_at})" in outputs[0][0]
    expected, actual = final_state(tmp_path / "uninterrupted"), final_state(tmp_path / "killed")
    assert {name.split("/")[0] for name in expected} >= {"discriminator", "generator", "d_optimizer", "g_optimizer",
                                                          "noise", "fixed_z", "step", "losses"}
    assert expected.keys() == actual.keys()
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


def test_stop_button_saves_a_checkpoint_before_stopping(tmp_path):
    worker = start_worker(tmp_path, epochs=100, sample_every=1000)  # no checkpoint before the end
    progress = []
    threading.Thread(target=lambda: progress.extend(iter(lambda: worker.stderr.read(64), "")), daemon=True).start()

    def steps_done():
        counts = re.findall(r"\| *(\d+)/1000 ", "".join(progress))
        return int(counts[-1]) if counts else 0

    wait_for(lambda: steps_done() >= 5, worker)
    worker.send_signal(signal.SIGINT)  # what Jupyter's stop button sends the kernel
    out = worker.stdout.read()
    worker.wait(timeout=60)
    stopped_at = checkpointed_step(tmp_path)
    assert stopped_at and stopped_at >= 5
    assert f"Stopped at step {stopped_at:,}; checkpoint saved." in out
    assert worker.returncode != 0  # the interrupt still stops the notebook


def test_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path, train):
    images = np.array(list(digits().unbatch().as_numpy_iterator()))
    images[7 * 64] = np.nan  # the 8th batch poisons the losses
    poisoned = tf.data.Dataset.from_tensor_slices(images).batch(64)
    with pytest.raises(FloatingPointError, match=r"Training diverged at step 8: .*ckpt-5, is kept"):
        train(poisoned, "diverging", 1, z_dim=8, learning_rate=2e-4, beta1=0.5, run_dir=tmp_path,
              images_dir=tmp_path / "images", sample_every=5)
    assert checkpointed_step(tmp_path) == 5
    saved = tf.train.load_checkpoint(tf.train.latest_checkpoint(tmp_path / "checkpoints"))
    assert all(np.isfinite(saved.get_tensor(name)).all() for name in saved.get_variable_to_dtype_map()
               if name != "_CHECKPOINTABLE_OBJECT_GRAPH")


@pytest.mark.parametrize("change", ["z_dim", "image size"])
def test_checkpoint_of_other_networks_is_refused(tmp_path, train, change):
    options = dict(epochs=1, learning_rate=2e-4, beta1=0.5, run_dir=tmp_path, images_dir=tmp_path / "images")
    train(digits(), "first", z_dim=8, **options)
    dataset, z_dim = (digits(), 16) if change == "z_dim" else (digits().map(lambda x: tf.image.resize(x, (32, 32))), 8)
    with pytest.raises(ValueError, match="(?s)was written by other networks .* delete .* or choose another output_dir"):
        train(dataset, "second", z_dim=z_dim, **options)


def test_a_save_cut_off_by_a_kill_leaves_the_previous_checkpoint_in_use(tmp_path, train, capsys):
    options = dict(z_dim=8, learning_rate=2e-4, beta1=0.5, run_dir=tmp_path, images_dir=tmp_path / "images",
                   sample_every=5)
    train(digits(), "first", 1, **options)  # checkpoints at steps 5 and 10
    # What a process killed while writing the checkpoint of step 15 leaves: data, but no index,
    # and the `checkpoint` file that names the latest one never updated.
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "ckpt-15_temp").mkdir()
    (checkpoints / "ckpt-15_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 1000)
    (checkpoints / "ckpt-15.data-00000-of-00001").write_bytes(b"\0" * 1000)
    _, losses = train(digits(), "resumed", 2, **options)
    assert "(step 10)" in capsys.readouterr().out
    assert losses.shape == (2 * STEPS_PER_EPOCH, 2) and checkpointed_step(tmp_path) == 2 * STEPS_PER_EPOCH


def cut_short(checkpoint_prefix):
    """Cut a checkpoint's data file to half its length, as an interrupted copy or a failing disk leaves it."""
    data = Path(f"{checkpoint_prefix}.data-00000-of-00001")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])


def test_a_damaged_newest_checkpoint_is_skipped_for_the_one_before(tmp_path, train, capsys):
    options = dict(z_dim=8, learning_rate=2e-4, beta1=0.5, run_dir=tmp_path, images_dir=tmp_path / "images",
                   sample_every=5)
    train(digits(), "first", 1, **options)  # checkpoints at steps 5 and 10
    cut_short(tmp_path / "checkpoints" / "ckpt-10")
    capsys.readouterr()
    _, losses = train(digits(), "resumed", 2, **options)
    out = capsys.readouterr().out
    assert re.search(r"Skipped the checkpoint .*ckpt-10: it does not restore whole \(\w+Error: .+\)", out), out
    assert "ckpt-5 (step 5)" in out
    assert losses.shape == (2 * STEPS_PER_EPOCH, 2) and checkpointed_step(tmp_path) == 2 * STEPS_PER_EPOCH


def test_no_checkpoint_that_restores_is_said_with_the_folder_to_delete(tmp_path, train):
    options = dict(z_dim=8, learning_rate=2e-4, beta1=0.5, run_dir=tmp_path, images_dir=tmp_path / "images",
                   sample_every=5)
    train(digits(), "first", 1, **options)
    for step in (5, 10):
        cut_short(tmp_path / "checkpoints" / f"ckpt-{step}")
    with pytest.raises(RuntimeError, match=r"No checkpoint in .*checkpoints restores whole \(.*ckpt-10: .*ckpt-5: "
                                           r".*\)\. Put back an intact copy of that folder, or delete it"):
        train(digits(), "resumed", 2, **options)


def test_a_full_disk_stops_training_plainly_and_keeps_the_last_good_checkpoint(tmp_path):
    """The disk under the run fills while it trains: a tmpfs of 16 MB, in a mount namespace of the worker's own
    (no privileges needed), holds the checkpoint of step 5 (about 11 MB) but not the next one."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    script = (f"mount -t tmpfs -o size=16m tmpfs {run_dir} && {sys.executable} {WORKER} {run_dir} 1 5; status=$?; "
              f"ls {run_dir}/checkpoints; exit $status")
    done = subprocess.run(["unshare", "--map-root-user", "--mount", "sh", "-c", script], env=worker_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"facegen\.disk\.DiskFullError: \[Errno 28\] The disk of {run_dir}/checkpoints is full: "
                        rf"the checkpoint of step 10 could not be written\. It needs about 1\d\.\d MB; [\d.]+ MB are "
                        rf"free\. The last good checkpoint, {run_dir}/checkpoints/ckpt-5, is kept: running the cell "
                        rf"again resumes from it .*", last), last
    assert sorted(done.stdout.split()) == ["checkpoint", "ckpt-5.data-00000-of-00001", "ckpt-5.index", "recipe.json"]


def test_the_time_budget_stops_train_and_saves_where_it_stopped(tmp_path, train, capsys):
    generator, losses = train(digits(), "budget", 100, z_dim=8, learning_rate=2e-4, beta1=0.5, run_dir=tmp_path,
                              images_dir=tmp_path / "images", sample_every=1000, time_budget=1e-9)
    assert "Stopped at step 1 of 1,000: the time budget of 1e-09 s is spent." in capsys.readouterr().out
    assert losses.shape == (1, 2) and checkpointed_step(tmp_path) == 1


def test_a_budget_stop_ends_the_progress_bar_as_finished_not_failed(tmp_path):
    run = helper.TrainingRun(tmp_path, "budget", 100, digits(), z_dim=8, time_budget=1e-9)
    with run:
        for _ in run.batches(tf.distribute.get_strategy()):
            run.record(tf.constant([1.0, 1.0]))
    assert run.step == 1 and (run.progress.bar.n, run.progress.bar.total) == (1, 1)


def test_a_second_run_on_the_same_folder_refuses_naming_the_first(tmp_path):
    first = subprocess.Popen([sys.executable, str(WORKER), str(tmp_path), "1000", "1000"], env=worker_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = tmp_path / "running.lock"
        for _ in range(600):  # until the first run holds the folder
            if lock.exists() and lock.read_text().startswith(f"process {first.pid} "):
                break
            time.sleep(0.1)
        with pytest.raises(RuntimeError, match=rf"^Another run is training in {tmp_path} \(process {first.pid} on "
                                               r".+, since .+\): two runs on one folder would overwrite"):
            helper.TrainingRun(tmp_path, "second", 1, digits(), z_dim=8)
    finally:
        first.kill()
        first.wait()
    run = helper.TrainingRun(tmp_path, "after", 1, digits(), z_dim=8)  # kill -9 released it
    with run:
        pass


def test_a_weight_turned_nan_is_never_saved(tmp_path):
    """The losses were finite, but a weight is not: save() refuses, and the last good checkpoint stays."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    run = helper.TrainingRun(tmp_path, "nan weight", 1, digits(), z_dim=8, sample_every=1, generator=model)
    with run:
        run.record(tf.constant([1.0, 1.0]))
        run.save()
        model.layers[0].kernel.assign(tf.fill([2, 1], np.nan))
        run.record(tf.constant([1.0, 1.0]))
        with pytest.raises(FloatingPointError, match=r"Training diverged at step 2: .*ckpt-1, is kept"):
            run.save()
    assert checkpointed_step(tmp_path) == 1
