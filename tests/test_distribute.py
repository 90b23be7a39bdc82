"""Training under tf.distribute: two replicas take the same step as one device; two workers; mixed precision; XLA."""

import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

from support.distribute_worker import LEARNING_RATE, batch, networks, variables
from support.notebook import RepeatableNoise, float64_notebook_functions, notebook_functions
from support.train_worker import WIDTH, digits, worker_env

pytestmark = pytest.mark.numerics  # compares runs of the same maths within tolerances of their rounding

WORKER = Path(__file__).parent / "support" / "distribute_worker.py"
ADAM_EPSILON = 1e-7  # Keras' default, which the notebook's Adam keeps
# More terms than any sum here adds (the logit's 4x4x256 inputs at the default width; at the tests' WIDTH the longest
# are the gradients' and batch norm's sums over 16 images of 14x14, 3,136 terms); layers in a row.
LONGEST_SUM, DEPTH = 4096, 8


def float64_tolerance(steps):
    """How far `steps` Adam steps can move a weight when the same float64 maths runs in another order.

    Each sum of n terms (of size below 1) is off by at most n times float64's rounding (2.2e-16) along
    DEPTH layers, and Adam, dividing a gradient by sqrt(v) + 1e-7, magnifies its error at most
    lr / 1e-7 = 2,000 times: 3 steps stay within 3 x 2,000 x 4,096 x 8 x 2.2e-16 = 4.4e-8, while a
    different computation moves weights by whole Adam steps (about lr = 2e-4).
    """
    return steps * LEARNING_RATE / ADAM_EPSILON * LONGEST_SUM * DEPTH * np.finfo(np.float64).eps


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """What the worker wrote: {run: {name: values}}."""
    out = tmp_path_factory.mktemp("distribute")
    done = subprocess.run([sys.executable, str(WORKER), str(out)], env=worker_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return {path.stem: dict(np.load(path)) for path in out.glob("*.npz")}


@pytest.fixture(scope="module")
def notebook():
    return notebook_functions()


def assert_same(actual, expected, atol):
    assert actual.keys() == expected.keys()
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=0, atol=atol, err_msg=name)


def test_two_replicas_take_the_same_step_as_one_device(worker):
    """Losses over the global batch, summed gradients and synchronized batch norm: the replicas see one batch."""
    one_device = worker["one_device"]
    assert any(name.endswith("moving_variance") for name in one_device)  # batch-norm statistics are compared too
    assert {values.dtype for values in one_device.values()} == {np.dtype("float64")}
    assert_same(worker["two_replicas"], one_device, float64_tolerance(steps=1))


def test_the_comparison_sees_unsynchronized_batch_norm(worker):
    """Batch norm on each replica's half batch moves some weights by whole Adam steps: far outside the tolerance."""
    broken, one_device = worker["unsynchronized_batch_norm"], worker["one_device"]
    assert max(np.abs(broken[name] - one_device[name]).max() for name in one_device) > 0.1 * LEARNING_RATE


def test_train_runs_on_two_replicas(worker):
    """The whole of `train` as the faces run it (an average generator, a cooled rate), a few steps on two replicas
    (run by the worker): finite losses, one row per step."""
    assert worker["train"]["losses"].shape == (3, 2) and np.isfinite(worker["train"]["losses"]).all()


def test_mixed_precision_keeps_float32_weights_and_losses(notebook):
    """float16 maths, but float32 variables, losses and images; the loss-scaling optimizers take or skip each step."""
    images, z = batch()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        models = networks(notebook)
        train_step, *optimizers = notebook["model_opt"](*models, LEARNING_RATE, 0.5)
        train_step = tf.function(train_step)  # as train compiles it
        losses = [train_step(images, z) for _ in range(3)][-1]
        fakes = models[1](z, training=False)
    finally:
        keras.config.set_dtype_policy("float32")
    assert models[0].layers[0].compute_dtype == "float16"
    assert all(isinstance(optimizer, keras.optimizers.LossScaleOptimizer) for optimizer in optimizers)
    # A step whose scaled gradients overflow float16 is skipped and the loss scale halved, from Keras' 2**15: the
    # generator's first steps here are, until the scale settles. Every step is either taken or skipped that way.
    for optimizer in optimizers:
        taken = int(optimizer.inner_optimizer.iterations)
        assert taken >= 1 and float(optimizer.dynamic_scale) == optimizer.initial_scale / 2 ** (3 - taken), \
            f"{taken} of 3 steps taken, loss scale {float(optimizer.dynamic_scale)}"
    assert [loss.dtype for loss in losses] == [tf.float32] * 2 and np.isfinite(losses).all()
    assert fakes.dtype == tf.float32
    assert {variable.path: variable.dtype for model in models for variable in model.weights
            if variable.dtype != "float32"} == {}


