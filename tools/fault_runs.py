"""What a user meets when things go wrong, seen in papermill runs of the notebook as a user would run it: a full disk,
a damaged checkpoint, a learning rate of 1, a folder of one's own faces at another size, a damaged shard of the
Hub's CelebA, and a second run started on the folder of one that is training (issue 32). Each case is made in a
scratch folder, the notebook runs there in its quick profile (toy sizes, offline, so no download is tried for
CelebA), and what the notebook said is kept: its error's last line, or the lines that tell the case's story.

    python -m tools.fault_runs [--faces data/img_align_celeba] [--only CASE ...] [--out docs/faults.md]

The full disk is a 16 MB tmpfs under the output folder, mounted in a mount namespace of the run's own
(`unshare --map-root-user --mount`: no root needed). The own faces are 300 of the CelebA images in `--faces`,
cropped square and saved at 128x128. Takes about 10 minutes on 2 cores.
"""

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from PIL import Image

from facegen.notebook import NOTEBOOK, ROOT, papermill_arguments, quick_parameters

TMPFS_MB = 16


def papermill(folder, parameters, prefix=(), name="run"):
    """Start a papermill run of the notebook in `folder`'s quick profile with `parameters` on top."""
    command = [*prefix, sys.executable, "-m", "papermill", "--no-progress-bar", str(NOTEBOOK),
               str(folder / f"{name}.ipynb"), *papermill_arguments(quick_parameters(folder, **parameters))]
    # Only stderr is read (its last line, if papermill fails before writing the notebook), so a long run's
    # terminal output cannot fill a pipe nobody reads.
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(process, folder, name="run"):
    """Wait for a papermill run; return whether every cell ran, and what the notebook printed, as lines."""
    _, terminal = process.communicate()
    path = folder / f"{name}.ipynb"
    if not path.exists():
        return False, terminal.strip().splitlines()[-1:]
    lines = []
    for cell in nbformat.read(path, as_version=4).cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                lines += output.text.splitlines()
            elif output.output_type == "error":
                lines.append(f"{output.ename}: {output.evalue}")
    return process.returncode == 0, lines


def run(folder, parameters, prefix=(), name="run"):
    return finish(papermill(folder, parameters, prefix, name), folder, name)


def full_disk(folder, faces):
    """The output folder is a 16 MB disk, which the checkpoints fill (the digits' already, at 6.4 MB each)."""
    output = folder / "output"
    output.mkdir()
    mount = ["unshare", "--map-root-user", "--mount", "sh", "-c",
             f'mount -t tmpfs -o size={TMPFS_MB}m tmpfs {output} && exec "$@"', "sh"]
    done, lines = run(folder, dict(output_dir=str(output), celeba_images=768), prefix=mount)
    return done, lines, r"DiskFullError|full", "the output folder was a tmpfs, gone with the run's namespace"


def damaged_checkpoint(folder, faces):
    """The face stage's newest checkpoint has its data file cut to half, as an interrupted copy leaves it; then the
    same command again."""
    parameters = dict(celeba_images=512)
    done, lines = run(folder, parameters, name="first")
    if not done:
        return done, lines, r".", "the first run failed"
    checkpoints = next(folder.glob("celeba*/checkpoints"))  # celeba, or celeba-standin offline
    newest = re.search(r'^model_checkpoint_path: "(.+)"', (checkpoints / "checkpoint").read_text(), re.M)[1]
    data = next(checkpoints.glob(newest + ".data-*"))
    data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])
    done, lines = run(folder, parameters)
    return done, lines, r"Skipped|Resumed from .*celeba|faces.*trained to", f"{data.name} cut to half its size"


def learning_rate_of_one(folder, faces):
    """`-p mnist_learning_rate 1`, the largest value the parameter check accepts, on the digits alone: it must run
    (it once stopped in Keras's Adam); that so high a rate ruins the digits is for the run's figures to show."""
    done, lines = run(folder, dict(mnist_learning_rate=1, celeba_images=0))
    return done, lines, r"step|diverg|nan|NaN|FD|score|Error", "mnist_learning_rate = 1"


