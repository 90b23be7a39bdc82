"""Tests for getting the data (facegen.downloads, facegen.mnist, facegen.celeba): downloads from local mirrors
(tests/support/http_server.py) that serve the official archive formats and fail as real mirrors do, the offline
fallbacks, extraction."""

import gzip
import hashlib
import re
import shutil
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import helper
from facegen import celeba, downloads, mnist

# The download tests' file: the smallest (10,000 labels, 4.5 kB), written from the committed
# sample exactly as published (tests/conftest.py), so its checksum is the official one.
LABELS = "t10k-labels-idx1-ubyte"
LABELS_GZ = f"{LABELS}.gz"
CUT = 2_000  # bytes a dropped connection delivers before it closes
CELEBA_IMAGES = 6
# The MD5s of the first 10,000 official training images and labels as IDX files (10,000 in their
# headers), computed from the official files: the training files written from the sample have them.
SAMPLE_TRAIN_MD5 = {
    "train-images-idx3-ubyte": "63a563d3843dba5073e604e3a7990e87",
    "train-labels-idx1-ubyte": "e6ef65212ddc6f9010e22d95b5269050",
}


def jpeg_names(count):
    return [f"{i:06d}.jpg" for i in range(1, count + 1)]


def download_labels(mirror_urls, directory):
    """Download the test labels from the mirrors, as load_mnist does."""
    urls = [url + LABELS_GZ for url in mirror_urls]
    return downloads.download(urls, directory / LABELS_GZ, mnist.MNIST_MD5[LABELS], decompress=True)


def assert_only_verified_labels(directory):
    """`directory` holds the verified test labels and nothing else (no `.part`)."""
    assert [p.name for p in directory.iterdir()] == [LABELS_GZ]
    assert downloads.checksum(directory / LABELS_GZ, decompress=True) == mnist.MNIST_MD5[LABELS]


# --- Downloads ----------------------------------------------------------------------------


def test_download_from_a_mirror(tmp_path, start_mirror, mnist_gz):
    mirror = start_mirror(mnist_gz)
    assert download_labels([mirror.url], tmp_path) == tmp_path / LABELS_GZ
    assert (tmp_path / LABELS_GZ).read_bytes() == mnist_gz[LABELS_GZ]
    assert_only_verified_labels(tmp_path)
    assert mirror.requests == [(LABELS_GZ, None)]


@pytest.mark.skipif(downloads.fcntl is None, reason="no flock on this system (Windows)")
def test_two_runs_downloading_the_same_file_at_once_fetch_it_once(tmp_path, start_mirror, mnist_gz, monkeypatch,
                                                                   capsys):
    mirror = start_mirror(mnist_gz)
    fetch = downloads._fetch
    monkeypatch.setattr(downloads, "_fetch", lambda *args: time.sleep(0.5) or fetch(*args))  # still fetching...
    both_start = threading.Barrier(2, timeout=60)

    def run(_):
        both_start.wait()
        return download_labels([mirror.url], tmp_path)

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(run, range(2))) == [tmp_path / LABELS_GZ] * 2
    assert mirror.requests == [(LABELS_GZ, None)]  # ...when the other run asks: it waits, then uses that file
    assert_only_verified_labels(tmp_path)
    assert f"Waiting for another run to finish downloading {LABELS_GZ} in {tmp_path} ..." in capsys.readouterr().out


def test_download_skips_a_mirror_with_a_wrong_file(tmp_path, start_mirror, mnist_gz):
    wrong = start_mirror({LABELS_GZ: gzip.compress(b"not the MNIST labels")})
    good = start_mirror(mnist_gz)
    download_labels([wrong.url, good.url], tmp_path)
    assert_only_verified_labels(tmp_path)
    assert len(wrong.requests) == len(good.requests) == 1


