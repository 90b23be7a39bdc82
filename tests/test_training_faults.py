"""Training survives faults: a killed process, the stop button, a diverging run, the time budget. Faults of the
checkpoints themselves are in test_checkpoint_faults.py."""

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
from support.train_worker import STEPS_PER_EPOCH, WORKER, checkpointed_step, digits, train_options, worker_env

pytestmark = pytest.mark.numerics  # a resumed run must end bit for bit as an uninterrupted one


@pytest.fixture(scope="module")
def train():
    return notebook_functions()["train"]


def start_worker(run_dir, epochs, sample_every):
    return subprocess.Popen([sys.executable, str(WORKER), str(run_dir), str(epochs), str(sample_every)],
                            env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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
        train(poisoned, "diverging", 1, **train_options(tmp_path))
    assert checkpointed_step(tmp_path) == 5
    saved = tf.train.load_checkpoint(tf.train.latest_checkpoint(tmp_path / "checkpoints"))
    assert all(np.isfinite(saved.get_tensor(name)).all() for name in saved.get_variable_to_dtype_map()
               if name != "_CHECKPOINTABLE_OBJECT_GRAPH")


def test_the_time_budget_stops_train_and_saves_where_it_stopped(tmp_path, train, capsys):
    generator, losses = train(digits(), "budget", 100, **train_options(tmp_path, sample_every=1000), time_budget=1e-9)
    assert "Stopped at step 1 of 1,000: the time budget of 1e-09 s is spent." in capsys.readouterr().out
    assert losses.shape == (1, 2) and checkpointed_step(tmp_path) == 1


def test_a_budget_stop_ends_the_progress_bar_as_finished_not_failed(tmp_path):
    run = helper.TrainingRun(tmp_path, "budget", 100, digits(), z_dim=8, time_budget=1e-9)
    with run:
        for _ in run.batches(tf.distribute.get_strategy()):
            run.record(tf.constant([1.0, 1.0]))
    assert run.step == 1 and (run.progress.bar.n, run.progress.bar.total) == (1, 1)


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
