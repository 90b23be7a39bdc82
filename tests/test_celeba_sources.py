"""Where CelebA comes from, tested on loopback in the published formats: the Hugging Face Hub's
copy (three parquet shards of a `datasets` Image column, behind a redirect to a CDN) when the zip
mirror fails, copies users place themselves (Hub shards, Kaggle's layout), and the free-space
checks that come before any download, extraction, conversion or cache build."""

import hashlib
import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import helper
from facegen import celeba, downloads, face_cache
from support.notebook import notebook_functions

ROWS = 300  # stand-in faces in the three shards, 100 each
NOT_JPEG_ROW = 150  # a row whose bytes are an HTML page, as a broken upload would hold
NOT_JPEG = b"<html><body>Moved</body></html>"
SMALL_JPEG_ROW = 250  # a row whose JPEG is not CelebA's aligned 178x218
CUT = 20_000  # bytes a dropped connection delivers before it closes
SHARDS = list(celeba.CELEBA_HUB_SHA256)
HUB_PATHS = [url.removeprefix("https://huggingface.co/") for url in celeba.CELEBA_URLS if url.endswith(".parquet")]
# The Image feature as `datasets` writes it: the struct of the JPEG's bytes and its path, and the
# feature itself in the schema's metadata.
IMAGE_SCHEMA = pa.schema(
    [pa.field("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))],
    metadata={b"huggingface": json.dumps({"info": {"features": {"image": {"_type": "Image"}}}}).encode()},
)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """ROWS stand-in 178x218 JPEGs, as bytes."""
    archive = celeba.make_standin_faces(tmp_path_factory.mktemp("faces") / "faces.zip", ROWS)
    with zipfile.ZipFile(archive) as zf:
        return [zf.read(name) for name in sorted(zf.namelist())]


def original_name(row):
    """The file name a row carries: CelebA's numbering, backwards, so that it differs from the row's number."""
    return f"{ROWS - row:06d}.jpg"


def make_shards(faces, paths=True):
    """The three shards' bytes by name, with a row NOT_JPEG and one a 64x64 JPEG; with `paths`, each row's
    path is a file name in a folder (as `datasets` may keep it), else None."""
    small = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 150, 120)).save(small, "JPEG")
    broken = {NOT_JPEG_ROW: NOT_JPEG, SMALL_JPEG_ROW: small.getvalue()}
    contents = [broken.get(row, face) for row, face in enumerate(faces)]
    rows = [{"image": {"bytes": content, "path": f"img_align_celeba/{original_name(row)}" if paths else None}}
            for row, content in enumerate(contents)]
    shards = {}
    for index, name in enumerate(SHARDS):
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows[index * 100 : (index + 1) * 100], IMAGE_SCHEMA), buffer)
        shards[name] = buffer.getvalue()
    return shards


@pytest.fixture(scope="module")
def shards(faces):
    return make_shards(faces)


@pytest.fixture
def hub(monkeypatch, shards):
    """The test shards made 'the Hub's CelebA': shards 0 and 2 by their SHA-256, shard 1 by its content
    alone (no published checksum, as for the real shard 1)."""
    sha256 = {name: hashlib.sha256(content).hexdigest() for name, content in shards.items()}
    monkeypatch.setattr(celeba, "CELEBA_HUB_SHA256", {**sha256, SHARDS[1]: None})
    monkeypatch.setattr(celeba, "CELEBA_COUNT", ROWS)
    return shards


def hub_urls(mirror):
    """helper's Hub URLs, on the local mirror."""
    return [mirror.url + path for path in HUB_PATHS]


@pytest.fixture
def start_hub(start_mirror):
    """`start_hub(shards, **behaviour)`: a local Hub whose /resolve/ URLs answer 302, Found at the CDN path
    that serves the shard."""

    def start(shards, **behaviour):
        redirects = {path: f"cdn/{name}" for path, name in zip(HUB_PATHS, SHARDS)}
        cdn = {f"cdn/{name}": content for name, content in shards.items()}
        return start_mirror(cdn, redirects=redirects, **behaviour)

    return start


