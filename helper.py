"""What the notebook uses but is not about, in the notebook's order: checking its parameters,
getting and checking the data, `tf.data` pipelines, devices and precision, the bookkeeping around
training, pictures, measuring quality, and exporting and generating."""

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path


def _library_logs_to_the_terminal():
    """In a Jupyter kernel, send what compiled libraries write to stderr to the terminal, not into the cells.

    TensorFlow's C++ side logs straight to file descriptor 2: CUDA and CPU notes at start-up, graph
    optimizer errors, lines that differ from one machine to the next. ipykernel forwards that descriptor
    into the running cell's output. While a cell runs, it points here to the kernel's own stderr instead
    (the terminal that started Jupyter or papermill), as in any script; between cells, back to ipykernel's
    pipe, which ipykernel closes on shutdown. Python's own output, warnings and errors still show in the cell.
    """
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    terminal = getattr(sys.stderr, "_original_stdstream_copy", None)  # there when ipykernel forwards descriptor 2
    if shell is None or terminal is None or os.path.sameopenfile(2, terminal):  # not a kernel, or done already
        return
    pipe = os.dup(2)
    shell.events.register("pre_run_cell", lambda *_: os.dup2(terminal, 2))
    shell.events.register("post_run_cell", lambda *_: os.dup2(pipe, 2))
    os.dup2(terminal, 2)  # for the rest of this cell, which imports TensorFlow next


_library_logs_to_the_terminal()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402
from facegen.face_quality import FaceQuality, describe_face_quality  # noqa: E402, F401  (the lesson calls them from here)

# In a notebook, TensorFlow lowers its Python logger to INFO (in scripts it stays at WARNING): its notes on
# devices and all-reduces would fill the cells. Its warnings and errors still show.
tf.get_logger().setLevel("WARNING")

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
# The weights of our own MNIST classifier (`mnist_classifier`, trained by tools/train_classifier.py), whose features
# measure generated digits. Weights, not a whole .keras model: a model saved by one Keras version may not load in an
# older one (Python 3.10 gets Keras 3.12), while the weights of the same layers do.
MNIST_CLASSIFIER = PROJECT_DIR / "data" / "mnist_classifier.weights.h5"

# CelebA's aligned-and-cropped images, best source first. The course's S3 mirror serves the
# authors' zip. The Hugging Face Hub's nielsr/CelebA-faces holds the same 202,599 JPEGs in three
# parquet shards (a `datasets` Image column); its /resolve/ URLs redirect to a CDN. Each shard is
# pinned to the commit that added it (its Hub page gives the full hash), except the third:
# the full hash of b5b9152, which added it, is not published where we could read it, so it
# comes from `main` and is checked by its content (see CELEBA_HUB_SHA256). The authors' Google
# Drive copy is left out: it has asked for a Google login since 2022 (pytorch/vision#5705).
# load_celeba tries the zip URLs first, then the shards (the URLs ending in .parquet).
# huggingface_hub is not used: `download` already follows the redirect, resumes with Range and
# checks hashes, and the Hub client would keep its copy in its own cache outside data_dir,
# where the room check and the advice to move data_dir would not apply.
CELEBA_HUB = "https://huggingface.co/datasets/nielsr/CelebA-faces/resolve/"
CELEBA_URLS = (
    "https://s3-us-west-1.amazonaws.com/udacity-dlnfd/datasets/celeba.zip",
    CELEBA_HUB + "0575efbba5981a70886b6dc2b0a131a0b250ea62/data/train-00000-of-00003.parquet",
    CELEBA_HUB + "be1d6eb82fac48ba8260803a7ac094c3e14d37ba/data/train-00001-of-00003.parquet",
    CELEBA_HUB + "main/data/train-00002-of-00003.parquet",
)
# SHA-256 of each shard where the Hub publishes it (its file page's "Git LFS Details"):
# shard 0 from huggingface.co/datasets/nielsr/CelebA-faces/blob/0575efbba5981a70886b6dc2b0a131a0b250ea62/
# data/train-00000-of-00003.parquet. None where we found no published hash: such a shard is
# checked by its content instead (a parquet table of images; with the others, CELEBA_COUNT
# rows; each row a 178x218 JPEG, or it is skipped and counted).
CELEBA_HUB_SHA256 = {
    "train-00000-of-00003.parquet": "9c91b375f4d5fe0d120ad19e964632dd17be5a3d57f19e46f4489ee3d5931eed",
    "train-00001-of-00003.parquet": None,
    "train-00002-of-00003.parquet": None,
}
CELEBA_ZIP = "img_align_celeba.zip"
CELEBA_DIR = "img_align_celeba"
CELEBA_MD5 = "00d2c5bc6d35e252742224ab0c1e8fcb"
CELEBA_ZIP_BYTES = 1_443_490_838
CELEBA_HUB_BYTES = 1_388_000_000  # the three shards, as the Hub lists them: 462 + 463 + 463 MB
CELEBA_COUNT = 202_599
CELEBA_SHAPE = (218, 178)  # height, width of every aligned image
FACE_CROP = 108  # the centered square that holds the face
STANDIN_NAME = "stand-in faces (NOT CelebA)"