def train_with_and_without_xla(notebook, tmp_path, dtype):
    """The generator's variables and the losses after 3 steps of `train`, without and with XLA, from the same start."""
    after = {}
    for jit_compile in (False, True):
        keras.utils.set_random_seed(0)  # the same initial weights for both runs
        with mock.patch.object(tf.random.Generator, "from_seed", lambda seed, alg=None: RepeatableNoise(dtype)):
            generator, losses = notebook["train"](digits(16).take(3).map(lambda images: tf.cast(images, dtype)), "xla",
                                                  1, 8, LEARNING_RATE, 0.5, tmp_path / str(jit_compile),
                                                  tmp_path / "images", filters=WIDTH, jit_compile=jit_compile)
        saved = tf.train.load_checkpoint(tf.train.latest_checkpoint(tmp_path / str(jit_compile) / "checkpoints"))
        steps = {name: saved.get_tensor(name) for name in saved.get_variable_to_shape_map()
                 if re.search(r"optimizer/.*(iterations|dynamic_scale)/", name)}
        after[jit_compile] = {"losses": losses, **variables([generator])}, steps
    return after[False], after[True]


def test_train_under_xla_matches_train_without(tmp_path):
    """train(jit_compile=True) compiles the same maths: 3 steps from the same start agree to float64's rounding."""
    (plain, _), (compiled, _) = train_with_and_without_xla(float64_notebook_functions(), tmp_path, tf.float64)
    assert plain["generator layer 0 kernel"].dtype == np.float64
    assert_same(compiled, plain, float64_tolerance(steps=3))


def test_train_under_xla_in_mixed_precision_takes_the_same_steps(notebook, tmp_path):
    """In mixed precision, XLA fuses float16 maths in its own order: the same steps are taken or skipped, the losses
    agree to float16's precision, and no weight moves further than 3 Adam steps can take it."""
    keras.config.set_dtype_policy("mixed_float16")
    try:
        (plain, plain_steps), (compiled, compiled_steps) = train_with_and_without_xla(notebook, tmp_path, tf.float32)
    finally:
        keras.config.set_dtype_policy("float32")
    assert len(plain_steps) == 6 and compiled_steps == plain_steps  # iterations taken, inner ones, loss scales
    # float16 keeps 11 significant bits (rounding 2**-11 = 4.9e-4 relative): the losses, after each network's
    # 3 layers of float16 maths in another order at each of 3 steps, stay within 3 x 3 x 4 such roundings.
    np.testing.assert_allclose(compiled["losses"], plain["losses"], rtol=3 * 3 * 4 * 2.0**-11)
    # float16's rounding flips some ReLUs and gradients' signs: a weight can then take an Adam step the other way.
    # Adam's first 3 steps move a weight at most 1.13 lr each (beta1 0.5, beta2 0.999), so two runs differ by at
    # most twice that.
    weights = [name for name in plain if "moving" not in name and name != "losses"]
    for name in weights:
        np.testing.assert_array_less(np.abs(compiled[name] - plain[name]), 2 * 3 * 1.13 * LEARNING_RATE, err_msg=name)


def test_two_workers_train_as_one_cluster(tmp_path):
    """The README's several-machines set-up on one machine: two workers, each with its TF_CONFIG, end with one model."""
    worker = WORKER.with_name("multiworker_worker.py")
    ports = []
    for _ in range(2):  # free ports, as the workers will listen on them
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen([sys.executable, str(worker), str(tmp_path / f"worker-{index}")],
                                          env=worker_env(TF_CONFIG=tf_config),
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]  # each worker checks it made a MultiWorkerMirroredStrategy
    results = [dict(np.load(tmp_path / f"worker-{index}" / "result.npz")) for index in range(2)]
    assert results[0]["replicas"] == 2  # one cluster of two workers, not two lone ones
    assert results[0]["losses"].shape == (3, 2) and np.isfinite(results[0]["losses"]).all()
    # Every worker applies the same all-reduced gradients to the same weights: the same bits.
    assert results[1].keys() == results[0].keys()
    for name in results[0]:
        np.testing.assert_array_equal(results[1][name], results[0][name], err_msg=name)
