"""CelebA's aligned faces as a folder of JPEGs, from wherever they are: the folder itself (also in Kaggle's layout),
the authors' zip, or the Hugging Face Hub's parquet shards, in data_dir or downloaded; else the stand-in faces."""

import contextlib
import io
import re
import shutil
import urllib.parse
import zipfile
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from facegen.downloads import DownloadError, checksum, checksum_check, download, ensure_room, part_path

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
STANDIN_NAME = "stand-in faces (NOT CelebA)"


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


def jpegs(folder):
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
    have = sum(p.stat().st_size for path in paths for p in (path, part_path(path)) if p.exists())
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
        if checksum(archive) != CELEBA_MD5:
            raise DownloadError(
                f"{archive} is not the official CelebA file (wrong MD5; expected {CELEBA_MD5}).\n"
                f"Delete it and run again to download it, or fetch it by hand from the CelebA site."
            )
        return extract_zip(archive, data_dir, CELEBA_DIR)
    if all(shard.exists() for shard in shards):
        return _folder_from_shards(shards, data_dir)
    if not download_missing:
        raise DownloadError(f"{_partial_shards(shards, data_dir)}CelebA is not in {data_dir}/ and downloading it is "
                            f"turned off.")
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
    raise DownloadError(_partial_shards(shards, data_dir) + ("\n".join(failures) or "No URL to download CelebA from."))


def _partial_shards(shards, data_dir):
    """What to say of a partial set of the Hub's shards in `data_dir`: which are there (and damaged), which missing."""
    present = []
    for shard in (shard for shard in shards if shard.exists()):
        problem = _shard_check(shard.name)(shard)  # a whole SHA-256: only said when CelebA cannot be had
        present.append(shard.name + (f" (which is damaged: {problem}; delete it)" if problem else ""))
    if not present:
        return ""
    return (f"{data_dir}/ holds {', '.join(present)} but not the Hub's other CelebA shard(s), "
            f"{', '.join(shard.name for shard in shards if not shard.exists())}: all three are needed. ")


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
            print(f"{error}\nUsing {standin_count:,} {STANDIN_NAME}: cartoons drawn here, in CelebA's layout. "
                  f"For CelebA, run again when online, or put it in {data_dir}/ as the README's Data section says.")
            return jpegs(standin_faces(data_dir / "standin", standin_count)), STANDIN_NAME
    folder = _celeba_folder(data_dir)
    files = jpegs(folder)
    if not files:
        raise FileNotFoundError(f"{folder} holds no JPEG images (*.jpg): put CelebA's images (or your own faces) "
                                f"there, or remove the folder so that the notebook fetches CelebA.")
    if not all(re.fullmatch(r"\d{6}\.jpg", Path(file).name) for file in files):  # not CelebA's numbering
        print(f"{folder} holds {len(files):,} images not named as CelebA's (000001.jpg to 202599.jpg): using them "
              f"as your own faces.")
        return files, f"your faces ({len(files):,} images)"
    if len(files) == CELEBA_COUNT:
        return files, "CelebA"
    print(f"{folder} holds {len(files):,} images; the full CelebA set has {CELEBA_COUNT:,}. Using those there are.")
    return files, f"CelebA ({len(files):,} of its {CELEBA_COUNT:,} images)"  # wherever results are shown


def standin_faces(directory, count, seed=0):
    """The stand-in face set in `directory`, made once (as a zip in CelebA's layout, then extracted)."""
    directory = Path(directory)
    folder = directory / CELEBA_DIR
    if len(jpegs(folder)) == count:
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
    part = part_path(archive)
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
