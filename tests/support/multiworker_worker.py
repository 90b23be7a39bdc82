"""One of two workers training the notebook's DCGAN together, as two machines would, on this machine.

    TF_CONFIG='{"cluster": ..., "task": ...}' python tests/support/multiworker_worker.py RUN_DIR

`helper.distribution_strategy` sees TF_CONFIG and makes a MultiWorkerMirroredStrategy; `train`
runs 3 steps under it. Writes RUN_DIR/result.npz: the strategy's replicas in all, the losses and
the generator's weights.
"""

import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

import helper

if __name__ == "__main__":
    strategy = helper.distribution_strategy()  # first: before TensorFlow runs anything else
    assert isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy), type(strategy)
    from support.distribute_worker import BATCH, LEARNING_RATE, Z_DIM
    from support.notebook import notebook_functions
    from support.train_worker import WIDTH, digits

    run_dir = Path(sys.argv[1])
    generator, losses = notebook_functions()["train"](digits(BATCH).take(3), "two workers", 1, Z_DIM,
                                                      LEARNING_RATE, 0.5, run_dir, run_dir / "images", sample_every=3,
                                                      filters=WIDTH, strategy=strategy)
    np.savez(run_dir / "result.npz", replicas=strategy.num_replicas_in_sync, losses=losses, *generator.get_weights())
