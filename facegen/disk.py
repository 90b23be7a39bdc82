"""A disk that fills while the notebook writes (a checkpoint, a picture, the exported generator): said in one plain
sentence, with what was kept, instead of a library's traceback."""

import contextlib
import errno
from pathlib import Path

import tensorflow as tf

from facegen.downloads import free_bytes


class DiskFullError(OSError):
    """The disk filled while writing; the message says where, what was kept and what to do."""


def is_disk_full(error):
    """Whether `error` is a disk (or quota) running out: Python's ENOSPC or EDQUOT, or TensorFlow's wording of it."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(error, tf.errors.ResourceExhaustedError) and "space" in str(error).lower()


@contextlib.contextmanager
def said_plainly_if_full(folder, what, needed_megabytes=None, kept=""):
    """Turn a full disk while writing `what` into `folder` into a DiskFullError that says so plainly.

    `kept` says what is still safe (e.g. the last good checkpoint); other errors pass through as they are."""
    try:
        yield
    except (OSError, tf.errors.OpError) as error:
        if not is_disk_full(error):
            raise
        need = f" It needs about {needed_megabytes:,.1f} MB;" if needed_megabytes else ""
        raise DiskFullError(
            errno.ENOSPC,
            f"The disk of {Path(folder).absolute()} is full: {what} could not be written.{need} "
            f"{free_bytes(folder) / 1e6:,.1f} MB are free. {kept}Free some space there, or point the notebook's "
            f"folder parameter (output_dir, images_dir or data_dir) at a disk with more room, then run the cell again.",
        ) from None
