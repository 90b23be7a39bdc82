"""Does the face measure order known degradations of real faces as a person would? Scores real CelebA faces
against other real faces, then the same faces blurred, with noise, a few faces repeated, and the stand-in
cartoons, and prints a Markdown table (and the seconds the measure took for each set).

    python -m tools.check_face_measure [--data-dir data] [--size 64]

Half the faces in data/img_align_celeba/ are the reference, the other half are degraded. A person would rank
them: real < slight blur or noise < strong blur or noise, and real < 100 faces repeated < 10 faces repeated; the
stand-ins, cartoons, far off.
"""

import argparse
import tempfile
import time


import numpy as np
from PIL import Image, ImageFilter

import helper
from facegen import face_cache


def blurred(images, sigma):
    """uint8 images, each blurred by a Gaussian of `sigma` pixels (Pillow's)."""
    return np.stack([np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma))) for image in images])


def noisy(images, std, seed=0):
    """uint8 images plus Gaussian noise of `std` (in units of the pixel range, 0 to 1), clipped."""
    noise = np.random.default_rng(seed).normal(0, std * 255, images.shape)
    return np.clip(np.round(images + noise), 0, 255).astype(np.uint8)


def repeated(images, count):
    """As many images as `images`, made of its first `count` repeated: a generator with no variety."""
    return images[np.arange(len(images)) % count]


def check_face_measure(data_dir="data", size=64):
    files, data_name = helper.load_celeba(data_dir, download_missing=False)
    if data_name == helper.STANDIN_NAME:
        raise SystemExit(f"The check needs real CelebA images in {data_dir}/img_align_celeba/, not the {data_name}.")
    faces, rows = face_cache.face_cache(files, size)
    order = np.random.default_rng(0).permutation(rows)
    half = len(order) // 2
    reference, others = faces[np.sort(order[:half])], faces[np.sort(order[half:2 * half])]
    start = time.perf_counter()
    quality = helper.FaceQuality(reference)
    print(f"{len(rows):,} CelebA faces at {size}x{size}: {half:,} are the reference "
          f"(its patches in {time.perf_counter() - start:.1f} s).")
    with tempfile.TemporaryDirectory() as scratch:
        standin_files, _ = helper.load_celeba(scratch, download_missing=False, standin_count=half)
        standins = np.asarray(face_cache.face_cache(standin_files, size)[0])
        sets = {
            "other real faces": others,
            "blurred, sigma 0.7 px": blurred(others, 0.7), "blurred, sigma 1.5 px": blurred(others, 1.5),
            "noise, std 0.05": noisy(others, 0.05), "noise, std 0.15": noisy(others, 0.15),
            "100 faces repeated": repeated(others, 100), "10 faces repeated": repeated(others, 10),
            "stand-in cartoons": standins,
        }
    print("| faces | SWD | seconds |\n|---|---|---|")
    for name, images in sets.items():
        start = time.perf_counter()
        swd = quality(images)["swd"]
        print(f"| {name} | {swd:.1f} | {time.perf_counter() - start:.1f} |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data", help="where CelebA is, in img_align_celeba/ (default data)")
    parser.add_argument("--size", type=int, choices=[32, 64], default=64, help="image size (default 64)")
    args = parser.parse_args()
    check_face_measure(args.data_dir, args.size)
