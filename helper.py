"""Everything the notebook's lesson is not about: getting and checking the data, turning it
into `tf.data` batches, image grids, and saving what training produced."""

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import urllib.request
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

PROJECT_DIR = Path(__file__).resolve().parent

# Official MNIST mirrors, best first. LeCun's own page now answers 403, and it is plain HTTP,
# which is safe only because every file is checked against its official MD5.
MNIST_MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# MD5 of each file's *decompressed* content, so a recompressed copy is accepted too.
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# Committed for machines with no network: 10,000 real training digits and the whole test set.
MNIST_SAMPLE = PROJECT_DIR / "data" / "mnist_sample.npz"
# Our own MNIST classifier (trained by tools/train_classifier.py), whose features measure generated digits.
MNIST_CLASSIFIER = PROJECT_DIR / "data" / "mnist_classifier.keras"

# CelebA's aligned-and-cropped images, as published (the course's mirror serves the same file).
CELEBA_URLS = (
    "https://s3-us-west-1.amazonaws.com/udacity-dlnfd/datasets/celeba.zip",
    "https://drive.usercontent.google.com/download?id=0B7EVK8r0v71pZjFTYXZWM3FlRnM&export=download&confirm=t",
)
CELEBA_ZIP = "img_align_celeba.zip"
CELEBA_DIR = "img_align_celeba"
CELEBA_MD5 = "00d2c5bc6d35e252742224ab0c1e8fcb"
CELEBA_COUNT = 202_599
CELEBA_SHAPE = (218, 178)  # height, width of every aligned image
FACE_CROP = 108  # the centered square that holds the face
STANDIN_NAME = "stand-in faces (NOT CelebA)"

TIMEOUT = 8  # seconds without a byte before a mirror is given up: three stalled mirrors fail within 30 s


class DownloadError(RuntimeError):
    """No mirror gave a verified copy of a file."""


# --- Downloads ----------------------------------------------------------------------------


