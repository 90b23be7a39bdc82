"""The bookkeeping around a training loop, so that the lesson's loop shows only the lesson: checkpoints and
resuming, the recipe they were written with, the time budget, the stop button and a stop on NaN. What a person
watches meanwhile is `facegen.progress`'s."""

import fcntl
import json
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from facegen.disk import said_plainly_if_full
from facegen.downloads import part_path
from facegen.progress import Progress


def total_steps(dataset, epochs):
    """The steps of `epochs` passes over `dataset` (its batches); a fraction of a pass counts too (2.5 passes)."""
    return round(epochs * int(dataset.cardinality()))


class TrainingRun:
    """The bookkeeping around `train`'s loop, so that the loop shows only the lesson.

        run = TrainingRun(run_dir, data_name, epochs, dataset, z_dim, ..., discriminator=..., generator=..., ...)
        with run:                               # the stop button saves a checkpoint before stopping
            for batch in run.batches(strategy):  # the steps still to do, also after a resume
                run.record(losses)              # one step's [d_loss, g_loss], a tensor left on the device
                if run.sample_due:              # every `sample_every` steps, at the end, when out of time
                    run.save(samples)           # a checkpoint, and the samples for TensorBoard

    It restores the latest checkpoint of `run_dir/checkpoints` (the networks, optimizers and noise
    given as keywords, plus the step, the losses and the fixed sample noise `fixed_z`) and goes on
    from there. Losses are read back from the device about once a second, not every step, so a GPU
    never waits for Python; then the progress bar moves, TensorBoard gets their means, and a loss
    that is NaN or infinite stops training. A progress line goes to the terminal every 30 s.

    `recipe` (e.g. the learning rate, batch size, width) is stored beside the checkpoints. Resuming
    with another learning rate, beta1 or ema goes on with the new one, saying so; with another batch
    size, width, z_dim, image size, precision or cooldown it is refused; with fewer epochs than are
    done there is nothing to train. `epochs` may be a fraction (2.5: two passes and a half).
    """

    SECONDS_PER_READ = 1
    CHANGEABLE = ("learning_rate", "beta1", "ema")  # recipe entries a resumed run may change

    def __init__(self, run_dir, data_name, epochs, dataset, z_dim, sample_every=None, time_budget=None, seed=0,
                 recipe=None, **trackables):
        self.run_dir, self.data_name, self.time_budget = Path(run_dir), data_name, time_budget
        self.dataset, self.batch_size = dataset, dataset.element_spec.shape[0]  # None if batches vary
        self.total_steps = total_steps(dataset, epochs)
        self.sample_every = sample_every or max(1, self.total_steps // 10)
        self.recipe = {**(recipe or {}), "z_dim": z_dim, "image_shape": list(dataset.element_spec.shape[1:]),
                       "batch_size": self.batch_size, "precision": keras.config.dtype_policy().name}
        self.models = [v for v in trackables.values() if isinstance(v, keras.Model)]
        self.optimizers = {k: v for k, v in trackables.items() if isinstance(v, keras.optimizers.Optimizer)}
        self.fixed_z = tf.Variable(tf.random.stateless_normal([25, z_dim], seed=[seed, 0]), trainable=False)
        self._step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._losses = tf.Variable(tf.zeros([0, 2]), shape=[None, 2], trainable=False)
        checkpoint = tf.train.Checkpoint(fixed_z=self.fixed_z, step=self._step, losses=self._losses, **trackables)
        self.manager = tf.train.CheckpointManager(checkpoint, self.run_dir / "checkpoints", max_to_keep=2)
        self._lock = _lock_folder(self.run_dir)
        try:
            self._restore(checkpoint)
        except BaseException:
            self._lock.close()
            raise
        self.step, self.losses = int(self._step), self._losses.numpy()
        self.sample_due = self.out_of_time = self._interrupted = False
        self._pending = []
        self.progress = None  # while the run is on (`with run:`), what a person watches

    def _restore(self, checkpoint):
        latest, directory = self.manager.latest_checkpoint, self.manager.directory
        if not latest:
            return
        refuse = f"To resume it, set them back; to start a new run, delete {directory} or choose another output_dir."
        saved = self._saved_recipe()
        if saved and "cooldown" in self.recipe:
            saved.setdefault("cooldown", 0)  # written before the cooldown existed: the rate was constant
        changed = {key: (saved[key], self.recipe.get(key)) for key in saved if saved[key] != self.recipe.get(key)}
        fixed = {key: values for key, values in changed.items() if key not in self.CHANGEABLE}
        if fixed:
            differences = ", ".join(f"{key} {old} there, {new} now" for key, (old, new) in fixed.items())
            if "cooldown" in fixed:  # a schedule's optimizers hold other variables than a fixed rate's
                # The faces' None chooses both the cooldown and the rate by the run's length: keep both.
                keep = f"-p celeba_cooldown {fixed['cooldown'][0]}"
                if "learning_rate" in changed:
                    keep += f" -p celeba_learning_rate {changed['learning_rate'][0]}"
                differences += (f"; celeba_cooldown = None chooses the cooldown by the run's length: {keep} goes on "
                                f"as the checkpoint was trained")
            raise ValueError(f"The checkpoint {latest} was written by other networks or another recipe "
                             f"({differences}). {refuse}")
        restored, skipped = self._restore_newest_whole(checkpoint, refuse)
        if "learning_rate" in self.recipe:
            for optimizer in self.optimizers.values():
                # A fixed rate is a variable the checkpoint restored: the new one is honoured. A schedule (a
                # cooldown) is no variable: it was made from this run's own learning rate.
                if isinstance(optimizer.learning_rate, keras.Variable):
                    optimizer.learning_rate = self.recipe["learning_rate"]
        for path, reason in skipped:
            print(f"Skipped the checkpoint {path}: it does not restore whole ({reason}), as a copy cut short or a "
                  f"failing disk leaves it.")
        print(f"Resumed from {restored} (step {int(checkpoint.step):,}).")
        for key, (old, new) in changed.items():
            print(f"{key} was {old} when the checkpoint was written; going on with {new}.")

    def _restore_newest_whole(self, checkpoint, refuse):
        """Restore the newest of the kept checkpoints that restores whole; return it and the (path, reason) of each
        newer one that did not. A checkpoint of other networks is refused; if none restores, say so."""
        skipped = []
        for path in reversed(self.manager.checkpoints):  # newest first
            try:
                checkpoint.restore(path).assert_consumed()
                return path, skipped
            except (ValueError, AssertionError) as error:  # a variable of another shape, or one missing
                raise ValueError(f"The checkpoint {path} was written by other networks (another architecture, "
                                 f"image size or z_dim): {str(error).splitlines()[0]}\n{refuse}") from None
            except (IndexError, OSError, tf.errors.OpError) as error:  # a file cut short, missing or unreadable
                skipped.append((path, f"{type(error).__name__}: {str(error).splitlines()[0]}"))
        reasons = "; ".join(f"{path}: {reason}" for path, reason in skipped)
        raise RuntimeError(f"No checkpoint in {self.manager.directory} restores whole ({reasons}). Put back an "
                           f"intact copy of that folder, or delete it to start this stage over.")

    def _saved_recipe(self):
        try:
            return json.loads((self.run_dir / "checkpoints" / "recipe.json").read_text())
        except (OSError, ValueError):  # written by an older version of the notebook: the restore itself checks
            return {}

    def batches(self, strategy):
        """The batches still to train on, each split across the strategy's replicas; stops when out of time."""
        remaining = self.total_steps - self.step
        if remaining <= 0:
            print(f"{self.data_name}: already trained to step {self.step:,} of {self.total_steps:,}; nothing to "
                  f"train. Train longer (mnist_epochs, celeba_images) to go on, or delete {self.manager.directory} "
                  f"to start over.")
            return
        # After a resume, skipping the batches already trained on keeps the data in the order of an
        # uninterrupted run: the shuffle is seeded, so it repeats the same orders, epoch after epoch.
        dataset = self.dataset.repeat().skip(self.step).take(remaining)
        for batch in strategy.experimental_distribute_dataset(dataset):
            yield batch
            if self._interrupted:
                raise KeyboardInterrupt  # after a whole step, so the checkpoint holds a consistent state
            if self.out_of_time:
                print(f"Stopped at step {self.step:,} of {self.total_steps:,}: the time budget of "
                      f"{self.time_budget:g} s is spent.")
                return

    def record(self, losses):
        """Count one step with its `[d_loss, g_loss]` (read back later, with others); decide whether to sample now."""
        self._pending.append(losses)
        self.step += 1
        now = time.perf_counter()
        self.out_of_time = self.time_budget is not None and self.progress.seconds() >= self.time_budget
        self.sample_due = self.step % self.sample_every == 0 or self.step == self.total_steps or self.out_of_time
        if now - self._last_read >= self.SECONDS_PER_READ:
            self._read()

    def _read(self):
        """Read the pending losses back from the device, stop on NaN or infinity, show and log them."""
        self._last_read = time.perf_counter()
        if not self._pending:
            return
        new = tf.stack(self._pending).numpy()
        self._pending = []
        first = len(self.losses) + 1
        self.losses = np.concatenate([self.losses, new])
        if not np.isfinite(new).all():
            self._diverged(first + int(np.flatnonzero(~np.isfinite(new).all(1))[0]))
        self.progress.losses(self.step, new)

    def _diverged(self, step):
        kept = (f"the last good checkpoint, {self.manager.latest_checkpoint}, is kept" if self.manager.latest_checkpoint
                else "no checkpoint had been saved yet")
        raise FloatingPointError(
            f"Training diverged at step {step:,}: a loss or a weight became NaN or infinite, and {kept}. "
            f"Try a lower learning rate; running the cell again resumes from that checkpoint."
        )

    def save(self, samples=None):
        """Save a checkpoint (never one with NaN or infinite weights), and log `samples` ([-1, 1]) for TensorBoard."""
        self._read()
        if not all(np.isfinite(weight.numpy()).all() for model in self.models for weight in model.weights):
            self._diverged(self.step)
        self._step.assign(self.step)
        self._losses.assign(self.losses)
        self._write_checkpoint()
        self.progress.checkpoint(self.step, samples, {name: float(optimizer.learning_rate.numpy())
                                                      for name, optimizer in self.optimizers.items()})

    def _write_checkpoint(self):
        """Save a checkpoint and the recipe beside it. On a full disk, say so plainly; a checkpoint cut off is never
        taken for one (the manager names a checkpoint only once it is whole) and its pieces are removed."""
        latest, directory = self.manager.latest_checkpoint, Path(self.manager.directory)
        size = sum(f.stat().st_size for f in directory.glob(f"{Path(latest).name}.*")) / 1e6 if latest else None
        kept = (f"The last good checkpoint, {latest}, is kept: running the cell again resumes from it (if you "
                f"change output_dir, move {self.run_dir} into it first). " if latest else
                "No checkpoint had been saved yet. ")
        try:
            with said_plainly_if_full(directory, f"the checkpoint of step {self.step:,}", size, kept):
                self.manager.save(self.step)
                recipe = directory / "recipe.json"
                part_path(recipe).write_text(json.dumps(self.recipe, indent=2) + "\n")
                part_path(recipe).replace(recipe)
        except BaseException:
            shutil.rmtree(directory / f"ckpt-{self.step}_temp", ignore_errors=True)
            if not any(Path(path).name == f"ckpt-{self.step}" for path in self.manager.checkpoints):
                for piece in directory.glob(f"ckpt-{self.step}.*"):
                    piece.unlink()
            raise

    def sample_path(self):
        """Where this step's sample grid is saved: `run_dir/samples/<step>.png`."""
        return self.run_dir / "samples" / f"{self.step:07d}.png"

    def __enter__(self):
        self.progress = Progress(self.data_name, self.step, self.total_steps, self.batch_size, self.run_dir / "logs",
                                 self.time_budget)
        self._last_read = time.perf_counter()
        # The stop button sends SIGINT. Python would raise KeyboardInterrupt wherever the code is, and
        # code in between may swallow it; instead it is noted here and raised between steps.
        self._sigint_handler = None
        if threading.current_thread() is threading.main_thread():
            self._sigint_handler = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def _interrupt(self, signum, frame):
        self._interrupted = True

    def __exit__(self, kind, error, traceback):
        try:
            if kind is None:
                self._read()
                self.progress.finished(self.step, self.losses)
            elif issubclass(kind, KeyboardInterrupt):  # the notebook's stop button: keep what was learned
                self.save()
                print(f"Stopped at step {self.step:,}; checkpoint saved. Run the cell again to continue from there.")
        finally:
            if self._sigint_handler is not None:
                signal.signal(signal.SIGINT, self._sigint_handler)
            self.progress.close()
            self._lock.close()
        return False


_held_locks = {}  # run folder -> this process's open lock file, so that a lock left by a failed call is taken back


def _lock_folder(run_dir):
    """Hold `run_dir/running.lock` locked (released when closed, or when the process ends, even by kill -9), so that
    a second run on the same folder, as from a second terminal, stops at once instead of overwriting checkpoints."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = (run_dir / "running.lock").resolve()
    if path in _held_locks:  # this process's own, from an earlier call that did not end cleanly
        _held_locks.pop(path).close()
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RuntimeError(f"Another run is training in {run_dir} ({holder}): two runs on one folder would overwrite "
                           f"each other's checkpoints. Wait for it to end or stop it, or give this run another "
                           f"output_dir.") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    _held_locks[path] = handle
    return handle
