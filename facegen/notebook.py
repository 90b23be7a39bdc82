"""The notebook's parameters and its checked definitions, read without running it: for the tools and the tests,
which measure and check the lesson's own code. The lesson itself never imports this."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "dlnd_face_generation.ipynb"


def notebook_parameters(notebook=NOTEBOOK):
    """The notebook's parameters and their default values, read from its `parameters` cell as papermill does."""
    import ast

    import papermill

    parameters = papermill.inspect_notebook(notebook)
    return {name: ast.literal_eval(parameter["default"]) for name, parameter in parameters.items()}


def notebook_definitions(notebook=NOTEBOOK):
    """The notebook's checked definitions (networks, losses, training step), as a namespace.

    Runs the notebook's imports, then each code cell that ends with a check, without the check;
    nothing else (no data, no training).
    """
    import ast
    import linecache
    import re

    import nbformat

    check = re.compile(r"^tests\.test_\w+\(.*\)[ \t]*$", re.MULTILINE)
    cells = [cell.source for cell in nbformat.read(notebook, as_version=4).cells if cell.cell_type == "code"]
    imports = [s for source in cells for s in ast.parse(source).body if isinstance(s, (ast.Import, ast.ImportFrom))]
    namespace = {}
    exec(compile(ast.Module(imports, type_ignores=[]), "<notebook imports>", "exec"), namespace)
    for number, source in enumerate(cells):
        if check.search(source):
            source, filename = check.sub("", source), f"<{Path(notebook).name} code cell {number}>"
            # In linecache, as IPython does, so that tf.function's autograph can read the source.
            linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
            exec(compile(source, filename, "exec"), namespace)
    return namespace

