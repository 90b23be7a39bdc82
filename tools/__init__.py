"""Commands for the project's developers, not for the lesson: benchmarks, and what made the committed data.

Each runs from the repository's root, e.g. `python -m tools.bench_xla`; `--help` says what it does:

- `bench_pipeline`: how fast the CelebA input pipeline is, next to what a training step consumes;
- `bench_xla`: the notebook's training step with and without XLA;
- `bench_loop`: the notebook's training loop against its bare training step;
- `bench_recipes`: the notebook's MNIST recipe against two published DCGAN recipes (`baselines.py`);
- `bench_faces`: the notebook's face recipe against two published DCGAN recipes for faces (`face_baselines.py`),
  on real CelebA faces, over several seeds, at equal seconds;
- `long_run`: one face recipe over hundreds of thousands of images: its face measure, losses and overfitting
  signal every 25,000 images, resumable;
- `fault_runs`: papermill runs of the notebook fed faults (a full disk, a damaged checkpoint, ...), and what the
  notebook said in each (docs/faults.md);
- `check_face_measure`: the face measure on real faces and known degradations of them;
- `train_classifier`: trains the MNIST classifier that measures generated digits;
- `mnist_floor`: the quality measures of real digits, the best a generator can expect;
- `make_mnist_sample`: writes the offline MNIST copy committed in data/.

`training_speed.py`, `baselines.py` and `face_baselines.py` are shared by the benchmarks. The tools read the
notebook through `facegen.notebook` and use helper.py and facegen/; neither imports them.
"""
