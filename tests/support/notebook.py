"""The notebook's own functions, for tests: its imports and the cells that end with a check."""

import keras

from tools.notebook import notebook_definitions

NEEDED = ["helper", "tests", "model_inputs", "halvings", "discriminator", "generator", "cross_entropy", "model_loss",
          "model_opt", "train"]


def notebook_functions():
    """A namespace with the notebook's network functions, defined by its cells, without running the checks."""
    namespace = notebook_definitions()
    missing = [name for name in NEEDED if name not in namespace]
    assert not missing, f"The notebook no longer defines {missing}."
    keras.utils.set_random_seed(0)  # as the notebook's import cell does
    return namespace