def test_download_error_names_the_file_and_both_checksums(tmp_path, start_mirror):
    wrong_content = b"not the MNIST labels"
    wrong = start_mirror({LABELS_GZ: gzip.compress(wrong_content)})
    not_gzip = start_mirror({LABELS_GZ: b"<html>Moved</html>"})
    with pytest.raises(downloads.DownloadError) as error:
        download_labels([wrong.url, not_gzip.url], tmp_path)
    message, expected = str(error.value), mnist.MNIST_MD5[LABELS]
    assert message.startswith(f"Could not download {LABELS_GZ}:")
    actual = hashlib.md5(wrong_content).hexdigest()
    assert f"{wrong.url}{LABELS_GZ}: wrong checksum (md5 {actual}, expected {expected})" in message
    assert f"{not_gzip.url}{LABELS_GZ}: wrong checksum (md5 unreadable: Not a gzipped file" in message
    assert list(tmp_path.iterdir()) == []  # neither the file nor a `.part`


BROKEN_MIRRORS = {  # how a mirror fails: its behaviour (None: refused), and what the error says
    "404": ({"status": 404}, "Not Found"),
    "500": ({"status": 500}, "Internal Server Error"),
    "refused": (None, "Connection refused"),
    "dropped connection": ({"cut_after": CUT}, f"connection closed after {CUT:,} of"),
    "stalled connection": ({"cut_after": CUT, "hang": True}, "timed out"),
}


@pytest.fixture
def broken_mirror(start_mirror, mnist_gz, refused_url):
    """`broken_mirror(kind)` gives the URL of a mirror that fails as BROKEN_MIRRORS[kind] says."""

    def start(kind):
        behaviour = BROKEN_MIRRORS[kind][0]
        return refused_url if behaviour is None else start_mirror(mnist_gz, **behaviour).url

    return start


@pytest.mark.parametrize("kind", BROKEN_MIRRORS)
def test_download_moves_on_from_a_broken_mirror(tmp_path, start_mirror, mnist_gz, broken_mirror, kind):
    good = start_mirror(mnist_gz)
    download_labels([broken_mirror(kind), good.url], tmp_path)
    assert_only_verified_labels(tmp_path)
    assert len(good.requests) == 1


def test_download_error_names_every_mirror(tmp_path, broken_mirror):
    urls = [broken_mirror(kind) for kind in BROKEN_MIRRORS]
    with pytest.raises(downloads.DownloadError) as error:
        download_labels(urls, tmp_path)
    title, *failures, advice = str(error.value).splitlines()
    assert title == f"Could not download {LABELS_GZ}:"
    assert advice.startswith("Check the connection and run again") and str(tmp_path / LABELS_GZ) in advice
    assert len(failures) == len(urls)
    for failure, url, (_, reason) in zip(failures, urls, BROKEN_MIRRORS.values()):
        assert failure.startswith(f"  {url}{LABELS_GZ}: ") and reason in failure
    assert not (tmp_path / LABELS_GZ).exists()
    # What the dropped connection delivered is kept, to resume next time.
    assert (tmp_path / f"{LABELS_GZ}.part").stat().st_size == CUT


@pytest.mark.parametrize("ignore_range", [False, True], ids=["range honoured", "range ignored"])
def test_download_resumes_after_a_dropped_connection(tmp_path, start_mirror, mnist_gz, ignore_range):
    size = len(mnist_gz[LABELS_GZ])
    dropped = start_mirror(mnist_gz, cut_after=CUT)
    with pytest.raises(downloads.DownloadError, match=f"connection closed after {CUT:,} of {size:,} bytes"):
        download_labels([dropped.url], tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f"{LABELS_GZ}.part"]
    assert (tmp_path / f"{LABELS_GZ}.part").stat().st_size == CUT

    good = start_mirror(mnist_gz, ignore_range=ignore_range)
    download_labels([good.url], tmp_path)
    assert good.requests == [(LABELS_GZ, f"bytes={CUT}-")]
    assert good.bytes_sent == (size if ignore_range else size - CUT)
    assert_only_verified_labels(tmp_path)


