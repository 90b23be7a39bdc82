"""The notebook's own functions, for tests: its imports and the cells that end with a check."""

import ast
import linecache
import re
from pathlib import Path

import keras
import nbformat

NOTEBOOK = Path(__file__).resolve().parents[1] / "dlnd_face_generation.ipynb"
CHECK_CALL = re.compile(r"^tests\.test_\w+\(.*\)[ \t]*$", re.MULTILINE)
NEEDED = ["helper", "tests", "model_inputs", "halvings", "discriminator", "generator", "cross_entropy", "model_loss",
          "model_opt", "train"]


def _imports(cells):
    """The notebook's import statements alone (helper, tests, keras, tf, ...), without the rest of their cells."""
    statements = [statement for cell in cells for statement in ast.parse(cell.source).body
                  if isinstance(statement, (ast.Import, ast.ImportFrom))]
    return compile(ast.Module(statements, type_ignores=[]), f"<{NOTEBOOK.name} imports>", "exec")


def notebook_functions():
    """A namespace with the notebook's network functions, defined by its cells, without running the checks."""
    cells = [cell for cell in nbformat.read(NOTEBOOK, as_version=4).cells if cell.cell_type == "code"]
    namespace = {}
    exec(_imports(cells), namespace)
    for number, cell in enumerate(cells):
        if CHECK_CALL.search(cell.source):
            source = CHECK_CALL.sub("", cell.source)
            filename = f"<{NOTEBOOK.name} cell {number}>"
            # Give the source to linecache, as IPython does, so tf.function's autograph can read it.
            linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
            exec(compile(source, filename, "exec"), namespace)
    missing = [name for name in NEEDED if name not in namespace]
    assert not missing, f"The notebook no longer defines {missing}."
    keras.utils.set_random_seed(0)  # as the notebook's import cell does
    return namespace