def expected_files(folder, named_by_path=True):
    """The JPEG paths load_celeba returns from the shards, and each one's content's row."""
    rows = {(original_name(row) if named_by_path else f"{row + 1:06d}.jpg"): row
            for row in range(ROWS) if row not in (NOT_JPEG_ROW, SMALL_JPEG_ROW)}
    return {str(folder / name): row for name, row in sorted(rows.items())}


def assert_faces_from_rows(files, expected, faces):
    assert files == list(expected)
    for file, row in expected.items():
        assert Path(file).read_bytes() == faces[row]


# --- The sources --------------------------------------------------------------------------


def test_sources_are_the_zip_then_the_hub_shards_pinned():
    s3, *shards = celeba.CELEBA_URLS
    assert s3.endswith("/celeba.zip") and "google" not in " ".join(celeba.CELEBA_URLS)
    for url, name in zip(shards, SHARDS, strict=True):
        match = re.fullmatch(r"https://huggingface\.co/datasets/nielsr/CelebA-faces/resolve/(\w+)/data/(.+)", url)
        revision = match[1]
        assert match[2] == name
        # A full commit, or (where no full hash is published) main with the shard checked by its content.
        pinned = re.fullmatch(r"[0-9a-f]{40}", revision)
        assert pinned or (revision == "main" and celeba.CELEBA_HUB_SHA256[name] is None)
    assert celeba.CELEBA_HUB_SHA256[SHARDS[0]] == "9c91b375f4d5fe0d120ad19e964632dd17be5a3d57f19e46f4489ee3d5931eed"


# --- The Hub's copy -----------------------------------------------------------------------


def test_load_celeba_gets_the_hub_copy_when_the_zip_mirror_fails(tmp_path, refused_url, hub, start_hub, faces, capsys):
    mirror = start_hub(hub)
    files, name = helper.load_celeba(tmp_path, urls=[refused_url + "celeba.zip", *hub_urls(mirror)])
    assert name in ("CelebA", f"CelebA ({len(files):,} of its {celeba.CELEBA_COUNT:,} images)")
    assert_faces_from_rows(files, expected_files(tmp_path / "img_align_celeba"), faces)
    out = capsys.readouterr().out
    skipped = f"{original_name(NOT_JPEG_ROW)}, {original_name(SMALL_JPEG_ROW)}"
    assert f"Skipped 2 row(s) of {ROWS} that are not a 178x218 JPEG: {skipped}" in out
    assert f"holds {ROWS - 2} images; the full CelebA set has {ROWS}" in out
    # Each shard once, through its /resolve/ URL's redirect; what is left is the folder and the shards.
    assert mirror.requests == [request for path, name in zip(HUB_PATHS, SHARDS)
                               for request in ((path, None), (f"cdn/{name}", None))]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img_align_celeba", *SHARDS]
    # The notebook's pipeline takes them as it takes the zip's: a face cache beside the folder, then batches.
    batches = helper.celeba_dataset(files, 32, batch_size=8)
    batch = next(iter(batches)).numpy()
    assert batch.shape == (8, 32, 32, 3) and batch.std() > 0.1
    assert (tmp_path / "img_align_celeba_32.npy").exists()
    # ...and the notebook's train learns from them, labelled "CelebA" (asserted above).
    generator, losses = notebook_functions()["train"](batches.take(2), name, 1, 8, 2e-4, 0.5, tmp_path / "celeba",
                                                      tmp_path / "images", filters=8)
    assert losses.shape == (2, 2) and np.isfinite(losses).all() and generator.output_shape == (None, 32, 32, 3)