def test_download_accepts_a_complete_part_without_a_request(tmp_path, start_mirror, mnist_gz):
    (tmp_path / f"{LABELS_GZ}.part").write_bytes(mnist_gz[LABELS_GZ])  # interrupted before its rename
    mirror = start_mirror(mnist_gz)
    download_labels([mirror.url], tmp_path)
    assert mirror.requests == []
    assert_only_verified_labels(tmp_path)


def test_download_restarts_a_full_length_but_wrong_part(tmp_path, start_mirror, mnist_gz):
    """Killed while checking: the mirror has nothing left to send (416), so the part is dropped."""
    (tmp_path / f"{LABELS_GZ}.part").write_bytes(bytes(len(mnist_gz[LABELS_GZ])))
    mirror = start_mirror(mnist_gz)
    download_labels([mirror.url, mirror.url], tmp_path)
    assert mirror.requests == [(LABELS_GZ, f"bytes={len(mnist_gz[LABELS_GZ])}-"), (LABELS_GZ, None)]
    assert_only_verified_labels(tmp_path)


def test_https_mirrors_are_tried_before_plain_http():
    """Plain HTTP can be tampered with on the way: it comes last, and download() always checks the MD5."""
    for urls in (mnist.MNIST_MIRRORS, celeba.CELEBA_URLS):
        https = [url.startswith("https://") for url in urls]
        assert https == sorted(https, reverse=True), urls


# --- MNIST --------------------------------------------------------------------------------


def test_the_committed_sample_is_official_mnist(mnist_gz):
    """The files written from the sample are the official test split, and the official training split's first 10,000."""
    md5s = {name.removesuffix(".gz"): hashlib.md5(gzip.decompress(gz)).hexdigest() for name, gz in mnist_gz.items()}
    assert md5s == {**mnist.MNIST_MD5, **SAMPLE_TRAIN_MD5}


@pytest.fixture
def sample_training_files(monkeypatch):
    """helper takes the training files written from the sample (10,000 digits) for the official ones."""
    for name, md5 in SAMPLE_TRAIN_MD5.items():
        monkeypatch.setitem(mnist.MNIST_MD5, name, md5)


def test_load_mnist_downloads_once_then_uses_the_files(tmp_path, start_mirror, mnist_gz, sample_training_files):
    mirror = start_mirror(mnist_gz)
    images, labels, name = helper.load_mnist(tmp_path, mirrors=[mirror.url])
    assert (images.shape, images.dtype, labels.shape, name) == ((10_000, 28, 28, 1), np.uint8, (10_000,), "MNIST")
    with np.load(mnist.MNIST_SAMPLE) as sample:  # what the served files were written from
        np.testing.assert_array_equal(images[..., 0], sample["train_images"])
        np.testing.assert_array_equal(labels, sample["train_labels"])
    files = sorted(p.name for p in (tmp_path / "mnist").iterdir())
    assert files == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert len(mirror.requests) == 2

    images_again, _, _ = helper.load_mnist(tmp_path, mirrors=[mirror.url])
    assert len(mirror.requests) == 2  # no new request
    np.testing.assert_array_equal(images_again, images)


def test_load_mnist_uses_the_files_already_there(tmp_path, place_mnist_test_split, refused_url, capsys):
    place_mnist_test_split(tmp_path)
    images, labels, name = helper.load_mnist(tmp_path, "test", mirrors=[refused_url])
    assert (images.shape, labels.shape, name) == ((10_000, 28, 28, 1), (10_000,), "MNIST test set")
    # The offline fallback gives the same digits, but it says so: from the files, nothing is said.
    assert capsys.readouterr().out == ""


