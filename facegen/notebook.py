"""The notebook's parameters and its checked definitions, read without running it, and its quick profile: for the
tools and the tests, which measure and check the lesson's own code. The lesson itself never imports this.

The quick profile runs every cell at toy sizes in a scratch folder; pytest puts it into the notebook's parameters
for nbval (conftest.py), and papermill takes it as `-p`:

    papermill dlnd_face_generation.ipynb out.ipynb $(python -m facegen.notebook FOLDER)
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "dlnd_face_generation.ipynb"

# Sizes that run every cell in a minute or so: a few steps of each stage, a few hundred images.
QUICK = dict(mnist_epochs=1, celeba_images=256, celeba_image_size=32, max_images=256, quality_images=1_000,
             fid_images=100, download_celeba=False)


def quick_parameters(folder, **changes):
    """The quick profile's parameters, with data, outputs and pictures in `folder`, and `changes` on top."""
    folder = str(folder)
    return {**QUICK, "data_dir": folder, "output_dir": folder, "images_dir": folder, **changes}


def papermill_arguments(parameters):
    """`-p NAME VALUE` for each parameter, as papermill's command line takes them."""
    return [word for name, value in parameters.items() for word in ("-p", name, str(value))]


def parameters_source(parameters):
    """Python lines that set the parameters, as papermill's injected cell does."""
    return "".join(f"{name} = {value!r}\n" for name, value in parameters.items())


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


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m facegen.notebook FOLDER   (prints the quick profile's -p arguments for FOLDER)")
    print(" ".join(papermill_arguments(quick_parameters(sys.argv[1]))))
