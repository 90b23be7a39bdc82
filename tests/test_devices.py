"""What the notebook picks on each kind of machine: mixed precision and XLA, from the GPUs' compute capabilities."""

import pytest
import tensorflow as tf

import helper


@pytest.mark.parametrize("capabilities, replicas, expected", [
    ([], 1, (False, False)),  # the CPU
    ([(6, 1)], 1, (False, False)),  # a GPU without Tensor Cores (e.g. a P4 or P40)
    ([(7, 5)], 1, (True, True)),  # one T4: mixed precision and XLA
    ([(8, 6)] * 4, 4, (True, False)),  # four A10G: mixed precision, and XLA off across replicas
    ([(7, 0), (6, 0)], 2, (False, False)),  # one GPU without Tensor Cores is enough to keep float32
])
def test_defaults_follow_the_gpus(capabilities, replicas, expected):
    assert helper.choose_speedups(None, None, replicas, capabilities) == expected


@pytest.mark.parametrize("given", [(False, False), (True, False), (False, True), (True, True)])
def test_values_given_by_hand_are_kept(given):
    assert helper.choose_speedups(*given, 1, [(8, 0)]) == given
    assert helper.choose_speedups(*given, 2, []) == given


def test_capabilities_are_read_from_every_gpu(monkeypatch):
    gpus = {"GPU:0": (7, 5), "GPU:1": (6, 1)}
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: list(gpus) if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda gpu: {"compute_capability": gpus[gpu]})
    assert helper.gpu_capabilities() == [(7, 5), (6, 1)]
    assert not helper.has_tensor_cores()  # not all of them have Tensor Cores
    gpus["GPU:1"] = (8, 0)
    assert helper.has_tensor_cores()


def test_this_machine_has_no_gpu_and_keeps_float32():
    assert helper.gpu_capabilities() == [] and not helper.has_tensor_cores()
    assert helper.choose_speedups(None, None, 1) == (False, False)
