"""Commands for the project's developers, not for the lesson: benchmarks, and what made the committed data.

Each runs from the repository's root, e.g. `python tools/bench_xla.py`; `--help` says what it does:

- `bench_pipeline.py`: how fast the CelebA input pipeline is, next to what a training step consumes;
- `bench_xla.py`: the notebook's training step with and without XLA;
- `bench_recipes.py`: the notebook's MNIST recipe against two published DCGAN recipes (`baselines.py`);
- `bench_faces.py`: the notebook's face recipe against two published DCGAN recipes for faces (`face_baselines.py`),
  on real CelebA faces, over several seeds;
- `check_face_measure.py`: the face measure on real faces and known degradations of them;
- `train_classifier.py`: trains the MNIST classifier that measures generated digits;
- `mnist_floor.py`: the quality measures of real digits, the best a generator can expect;
- `make_mnist_sample.py`: writes the offline MNIST copy committed in data/;
- `notebook.py`: the notebook's parameters and definitions, read without running it (also used by the tests).

`training_speed.py`, `baselines.py` and `face_baselines.py` are shared by the benchmarks. The tools use helper.py
and facegen/; neither imports them.
"""
