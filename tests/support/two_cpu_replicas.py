"""An IPython startup file for the notebook's kernel in tests: two GPUs, emulated by the CPU split in two.

tests/test_gpu_configs.py copies it into a fresh IPython folder's `profile_default/startup/`, so it runs in the
kernel before the notebook's first cell. The notebook's imports cell then asks `helper.distribution_strategy`
for its devices and gets a `MirroredStrategy` over two logical CPUs, as it would over two GPUs.
"""

import tensorflow as tf

import helper


def two_cpu_replicas():
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    return tf.distribute.MirroredStrategy([device.name for device in tf.config.list_logical_devices("CPU")])


helper.distribution_strategy = two_cpu_replicas