def test_hub_download_resumes_behind_the_redirect(tmp_path, refused_url, hub, start_hub, capsys):
    dropped = start_hub(hub, cut_after=CUT)
    _, name = helper.load_celeba(tmp_path, urls=[refused_url, *hub_urls(dropped)], standin_count=4)
    assert name == helper.STANDIN_NAME
    out = capsys.readouterr().out
    assert f"Could not download {SHARDS[0]}:" in out
    assert f"connection closed after {CUT:,} of {len(hub[SHARDS[0]]):,} bytes" in out
    assert (tmp_path / f"{SHARDS[0]}.part").stat().st_size == CUT

    good = start_hub(hub)
    files, name = helper.load_celeba(tmp_path, urls=[refused_url, *hub_urls(good)])
    assert name in ("CelebA", f"CelebA ({len(files):,} of its {celeba.CELEBA_COUNT:,} images)")
    # The Range header went to the Hub and, through the redirect, on to the CDN, which sent only the rest.
    assert good.requests[:2] == [(HUB_PATHS[0], f"bytes={CUT}-"), (f"cdn/{SHARDS[0]}", f"bytes={CUT}-")]
    assert good.bytes_sent == sum(map(len, hub.values())) - CUT
    assert (tmp_path / SHARDS[0]).read_bytes() == hub[SHARDS[0]]


def wrong_shard(shards, name, faces):
    """`shards` with `name` replaced by a valid shard of other rows (as a changed upload would be)."""
    return {**shards, name: make_shards(faces[::-1])[name]}


def test_a_shard_with_a_wrong_checksum_is_refused_and_fetched_from_the_next_mirror(tmp_path, hub, start_hub, faces):
    wrong = start_hub(wrong_shard(hub, SHARDS[0], faces))
    good = start_hub(hub)
    files, name = helper.load_celeba(tmp_path, urls=[*hub_urls(wrong), *hub_urls(good)])
    assert name in ("CelebA", f"CelebA ({len(files):,} of its {celeba.CELEBA_COUNT:,} images)")
    assert_faces_from_rows(files, expected_files(tmp_path / "img_align_celeba"), faces)
    assert [path for path, _ in good.requests if path.startswith("cdn/")] == [f"cdn/{SHARDS[0]}"]


@pytest.mark.parametrize("shard", [0, 1], ids=["by its SHA-256", "by its content"])
def test_a_wrong_shard_from_the_only_mirror_is_refused_and_reported(
    tmp_path, refused_url, hub, start_hub, faces, capsys, shard
):
    name = SHARDS[shard]
    served = wrong_shard(hub, name, faces) if shard == 0 else {**hub, name: b"<html>Not Found</html>"}
    mirror = start_hub(served)
    _, data_name = helper.load_celeba(tmp_path, urls=[refused_url, *hub_urls(mirror)], standin_count=4)
    assert data_name == helper.STANDIN_NAME
    out = capsys.readouterr().out
    assert f"Could not download {name}:" in out
    if shard == 0:
        actual = hashlib.sha256(served[name]).hexdigest()
        assert f"wrong checksum (sha256 {actual}, expected {celeba.CELEBA_HUB_SHA256[name]})" in out
    else:
        assert "not a parquet file" in out
    assert not (tmp_path / name).exists() and not (tmp_path / f"{name}.part").exists()
    assert not (tmp_path / "img_align_celeba").exists()


# --- Copies users place themselves --------------------------------------------------------


@pytest.mark.parametrize("paths", [True, False], ids=["rows with file names", "rows without"])
def test_hub_shards_placed_by_hand_are_used(tmp_path, monkeypatch, hub, faces, paths):
    for name, content in make_shards(faces, paths).items():
        (tmp_path / name).write_bytes(content)
        if celeba.CELEBA_HUB_SHA256[name]:  # other bytes than the hub fixture's without paths: their own checksums
            monkeypatch.setitem(celeba.CELEBA_HUB_SHA256, name, hashlib.sha256(content).hexdigest())
    files, name = helper.load_celeba(tmp_path, urls=[])  # no URL: nothing can be downloaded
    assert name in ("CelebA", f"CelebA ({len(files):,} of its {celeba.CELEBA_COUNT:,} images)")
    assert_faces_from_rows(files, expected_files(tmp_path / "img_align_celeba", named_by_path=paths), faces)
    assert not list(tmp_path.glob(".*"))  # no staging folder left


WRONG_PLACED_SHARDS = {  # what is wrong -> what load_celeba says
    "wrong checksum": (lambda shards, faces: wrong_shard(shards, SHARDS[2], faces),
                       f"{SHARDS[2]} is not the Hub's CelebA shard (wrong checksum (sha256 "),
    "not parquet": (lambda shards, faces: {**shards, SHARDS[1]: b"<html>"},
                    f"{SHARDS[1]} is not the Hub's CelebA shard (not a parquet file"),
    "rows missing": (lambda shards, faces: {**shards, SHARDS[1]: make_shards(faces[:150])[SHARDS[1]]},  # 50 rows
                     f"hold {ROWS - 50} rows; the Hub's CelebA has {ROWS}"),
}


