"""Faults of the checkpoints themselves: of other networks, cut off by a kill, damaged on disk, on a full disk, and
two runs on one folder."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf

import helper

from support.notebook import notebook_functions
from support.train_worker import STEPS_PER_EPOCH, WORKER, checkpointed_step, digits, train_options, worker_env


@pytest.fixture(scope="module")
def train():
    return notebook_functions()["train"]


@pytest.mark.parametrize("change", ["z_dim", "image size"])
def test_checkpoint_of_other_networks_is_refused(first_run, tmp_path, train, change):
    dataset, z_dim = (digits(), 16) if change == "z_dim" else (digits().map(lambda x: tf.image.resize(x, (32, 32))), 8)
    with pytest.raises(ValueError, match="(?s)was written by other networks .* delete .* or choose another output_dir"):
        train(dataset, "second", 1, **train_options(tmp_path, z_dim=z_dim))


def test_a_save_cut_off_by_a_kill_leaves_the_previous_checkpoint_in_use(first_run, tmp_path, train, capsys):
    # What a process killed while writing the checkpoint of step 15 leaves: data, but no index,
    # and the `checkpoint` file that names the latest one never updated.
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "ckpt-15_temp").mkdir()
    (checkpoints / "ckpt-15_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 1000)
    (checkpoints / "ckpt-15.data-00000-of-00001").write_bytes(b"\0" * 1000)
    _, losses = train(digits(), "resumed", 2, **train_options(tmp_path))
    assert "(step 10)" in capsys.readouterr().out
    assert losses.shape == (2 * STEPS_PER_EPOCH, 2) and checkpointed_step(tmp_path) == 2 * STEPS_PER_EPOCH


def cut_short(checkpoint_prefix):
    """Cut a checkpoint's data file to half its length, as an interrupted copy or a failing disk leaves it."""
    data = Path(f"{checkpoint_prefix}.data-00000-of-00001")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])


def test_a_damaged_newest_checkpoint_is_skipped_for_the_one_before(first_run, tmp_path, train, capsys):
    cut_short(tmp_path / "checkpoints" / "ckpt-10")
    capsys.readouterr()
    _, losses = train(digits(), "resumed", 1, **train_options(tmp_path))  # resumed at step 5, to step 10
    out = capsys.readouterr().out
    assert re.search(r"Skipped the checkpoint .*ckpt-10: it does not restore whole \(\w+Error: .+\)", out), out
    assert "ckpt-5 (step 5)" in out
    assert losses.shape == (STEPS_PER_EPOCH, 2) and checkpointed_step(tmp_path) == STEPS_PER_EPOCH


def test_no_checkpoint_that_restores_is_said_with_the_folder_to_delete(first_run, tmp_path, train):
    for step in (5, 10):
        cut_short(tmp_path / "checkpoints" / f"ckpt-{step}")
    with pytest.raises(RuntimeError, match=r"No checkpoint in .*checkpoints restores whole \(.*ckpt-10: .*ckpt-5: "
                                           r".*\)\. Put back an intact copy of that folder, or delete it"):
        train(digits(), "resumed", 2, **train_options(tmp_path))


def test_a_full_disk_stops_training_plainly_and_keeps_the_last_good_checkpoint(tmp_path):
    """The disk under the run fills while it trains: a tmpfs of 5 MB, in a mount namespace of the worker's own
    (no privileges needed), holds the checkpoint of step 5 (about 3 MB) but not the next one."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    script = (f"mount -t tmpfs -o size=5m tmpfs {run_dir} && {sys.executable} {WORKER} {run_dir} 1 5; status=$?; "
              f"ls {run_dir}/checkpoints; exit $status")
    done = subprocess.run(["unshare", "--map-root-user", "--mount", "sh", "-c", script], env=worker_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"facegen\.disk\.DiskFullError: \[Errno 28\] The disk of {run_dir}/checkpoints is full: "
                        rf"the checkpoint of step 10 could not be written\. It needs about 3\.\d MB; [\d.]+ MB are "
                        rf"free\. The last good checkpoint, {run_dir}/checkpoints/ckpt-5, is kept: running the cell "
                        rf"again resumes from it .*", last), last
    assert sorted(done.stdout.split()) == ["checkpoint", "ckpt-5.data-00000-of-00001", "ckpt-5.index", "recipe.json"]


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
