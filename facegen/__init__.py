"""The machinery behind helper.py, one module per responsibility. helper.py imports from here; nothing here
imports helper.py, and no module imports one listed after it.

- `downloads`: files from the first good mirror, resumed, checked, and only if the disk has room;
- `mnist`: MNIST's official files, or offline the sample committed in data/;
- `celeba`: CelebA's JPEGs from its folder, zip or the Hub's shards, or else the stand-in faces;
- `pixels`: uint8 pixels to the networks' [-1, 1] and back;
- `face_cache`: every face decoded, cropped and resized once, into an array on disk;
- `precision`: measuring and exporting in float32 whatever training used;
- `progress`: what a person watches while a run trains: the bar, a terminal line, TensorBoard;
- `training_run`: checkpoints and resuming, the recipe, the time budget, the stop button, a stop on NaN;
- `quality`: the Fréchet distance, the classifier score and the FID;
- `digit_quality`: generated digits measured with our own MNIST classifier;
- `face_quality`: how close generated faces are to real ones, offline, on the CPU (sliced Wasserstein distance).
"""

from pathlib import Path

COMMITTED_DATA = Path(__file__).resolve().parent.parent / "data"  # what the project commits: MNIST's sample, classifier