@pytest.mark.parametrize("wrong, reason", WRONG_PLACED_SHARDS.values(), ids=WRONG_PLACED_SHARDS)
def test_wrong_hub_shards_placed_by_hand_are_refused(tmp_path, hub, faces, capsys, wrong, reason):
    placed = wrong(hub, faces)
    for name, content in placed.items():
        (tmp_path / name).write_bytes(content)
    _, name = helper.load_celeba(tmp_path, urls=[], standin_count=4)
    assert name == helper.STANDIN_NAME
    assert reason in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.parquet")} == placed  # the user's files, as they were
    assert not (tmp_path / "img_align_celeba").exists()


def test_kaggle_layout_is_used_as_it_is(tmp_path, faces):
    folder = tmp_path / "img_align_celeba" / "img_align_celeba"  # Kaggle's celeba-dataset, unzipped into data/
    folder.mkdir(parents=True)
    for row, face in enumerate(faces[:5]):
        (folder / f"{row + 1:06d}.jpg").write_bytes(face)
    files, name = helper.load_celeba(tmp_path, urls=[])
    assert name in ("CelebA", f"CelebA ({len(files):,} of its {celeba.CELEBA_COUNT:,} images)")
    assert files == [str(folder / f"{row:06d}.jpg") for row in range(1, 6)]


def test_a_folder_of_ones_own_faces_of_another_size_is_used_and_said_once(tmp_path, capsys):
    folder = tmp_path / "img_align_celeba"
    folder.mkdir()
    for row in range(70):  # more than a batch of 64, as a user's 128x128 photos
        pixels = np.full((128, 128, 3), row * 3, np.uint8)
        pixels[:, :32] = 255  # a bright left border: the centred square keeps it, a 108x108 crop would not
        Image.fromarray(pixels).save(folder / f"me_{row:03d}.jpg", quality=95)
    files, name = helper.load_celeba(tmp_path, urls=[])
    assert name == "your faces (70 images)"  # not named as CelebA's: never called CelebA
    batches = helper.celeba_dataset(files, 32, 64)
    out = capsys.readouterr().out
    assert out.count("70 of the 70 images are not CelebA's aligned 178x218: each gives its centered square, "
                     "resized to 32x32.") == 1, out
    faces, rows = face_cache.face_cache(files, 32)
    assert len(rows) == 70 and faces[0][:, 0].min() > 240  # the border, in the first column at 32x32
    assert next(iter(batches)).shape == (64, 32, 32, 3)


def test_a_folder_without_jpegs_is_named(tmp_path):
    (tmp_path / "img_align_celeba").mkdir()
    (tmp_path / "img_align_celeba" / "notes.txt").write_text("")
    with pytest.raises(FileNotFoundError, match=r"img_align_celeba holds no JPEG images \(\*\.jpg\): put CelebA's"):
        helper.load_celeba(tmp_path, urls=[])


def test_a_folder_of_unreadable_jpegs_is_named_not_counted_as_zero(tmp_path):
    folder = tmp_path / "img_align_celeba"
    folder.mkdir()
    for row in range(3):
        (folder / f"{row:06d}.jpg").write_bytes(b"not a jpeg")
    files, _ = helper.load_celeba(tmp_path, urls=[])
    with pytest.raises(ValueError, match=r"^None of the 3 images in .*img_align_celeba could be read"):
        helper.celeba_dataset(files, 32, 2)


def test_a_partial_set_of_hub_shards_is_named(tmp_path, hub, capsys):
    (tmp_path / "train-00000-of-00003.parquet").write_bytes(hub["train-00000-of-00003.parquet"][:1000])
    _, name = helper.load_celeba(tmp_path, urls=[], standin_count=4)
    assert name == helper.STANDIN_NAME
    out = capsys.readouterr().out
    assert re.search(rf"{tmp_path}/ holds train-00000-of-00003.parquet \(which is damaged: wrong checksum \(sha256 "
                     r"\w+, expected \w+\); delete it\) but not the Hub's other CelebA shard\(s\), "
                     r"train-00001-of-00003.parquet, train-00002-of-00003.parquet: all three are needed\.", out), out


