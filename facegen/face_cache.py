"""The faces' cache: every image of a set decoded, cropped to its face and resized once, into one uint8 array on
disk that training reads by memory-mapping (CelebA at 64x64: 2.5 GB), with a JSON sidecar saying what it was built
from, so that a change of the files or the size rebuilds it and nothing else does."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from facegen.celeba import CELEBA_SHAPE
from facegen.downloads import ensure_room, one_writer_at_a_time, part_path
from facegen.pixels import to_unit_range

FACE_CROP = 108  # the centered square of an aligned CelebA image that holds the face
FACE_CACHE_FORMAT = 2  # raise it when the preprocessing changes, so that older caches are rebuilt


def _face_pixels(path, size):
    """One JPEG's face, resized to `size`: float32 pixels in [0, 255], and whether it was an aligned CelebA image.

    CelebA's aligned 178x218 images give their centered 108x108 face; any other image (a folder of one's own
    faces) gives its centered square, as large as it fits.
    """
    image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    aligned = tf.logical_and(tf.equal(height, CELEBA_SHAPE[0]), tf.equal(width, CELEBA_SHAPE[1]))
    side = tf.where(aligned, FACE_CROP, tf.minimum(height, width))
    face = tf.image.crop_to_bounding_box(image, (height - side) // 2, (width - side) // 2, side, side)
    return tf.image.resize(face, (size, size), method="bilinear", antialias=True), aligned


def celeba_face(path, size):
    """Read one aligned CelebA JPEG, take the centered 108x108 face and resize it to `size`, in [-1, 1]."""
    return to_unit_range(_face_pixels(path, size)[0])


def face_cache_path(files, size):
    """Where the faces of `files` at `size` are cached: beside their folder, as `<folder>_<size>.npy`.

    CelebA's is `data/img_align_celeba_64.npy`. Stand-in faces live in a folder of their own
    (`data/standin/img_align_celeba/`), so their cache is in there and never where CelebA's goes.
    """
    folder = Path(files[0]).parent
    return folder.with_name(f"{folder.name}_{size}.npy")


def _sidecar(path):
    return path.with_suffix(".json")


def _rounded(pixels_and_aligned):
    pixels, aligned = pixels_and_aligned
    return tf.saturate_cast(tf.round(pixels), tf.uint8), aligned


def _face_cache_record(files, size, path):
    """What the sidecar of a cache of `files` at `size`, at `path`, says it was built from.

    The files count by their names (relative to the cache, so that moving the data folder as a
    whole keeps it), sizes and modification times, in order: any change means a rebuild.
    """
    digest = hashlib.sha256()
    for file in files:
        stat = os.stat(file)
        digest.update(f"{os.path.relpath(file, path.parent)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return {"format": FACE_CACHE_FORMAT, "images": len(files), "size": size, "files_sha256": digest.hexdigest()}


def _open_face_cache(path, record):
    """The cache at `path`, memory-mapped read-only, and its rows that hold a face, if its sidecar
    says `record`; otherwise None."""
    try:
        stored = json.loads(_sidecar(path).read_text())
        unreadable = set(stored.pop("unreadable_rows", []))
        if stored != record:
            return None
        faces = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, AttributeError):  # no sidecar or array, a sidecar but no JSON object, a cut array
        return None
    size = record["size"]
    if (faces.dtype, faces.shape) != (np.uint8, (record["images"], size, size, 3)):
        return None
    return faces, np.array([row for row in range(len(faces)) if row not in unreadable], np.int64)


def _build_face_cache(files, size, path, record):
    """Decode, crop and resize `files` once, in parallel, into the uint8 array `path` [N, size, size, 3].

    The array is written as `<path>.part` and renamed when complete, then its sidecar (`record`)
    the same way, so a cache whose sidecar matches is always whole.
    """
    ensure_room(path.parent, len(files) * size * size * 3, f"the faces' cache {path.name}")
    part = part_path(path)
    faces = np.lib.format.open_memmap(part, mode="w+", dtype=np.uint8, shape=(len(files), size, size, 3))
    # tf.data decodes on every core and keeps the files' order; here it beat a process pool (see README).
    crops = (
        tf.data.Dataset.from_tensor_slices((tf.range(len(files)), files))
        .map(lambda i, f: (i, *_rounded(_face_pixels(f, size))), num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors()  # a corrupt or truncated JPEG is skipped; its row stays empty and is listed below
        .batch(256)
        .prefetch(tf.data.AUTOTUNE)
    )
    decoded, aligned = np.zeros(len(files), bool), np.zeros(len(files), bool)
    with tqdm(total=len(files), desc=f"Caching faces at {size}x{size} in {path.name}", unit="image") as bar:
        for rows, batch, were_aligned in crops.as_numpy_iterator():
            faces[rows] = batch
            decoded[rows], aligned[rows] = True, were_aligned
            bar.update(len(batch))
    faces.flush()
    others = int((decoded & ~aligned).sum())
    if others:
        print(f"{others:,} of the {len(files):,} images are not CelebA's aligned {CELEBA_SHAPE[1]}x{CELEBA_SHAPE[0]}: "
              f"each gives its centered square, resized to {size}x{size}.")
    unreadable = np.flatnonzero(~decoded).tolist()
    if unreadable:
        names = ", ".join(Path(files[row]).name for row in unreadable[:5]) + (", ..." if len(unreadable) > 5 else "")
        print(f"Skipped {len(unreadable):,} unreadable image(s) of {len(files):,} (corrupt or truncated JPEGs): "
              f"{names}")
    record = {**record, "unreadable_rows": unreadable}
    del faces  # unmapped, so that it can be renamed on every system
    _sidecar(path).unlink(missing_ok=True)  # an older sidecar must never vouch for the new array
    part.replace(path)
    sidecar_part = part_path(_sidecar(path))
    sidecar_part.write_text(json.dumps(record, indent=2) + "\n")
    sidecar_part.replace(_sidecar(path))


def face_cache(files, size, path=None):
    """The faces of `files` at `size` as a read-only uint8 array [N, size, size, 3], mapped from disk,
    and the indices of its rows that hold a face (all but those of unreadable files).

    Built once into `path` (by default `face_cache_path(files, size)`) with a JSON sidecar saying
    what from, then reused, also across runs and kernel restarts, for as long as the files and the
    size are the same; rebuilt when they change.
    """
    path = Path(path or face_cache_path(files, size))
    record = _face_cache_record(files, size, path)
    cache = _open_face_cache(path, record)
    if cache is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with one_writer_at_a_time(path.parent, "building its faces' cache"):
            cache = _open_face_cache(path, record)  # built by another run while this one waited
            if cache is None:
                _build_face_cache(files, size, path, record)
                cache = _open_face_cache(path, record)
    return cache