def md5sum(path, decompress=False):
    """MD5 of a file's bytes, or of its gzip-decompressed content."""
    digest = hashlib.md5()
    with (gzip.open if decompress else open)(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _md5_or_error(path, decompress):
    try:
        return md5sum(path, decompress)
    except (OSError, EOFError) as error:  # not gzip, or cut short
        return f"unreadable: {error}"


def _matches(path, md5, decompress):
    return path.exists() and _md5_or_error(path, decompress) == md5


def _fetch(url, part):
    """Append `url`'s bytes to `part`, resuming with a Range request when `part` has some."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        if have and response.status != 206:  # the server ignored Range: start over
            have = 0
        size = response.headers.get("Content-Length")
        total = have + int(size) if size else None
        with open(part, "ab" if have else "wb") as f, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, desc=part.name[: -len(".part")]
        ) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                f.write(block)
                bar.update(len(block))
            if total and f.tell() < total:  # the connection dropped: keep the part to resume
                raise ConnectionError(f"connection closed after {f.tell():,} of {total:,} bytes")


def download(urls, path, md5, decompress=False):
    """Download `path` from the first of `urls` whose copy matches `md5`.

    The bytes go to `<path>.part` and are renamed to `path` only once verified, so a file
    at `path` is always complete. An interrupted download resumes where it stopped. With
    `decompress`, the MD5 is that of the gzip-decompressed content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    if _matches(part, md5, decompress):  # finished before an interruption, never renamed
        return part.replace(path)
    failures = []
    for url in urls:
        try:
            _fetch(url, part)
        except OSError as error:  # URLError, HTTPError, timeouts, refused connections
            failures.append(f"{url}: {getattr(error, 'reason', None) or error}")
            if getattr(error, "code", None) == 416:  # the part is already full length, yet wrong
                part.unlink()
            continue
        actual = _md5_or_error(part, decompress)
        if actual == md5:
            return part.replace(path)
        failures.append(f"{url}: wrong checksum (md5 {actual}, expected {md5})")
        part.unlink()
    raise DownloadError(
        f"Could not download {path.name}:\n  " + "\n  ".join(failures) + f"\nCheck the connection and run again "
        f"(a partial download resumes), or download the file yourself and put it at {path}."
    )


# --- MNIST --------------------------------------------------------------------------------


def read_idx(content):
    """Parse an IDX file (MNIST's format): a magic number, the dimensions, then uint8 data."""
    ndim = content[3]
    shape = np.frombuffer(content, ">u4", count=ndim, offset=4)
    return np.frombuffer(content, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _mnist_file(directory, name, mirrors):
    """The content of one MNIST file, verified: the local `.gz` if it is good, else downloaded."""
    path = Path(directory) / f"{name}.gz"
    if path.exists() and not _matches(path, MNIST_MD5[name], decompress=True):  # also when cut short
        print(f"{path} is not the official MNIST file (wrong checksum); downloading it again.")
        path.unlink()
    if not path.exists():
        download([m + path.name for m in mirrors], path, MNIST_MD5[name], decompress=True)
    return gzip.decompress(path.read_bytes())


def load_mnist(data_dir="data", split="train", mirrors=MNIST_MIRRORS):
    """MNIST digits as uint8 arrays `(images [N, 28, 28, 1], labels [N])` and the data's name.

    Uses the official `.gz` files in `<data_dir>/mnist/` (downloading what is missing). With
    no network, it falls back to the copy committed in `data/mnist_sample.npz`: the whole test
    split, but only 10,000 training digits, and then the returned name says so.
    """
    prefix = {"train": "train", "test": "t10k"}[split]
    directory = Path(data_dir) / "mnist"
    try:
        images, labels = (
            read_idx(_mnist_file(directory, f"{prefix}-{kind}", mirrors))
            for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
        )
        name = "MNIST" if split == "train" else "MNIST test set"
    except DownloadError as error:
        with np.load(MNIST_SAMPLE, allow_pickle=False) as sample:
            images, labels = sample[f"{split}_images"], sample[f"{split}_labels"]
        name = f"MNIST sample (offline: {len(images):,} of the 60,000 training digits)" if split == "train" \
            else "MNIST test set"
        print(f"{error}\nGoing on using the {name} committed in {MNIST_SAMPLE.parent.name}/. For all of "
              f"MNIST, run again when online, or put the official .gz files in {directory}/.")
    return images[..., np.newaxis], labels, name


# --- CelebA -------------------------------------------------------------------------------


def extract_zip(archive, directory, folder):
    """Extract `folder/` from `archive` into `directory`, all or nothing.

    Entries are unpacked into a temporary folder that is renamed only once complete, so a
    cut-off extraction is never mistaken for a finished one. Entries that would land outside
    the folder (absolute paths, `..`, links) are refused.
    """
    directory = Path(directory)
    staging = directory / f".{folder}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        for member in members:
            parts = Path(member.filename).parts
            is_link = (member.external_attr >> 16) & 0o170000 == 0o120000
            if member.filename.startswith("/") or ".." in parts or is_link or parts[0] != folder:
                raise ValueError(f"{archive} holds an unsafe or unexpected entry: {member.filename!r}")
        for member in tqdm(members, desc=f"Extracting {Path(archive).name}", unit="file"):
            zf.extract(member, staging)
    (staging / folder).replace(directory / folder)
    staging.rmdir()
    return directory / folder


def _jpegs(folder):
    return sorted(str(p) for p in Path(folder).glob("*.jpg"))


def load_celeba(data_dir="data", download_missing=True, urls=CELEBA_URLS, standin_count=None):
    """Paths of the CelebA JPEGs and the data's name.

    Looks for `<data_dir>/img_align_celeba/`, then `<data_dir>/img_align_celeba.zip`, then
    downloads the zip. When that is impossible (or `download_missing` is False), it makes
    synthetic faces instead (`standin_count`, 10,000 by default) and names them as a
    stand-in, never as CelebA.
    """
    data_dir = Path(data_dir)
    folder, archive = data_dir / CELEBA_DIR, data_dir / CELEBA_ZIP
    if not folder.exists():
        try:
            if not archive.exists():
                if not download_missing:
                    raise DownloadError(f"CelebA is not in {data_dir}/ and downloading it is turned off.")
                download(urls, archive, CELEBA_MD5)
            elif md5sum(archive) != CELEBA_MD5:
                raise DownloadError(
                    f"{archive} is not the official CelebA file (wrong MD5; expected {CELEBA_MD5}).\n"
                    f"Delete it and run again to download it, or fetch it by hand from the CelebA site."
                )
            extract_zip(archive, data_dir, CELEBA_DIR)
        except DownloadError as error:
            standin_count = standin_count or 10_000
            print(f"{error}\nUsing {standin_count:,} {STANDIN_NAME}, made by helper.make_standin_faces. "
                  f"For CelebA, run again when online, or put {CELEBA_ZIP} in {data_dir}/.")
            return _jpegs(standin_faces(data_dir / "standin", standin_count)), STANDIN_NAME
    files = _jpegs(folder)
    if len(files) != CELEBA_COUNT:
        print(f"{folder} holds {len(files):,} images; the full CelebA set has {CELEBA_COUNT:,}. Using those there are.")
    return files, "CelebA"


def standin_faces(directory, count, seed=0):
    """The stand-in face set in `directory`, made once (as a zip in CelebA's layout, then extracted)."""
    directory = Path(directory)
    folder = directory / CELEBA_DIR
    if len(_jpegs(folder)) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    archive = directory / CELEBA_ZIP
    make_standin_faces(archive, count, seed)
    return extract_zip(archive, directory, CELEBA_DIR)


def make_standin_faces(archive, count, seed=0):
    """Write `count` synthetic 178x218 face JPEGs in CelebA's zip layout.

    They are cartoons, not photos: a face, hair, eyes, brows and a mouth whose colours, sizes
    and positions vary at random (deterministically per `seed`), placed where CelebA's
    alignment puts a face, so a GAN has real structure to learn offline.
    """
    from PIL import Image, ImageDraw, ImageFilter

    archive = Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    part = archive.with_name(archive.name + ".part")
    height, width = CELEBA_SHAPE
    with zipfile.ZipFile(part, "w", zipfile.ZIP_STORED) as zf:
        for i in tqdm(range(1, count + 1), desc="Making stand-in faces", unit="image"):
            r = rng.uniform(size=16)
            background = tuple(int(c) for c in rng.integers(40, 230, 3))
            skin = tuple(int(c) for c in np.array([224, 172, 130]) * (0.45 + 0.6 * r[0]) * [1, 0.97 + 0.06 * r[1], 1])
            hair = tuple(int(c) for c in np.array([60, 40, 25]) * (0.3 + 3.2 * r[2] ** 2))
            cx, cy = 89 + 8 * (r[3] - 0.5), 120 + 8 * (r[4] - 0.5)
            fw, fh = 34 + 10 * r[5], 46 + 10 * r[6]
            image = Image.new("RGB", (width, height), background)
            draw = ImageDraw.Draw(image)
            hair_length = fh * (0.2 + 1.6 * r[7])  # from a crop to long hair
            draw.ellipse([cx - fw - 9, cy - fh - 14, cx + fw + 9, cy + hair_length], fill=hair)
            draw.ellipse([cx - fw, cy - fh, cx + fw, cy + fh], fill=skin)
            draw.chord([cx - fw - 2, cy - fh - 12, cx + fw + 2, cy - fh + 40 * r[8] + 12], 180, 360, fill=hair)
            eye_y, eye_dx = cy - 6 + 6 * (r[9] - 0.5), 15 + 5 * r[10]
            iris = tuple(int(c) for c in rng.integers(20, 140, 3))
            for side in (-1, 1):
                ex = cx + side * eye_dx
                draw.ellipse([ex - 7, eye_y - 4, ex + 7, eye_y + 4], fill=(245, 245, 240))
                draw.ellipse([ex - 3.5, eye_y - 3.5, ex + 3.5, eye_y + 3.5], fill=iris)
                draw.line([ex - 8, eye_y - 9 - 3 * r[11], ex + 8, eye_y - 9], fill=hair, width=3)
            shade = tuple(int(c * 0.8) for c in skin)
            draw.polygon([(cx, eye_y + 2), (cx - 5, cy + 14), (cx + 5, cy + 14)], fill=shade)
            mouth_w, smile = 10 + 8 * r[12], 10 * (r[13] - 0.3)
            lips = (150 + int(70 * r[14]), 50, 60)
            draw.chord([cx - mouth_w, cy + 20 - abs(smile), cx + mouth_w, cy + 28 + smile], 0, 180, fill=lips)
            image = image.filter(ImageFilter.GaussianBlur(1.2))
            with zf.open(f"{CELEBA_DIR}/{i:06d}.jpg", "w") as f:
                image.save(f, "JPEG", quality=90)
    part.replace(archive)
    return archive


# --- Devices ------------------------------------------------------------------------------


def distribution_strategy():
    """`MultiWorkerMirroredStrategy` if `TF_CONFIG` names a cluster; else `MirroredStrategy` over this machine's
    GPUs if it has several; else TensorFlow's default strategy.

    The default strategy runs on the one GPU, or on the CPU, with no copies and no cost.
    """
    if os.environ.get("TF_CONFIG"):  # one of several machines (the README's "Multiple GPUs")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def has_tensor_cores():
    """True if there are GPUs and all have compute capability 7.0 or more (Volta onwards: V100, T4, A10G, A100...).

    Those run float16 maths on Tensor Cores, where mixed precision and XLA pay off.
    """
    gpus = tf.config.list_physical_devices("GPU")
    capabilities = [tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)) for gpu in gpus]
    return bool(gpus) and min(capabilities) >= (7, 0)