def test_a_shard_without_a_published_checksum_is_said_damaged_by_its_content(tmp_path, hub, capsys):
    (tmp_path / "train-00001-of-00003.parquet").write_bytes(hub["train-00001-of-00003.parquet"][:1000])
    helper.load_celeba(tmp_path, urls=[], standin_count=4)
    assert re.search(r"holds train-00001-of-00003.parquet \(which is damaged: not a parquet file: .+; delete it\) "
                     r"but not", capsys.readouterr().out)


# --- Room on the disk ---------------------------------------------------------------------

FREE = 1_000  # bytes the disk is made to have


@pytest.fixture
def small_disk(monkeypatch):
    asked = []
    monkeypatch.setattr(downloads, "free_bytes", lambda directory: asked.append(Path(directory)) or FREE)
    return asked


def place_zip(data_dir, faces):
    with zipfile.ZipFile(data_dir / "img_align_celeba.zip", "w") as zf:
        for row, face in enumerate(faces):
            zf.writestr(f"img_align_celeba/{row + 1:06d}.jpg", face)


def test_no_room_for_a_download_stops_before_any_request(tmp_path, small_disk, start_mirror, start_hub, hub):
    data_dir = tmp_path / "data"  # not there yet: not even the folder is made
    zip_mirror, hub_mirror = start_mirror({"celeba.zip": b"never sent"}), start_hub(hub)
    for urls, what, needed in (
        ([zip_mirror.url + "celeba.zip"], "CelebA's zip and its images", 2 * celeba.CELEBA_ZIP_BYTES),
        (hub_urls(hub_mirror), "CelebA's parquet shards and their images", 2 * celeba.CELEBA_HUB_BYTES),
    ):
        with pytest.raises(downloads.NoRoomError) as error:
            helper.load_celeba(data_dir, urls=urls)
        assert str(error.value) == (
            f"Not enough room for {what}: it needs {needed / 1e9:.1f} GB and the disk of {data_dir} has 0.0 GB free; "
            f"free some space, or point data_dir at a disk with more room."
        )
    assert zip_mirror.requests == hub_mirror.requests == []
    assert list(tmp_path.iterdir()) == []
    assert small_disk == [data_dir, data_dir]


@pytest.mark.parametrize("placed", ["zip", "Hub shards"])
def test_no_room_to_unpack_what_the_user_placed(tmp_path, monkeypatch, small_disk, hub, faces, placed):
    if placed == "zip":
        place_zip(tmp_path, faces)
        monkeypatch.setattr(celeba, "CELEBA_MD5", downloads.checksum(tmp_path / "img_align_celeba.zip"))
    else:
        for name, content in hub.items():
            (tmp_path / name).write_bytes(content)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(downloads.NoRoomError, match=r"^Not enough room for the images of .*point data_dir at a disk"):
        helper.load_celeba(tmp_path, urls=[])
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no folder, no staging folder


def test_no_room_for_the_face_cache(tmp_path, small_disk, faces):
    folder = tmp_path / "img_align_celeba"
    folder.mkdir()
    for row, face in enumerate(faces[:4]):
        (folder / f"{row + 1:06d}.jpg").write_bytes(face)
    files = sorted(str(p) for p in folder.iterdir())
    needed = 4 * 64 * 64 * 3
    with pytest.raises(downloads.NoRoomError, match=re.escape(f"the faces' cache img_align_celeba_64.npy: it needs "
                                                           f"{needed / 1e9:.1f} GB")):
        face_cache.face_cache(files, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img_align_celeba"]


def test_free_bytes_asks_the_nearest_existing_folder(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(shutil, "disk_usage", lambda path: asked.append(path) or shutil._ntuple_diskusage(10, 5, 5))
    assert downloads.free_bytes(tmp_path / "data" / "img_align_celeba") == 5
    assert asked == [tmp_path]
