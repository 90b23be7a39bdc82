"""What a person watches while a run trains: a progress bar with the last losses, a line in the terminal every
30 s (the step, the losses, the speed, the time left), and TensorBoard's losses, speed, learning rates and samples."""

import os
import sys
import time

import tensorflow as tf
from tqdm.auto import tqdm


def to_terminal(line):
    """Write a line to the terminal that runs Python, papermill or Jupyter, and not into the notebook.

    In a notebook kernel, `sys.stderr.fileno()` is the kernel's original stderr (ipykernel gives it
    out for subprocesses to write to): the terminal, not the cell's output. A kernel that does not
    capture its file descriptors has none (under pytest, say): then `sys.__stderr__` is the terminal.
    """
    try:
        os.write(sys.stderr.fileno(), f"{line}\n".encode())
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        print(line, file=sys.__stderr__, flush=True)


class Progress:
    """The progress of one call of `train`, from `first_step` to `total_steps`, shown and logged to `log_dir`."""

    SECONDS_PER_LINE = 30

    def __init__(self, data_name, first_step, total_steps, batch_size, log_dir, time_budget=None):
        self.data_name, self.first_step, self.total_steps = data_name, first_step, total_steps
        self.batch_size, self.time_budget = batch_size, time_budget  # batch_size None if batches vary
        self.start = self._last_line = time.perf_counter()
        self.bar = tqdm(total=total_steps, initial=first_step, desc=data_name, unit="step")
        self.log = tf.summary.create_file_writer(str(log_dir))

    def seconds(self):
        return time.perf_counter() - self.start

    def images_per_second(self, step):
        """Images trained on per second since the start; None if unknown (batches of varying size, no step yet)."""
        done = step - self.first_step
        return done * self.batch_size / self.seconds() if self.batch_size and done else None

    def losses(self, step, new):
        """Show and log `new` losses ([steps, 2]: discriminator, generator), the last of which is `step`'s."""
        d_loss, g_loss = new[-1]
        self.bar.update(len(new))
        self.bar.set_postfix(d_loss=f"{d_loss:.3f}", g_loss=f"{g_loss:.3f}")
        with self.log.as_default(step):
            tf.summary.scalar("loss/discriminator", new[:, 0].mean())
            tf.summary.scalar("loss/generator", new[:, 1].mean())
        now = time.perf_counter()
        if now - self._last_line >= self.SECONDS_PER_LINE or step == self.total_steps:
            self._last_line = now
            to_terminal(self._line(step, d_loss, g_loss))

    def _line(self, step, d_loss, g_loss):
        """One line for the terminal: the step, the losses, the speed and the time left."""
        seconds, done = self.seconds(), step - self.first_step
        left = (self.total_steps - step) * seconds / max(done, 1)
        if self.time_budget is not None:
            left = min(left, max(0.0, self.time_budget - seconds))
        speed = f", {rate:,.0f} images/s" if (rate := self.images_per_second(step)) else ""
        return (f"{self.data_name}: step {step:,} of {self.total_steps:,}, d_loss {d_loss:.3f}, "
                f"g_loss {g_loss:.3f}{speed}, about {int(left // 60)} min {int(left % 60)} s left")

    def checkpoint(self, step, samples=None, learning_rates=None):
        """Log what a checkpoint holds for a person: `samples` ([-1, 1]), the speed, `learning_rates` by name."""
        with self.log.as_default(step):
            if samples is not None:
                tf.summary.image("samples", (samples + 1) / 2, max_outputs=9)
            if rate := self.images_per_second(step):
                tf.summary.scalar("images_per_second", rate)
            for name, learning_rate in (learning_rates or {}).items():
                tf.summary.scalar(f"learning_rate/{name}", learning_rate)

    def finished(self, step, losses):
        """Say, in the cell, how far this call trained and how fast, with the last of `losses`.

        A run that ends before its last step (stopped by the time budget) ends its bar there: in a notebook, tqdm
        draws a bar closed short of its total in red, as a failure."""
        if self.bar.n < self.bar.total:
            self.bar.total = self.bar.n
            self.bar.refresh()
        if step > self.first_step:
            speed = f" ({rate:,.0f} images/s)" if (rate := self.images_per_second(step)) else ""
            print(f"{self.data_name}: trained to step {step:,} in {self.seconds():.0f} s{speed}; last losses: "
                  f"discriminator {losses[-1][0]:.3f}, generator {losses[-1][1]:.3f}")

    def close(self):
        self.bar.close()
        self.log.close()
