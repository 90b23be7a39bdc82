"""Tests for the long-run benchmark (`tools/long_run.py`): its points, its overfitting signal, its resume and its
report. No CelebA: stand-in faces at toy sizes."""

import json

import numpy as np
import pytest

import helper
from facegen import face_cache
from tools import long_run
from tools.bench_faces import FACE_BASELINES, notebook_recipe

SIZE, BATCH = 32, 64


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    """Stand-in faces split as the tool splits CelebA: a reference, held-out faces, and the files to train on."""
    files, _ = helper.load_celeba(tmp_path_factory.mktemp("data"), download_missing=False, standin_count=1_200)
    faces, rows = face_cache.face_cache(files, SIZE)
    held_out, training_rows = rows[:100], rows[100:]
    return faces, rows[100:400], held_out, training_rows, [files[row] for row in training_rows]


def run(standins, run_dir, images):
    return long_run.long_run("notebook", lambda: notebook_recipe(SIZE), 0, *standins, SIZE, images, 2 * BATCH, run_dir)


def test_a_long_run_records_each_point_and_resumes_where_it_stopped(standins, tmp_path, capsys):
    first = run(standins, tmp_path / "run", 2 * BATCH)  # one point, at 2 steps
    assert [p["steps"] for p in first["points"]] == [2]
    curve = run(standins, tmp_path / "run", 4 * BATCH)  # resumes at step 2, adds the point at 4
    assert "resumed from" in capsys.readouterr().out
    assert [(p["images"], p["steps"]) for p in curve["points"]] == [(2 * BATCH, 2), (4 * BATCH, 4)]
    assert json.loads(json.dumps(curve)) == json.loads((tmp_path / "run" / "curve.json").read_text())
    point = curve["points"][-1]
    assert point["swd"] > 0 and np.isfinite([point["d_loss"], point["g_loss"]]).all()
    assert 0 < point["d_real_trained"] < 1 and 0 < point["d_real_held_out"] < 1 and -1 <= point["r_t"] <= 1
    assert sorted(p.name for p in (tmp_path / "run" / "grids").iterdir()) == ["0000128.png", "0000256.png"]


def test_a_published_recipe_resumes_with_its_optimizers(standins, tmp_path, capsys):
    make = lambda: FACE_BASELINES["PyTorch DCGAN"](SIZE)  # noqa: E731 (batch 128: a step per point)
    long_run.long_run("PyTorch DCGAN", make, 0, *standins, SIZE, 128, 128, tmp_path / "run")
    curve = long_run.long_run("PyTorch DCGAN", make, 0, *standins, SIZE, 256, 128, tmp_path / "run")
    assert "resumed from" in capsys.readouterr().out  # the restore asserts every saved value was consumed
    assert [p["steps"] for p in curve["points"]] == [1, 2]


def test_the_overfitting_signal_sees_a_discriminator_that_knows_its_training_faces():
    """A 'discriminator' that calls bright faces real: the trained faces are bright, the held-out ones dark."""
    def discriminator(images, training):
        return np.asarray(images).mean(axis=(1, 2, 3))[:, None] * 10

    trained, held_out = np.full((70, 4, 4, 3), 250, np.uint8), np.full((70, 4, 4, 3), 5, np.uint8)
    signal = long_run.discriminator_signal(discriminator, trained, held_out)
    assert signal["d_real_trained"] > 0.99 and signal["d_real_held_out"] < 0.01 and signal["r_t"] == 1


def test_the_report_lists_every_point_of_every_run(tmp_path, capsys):
    for seed, swds in [(0, [300.0, 120.0]), (1, [310.0, 130.0])]:
        (tmp_path / str(seed)).mkdir()
        points = [dict(images=n, steps=n // 64, swd=s, d_real_trained=0.6, d_real_held_out=0.5)
                  for n, s in zip((25_024, 50_048), swds)]
        (tmp_path / str(seed) / "curve.json").write_text(json.dumps(dict(recipe="notebook", seed=seed, points=points)))
    long_run.report([tmp_path / "0" / "curve.json", tmp_path / "1" / "curve.json"])
    table = capsys.readouterr().out.splitlines()
    assert table[2:] == ["| 25,024 | 300.0, 0.60 / 0.50 | 310.0, 0.60 / 0.50 |",
                         "| 50,048 | 120.0, 0.60 / 0.50 | 130.0, 0.60 / 0.50 |"]
