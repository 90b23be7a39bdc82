"""A full disk while writing is said plainly (facegen.disk); the checkpoint's case, on a real full disk, is in
test_training_faults.py."""

import errno

import pytest
import tensorflow as tf

import helper
from facegen.disk import DiskFullError, said_plainly_if_full


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   OSError(errno.EDQUOT, "Disk quota exceeded"),
                                   tf.errors.ResourceExhaustedError(None, None, "SaveV2: No space left on device")])
def test_a_full_disk_is_said_with_the_folder_and_what_was_kept(tmp_path, error):
    with pytest.raises(DiskFullError, match=rf"^\[Errno 28\] The disk of {tmp_path} is full: the picture a\.jpg could "
                                            r"not be written\. [\d,.]+ MB are free\. Nothing else was lost\. Free "):
        with said_plainly_if_full(tmp_path, "the picture a.jpg", kept="Nothing else was lost. "):
            raise error


def test_other_errors_pass_through(tmp_path):
    with pytest.raises(PermissionError):
        with said_plainly_if_full(tmp_path, "the picture a.jpg"):
            raise PermissionError(errno.EACCES, "Permission denied")


def test_a_picture_on_a_full_disk_is_said_plainly(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("PIL.Image.Image.save", full)
    with pytest.raises(DiskFullError, match=r"is full: the picture grid\.jpg could not be written"):
        helper.save_image(helper.image_grid(helper.noise(4, 12).reshape(4, 2, 2, 3)), tmp_path / "grid.jpg")
