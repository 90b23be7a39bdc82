"""Training under tf.distribute: two replicas take the same step as one device; two workers; mixed precision; XLA."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from support.distribute_worker import LEARNING_RATE, batch, networks, variables
from support.notebook import notebook_functions
from support.train_worker import digits, worker_env

WORKER = Path(__file__).parent / "support" / "distribute_worker.py"
ATOL = 1e-5  # 5% of Adam's first step (about the learning rate); the round-off seen is 4e-7 (replicas), 2e-6 (XLA)


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


def assert_same(actual, expected):
    assert actual.keys() == expected.keys()
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=0, atol=ATOL, err_msg=name)


def test_two_replicas_take_the_same_step_as_one_device(worker):
    """Losses over the global batch, summed gradients and synchronized batch norm: the replicas see one batch."""
    one_device = worker["one_device"]
    assert any(name.endswith("moving_variance") for name in one_device)  # batch-norm statistics are compared too
    assert_same(worker["two_replicas"], one_device)


def test_the_comparison_sees_unsynchronized_batch_norm(worker):
    """Batch norm on each replica's half batch moves some weights by whole Adam steps: far outside the tolerance."""
    broken, one_device = worker["unsynchronized_batch_norm"], worker["one_device"]
    assert max(np.abs(broken[name] - one_device[name]).max() for name in one_device) > 10 * ATOL


def test_train_runs_on_two_replicas(worker):
    """The whole of `train`, a few steps on two replicas (run by the worker): finite losses, one row per step."""
    assert worker["train"]["losses"].shape == (3, 2) and np.isfinite(worker["train"]["losses"]).all()


def test_mixed_precision_keeps_float32_weights_and_losses(notebook):
    """float16 maths, but float32 variables, losses and images; the loss-scaling optimizers take or skip each step."""
    images, z = batch()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        models = networks(notebook)
        train_step, *optimizers = notebook["model_opt"](*models, LEARNING_RATE, 0.5)
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


class RepeatableNoise(tf.Module):
    """Noise that XLA draws as plain TensorFlow does (their random generators give different numbers)."""

    def __init__(self):
        super().__init__()
        self.calls = tf.Variable(0.0)

    def normal(self, shape):
        self.calls.assign_add(1.0)
        count = tf.cast(tf.reduce_prod(shape), tf.float32)
        return tf.reshape(2 * tf.sin(tf.range(count) * 0.37 + 5 * self.calls), shape)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_train_under_xla_matches_train_without(notebook, tmp_path, policy, monkeypatch):
    """train(jit_compile=True) compiles the same maths: three steps from the same start agree within round-off."""
    monkeypatch.setattr(tf.random.Generator, "from_seed", lambda seed, alg=None: RepeatableNoise())
    keras.config.set_dtype_policy(policy)
    try:
        after = {}
        for jit_compile in (False, True):
            keras.utils.set_random_seed(0)  # the same initial weights and noise for both runs
            generator, losses = notebook["train"](digits(16).take(3), "xla", 1, 8, LEARNING_RATE, 0.5,
                                                  tmp_path / str(jit_compile), tmp_path / "images", jit_compile=jit_compile)
            after[jit_compile] = {"losses": losses, **variables([generator])}
    finally:
        keras.config.set_dtype_policy("float32")
    tolerance = ATOL if policy == "float32" else 1e-2  # float16 maths rounds differently when fused by XLA
    for name in after[False]:
        np.testing.assert_allclose(after[True][name], after[False][name], rtol=0, atol=tolerance, err_msg=name)


def test_two_workers_train_as_one_cluster(tmp_path):
    """The README's several-machines set-up, on one machine: two workers, each with its TF_CONFIG, end with one model."""
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
    assert_same(results[1], results[0])  # every worker holds the same weights after the same steps
