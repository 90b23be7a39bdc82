"""pytest runs the notebook (via nbval) in its quick profile: toy sizes, in a scratch folder, put into its
parameters as papermill would (facegen/notebook.py). In CI (the environment variable CI set), a
skipped test fails: there every test must run."""
import os
import tempfile

import pytest

from facegen.notebook import parameters_source, quick_parameters


# The slowest test files, slowest first (their times: docs/benchmarks.md, "The test suite's time"). pytest.ini gives
# each of the two workers whole files, in collection order: started first, the long files end before the short ones,
# and the two workers end together instead of one waiting on a long file it took last.
SLOWEST_FIRST = ("test_gpu_configs.py", "test_recipe_quality.py", "test_problem_unittests.py", "test_face_recipe.py",
                 "test_distribute.py", "test_training_faults.py", "test_parameters.py", "dlnd_face_generation.ipynb",
                 "test_checkpoint_faults.py", "test_long_run.py", "test_benchmark.py", "test_bench_faces.py",
                 "test_mixed_precision.py")


def _slowness_rank(item):
    name = item.path.name
    return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)


def pytest_collection_modifyitems(items):
    """Put the slowest files first (the others, and each file's tests, keep their order), and run the notebook's
    cells in the quick profile: its parameters, set after the last cell that sets them.

    The notebook's cells are marked `numerics`: their outputs are compared, so they run again under a
    second CPU configuration in CI.
    """
    items.sort(key=_slowness_rank)  # stable
    cells = [item for item in items if hasattr(item, "cell")]  # nbval's cells
    for item in cells:
        item.add_marker(pytest.mark.numerics)
    tags = {"parameters", "injected-parameters"}
    setting = [item for item in cells if tags & set(item.cell.metadata.get("tags", []))]
    if setting:
        folder = tempfile.mkdtemp(prefix="dlnd-quick-test-")
        # In float32 on any machine: here the notebook's own checks pass in float32 (test_gpu_configs.py's papermill
        # runs make them in mixed precision).
        setting[-1].cell.source += "\n" + parameters_source(quick_parameters(folder, mixed_precision=False))


def _fail_if_skipped_in_ci(report):
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"Skipped, and in CI every test must run: {reason}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    return _fail_if_skipped_in_ci((yield))


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    return _fail_if_skipped_in_ci((yield))
