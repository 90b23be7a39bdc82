"""Tests for the fault runs' reading of what the notebook said (`tools/fault_runs.py`), without running papermill."""

import subprocess

import nbformat
from PIL import Image

from tools import fault_runs


def executed_notebook(path):
    """A notebook as papermill leaves it after an error: printed lines, then the error."""
    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="Resumed from ckpt-7 (step 7).\nnoise\n"),
                    nbformat.v4.new_output("error", ename="DiskFullError", evalue="The disk of out is full",
                                           traceback=["a wall", "of frames"])]
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)


def test_a_failed_run_gives_its_printed_lines_and_its_error_as_one_line(tmp_path):
    executed_notebook(tmp_path / "run.ipynb")
    done, lines = fault_runs.finish(subprocess.Popen(["false"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                     text=True), tmp_path)
    assert not done
    assert lines == ["Resumed from ckpt-7 (step 7).", "noise", "DiskFullError: The disk of out is full"]


def test_the_report_shows_only_the_lines_that_tell_the_case(tmp_path):
    results = {"a full disk": (False, ["noise", "DiskFullError: The disk of out is full"], r"DiskFullError", "16 MB"),
               "two runs on one folder": (True, ["Another run is training in out", "more noise"], "Another run", "")}
    text = fault_runs.report(results)
    assert "noise" not in text
    failed = ("Every cell ran: no, the run stopped at the error below.\n\n"
              "```\nDiskFullError: The disk of out is full\n```")
    assert failed in text
    assert "Every cell ran: yes.\n\n```\nAnother run is training in out\n```" in text


def test_own_faces_are_square_jpegs_of_128_not_named_as_celeba(tmp_path, monkeypatch):
    faces = tmp_path / "celeba"
    faces.mkdir()
    for number in range(3):
        Image.new("RGB", (178, 218), (number, 0, 0)).save(faces / f"{number + 1:06d}.jpg")
    monkeypatch.setattr(fault_runs, "run", lambda folder, parameters: (True, []))
    fault_runs.own_faces(tmp_path, faces)
    made = sorted((tmp_path / "img_align_celeba").iterdir())
    assert [path.name for path in made] == ["face-000001.jpg", "face-000002.jpg", "face-000003.jpg"]
    assert all(Image.open(path).size == (128, 128) for path in made)
