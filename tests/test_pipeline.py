"""Tests for the CelebA pipeline: the preprocessed cache (built once, reused, rebuilt when its
source or size changes, never trusted half-written) and the batches streamed from it, on a
small set of stand-in faces."""

import json
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import helper
from facegen import downloads, face_cache, pixels

pytestmark = pytest.mark.numerics  # compares resized pixels within a rounding tolerance

COUNT, SIZE, BATCH = 50, 32, 10
# The uint8 cache rounds each pixel to the nearest of 256 levels, 2/255 apart in [-1, 1]: off by at most half of
# that, plus a few float32 roundings (2**-24 relative) of values of size 1.
HALF_LEVEL = 1 / 255 + 8 * 2.0**-24


@pytest.fixture(scope="module")
def standin_data(tmp_path_factory):
    """A data folder holding nothing but stand-in faces, as load_celeba leaves it offline."""
    data_dir = tmp_path_factory.mktemp("data")
    helper.load_celeba(data_dir, download_missing=False, standin_count=COUNT)
    return data_dir


@pytest.fixture
def data_dir(standin_data, tmp_path):
    """A copy of the stand-in data folder, for one test to change."""
    return shutil.copytree(standin_data, tmp_path / "data")


@pytest.fixture
def files(data_dir):
    """The stand-in faces' JPEGs, as load_celeba gives them."""
    return helper.load_celeba(data_dir, download_missing=False, standin_count=COUNT)[0]


def sidecar(cache):
    """The JSON record beside a cache of what it was built from, e.g. data/img_align_celeba_64.json."""
    return cache.with_suffix(".json")


def build_of(cache):
    """Tells one build of the cache at `cache` from another: each build writes the array anew, then renames it."""
    stat = os.stat(cache)
    return stat.st_ino, stat.st_mtime_ns


def garble(files):
    """Overwrite the JPEGs with zeros, keeping their sizes and modification times: the cache still matches them,
    but decoding any of them fails."""
    for file in files:
        stat = os.stat(file)
        Path(file).write_bytes(bytes(stat.st_size))
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def reference_faces(files, size=SIZE):
    """The faces as celeba_face decodes them, one by one, in [-1, 1]."""
    return np.stack([face_cache.celeba_face(f, size).numpy() for f in files])


def epoch_order(dataset, reference):
    """The index in `reference` of each image of one epoch of `dataset`, checking each is a match."""
    images = np.concatenate(list(dataset.as_numpy_iterator()))
    differences = np.abs(images[:, np.newaxis] - reference[np.newaxis]).max(axis=(2, 3, 4))
    order = differences.argmin(axis=1)
    assert differences.min(axis=1).max() <= HALF_LEVEL
    return order


# --- The cache ----------------------------------------------------------------------------


def test_cache_is_built_once_then_reused(files):
    cache = face_cache.face_cache_path(files, SIZE)
    helper.celeba_dataset(files, SIZE, BATCH)
    built = build_of(cache)
    reference = reference_faces(files)
    garble(files)  # from now on, decoding a JPEG again would fail
    # As after a kernel restart: only the files on disk are shared between the two calls.
    order = epoch_order(helper.celeba_dataset(files, SIZE, BATCH), reference)
    assert sorted(order) == list(range(COUNT))  # every face, from the cache
    assert build_of(cache) == built
    record = json.loads(sidecar(cache).read_text())
    assert {k: record[k] for k in ("format", "images", "size")} == {"format": face_cache.FACE_CACHE_FORMAT,
                                                                   "images": COUNT, "size": SIZE}


def test_cache_is_rebuilt_when_the_size_changes(files, tmp_path):
    cache = tmp_path / "faces.npy"  # one path for both sizes: the sidecar, not the name, tells them apart
    assert face_cache.face_cache(files, SIZE, cache)[0].shape == (COUNT, SIZE, SIZE, 3)
    first = build_of(cache)
    assert face_cache.face_cache(files, 28, cache)[0].shape == (COUNT, 28, 28, 3)
    rebuilt = build_of(cache)
    assert rebuilt != first
    faces = pixels.to_unit_range(face_cache.face_cache(files, 28, cache)[0])
    np.testing.assert_allclose(faces, reference_faces(files, 28), atol=HALF_LEVEL)
    assert build_of(cache) == rebuilt


def replace_a_file(files):
    shutil.copy(files[1], files[0])
    return files


@pytest.mark.parametrize("change", [lambda files: files[:-1], lambda files: files[::-1], replace_a_file],
                         ids=["one file fewer", "another order", "a file replaced"])
def test_cache_is_rebuilt_when_the_files_change(files, change):
    face_cache.face_cache(files, SIZE)
    first = build_of(face_cache.face_cache_path(files, SIZE))
    changed = change(files)
    faces, _ = face_cache.face_cache(changed, SIZE)
    assert build_of(face_cache.face_cache_path(changed, SIZE)) != first
    np.testing.assert_allclose(pixels.to_unit_range(faces), reference_faces(changed), atol=HALF_LEVEL)


def only_a_part(cache):
    """A build cut off before its rename: a `.part` and no cache."""
    cache.replace(cache.with_name(cache.name + ".part"))
    sidecar(cache).unlink()


def no_sidecar(cache):
    """Cut off between renaming the array and writing its sidecar."""
    sidecar(cache).unlink()


def other_sidecar(cache):
    """The sidecar of other files."""
    record = sidecar(cache)
    record.write_text(record.read_text().replace('"files_sha256": "', '"files_sha256": "0'))