TIMEOUT = 8  # seconds without a byte before a mirror is given up: three stalled mirrors fail within 30 s


class DownloadError(RuntimeError):
    """No mirror gave a verified copy of a file."""


class NoRoomError(RuntimeError):
    """The disk that would hold a step's files has too little free space for them."""


# --- The notebook's parameters ------------------------------------------------------------


def _whole(low):
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= low


def _positive_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")


def _folder(value):
    return isinstance(value, (str, os.PathLike)) and str(value) != "" and not Path(value).is_file()


PARAMETER_RULES = {  # name: (test, what is allowed)
    "data_dir": (_folder, "a folder's path (a file of that name is in the way)"),
    "output_dir": (_folder, "a folder's path (a file of that name is in the way)"),
    "images_dir": (_folder, "a folder's path (a file of that name is in the way)"),
    "seed": (_whole(0), "a whole number, 0 or more"),
    "z_dim": (_whole(1), "a whole number, at least 1"),
    "beta1": (lambda v: _positive_number(v) and v < 1 or v == 0, "a number from 0 up to (not including) 1"),
    "mnist_epochs": (_whole(1), "a whole number, at least 1 (the MNIST stage always runs)"),
    "mnist_batch_size": (_whole(1), "a whole number, at least 1"),
    "mnist_learning_rate": (lambda v: _positive_number(v) and v <= 1, "a number above 0, at most 1"),
    "mnist_filters": (_whole(1), "a whole number, at least 1"),
    "mnist_full_resolution_layer": (lambda v: isinstance(v, bool), "True or False"),
    "celeba_epochs": (_whole(0), "a whole number, 0 or more (0 skips the faces)"),
    "celeba_batch_size": (_whole(1), "a whole number, at least 1"),
    "celeba_learning_rate": (lambda v: _positive_number(v) and v <= 1, "a number above 0, at most 1"),
    "celeba_filters": (_whole(1), "a whole number, at least 1"),
    "celeba_full_resolution_layer": (lambda v: isinstance(v, bool), "True or False"),
    "celeba_image_size": (lambda v: v in (28, 32, 64) and not isinstance(v, bool), "28, 32 or 64"),
    "max_images": (lambda v: v is None or _whole(1)(v), "None (all of them) or a whole number, at least 1"),
    "sample_every": (lambda v: v is None or _whole(1)(v), "None (ten per stage) or a whole number, at least 1"),
    "download_celeba": (lambda v: isinstance(v, bool), "True or False"),
    "quality_images": (_whole(2), "a whole number, at least 2"),
    "fid_images": (lambda v: v == 0 or _whole(2)(v), "0 (no FID) or a whole number, at least 2"),
    "mnist_time_budget": (lambda v: v is None or _positive_number(v), "None (no limit) or a number of seconds above 0"),
    "mixed_precision": (lambda v: isinstance(v, bool) or v is None, "None (decide by the GPU), True or False"),
    "jit_compile": (lambda v: isinstance(v, bool) or v is None, "None (decide by the GPU), True or False"),
}


def check_parameters(parameters):
    """Stop with one plain sentence per bad value if any of the notebook's `parameters` (a dict, e.g.
    `globals()`) is not allowed: which parameter, the value it got, and what it may be."""
    problems = [f"{name} = {parameters[name]!r} is not allowed: it must be {allowed}."
                for name, (test, allowed) in PARAMETER_RULES.items() if name in parameters and not test(parameters[name])]
    max_images = parameters.get("max_images")
    if not problems and max_images is not None:
        stages = ["mnist"] + ["celeba"] * bool(parameters.get("celeba_epochs"))
        for stage in stages:
            batch_size = parameters.get(f"{stage}_batch_size")
            if batch_size and max_images < batch_size:
                problems.append(f"max_images = {max_images} is fewer than one batch ({stage}_batch_size = "
                                f"{batch_size}): raise max_images to at least {batch_size} or lower {stage}_batch_size.")
    if problems:
        raise ValueError("\n".join(problems))


# --- Downloads ----------------------------------------------------------------------------