def describe_devices(strategy, jit_compile):
    """One line: the devices, the strategy and its replicas, the precision policy and XLA."""
    devices = ", ".join(device.name for device in tf.config.list_logical_devices())
    replicas = strategy.num_replicas_in_sync
    return (f"Devices: {devices}. Strategy: {type(strategy).__name__}, {replicas} replica{'s' * (replicas > 1)}. "
            f"Precision: {keras.config.dtype_policy().name}. XLA: {'on' if jit_compile else 'off'}.")


# --- tf.data pipelines --------------------------------------------------------------------


FACE_CACHE_FORMAT = 1  # raise it when the preprocessing changes, so that older caches are rebuilt


def _batches(dataset, batch_size, seed, preprocess):
    """Shuffle anew each epoch, batch, preprocess the batches in parallel, and prefetch."""
    return (
        dataset.shuffle(dataset.cardinality(), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size, drop_remainder=True)
        .map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def to_unit_range(images):
    """uint8 pixels [0, 255] -> float32 in [-1, 1], the range of the generator's tanh."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def mnist_dataset(images, batch_size, seed=0):
    """Shuffled batches of MNIST digits in [-1, 1]."""
    return _batches(tf.data.Dataset.from_tensor_slices(images), batch_size, seed, to_unit_range)


def _face_pixels(path, size):
    """One aligned CelebA JPEG's centered 108x108 face, resized to `size`: float32 pixels in [0, 255]."""
    image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
    top, left = (CELEBA_SHAPE[0] - FACE_CROP) // 2, (CELEBA_SHAPE[1] - FACE_CROP) // 2
    face = tf.image.crop_to_bounding_box(image, top, left, FACE_CROP, FACE_CROP)
    return tf.image.resize(face, (size, size), method="bilinear", antialias=True)


def celeba_face(path, size):
    """Read one aligned CelebA JPEG, take the centered 108x108 face and resize it to `size`, in [-1, 1]."""
    return to_unit_range(_face_pixels(path, size))


def face_cache_path(files, size):
    """Where the faces of `files` at `size` are cached: beside their folder, as `<folder>_<size>.npy`.

    CelebA's is `data/img_align_celeba_64.npy`. Stand-in faces live in a folder of their own
    (`data/standin/img_align_celeba/`), so their cache is in there and never where CelebA's goes.
    """
    folder = Path(files[0]).parent
    return folder.with_name(f"{folder.name}_{size}.npy")


def _sidecar(path):
    return path.with_suffix(".json")


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
    except (OSError, ValueError, AttributeError):  # no sidecar or array, a sidecar that is not a JSON object, a cut array
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
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    faces = np.lib.format.open_memmap(part, mode="w+", dtype=np.uint8, shape=(len(files), size, size, 3))
    # tf.data decodes on every core and keeps the files' order; here it beat a process pool (see README).
    crops = (
        tf.data.Dataset.from_tensor_slices((tf.range(len(files)), files))
        .map(lambda i, f: (i, tf.saturate_cast(tf.round(_face_pixels(f, size)), tf.uint8)),
             num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors()  # a corrupt or truncated JPEG is skipped; its row stays empty and is listed below
        .batch(256)
        .prefetch(tf.data.AUTOTUNE)
    )
    decoded = np.zeros(len(files), bool)
    with tqdm(total=len(files), desc=f"Caching faces at {size}x{size} in {path.name}", unit="image") as bar:
        for rows, batch in crops.as_numpy_iterator():
            faces[rows] = batch
            decoded[rows] = True
            bar.update(len(batch))
    faces.flush()
    unreadable = np.flatnonzero(~decoded).tolist()
    if unreadable:
        names = ", ".join(Path(files[row]).name for row in unreadable[:5]) + (", ..." if len(unreadable) > 5 else "")
        print(f"Skipped {len(unreadable):,} unreadable image(s) of {len(files):,} (corrupt or truncated JPEGs): {names}")
    record = {**record, "unreadable_rows": unreadable}
    del faces  # unmapped, so that it can be renamed on every system
    _sidecar(path).unlink(missing_ok=True)  # an older sidecar must never vouch for the new array
    part.replace(path)
    sidecar_part = path.with_name(path.name + ".json.part")
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
        _build_face_cache(files, size, path, record)
        cache = _open_face_cache(path, record)
    return cache


def celeba_dataset(files, image_size, batch_size, seed=0, cache=None):
    """Shuffled batches of face crops in [-1, 1], streamed from the faces' cache (see `face_cache`).

    The first call for these files and this size decodes them once into the cache (`cache`, or
    beside their folder). Each batch is then a gather of random rows of the memory-mapped array:
    the process holds only the batches in flight, never the whole set (CelebA at 64x64: 2.5 GB).
    """
    faces, rows = face_cache(files, image_size, cache)
    shape = (batch_size, image_size, image_size, 3)

    def gather(indices):
        rows = tf.numpy_function(lambda i: faces[i], [indices], tf.uint8, stateful=False)
        return to_unit_range(tf.ensure_shape(rows, shape))

    return _batches(tf.data.Dataset.from_tensor_slices(rows), batch_size, seed, gather)


# --- Pictures and results -----------------------------------------------------------------


def to_uint8(images):
    """[-1, 1] floats -> uint8 pixels [0, 255]; uint8 images are returned as they are."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.round((np.clip(images, -1, 1) + 1) * 127.5).astype(np.uint8)


def image_grid(images, cols=None):
    """Tile images ([-1, 1] floats or uint8, NHWC) into one uint8 picture, a square by default."""
    images = to_uint8(images)
    n, h, w, c = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.zeros((rows * h, cols * w, c), np.uint8)
    for i, image in enumerate(images):
        grid[i // cols * h : (i // cols + 1) * h, i % cols * w : (i % cols + 1) * w] = image
    return grid[..., 0] if c == 1 else grid


def _enlarged(grid):
    """A grid (as `image_grid` returns) as a PIL image, enlarged by a whole factor to about 512 pixels."""
    from PIL import Image

    scale = max(1, 512 // max(grid.shape[:2]))  # small images stay sharp at a viewable size
    return Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)


def save_image(grid, path):
    """Save a grid (as `image_grid` returns) as a PNG, enlarged to about 512 pixels; return the path."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _enlarged(grid).save(path)
    return path


def show_grid(images, title, path=None, cols=None, width=5):
    """Show a grid of images inline (`width` inches wide), and save it as a PNG when `path` is given."""
    import matplotlib.pyplot as plt

    grid = image_grid(images, cols)
    if path:
        save_image(grid, path)
    plt.figure(figsize=(width, width * grid.shape[0] / grid.shape[1]))
    plt.imshow(grid, cmap="gray" if grid.ndim == 2 else None)
    plt.title(title)
    plt.axis("off")
    plt.show()
    plt.close()  # already done inline; elsewhere (tests, scripts) figures would pile up


def export_generator(generator, directory, **config):
    """Save the generator as `<directory>/generator.keras` with a `config.json` beside it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    generator.save(directory / "generator.keras")
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory


def plot_losses(losses, title, path=None):
    """Plot the per-step (d_loss, g_loss) pairs, smoothed, and save the figure when `path` is given."""
    import matplotlib.pyplot as plt

    losses = np.asarray(losses)
    window = max(1, len(losses) // 50)
    smooth = np.array([np.convolve(column, np.ones(window) / window, "valid") for column in losses.T]).T
    steps = np.arange(len(smooth)) + window
    plt.figure(figsize=(7, 3.5))
    plt.plot(steps, smooth[:, 0], label="discriminator")
    plt.plot(steps, smooth[:, 1], label="generator")
    plt.xlabel("step")
    plt.ylabel(f"loss (mean of {window} steps)" if window > 1 else "loss")
    plt.title(title)
    plt.legend()
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        plt.savefig(path, dpi=100, bbox_inches="tight")
    plt.show()
    plt.close()


def checkpoint_manager(checkpoint, directory, max_to_keep=2):
    """A `tf.train.CheckpointManager` over `directory` that has restored the latest checkpoint, if any."""
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep)
    if manager.latest_checkpoint:
        try:
            checkpoint.restore(manager.latest_checkpoint).assert_consumed()
        except (ValueError, AssertionError) as error:  # a variable of another shape, or one missing
            raise ValueError(
                f"The checkpoint {manager.latest_checkpoint} was written by other networks (another architecture, "
                f"image size or z_dim): {str(error).splitlines()[0]}\nTo start a new run, delete {directory} "
                f"or choose another output_dir."
            ) from None
        print(f"Resumed from {manager.latest_checkpoint} (step {int(checkpoint.step):,}).")
    return manager


def stop_if_diverged(values, step, manager):
    """Stop training with a plain message if any of `values` (losses or weights) is NaN or infinite."""
    if all(np.isfinite(value).all() for value in values):
        return
    kept = f"the last good checkpoint, {manager.latest_checkpoint}, is kept" if manager.latest_checkpoint else \
        "no checkpoint had been saved yet"
    raise FloatingPointError(
        f"Training diverged at step {step:,}: a loss or a weight became NaN or infinite, and {kept}. "
        f"Try a lower learning rate; running the cell again resumes from that checkpoint."
    )


# --- Results after training ---------------------------------------------------------------


def noise(count, z_dim, seed=0):
    """`count` z vectors from normal(0, 1), the exported generators' z_distribution; the same for the same seed."""
    return np.random.default_rng(seed).standard_normal((count, z_dim)).astype(np.float32)


def slerp(a, b, t):
    """Spherical interpolation: the points at fractions `t` along the arc from vector `a` to `b`, one per row."""
    omega = np.arccos(np.clip(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1))
    t = np.asarray(t, np.float64)[:, np.newaxis]
    weight_a, weight_b = np.sin((1 - t) * omega) / np.sin(omega), np.sin(t * omega) / np.sin(omega)
    return weight_a * a + weight_b * b


def latent_walk(generator, z_dim, points=4, steps=8, seed=0):
    """The generator's images along a smooth path through `points` random z vectors, in [-1, 1].

    One row of `steps` images per stretch, from one point to the next (both included): show it with
    `show_grid(walk, title, cols=steps)`. The same seed gives the same walk.
    """
    ends = noise(points, z_dim, seed)
    # Gaussian z in many dimensions lie near a sphere of radius sqrt(z_dim), at nearly right angles to each
    # other: a straight line between two cuts inside it (to ~0.7 of the radius midway), to z the generator
    # never saw in training. The arc keeps the length.
    z = np.concatenate([slerp(a, b, np.linspace(0, 1, steps)) for a, b in zip(ends[:-1], ends[1:])])
    return np.asarray(generator(z.astype(np.float32), training=False))


def save_gif(frames, path, duration=200, hold=2000):
    """Save grids (as `image_grid` returns) as a looping animated GIF, enlarged like `save_image`; return the path.

    Each frame shows for `duration` ms, the last for `hold` ms. In a notebook, show it with
    `IPython.display.Image(filename=path)`. A frame identical to the one before is merged into it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    first, *rest = [_enlarged(frame) for frame in frames]
    first.save(path, save_all=True, append_images=rest, duration=[duration] * len(rest) + [hold], loop=0)
    return path


def generate(model_dir, count, seed=0):
    """`count` new images (uint8, NHWC) from the generator exported in `model_dir`; the same for the same seed.

    Needs nothing but Keras: `generator.keras` is loaded with `keras.saving.load_model`, and z drawn
    as its `config.json` says.
    """
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    generator = keras.saving.load_model(model_dir / "generator.keras")
    return to_uint8(generator.predict(noise(count, config["z_dim"], seed), verbose=0))


def _inception(weights, size):
    """InceptionV3 up to its 2,048 average-pooled features, or None (said in one line) if its weights cannot be had."""
    timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TIMEOUT)  # Keras downloads with urlretrieve, which would wait forever on a silent network
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Keras's "Downloading data from" line: ours says it all
            return keras.applications.InceptionV3(
                include_top=False, weights=weights, input_shape=(size, size, 3), pooling="avg"
            )
    except Exception as error:
        # Keras reports a failed download as a bare Exception, a timeout as an OSError; anything else is a bug.
        if type(error) is not Exception and not isinstance(error, OSError):
            raise
        print(f"FID skipped: could not download InceptionV3's ImageNet weights ({error}). Run it again when online.")
        return None
    finally:
        socket.setdefaulttimeout(timeout)


def _inception_features(model, images, batch_size):
    """The model's features of images (uint8 or [-1, 1] floats, grey or RGB), a batch at a time to bound memory."""
    size = model.input_shape[1]

    def features(batch):
        batch = tf.image.resize(tf.cast(to_uint8(batch), tf.float32), (size, size))  # the pixels as saved
        if batch.shape[-1] == 1:  # InceptionV3 takes RGB
            batch = tf.image.grayscale_to_rgb(batch)
        return model(keras.applications.inception_v3.preprocess_input(batch), training=False)

    return np.concatenate([features(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def fid(images_a, images_b, weights="imagenet", size=299, batch_size=50):
    """Fréchet Inception Distance between two sets of images (uint8 or [-1, 1] floats, NHWC); lower is closer.

    The images are resized to `size` x `size` (InceptionV3's own 299; 75 at least) for its features.
    `weights=None` uses a randomly initialised network, for tests: its numbers are not FIDs. FID is
    biased upward for small sets, so compare FIDs only between sets of the same size (thousands;
    InceptionV3 at 299 is 6 GFLOPs per image, minutes per thousand images on a CPU).
    Returns None, saying so in one line, when InceptionV3's ImageNet weights cannot be downloaded.
    """
    model = _inception(weights, size)
    if model is None:
        return None
    return frechet_distance(*(_inception_features(model, images, batch_size) for images in (images_a, images_b)))


# --- Measuring results --------------------------------------------------------------------


def _sqrtm_psd(matrix):
    """Square root of a symmetric positive semi-definite matrix, by its eigendecomposition."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(features_a, features_b):
    """Fréchet distance between Gaussians fitted to two sets of feature vectors ([N, D] each).

    ||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2): the FID when the features
    come from InceptionV3, or any network's penultimate layer.
    """
    features_a, features_b = (np.asarray(f, np.float64) for f in (features_a, features_b))
    mu_a, mu_b = features_a.mean(0), features_b.mean(0)
    cov_a, cov_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
    root_a = _sqrtm_psd(cov_a)
    cross = np.trace(_sqrtm_psd(root_a @ cov_b @ root_a))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def classifier_score(probabilities):
    """exp(E_x[KL(p(y|x) || p(y))]) of a classifier's softmax outputs ([N, classes]): the Inception score's formula.

    From 1 (every image given the same probabilities) to the number of classes (each image sure of
    one class, every class equally often): it rewards images that are clearly something, and variety.
    Computed over all the images at once, not averaged over ten splits as the Inception score is.
    """
    p = np.asarray(probabilities, np.float64)
    tiny = np.finfo(np.float64).tiny  # so that 0 log 0 counts as 0
    kl = np.sum(p * (np.log(np.maximum(p, tiny)) - np.log(np.maximum(p.mean(0), tiny))), axis=1)
    return float(np.exp(kl.mean()))


class MnistQuality:
    """How good generated digits are, measured with our MNIST classifier: `MnistQuality(data_dir)(images)`.

    Called with images (uint8 or [-1, 1] floats, [N, 28, 28, 1]; 10,000 to compare with the README's
    figures), it gives a dict:
    - `fd`: Fréchet distance between their "features" and those of the `reference` digits (by
      default the 10,000 MNIST test digits): lower is closer, and the FD depends on N;
    - `score`: the classifier score (`classifier_score`), from 1 to 10, higher is better;
    - `shares`: the fraction of the images classified as each digit, 0 to 9.
    The reference's features are computed once, when it is made.
    """

    def __init__(self, data_dir="data", reference=None, classifier=MNIST_CLASSIFIER, mirrors=MNIST_MIRRORS):
        if not isinstance(classifier, keras.Model):
            classifier = keras.saving.load_model(classifier)
        # Both outputs the measures need, from one pass.
        self.model = keras.Model(classifier.inputs, [classifier.get_layer("features").output, classifier.outputs[0]])
        if reference is None:
            reference = load_mnist(data_dir, "test", mirrors)[0]
        self.reference_features = self.predict(reference)[0]

    def predict(self, images):
        """The "features" and the class probabilities of images, as saved (rounded to uint8 pixels)."""
        return self.model.predict(to_unit_range(to_uint8(images)), batch_size=500, verbose=0)

    def __call__(self, images):
        features, probabilities = self.predict(images)
        return {
            "fd": frechet_distance(features, self.reference_features),
            "score": classifier_score(probabilities),
            "shares": np.bincount(probabilities.argmax(1), minlength=10) / len(probabilities),
        }


def describe_quality(quality):
    """One line for a `MnistQuality` result: FD, classifier score, and each digit's share."""
    shares = " ".join(f"{digit}: {share:.1%}" for digit, share in enumerate(quality["shares"]))
    return f"FD {quality['fd']:.2f}, classifier score {quality['score']:.2f}; digits {shares}"


def save_quality(path, quality, steps, train_seconds, batch_size, **facts):
    """Write a `MnistQuality` result and how it was reached to a JSON file, for scripts (e.g. the benchmark)."""
    record = dict(fd=quality["fd"], score=quality["score"], shares=list(map(float, quality["shares"])), steps=steps,
                  train_seconds=train_seconds, batch_size=batch_size, images_per_second=steps * batch_size / train_seconds,
                  **facts)
    Path(path).write_text(json.dumps(record, indent=2))


# --- Command line -------------------------------------------------------------------------


def _generate_command(args):
    """`generate`: write new images from an exported generator, as one grid or one file each."""
    from PIL import Image

    images = generate(args.model_dir, args.count, args.seed)
    out = Path(args.out or ("generated" if args.separate else "generated.png"))
    if args.separate:
        out.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            Image.fromarray(image_grid(image[np.newaxis])).save(out / f"{i:04d}.png")  # at the generator's size
    else:
        save_image(image_grid(images), out)
    print(f"Wrote {len(images):,} images from {args.model_dir} to {out}.")


def main(argv=None):
    """`python helper.py <command> ...`: what can be done without the notebook. `--help` lists the commands."""
    parser = argparse.ArgumentParser(prog="helper.py", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    command = commands.add_parser("generate", help="new images from an exported generator, as a PNG grid or files")
    command.add_argument("model_dir", help="a folder with generator.keras and config.json, e.g. output/mnist")
    command.add_argument("--count", type=int, default=64, help="how many images (default 64)")
    command.add_argument("--seed", type=int, default=0, help="the same seed gives the same images (default 0)")
    command.add_argument("--out", help="the PNG grid to write (default generated.png), or the folder with --separate")
    command.add_argument("--separate", action="store_true",
                         help="one PNG per image, at the generator's size, into the folder --out (default generated/)")
    command.set_defaults(run=_generate_command)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
