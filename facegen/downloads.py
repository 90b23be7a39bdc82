"""Downloads that can be trusted: from the first of several mirrors, resumed when cut off, checked (a checksum,
or any check of the caller's) before they count, and refused before writing when the disk has no room."""

import contextlib
import gzip
import hashlib
import os
import shutil
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

TIMEOUT = 8  # seconds without a byte before a mirror is given up: three stalled mirrors fail within 30 s


class DownloadError(RuntimeError):
    """No mirror gave a verified copy of a file."""


class NoRoomError(RuntimeError):
    """The disk that would hold a step's files has too little free space for them."""


def checksum(path, algorithm="md5", decompress=False):
    """Hex digest (a `hashlib` algorithm) of a file's bytes, or of its gzip-decompressed content."""
    digest = hashlib.new(algorithm)
    with (gzip.open if decompress else open)(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_check(expected, algorithm="md5", decompress=False):
    """A check for `download`: it returns None for a file whose checksum is `expected`, else what is wrong."""

    def problem(path):
        try:
            actual = checksum(path, algorithm, decompress)
        except (OSError, EOFError) as error:  # not gzip, or cut short
            actual = f"unreadable: {error}"
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


def part_path(path):
    """Where `path` is written until it is whole: `<path>.part`, renamed to `path` once complete, so that a
    file at `path` is never a partial one."""
    return path.with_name(path.name + ".part")


@contextlib.contextmanager
def one_writer_at_a_time(folder, what):
    """Hold an exclusive lock on `folder` while `what` (a download, the faces' cache) is checked and written there:
    two runs that share a data folder (two notebooks, two seeds of tools.long_run) take turns, and the second finds
    the first's file whole rather than writing the same `.part` at once. With no flock (Windows), runs that share a
    data folder must not start together."""
    if fcntl is None:
        yield
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"Waiting for another run to finish {what} in {folder} ...", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # which releases the lock


def download(urls, path, md5=None, decompress=False, check=None):
    """Download `path` from the first of `urls` whose copy passes `check` (by default: its MD5 is `md5`).

    The bytes go to `<path>.part` and are renamed to `path` only once verified, so a file at `path` is always
    complete, and is kept as it is (another run may have just written it). An interrupted download resumes where
    it stopped. With `decompress`, the MD5 is that of the gzip-decompressed content. `check(file)` returns None for
    a good file, else a few words saying what is wrong with it.
    """
    check = check or checksum_check(md5, "md5", decompress)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with one_writer_at_a_time(path.parent, f"downloading {path.name}"):
        if path.exists():  # downloaded by another run while this one waited
            return path
        return _download(urls, path, check)


def _download(urls, path, check):
    part = part_path(path)
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