def checksum(path, algorithm="md5", decompress=False):
    """Hex digest (a `hashlib` algorithm) of a file's bytes, or of its gzip-decompressed content."""
    digest = hashlib.new(algorithm)
    with (gzip.open if decompress else open)(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def md5sum(path, decompress=False):
    return checksum(path, "md5", decompress)


def _checksum_or_error(path, algorithm, decompress):
    try:
        return checksum(path, algorithm, decompress)
    except (OSError, EOFError) as error:  # not gzip, or cut short
        return f"unreadable: {error}"


def _matches(path, md5, decompress):
    return path.exists() and _checksum_or_error(path, "md5", decompress) == md5


def checksum_check(expected, algorithm="md5", decompress=False):
    """A check for `download`: it returns None for a file whose checksum is `expected`, else what is wrong."""

    def problem(path):
        actual = _checksum_or_error(path, algorithm, decompress)
        return None if actual == expected else f"wrong checksum ({algorithm} {actual}, expected {expected})"

    return problem


def free_bytes(directory):
    """Free bytes on the disk that holds `directory`, or would hold it (its nearest existing parent)."""
    directory = Path(directory).absolute()
    while not directory.exists():
        directory = directory.parent
    return shutil.disk_usage(directory).free


def ensure_room(directory, needed, what):
    """Raise NoRoomError, before anything is written, if `directory`'s disk has less than `needed` bytes free."""
    free = free_bytes(directory)
    if needed > free:
        raise NoRoomError(
            f"Not enough room for {what}: it needs {needed / 1e9:.1f} GB and the disk of {Path(directory).absolute()} "
            f"has {free / 1e9:.1f} GB free; free some space, or point data_dir at a disk with more room."
        )


def _fetch(url, part):
    """Append `url`'s bytes to `part`, resuming with a Range request when `part` has some.

    urllib follows redirects (as the Hub's /resolve/ URLs to its CDN) and keeps the Range
    header on the way: HTTPRedirectHandler drops only Content-Length and Content-Type.
    """
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


def download(urls, path, md5=None, decompress=False, check=None):
    """Download `path` from the first of `urls` whose copy passes `check` (by default: its MD5 is `md5`).

    The bytes go to `<path>.part` and are renamed to `path` only once verified, so a file
    at `path` is always complete. An interrupted download resumes where it stopped. With
    `decompress`, the MD5 is that of the gzip-decompressed content. `check(file)` returns
    None for a good file, else a few words saying what is wrong with it.
    """
    check = check or checksum_check(md5, "md5", decompress)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    if part.exists() and check(part) is None:  # finished before an interruption, never renamed
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
        problem = check(part)
        if problem is None:
            return part.replace(path)
        failures.append(f"{url}: {problem}")
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


@contextlib.contextmanager
def _staged(directory, folder):
    """A temporary folder to fill; its `folder/` becomes `directory/folder` only when the block ends.

    So a cut-off extraction or conversion is never mistaken for a finished one: the next run
    starts the temporary folder afresh.
    """
    directory = Path(directory)
    staging = directory / f".{folder}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    yield staging
    (staging / folder).replace(directory / folder)
    staging.rmdir()


def extract_zip(archive, directory, folder):
    """Extract `folder/` from `archive` into `directory`, all or nothing, if there is room for it.

    Entries that would land outside the folder (absolute paths, `..`, links) are refused.
    """
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        for member in members:
            parts = Path(member.filename).parts
            is_link = (member.external_attr >> 16) & 0o170000 == 0o120000
            if member.filename.startswith("/") or ".." in parts or is_link or parts[0] != folder:
                raise ValueError(f"{archive} holds an unsafe or unexpected entry: {member.filename!r}")
        ensure_room(directory, sum(m.file_size for m in members), f"the images of {Path(archive).name}")
        with _staged(directory, folder) as staging:
            for member in tqdm(members, desc=f"Extracting {Path(archive).name}", unit="file"):
                zf.extract(member, staging)
    return Path(directory) / folder


IMAGE_COLUMN = "image"  # a `datasets` Image feature, as the Hub's parquet files store it


def _image_table_problem(path):
    """None if `path` is a parquet file with an Image column (struct<bytes: binary, path: string>), else what it is."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (OSError, ValueError) as error:  # not parquet, or cut short (pyarrow's errors are ValueErrors)
        return f"not a parquet file: {error}"
    expected = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    if IMAGE_COLUMN not in schema.names or schema.field(IMAGE_COLUMN).type != expected:
        return f"no column {IMAGE_COLUMN!r} of type {expected}; its columns: {', '.join(schema.names)}"
    return None


def _shard_check(name):
    """`download`'s check for the Hub shard `name`: its published SHA-256, or else its table's schema."""
    sha256 = CELEBA_HUB_SHA256.get(name)
    return checksum_check(sha256, "sha256") if sha256 else _image_table_problem


def _row_names(paths):
    """File names for rows whose Image `path`s are `paths`: the original names if every row has a
    distinct one, else 000001.jpg, 000002.jpg, ... in row order (CelebA's own numbering)."""
    names = [re.split(r"[\\/]", path)[-1] if path else "" for path in paths]  # a posix or Windows path
    if all(re.fullmatch(r"[\w-]+\.jpg", name) for name in names) and len(set(names)) == len(names):
        return names
    return [f"{row:06d}.jpg" for row in range(1, len(paths) + 1)]


def _is_aligned_jpeg(content):
    """Whether `content` is a JPEG of CelebA's aligned size (read from its header, not decoded)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(content or b"")) as image:
            return image.format == "JPEG" and image.size == CELEBA_SHAPE[::-1]
    except OSError:  # not an image at all
        return False


def shards_to_folder(shards, directory, folder=CELEBA_DIR):
    """Write the images of parquet `shards` (an Image column, as the Hub stores them) as JPEG files
    in `directory/folder/`, all or nothing, if there is room for them.

    Rows keep their original file names where they carry them. A row that is not a 178x218 JPEG
    is skipped and reported.
    """
    import pyarrow.parquet as pq

    ensure_room(directory, sum(Path(shard).stat().st_size for shard in shards), f"the images of {len(shards)} shards")
    names = _row_names([path for shard in shards
                        for path in pq.read_table(shard, columns=[f"{IMAGE_COLUMN}.path"]).column(0).to_pylist()])
    rows, skipped = iter(names), []
    with _staged(directory, folder) as staging, tqdm(total=len(names), desc="Writing JPEGs", unit="image") as bar:
        (staging / folder).mkdir(parents=True)
        for shard in shards:
            for batch in pq.ParquetFile(shard).iter_batches(batch_size=1024, columns=[IMAGE_COLUMN]):
                for content in batch.column(0).field("bytes").to_pylist():
                    name = next(rows)
                    if _is_aligned_jpeg(content):
                        (staging / folder / name).write_bytes(content)
                    else:
                        skipped.append(name)
                    bar.update()
    if skipped:
        listed = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        print(f"Skipped {len(skipped):,} row(s) of {len(names):,} that are not a {CELEBA_SHAPE[1]}x{CELEBA_SHAPE[0]} "
              f"JPEG: {listed}")
    return Path(directory) / folder


def _jpegs(folder):
    return sorted(str(p) for p in Path(folder).glob("*.jpg"))


def _celeba_folder(data_dir):
    """Where CelebA's JPEGs are: `img_align_celeba/`, or the folder of the same name inside it
    (Kaggle's celeba-dataset layout)."""
    folder = Path(data_dir) / CELEBA_DIR
    return folder / CELEBA_DIR if (folder / CELEBA_DIR).is_dir() else folder


def _url_name(url):
    return urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]


def _room_to_download(directory, paths, total, what):
    """Check for room for what is still missing of `paths` (`total` bytes in all), and as much again unpacked."""
    have = sum(p.stat().st_size for path in paths for p in (path, path.with_name(path.name + ".part")) if p.exists())
    ensure_room(directory, 2 * total - have, what)


def _folder_from_shards(shards, data_dir):
    """CelebA's folder from the Hub's shards, once they are checked: each by its SHA-256 or its
    schema, and all of them together by their number of rows."""
    import pyarrow.parquet as pq

    for shard in shards:
        problem = _shard_check(shard.name)(shard)
        if problem:
            raise DownloadError(f"{shard} is not the Hub's CelebA shard ({problem}).\n"
                                f"Delete it and run again to download it.")
    rows = sum(pq.ParquetFile(shard).metadata.num_rows for shard in shards)
    if rows != CELEBA_COUNT:
        raise DownloadError(f"The shards {', '.join(s.name for s in shards)} in {data_dir}/ hold {rows:,} rows; "
                            f"the Hub's CelebA has {CELEBA_COUNT:,}.\nDelete them and run again to download them.")
    return shards_to_folder(shards, data_dir, CELEBA_DIR)


def _make_celeba_folder(data_dir, download_missing, urls):
    """Make `<data_dir>/img_align_celeba/` from the zip or the Hub's shards in `data_dir`, or else
    downloaded from `urls`: the zip first, then the shards (the URLs ending in .parquet)."""
    archive = data_dir / CELEBA_ZIP
    shards = [data_dir / name for name in CELEBA_HUB_SHA256]
    if archive.exists():
        if md5sum(archive) != CELEBA_MD5:
            raise DownloadError(
                f"{archive} is not the official CelebA file (wrong MD5; expected {CELEBA_MD5}).\n"
                f"Delete it and run again to download it, or fetch it by hand from the CelebA site."
            )
        return extract_zip(archive, data_dir, CELEBA_DIR)
    if all(shard.exists() for shard in shards):
        return _folder_from_shards(shards, data_dir)
    if not download_missing:
        raise DownloadError(f"CelebA is not in {data_dir}/ and downloading it is turned off.")
    zip_urls = [url for url in urls if not url.endswith(".parquet")]
    shard_urls = {shard: [url for url in urls if _url_name(url) == shard.name] for shard in shards}
    failures = []
    if zip_urls:
        _room_to_download(data_dir, [archive], CELEBA_ZIP_BYTES, "CelebA's zip and its images")
        try:
            download(zip_urls, archive, CELEBA_MD5)
            return extract_zip(archive, data_dir, CELEBA_DIR)
        except DownloadError as error:
            failures.append(str(error))
    if all(shard_urls.values()):
        _room_to_download(data_dir, shards, CELEBA_HUB_BYTES, "CelebA's parquet shards and their images")
        try:
            for shard, shard_url in shard_urls.items():
                if not shard.exists():
                    download(shard_url, shard, check=_shard_check(shard.name))
            return _folder_from_shards(shards, data_dir)
        except DownloadError as error:
            failures.append(str(error))
    raise DownloadError("\n".join(failures) or "No URL to download CelebA from.")


def load_celeba(data_dir="data", download_missing=True, urls=CELEBA_URLS, standin_count=None):
    """Paths of the CelebA JPEGs and the data's name: "CelebA", or "CelebA (N of its 202,599 images)" for a part.

    Uses `<data_dir>/img_align_celeba/` (or, in Kaggle's layout, the folder of that name inside
    it), else makes it from `<data_dir>/img_align_celeba.zip` or from the Hub's three parquet
    shards in `data_dir`, else downloads them from `urls` (the zip first) and does the same.
    When all that is impossible (or `download_missing` is False), it makes synthetic faces
    instead (`standin_count`, 10,000 by default) and names them as a stand-in, never as CelebA.
    Raises NoRoomError, before writing, if the disk has too little room.
    """
    data_dir = Path(data_dir)
    if not (data_dir / CELEBA_DIR).exists():
        try:
            _make_celeba_folder(data_dir, download_missing, urls)
        except DownloadError as error:
            standin_count = standin_count or 10_000
            print(f"{error}\nUsing {standin_count:,} {STANDIN_NAME}, made by helper.make_standin_faces. "
                  f"For CelebA, run again when online, or put it in {data_dir}/ as the README's Data section says.")
            return _jpegs(standin_faces(data_dir / "standin", standin_count)), STANDIN_NAME
    folder = _celeba_folder(data_dir)
    files = _jpegs(folder)
    if len(files) == CELEBA_COUNT:
        return files, "CelebA"
    print(f"{folder} holds {len(files):,} images; the full CelebA set has {CELEBA_COUNT:,}. Using those there are.")
    return files, f"CelebA ({len(files):,} of its {CELEBA_COUNT:,} images)"  # wherever results are shown


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


# --- tf.data pipelines --------------------------------------------------------------------


FACE_CACHE_FORMAT = 1  # raise it when the preprocessing changes, so that older caches are rebuilt


def _batches(dataset, batch_size, seed, preprocess):
    """Shuffle anew each epoch, batch, preprocess the batches in parallel, and prefetch."""
    count = int(dataset.cardinality())
    if count < batch_size:  # else an epoch would hold no batch at all
        raise ValueError(f"There are only {count:,} images, fewer than one batch of {batch_size}: lower the batch "
                         f"size, or use more images (max_images).")
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
    ensure_room(path.parent, len(files) * size * size * 3, f"the faces' cache {path.name}")
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


# --- Devices ------------------------------------------------------------------------------


def distribution_strategy():
    """`MultiWorkerMirroredStrategy` if `TF_CONFIG` names a cluster; else `MirroredStrategy` over this machine's
    GPUs if it has several; else TensorFlow's default strategy (the one GPU, or the CPU: no copies, no cost).

    Call it before TensorFlow runs anything. `DLND_CPU_REPLICAS=N` splits the CPU into N devices and
    mirrors over them as over N GPUs: how the tests run the multi-GPU path on a machine without GPUs.
    """
    if os.environ.get("TF_CONFIG"):  # one of several machines (the README's "Multiple GPUs")
        return tf.distribute.MultiWorkerMirroredStrategy()
    cpu_replicas = int(os.environ.get("DLND_CPU_REPLICAS", 0))
    if cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
        return tf.distribute.MirroredStrategy([device.name for device in tf.config.list_logical_devices("CPU")])
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def gpu_capabilities():
    """The compute capability of each GPU, e.g. [(7, 5)] on a T4; [] without GPUs."""
    return [tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
            for gpu in tf.config.list_physical_devices("GPU")]


def has_tensor_cores(capabilities=None):
    """True if there are GPUs and all have compute capability 7.0 or more (Volta onwards: V100, T4, A10G, A100, L4).

    Those run float16 maths on Tensor Cores, where mixed precision and XLA pay off.
    """
    capabilities = gpu_capabilities() if capabilities is None else capabilities
    return bool(capabilities) and min(capabilities) >= (7, 0)


def choose_speedups(mixed_precision, jit_compile, replicas, capabilities=None):
    """The notebook's `(mixed_precision, jit_compile)`: the values given, or for `None` the default for this machine.

    Mixed precision by default on GPUs with Tensor Cores; XLA too, but only on a single one: across
    several replicas it failed in two-device CPU tests of an earlier version, not re-tried since.
    """
    tensor_cores = has_tensor_cores(capabilities)
    if mixed_precision is None:
        mixed_precision = tensor_cores
    if jit_compile is None:
        jit_compile = tensor_cores and replicas == 1
    return bool(mixed_precision), bool(jit_compile)


def describe_devices(strategy, jit_compile):
    """One line: the devices, the strategy and its replicas, the precision policy and XLA."""
    devices = ", ".join(device.name for device in tf.config.list_logical_devices())
    replicas = strategy.num_replicas_in_sync
    return (f"Devices: {devices}. Strategy: {type(strategy).__name__}, {replicas} replica{'s' * (replicas > 1)}. "
            f"Precision: {keras.config.dtype_policy().name}. XLA: {'on' if jit_compile else 'off'}.")


@contextlib.contextmanager
def float32_policy():
    """Build Keras models in float32 inside this block, whatever the notebook's precision policy.

    Measuring (the MNIST classifier, InceptionV3) and exporting are done in float32: their figures
    must not depend on whether training ran in mixed precision.
    """
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(policy)


# --- Training: the bookkeeping around the loop --------------------------------------------


def to_terminal(line):
    """Write a line to the terminal that runs Python, papermill or Jupyter, and not into the notebook.

    In a notebook kernel, `sys.stderr.fileno()` is the kernel's original stderr (ipykernel gives it
    out for subprocesses to write to): the terminal, not the cell's output. A kernel that does not
    capture its file descriptors has none (under pytest, say): then `sys.__stderr__` is the terminal.
    """
    try:
        os.write(sys.stderr.fileno(), f"{line}\n".encode())
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        print(line, file=sys.__stderr__, flush=True)


class TrainingRun:
    """The bookkeeping around `train`'s loop, so that the loop shows only the lesson.

        run = TrainingRun(run_dir, data_name, epochs, dataset, z_dim, ..., discriminator=..., generator=..., ...)
        with run:                               # the stop button saves a checkpoint before stopping
            for batch in run.batches(strategy):  # the steps still to do, also after a resume
                run.record(losses)              # one step's [d_loss, g_loss], a tensor left on the device
                if run.sample_due:              # every `sample_every` steps, at the end, when out of time
                    run.save(samples)           # a checkpoint, and the samples for TensorBoard

    It restores the latest checkpoint of `run_dir/checkpoints` (the networks, optimizers and noise
    given as keywords, plus the step, the losses and the fixed sample noise `fixed_z`) and goes on
    from there. Losses are read back from the device about once a second, not every step, so a GPU
    never waits for Python; then the progress bar moves, TensorBoard gets their means, and a loss
    that is NaN or infinite stops training. A progress line goes to the terminal every 30 s.

    `recipe` (e.g. the learning rate, batch size, width) is stored beside the checkpoints. Resuming
    with another learning rate or beta1 goes on with the new one, saying so; with another batch
    size, width, z_dim, image size or precision it is refused; with fewer epochs than are done
    there is nothing to train.
    """

    SECONDS_PER_READ = 1
    SECONDS_PER_LINE = 30
    CHANGEABLE = ("learning_rate", "beta1")  # recipe entries a resumed run may change

    def __init__(self, run_dir, data_name, epochs, dataset, z_dim, sample_every=None, time_budget=None, seed=0,
                 recipe=None, **trackables):
        self.run_dir, self.data_name, self.time_budget = Path(run_dir), data_name, time_budget
        self.dataset, self.batch_size = dataset, dataset.element_spec.shape[0]  # None if batches vary
        self.total_steps = epochs * int(dataset.cardinality())
        self.sample_every = sample_every or max(1, self.total_steps // 10)
        self.recipe = {**(recipe or {}), "z_dim": z_dim, "image_shape": list(dataset.element_spec.shape[1:]),
                       "batch_size": self.batch_size, "precision": keras.config.dtype_policy().name}
        self.models = [v for v in trackables.values() if isinstance(v, keras.Model)]
        self.optimizers = [v for v in trackables.values() if isinstance(v, keras.optimizers.Optimizer)]
        self.fixed_z = tf.Variable(tf.random.stateless_normal([25, z_dim], seed=[seed, 0]), trainable=False)
        self._step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._losses = tf.Variable(tf.zeros([0, 2]), shape=[None, 2], trainable=False)
        checkpoint = tf.train.Checkpoint(fixed_z=self.fixed_z, step=self._step, losses=self._losses, **trackables)
        self.manager = tf.train.CheckpointManager(checkpoint, self.run_dir / "checkpoints", max_to_keep=2)
        self._restore(checkpoint)
        self.step, self.losses = int(self._step), self._losses.numpy()
        self.sample_due = self.out_of_time = False
        self._pending = []

    def _restore(self, checkpoint):
        latest, directory = self.manager.latest_checkpoint, self.manager.directory
        if not latest:
            return
        refuse = f"To resume it, set them back; to start a new run, delete {directory} or choose another output_dir."
        saved = self._saved_recipe()
        changed = {key: (saved[key], self.recipe.get(key)) for key in saved if saved[key] != self.recipe.get(key)}
        fixed = {key: values for key, values in changed.items() if key not in self.CHANGEABLE}
        if fixed:
            differences = ", ".join(f"{key} {old} there, {new} now" for key, (old, new) in fixed.items())
            raise ValueError(f"The checkpoint {latest} was written by other networks or another recipe "
                             f"({differences}). {refuse}")
        try:
            checkpoint.restore(latest).assert_consumed()
        except (ValueError, AssertionError) as error:  # a variable of another shape, or one missing
            raise ValueError(f"The checkpoint {latest} was written by other networks (another architecture, image "
                             f"size or z_dim): {str(error).splitlines()[0]}\n{refuse}") from None
        if "learning_rate" in self.recipe:  # the optimizers' state holds the old one: the new one is honoured
            for optimizer in self.optimizers:
                optimizer.learning_rate = self.recipe["learning_rate"]
        print(f"Resumed from {latest} (step {int(checkpoint.step):,}).")
        for key, (old, new) in changed.items():
            print(f"{key} was {old} when the checkpoint was written; going on with {new}.")

    def _saved_recipe(self):
        try:
            return json.loads((self.run_dir / "checkpoints" / "recipe.json").read_text())
        except (OSError, ValueError):  # written by an older version of the notebook: the restore itself checks
            return {}

    def batches(self, strategy):
        """The batches still to train on, each split across the strategy's replicas; stops when out of time."""
        remaining = self.total_steps - self.step
        if remaining <= 0:
            print(f"{self.data_name}: already trained to step {self.step:,} of {self.total_steps:,}; nothing to "
                  f"train. Raise the epochs to train further, or delete {self.manager.directory} to start over.")
            return
        # After a resume, skipping the batches already trained on keeps the data in the order of an
        # uninterrupted run: the shuffle is seeded, so it repeats the same orders, epoch after epoch.
        dataset = self.dataset.repeat().skip(self.step).take(remaining)
        for batch in strategy.experimental_distribute_dataset(dataset):
            yield batch
            if self._interrupted:
                raise KeyboardInterrupt  # after a whole step, so the checkpoint holds a consistent state
            if self.out_of_time:
                print(f"Stopped at step {self.step:,} of {self.total_steps:,}: the time budget of "
                      f"{self.time_budget:g} s is spent.")
                return

    def record(self, losses):
        """Count one step with its `[d_loss, g_loss]` (read back later, with others); decide whether to sample now."""
        self._pending.append(losses)
        self.step += 1
        now = time.perf_counter()
        self.out_of_time = self.time_budget is not None and now - self._start >= self.time_budget
        self.sample_due = self.step % self.sample_every == 0 or self.step == self.total_steps or self.out_of_time
        if now - self._last_read >= self.SECONDS_PER_READ:
            self._read()

    def _read(self):
        """Read the pending losses back from the device, stop on NaN or infinity, show and log them."""
        self._last_read = time.perf_counter()
        if not self._pending:
            return
        new = tf.stack(self._pending).numpy()
        self._pending = []
        first = len(self.losses) + 1
        self.losses = np.concatenate([self.losses, new])
        if not np.isfinite(new).all():
            self._diverged(first + int(np.flatnonzero(~np.isfinite(new).all(1))[0]))
        d_loss, g_loss = new[-1]
        self.progress.update(len(new))
        self.progress.set_postfix(d_loss=f"{d_loss:.3f}", g_loss=f"{g_loss:.3f}")
        with self.log.as_default(self.step):
            tf.summary.scalar("loss/discriminator", new[:, 0].mean())
            tf.summary.scalar("loss/generator", new[:, 1].mean())
        if self._last_read - self._last_line >= self.SECONDS_PER_LINE or self.step == self.total_steps:
            self._last_line = self._last_read
            to_terminal(self._progress_line(d_loss, g_loss))

    def _progress_line(self, d_loss, g_loss):
        """One line for the terminal: the step, the losses, the speed and the time left."""
        seconds, done = time.perf_counter() - self._start, self.step - self._first_step
        left = (self.total_steps - self.step) * seconds / max(done, 1)
        if self.time_budget is not None:
            left = min(left, max(0.0, self.time_budget - seconds))
        speed = f", {rate:,.0f} images/s" if (rate := self._images_per_second()) else ""
        return (f"{self.data_name}: step {self.step:,} of {self.total_steps:,}, d_loss {d_loss:.3f}, "
                f"g_loss {g_loss:.3f}{speed}, about {int(left // 60)} min {int(left % 60)} s left")

    def _images_per_second(self):
        """Images trained on per second since this call of `train` began; None if unknown (batches of varying size)."""
        done = self.step - self._first_step
        if self.batch_size and done:
            return done * self.batch_size / (time.perf_counter() - self._start)
        return None

    def _diverged(self, step):
        kept = (f"the last good checkpoint, {self.manager.latest_checkpoint}, is kept" if self.manager.latest_checkpoint
                else "no checkpoint had been saved yet")
        raise FloatingPointError(
            f"Training diverged at step {step:,}: a loss or a weight became NaN or infinite, and {kept}. "
            f"Try a lower learning rate; running the cell again resumes from that checkpoint."
        )

    def save(self, samples=None):
        """Save a checkpoint (never one with NaN or infinite weights), and log `samples` ([-1, 1]) for TensorBoard."""
        self._read()
        if not all(np.isfinite(weight.numpy()).all() for model in self.models for weight in model.weights):
            self._diverged(self.step)
        self._step.assign(self.step)
        self._losses.assign(self.losses)
        self.manager.save(self.step)
        (self.run_dir / "checkpoints" / "recipe.json").write_text(json.dumps(self.recipe, indent=2) + "\n")
        with self.log.as_default(self.step):
            if samples is not None:
                tf.summary.image("samples", (samples + 1) / 2, max_outputs=9)
            if rate := self._images_per_second():
                tf.summary.scalar("images_per_second", rate)
            for name, optimizer in zip(("discriminator", "generator"), self.optimizers):
                tf.summary.scalar(f"learning_rate/{name}", optimizer.learning_rate.numpy())

    def sample_path(self):
        """Where this step's sample grid is saved: `run_dir/samples/<step>.png`."""
        return self.run_dir / "samples" / f"{self.step:07d}.png"

    def __enter__(self):
        self._start = self._last_read = self._last_line = time.perf_counter()
        self._first_step = self.step
        self.progress = tqdm(total=self.total_steps, initial=self.step, desc=self.data_name, unit="step")
        self.log = tf.summary.create_file_writer(str(self.run_dir / "logs"))
        # The stop button sends SIGINT. Python would raise KeyboardInterrupt wherever the code is, and
        # code in between may swallow it; instead it is noted here and raised between steps.
        self._interrupted, self._sigint_handler = False, None
        if threading.current_thread() is threading.main_thread():
            self._sigint_handler = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def _interrupt(self, signum, frame):
        self._interrupted = True

    def __exit__(self, kind, error, traceback):
        try:
            if kind is None:
                self._read()
                if self.step > self._first_step:
                    seconds = time.perf_counter() - self._start
                    speed = f" ({rate:,.0f} images/s)" if (rate := self._images_per_second()) else ""
                    print(f"{self.data_name}: trained to step {self.step:,} in {seconds:.0f} s{speed}; last losses: "
                          f"discriminator {self.losses[-1][0]:.3f}, generator {self.losses[-1][1]:.3f}")
            elif issubclass(kind, KeyboardInterrupt):  # the notebook's stop button: keep what was learned
                self.save()
                print(f"Stopped at step {self.step:,}; checkpoint saved. Run the cell again to continue from there.")
        finally:
            if self._sigint_handler is not None:
                signal.signal(signal.SIGINT, self._sigint_handler)
            self.progress.close()
            self.log.close()
        return False


# --- Pictures -----------------------------------------------------------------------------


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


# --- Measuring quality --------------------------------------------------------------------


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


def mnist_classifier():
    """A small CNN (90,000 weights) giving the ten digits' probabilities for 28x28x1 images in [-1, 1].

    Its 128-unit "features" layer, the last before the output, is what `MnistQuality` compares
    distributions with. Its trained weights are in data/mnist_classifier.weights.h5.
    """
    def block(filters, padding):  # no bias: batch norm's shift takes its place
        return [keras.layers.Conv2D(filters, 3, padding=padding, use_bias=False), keras.layers.BatchNormalization(),
                keras.layers.ReLU(), keras.layers.MaxPooling2D()]

    return keras.Sequential([
        keras.Input((28, 28, 1)),
        *block(32, "same"), *block(64, "same"), *block(64, "valid"),  # 28 -> 14 -> 7 -> 5 -> 2
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu", name="features"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(10, activation="softmax", name="probabilities"),
    ], name="mnist_classifier")


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
        with float32_policy():  # the same figures whether training ran in mixed precision or not
            if not isinstance(classifier, keras.Model):
                weights, classifier = classifier, mnist_classifier()
                classifier.load_weights(weights)
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


def _inception(weights, size):
    """InceptionV3 up to its 2,048 average-pooled features, or None (said in one line) if its weights cannot be had."""
    timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TIMEOUT)  # Keras downloads with urlretrieve, which would wait forever on a silent network
    try:
        with contextlib.redirect_stdout(io.StringIO()), float32_policy():  # Keras's "Downloading data from" line: ours says it all
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


# --- Results: exporting, walking the latent space, generating -----------------------------


def export_generator(generator, directory, **config):
    """Save the generator as `<directory>/generator.keras` with a `config.json` beside it.

    Saved in float32 even after mixed-precision training (the weights are float32 either way), so
    that it runs at full speed and precision on any machine, CPU included.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with float32_policy():
        plain = keras.models.clone_model(generator, clone_function=lambda layer: layer.__class__.from_config(
            {**layer.get_config(), "dtype": "float32"}))
    plain.set_weights(generator.get_weights())
    plain.save(directory / "generator.keras")
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory


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


# --- Command line -------------------------------------------------------------------------


def _benchmark_recipes_command(args):
    """`benchmark-recipes`: the benchmark lives in tools/, apart from the lesson; run it as its own program."""
    import subprocess

    sys.exit(subprocess.run([sys.executable, str(PROJECT_DIR / "tools" / "bench_recipes.py"), *args.options]).returncode)


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

    command = commands.add_parser(
        "benchmark-recipes", add_help=False,
        help="the notebook's MNIST recipe against two published ones at 60, 150 and 300 s (tools/bench_recipes.py; "
             "its options, e.g. --budgets, --out, follow; over 20 minutes)")
    command.set_defaults(run=_benchmark_recipes_command)

    args, options = parser.parse_known_args(argv)
    if options and args.command != "benchmark-recipes":  # only the benchmark passes options on, to its program
        parser.error(f"unrecognized arguments: {' '.join(options)}")
    args.options = options
    args.run(args)


if __name__ == "__main__":
    main()