def own_faces(folder, faces):
    """300 face photos of 128x128 as data/img_align_celeba, as a user who trains on their own faces has them."""
    own = folder / "img_align_celeba"
    own.mkdir()
    for path in sorted(Path(faces).glob("*.jpg"))[:300]:
        with Image.open(path) as image:
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image.crop((left, top, left + side, top + side)).resize((128, 128), Image.LANCZOS).save(
                own / f"face-{path.stem}.jpg", quality=90)
    done, lines = run(folder, dict(max_images=None))
    return done, lines, r"own faces|your faces|square|SWD|Error", "300 JPEGs of 128x128, named face-NNNNNN.jpg"


def damaged_shard(folder, faces):
    """One of the Hub's three CelebA shards in data/, damaged (10 KB that are not a parquet file), and no network
    for the others."""
    (folder / "train-00000-of-00003.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 40)
    done, lines = run(folder, dict())
    return done, lines, r"parquet|shard|CelebA|stand-in|Error", "train-00000-of-00003.parquet"


def two_runs(folder, faces):
    """A second run started on the output folder of one that is training, as from a second tmux pane: the same
    command twice, with 100 epochs of digits so that the first is still training when the second gets there."""
    parameters = dict(mnist_epochs=100, celeba_images=0)
    first = papermill(folder, parameters, name="first")
    lock = folder / "mnist" / "running.lock"
    while not (lock.exists() and lock.read_text()) and first.poll() is None:  # the holder, written once locked
        time.sleep(1)
    done, lines = run(folder, parameters, name="second")
    first_done, _ = finish(first, folder, name="first")
    return done, lines, r"Another run|Error", f"the first run {'ran every cell' if first_done else 'FAILED'}"


CASES = {"a full disk": full_disk, "a damaged checkpoint": damaged_checkpoint,
         "mnist_learning_rate 1": learning_rate_of_one, "one's own faces at 128x128": own_faces,
         "a damaged shard, offline": damaged_shard, "two runs on one folder": two_runs}


def report(results):
    """Markdown: each case, whether every cell ran, and the notebook's lines that tell what happened."""
    rows = ["# What a user meets when things go wrong", "",
             f"Papermill runs of the notebook, each fed one fault, made by `python -m tools.fault_runs --out "
             f"docs/faults.md` on {time.strftime('%Y-%m-%d')} (see the tool's help for how each case is made). Under "
             "each case: whether every cell ran, and the lines the notebook printed that tell what happened (an "
             "error's last line is shown as `Name: message`, as it ends the traceback a user sees).", ""]
    for name, (done, lines, pattern, setup) in results.items():
        shown = [line for line in lines if re.search(pattern, line)][-6:]
        rows += [f"### {name}", "", f"{' '.join(CASES[name].__doc__.split())} ({setup})", "",
                 f"Every cell ran: {'yes' if done else 'no, the run stopped at the error below'}.", "", "```",
                 *shown, "```", ""]
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", default="data/img_align_celeba", help="CelebA images for the own-faces case")
    parser.add_argument("--only", nargs="+", choices=list(CASES), help="these cases only")
    parser.add_argument("--scratch", default="runs/faults", help="the cases' folders (default runs/faults)")
    parser.add_argument("--out", help="also write the report in this Markdown file")
    args = parser.parse_args()
    if not list(Path(args.faces).glob("*.jpg"))[:300]:
        parser.error(f"--faces {args.faces} has no JPEG images: give a folder of CelebA's aligned images")
    results = {}
    for number, name in enumerate(args.only or CASES):
        folder = (Path(args.scratch) / f"case{number}").resolve()
        subprocess.run(["rm", "-rf", str(folder)], check=True)
        folder.mkdir(parents=True)
        started = time.monotonic()
        results[name] = CASES[name](folder, args.faces)
        print(f"{name}: {time.monotonic() - started:.0f} s", flush=True)
    text = report(results).replace(str(Path(args.scratch).resolve()), args.scratch)  # paths as the reader's
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