def array_cut_short(cache):
    with open(cache, "r+b") as f:
        f.truncate(cache.stat().st_size // 2)


def garbage_sidecar(cache):
    sidecar(cache).write_text('{"format": 1, "ima')


@pytest.mark.parametrize("damage", [only_a_part, no_sidecar, other_sidecar, array_cut_short, garbage_sidecar])
def test_a_half_written_or_foreign_cache_is_not_used(files, damage):
    cache = face_cache.face_cache_path(files, SIZE)
    face_cache.face_cache(files, SIZE)
    built = build_of(cache)
    damage(cache)
    damaged = build_of(cache) if cache.exists() else None
    faces, _ = face_cache.face_cache(files, SIZE)
    assert build_of(cache) not in (built, damaged)  # rebuilt: neither kept nor put back as it was
    np.testing.assert_allclose(pixels.to_unit_range(faces), reference_faces(files), atol=HALF_LEVEL)
    assert sorted(p.name for p in cache.parent.glob(f"{cache.stem}*")) == [f"{cache.stem}.json", cache.name]


@pytest.mark.skipif(downloads.fcntl is None, reason="no flock on this system (Windows)")
def test_two_runs_that_find_no_cache_at_once_build_it_once(files, monkeypatch, capsys):
    """As two seeds of tools.long_run started together did: both look, find no cache, and go to build it."""
    both_looked, seen = threading.Barrier(2, timeout=60), threading.local()
    open_cache, build = face_cache._open_face_cache, face_cache._build_face_cache

    def looking_together(*args):
        if not getattr(seen, "looked", False):
            seen.looked = True
            both_looked.wait()
        return open_cache(*args)

    builds = []
    monkeypatch.setattr(face_cache, "_open_face_cache", looking_together)
    monkeypatch.setattr(face_cache, "_build_face_cache", lambda *args: builds.append(args) or build(*args))
    with ThreadPoolExecutor(2) as pool:
        (faces, rows), (other_faces, other_rows) = pool.map(lambda _: face_cache.face_cache(files, SIZE), range(2))
    assert len(builds) == 1
    np.testing.assert_array_equal(other_faces, faces)
    np.testing.assert_array_equal(other_rows, rows)
    assert "Waiting for another run to finish building its faces' cache in " in capsys.readouterr().out


def test_standin_cache_stays_in_the_standin_folder(data_dir, files):
    helper.celeba_dataset(files, SIZE, BATCH)
    assert [p.name for p in data_dir.iterdir()] == ["standin"]  # nothing where CelebA and its cache would go
    assert sorted(p.name for p in (data_dir / "standin").iterdir()) == [
        "img_align_celeba", "img_align_celeba.zip", f"img_align_celeba_{SIZE}.json", f"img_align_celeba_{SIZE}.npy"]
    assert face_cache.face_cache_path(["data/img_align_celeba/000001.jpg"], 64) == \
        Path("data/img_align_celeba_64.npy")  # CelebA's own, beside its folder


def test_cache_is_loaded_memory_mapped_and_without_pickle(files, monkeypatch):
    calls = []
    load = np.load
    monkeypatch.setattr(np, "load", lambda *args, **kwargs: calls.append(kwargs) or load(*args, **kwargs))
    faces, _ = face_cache.face_cache(files, SIZE)
    next(iter(helper.celeba_dataset(files, SIZE, BATCH)))
    assert calls and all(kwargs == {"mmap_mode": "r", "allow_pickle": False} for kwargs in calls)
    assert isinstance(faces, np.memmap) and not faces.flags.writeable


# --- The batches --------------------------------------------------------------------------


def test_batches_shape_type_and_range(files):
    dataset = helper.celeba_dataset(files, SIZE, BATCH)
    assert str(dataset.element_spec) == f"TensorSpec(shape=({BATCH}, {SIZE}, {SIZE}, 3), dtype=tf.float32, name=None)"
    assert int(dataset.cardinality()) == COUNT // BATCH
    batch = next(iter(dataset)).numpy()
    assert (batch.shape, batch.dtype) == ((BATCH, SIZE, SIZE, 3), np.float32)
    assert -1 <= batch.min() and batch.max() <= 1 and batch.std() > 0.1


def test_batches_are_the_decoded_faces_reshuffled_each_epoch(files):
    dataset = helper.celeba_dataset(files, SIZE, BATCH, seed=3)
    reference = reference_faces(files)
    first, second = epoch_order(dataset, reference), epoch_order(dataset, reference)
    assert sorted(first) == sorted(second) == list(range(COUNT))  # every face once per epoch
    assert list(first) != list(second)
    again = epoch_order(helper.celeba_dataset(files, SIZE, BATCH, seed=3), reference)
    assert list(again) == list(first)  # the same seed, the same order


def test_batches_drop_the_remainder(files):
    dataset = helper.celeba_dataset(files, SIZE, 16)
    assert [len(batch) for batch in dataset.as_numpy_iterator()] == [16, 16, 16]  # 50 faces: 2 left out


def test_unreadable_jpegs_are_skipped_counted_and_reported_once(files, capsys):
    Path(files[3]).write_bytes(b"not a JPEG")
    Path(files[7]).write_bytes(Path(files[7]).read_bytes()[:500])  # cut short, as by an interrupted copy
    dataset = helper.celeba_dataset(files, SIZE, batch_size=1)
    assert "Skipped 2 unreadable image(s) of 50 (corrupt or truncated JPEGs): 000004.jpg, 000008.jpg" in \
        capsys.readouterr().out
    assert len(list(dataset)) == COUNT - 2  # the run goes on with the others
    helper.celeba_dataset(files, SIZE, batch_size=1)  # the cache, reused, reports nothing again
    assert capsys.readouterr().out == ""