CORRUPTIONS = {
    "other content": lambda gz: gzip.compress(b"not the MNIST labels"),
    "cut short": lambda gz: gz[: len(gz) // 2],
    "not gzip": lambda gz: b"<html>Moved</html>",
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS)
def test_load_mnist_replaces_a_corrupted_file(tmp_path, start_mirror, mnist_gz, place_mnist_test_split, capsys,
                                              corrupt):
    labels_gz = place_mnist_test_split(tmp_path) / "t10k-labels-idx1-ubyte.gz"
    labels_gz.write_bytes(corrupt(labels_gz.read_bytes()))
    mirror = start_mirror(mnist_gz)
    _, labels, _ = helper.load_mnist(tmp_path, "test", mirrors=[mirror.url])
    assert f"{labels_gz} is not the official MNIST file" in capsys.readouterr().out
    assert mirror.requests == [(labels_gz.name, None)]
    assert labels_gz.read_bytes() == mnist_gz[labels_gz.name]
    assert labels.shape == (10_000,)


def test_load_mnist_falls_back_to_the_committed_sample_offline(tmp_path, refused_url, capsys, monkeypatch):
    loads, load = [], np.load  # how the committed file is opened: never with pickle, which can run code
    monkeypatch.setattr(np, "load", lambda *args, **kwargs: loads.append(kwargs) or load(*args, **kwargs))
    images, labels, name = helper.load_mnist(tmp_path, mirrors=[refused_url])
    assert loads == [{"allow_pickle": False}]
    assert (images.shape, images.dtype, labels.shape) == ((10_000, 28, 28, 1), np.uint8, (10_000,))
    assert "offline" in name and "10,000" in name
    out = capsys.readouterr().out
    assert "Could not download train-images-idx3-ubyte.gz" in out
    assert f"using the {name} committed in data/" in out and "put the official .gz files in" in out
    assert list((tmp_path / "mnist").iterdir()) == []


def test_load_mnist_test_split_falls_back_to_the_whole_committed_test_set(tmp_path, refused_url, mnist_gz):
    images, labels, name = helper.load_mnist(tmp_path, "test", mirrors=[refused_url])
    assert (images.shape, labels.shape, name) == ((10_000, 28, 28, 1), (10_000,), "MNIST test set")
    official = mnist.read_idx(gzip.decompress(mnist_gz["t10k-images-idx3-ubyte.gz"]))
    np.testing.assert_array_equal(images[..., 0], official)


# --- CelebA -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def celeba_zip(tmp_path_factory):
    """A small zip in CelebA's exact layout: img_align_celeba/000001.jpg, ..."""
    return celeba.make_standin_faces(tmp_path_factory.mktemp("celeba") / "celeba.zip", CELEBA_IMAGES)


@pytest.fixture
def official_celeba(monkeypatch, celeba_zip):
    """The small zip, made 'the official CelebA file' by giving helper its MD5 and image count."""
    monkeypatch.setattr(celeba, "CELEBA_MD5", downloads.checksum(celeba_zip))
    monkeypatch.setattr(celeba, "CELEBA_COUNT", CELEBA_IMAGES)
    return celeba_zip


def test_load_celeba_downloads_verifies_and_extracts(tmp_path, start_mirror, official_celeba, capsys):
    mirror = start_mirror({"celeba.zip": official_celeba.read_bytes()})
    files, name = helper.load_celeba(tmp_path, urls=[mirror.url + "celeba.zip"])
    folder = tmp_path / "img_align_celeba"
    assert name == "CelebA"
    assert files == [str(folder / jpeg) for jpeg in jpeg_names(CELEBA_IMAGES)]
    with zipfile.ZipFile(official_celeba) as zf:
        assert Path(files[-1]).read_bytes() == zf.read(f"img_align_celeba/{jpeg_names(CELEBA_IMAGES)[-1]}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img_align_celeba", "img_align_celeba.zip"]
    assert "holds" not in capsys.readouterr().out  # the image count matched


@pytest.mark.parametrize("placed", ["zip", "extracted folder"])
def test_load_celeba_uses_what_the_user_placed(tmp_path, official_celeba, placed):
    if placed == "zip":
        shutil.copy(official_celeba, tmp_path / "img_align_celeba.zip")
    else:
        with zipfile.ZipFile(official_celeba) as zf:
            zf.extractall(tmp_path)
    files, name = helper.load_celeba(tmp_path, urls=[])  # no mirror: nothing can be downloaded
    assert name == "CelebA"
    assert files == [str(tmp_path / "img_align_celeba" / jpeg) for jpeg in jpeg_names(CELEBA_IMAGES)]


def test_load_celeba_uses_an_incomplete_folder_and_says_so(tmp_path, capsys):
    folder = tmp_path / "img_align_celeba"
    folder.mkdir()
    for jpeg in jpeg_names(3):
        (folder / jpeg).write_bytes(b"")  # load_celeba lists the files; it does not read them
    files, name = helper.load_celeba(tmp_path, urls=[])
    assert (len(files), name) == (3, f"CelebA (3 of its {celeba.CELEBA_COUNT:,} images)")
    assert f"holds 3 images; the full CelebA set has {celeba.CELEBA_COUNT:,}" in capsys.readouterr().out


STANDIN_CAUSES = {  # why CelebA can't be had -> what load_celeba says
    "download turned off": "downloading it is turned off",
    "mirror refused": "Could not download img_align_celeba.zip",
    "zip with wrong MD5": "img_align_celeba.zip is not the official CelebA file",
}


@pytest.mark.parametrize("cause, reason", STANDIN_CAUSES.items(), ids=STANDIN_CAUSES)
def test_load_celeba_falls_back_to_labelled_standin(tmp_path, refused_url, capsys, cause, reason):
    user_files = []
    if cause == "zip with wrong MD5":
        user_files = [tmp_path / "img_align_celeba.zip"]
        user_files[0].write_bytes(b"not CelebA")
    files, name = helper.load_celeba(
        tmp_path, download_missing=cause != "download turned off", urls=[refused_url], standin_count=4
    )
    out = capsys.readouterr().out
    assert reason in out and f"Using 4 {helper.STANDIN_NAME}" in out
    assert name == helper.STANDIN_NAME and "stand-in" in name and "NOT CelebA" in name
    assert files == [str(tmp_path / "standin" / "img_align_celeba" / jpeg) for jpeg in jpeg_names(4)]
    assert sorted(tmp_path.glob("img_align_celeba*")) == user_files  # CelebA's places: untouched


# --- Extraction ---------------------------------------------------------------------------


def symlink(name):
    entry = zipfile.ZipInfo(name)
    entry.external_attr = 0o120777 << 16  # a Unix symbolic link, as `zip --symlinks` stores it
    return entry


UNSAFE_ENTRIES = {
    "parent folder": "img_align_celeba/../../evil.jpg",
    "absolute path": "/img_align_celeba/evil.jpg",
    "symlink": symlink("img_align_celeba/evil.jpg"),
    "outside the folder": "other/evil.jpg",
}


@pytest.mark.parametrize("entry", UNSAFE_ENTRIES.values(), ids=UNSAFE_ENTRIES)
def test_extract_zip_refuses_unsafe_entries(tmp_path, entry):
    archive = tmp_path / "unsafe.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for member in ("img_align_celeba/000001.jpg", entry):
            zf.writestr(member, b"\xff\xd8 a JPEG")
    name = getattr(entry, "filename", entry)
    with pytest.raises(ValueError, match=re.escape(repr(name))):
        celeba.extract_zip(archive, tmp_path, "img_align_celeba")
    assert [p.name for p in tmp_path.iterdir()] == ["unsafe.zip"]  # no folder, no staging folder


def test_extract_zip_after_a_cut_off_extraction(tmp_path, celeba_zip):
    leftover = tmp_path / ".img_align_celeba.partial" / "img_align_celeba"
    leftover.mkdir(parents=True)
    (leftover / "000001.jpg").write_bytes(b"half a JPEG")
    (leftover / "999999.jpg").write_bytes(b"")
    folder = celeba.extract_zip(celeba_zip, tmp_path, "img_align_celeba")
    assert folder == tmp_path / "img_align_celeba"
    assert sorted(p.name for p in folder.iterdir()) == jpeg_names(CELEBA_IMAGES)
    with zipfile.ZipFile(celeba_zip) as zf:
        assert (folder / "000001.jpg").read_bytes() == zf.read("img_align_celeba/000001.jpg")
    assert [p.name for p in tmp_path.iterdir()] == ["img_align_celeba"]
