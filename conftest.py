"""pytest runs the notebook (via nbval) in its quick profile: toy sizes, in a scratch folder, put into its
parameters as papermill would (facegen/notebook.py). In CI (the environment variable CI set), a
skipped test fails: there every test must run."""
import os
import tempfile

import pytest

from facegen.notebook import parameters_source, quick_parameters


def pytest_collection_modifyitems(items):
    """Run the notebook's cells in the quick profile: its parameters, set after the last cell that sets them.

    The notebook's cells are marked `numerics`: their outputs are compared, so they run again under a
    second CPU configuration in CI.
    """
    cells = [item for item in items if hasattr(item, "cell")]  # nbval's cells
    for item in cells:
        item.add_marker(pytest.mark.numerics)
    tags = {"parameters", "injected-parameters"}
    setting = [item for item in cells if tags & set(item.cell.metadata.get("tags", []))]
    if setting:
        folder = tempfile.mkdtemp(prefix="dlnd-quick-test-")
        setting[-1].cell.source += "\n" + parameters_source(quick_parameters(folder))


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
