"""What nbval compares must not depend on the machine: the committed notebook's compared cells hold no stderr,
no library log line, no timing, device or path; and no cell at all keeps a library's log lines."""

import re

import nbformat
import pytest

from facegen.notebook import NOTEBOOK

# TensorFlow's C++ log lines (absl's format: level, date, time, thread, file:line]) and the line absl writes first.
LIBRARY_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\]|absl::InitializeLog", re.MULTILINE)
# What differs from one machine or run to the next: seconds and speeds, device names, file paths.
MACHINE_SPECIFIC = re.compile(r"\d\s*(s|ms|seconds|images/s|step/s)\b|/device:|[A-Za-z]:\\|(^|\s)/\w+/")


def outputs_text(cell):
    """Each output of a code cell as (its kind, its text)."""
    for output in cell.outputs:
        if output.output_type == "stream":
            yield output.name, output.text
        elif output.output_type in ("execute_result", "display_data"):
            yield output.output_type, output.get("data", {}).get("text/plain", "")
        elif output.output_type == "error":
            yield "error", "\n".join(output.traceback)


def compared(cell):
    return cell.cell_type == "code" and "nbval-ignore-output" not in cell.metadata.get("tags", [])


@pytest.fixture(scope="module")
def cells():
    return [(number, cell) for number, cell in enumerate(nbformat.read(NOTEBOOK, as_version=4).cells)
            if cell.cell_type == "code"]


def test_compared_cells_hold_nothing_of_the_machine(cells):
    checked = [(number, cell) for number, cell in cells if compared(cell)]
    assert len(checked) >= 6  # the checks of the network functions, at least
    for number, cell in checked:
        for kind, text in outputs_text(cell):
            assert kind != "stderr", f"cell {number} is compared by nbval, but holds stderr: {text[:300]!r}"
            for pattern in (LIBRARY_LOG, MACHINE_SPECIFIC):
                found = pattern.search(text)
                assert not found, f"cell {number} is compared by nbval, but holds {found.group(0)!r} in: {text[:300]!r}"


def test_no_cell_keeps_library_log_lines(cells):
    for number, cell in cells:
        for _, text in outputs_text(cell):
            found = LIBRARY_LOG.search(text)
            assert not found, f"cell {number} holds a library's log line: {text[found.start():][:300]!r}"


@pytest.mark.parametrize("text, pattern", [
    ("E0000 00:00:1796218466.654017    2116 meta_optimizer.cc:967] remapper failed", LIBRARY_LOG),
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", LIBRARY_LOG),
    ("MNIST: trained to step 3,768 in 300 s (803 images/s)", MACHINE_SPECIFIC),
    ("Devices: /device:CPU:0.", MACHINE_SPECIFIC),
    ("Saved /tmp/dlnd-quick-test-x/mnist/generator.keras", MACHINE_SPECIFIC),
])
def test_the_patterns_find_what_they_are_for(text, pattern):
    assert pattern.search(text) and not pattern.search("Tests Passed\n")


def test_the_committed_notebook_runs_at_its_defaults(cells):
    # papermill keeps a run's injected-parameters cell when later run without -p: README's step 1 would then run
    # the committed run's parameters, not the defaults. What the committed run was given is in its metadata.
    injected = [number for number, cell in cells if "injected-parameters" in cell.metadata.get("tags", [])]
    assert not injected, f"cell {injected} holds papermill's injected parameters: delete it before committing"
