"""Tests for fsr_fer_tf.benchmark, the timing helpers of tools/bench_*.py."""

import time

import tensorflow as tf

from fsr_fer_tf import benchmark


def test_timed_warms_up_once_then_times_each_call():
    calls = []

    def fn(x):
        calls.append(x)
        time.sleep(0.01 * len(calls))  # later calls are slower
        return tf.constant(x)

    median, minimum = benchmark.timed(fn, 3, repeats=4)
    assert calls == [3] * 5  # one warm-up + 4 timed calls
    # Timed calls slept 0.02, 0.03, 0.04, 0.05 s: the warm-up is excluded.
    assert 0.02 <= minimum < 0.03 + 0.01
    assert minimum <= median and 0.035 <= median < 0.05


def test_environment_names_versions_and_devices():
    line = benchmark.environment()
    assert line.startswith(f"TensorFlow {tf.__version__}, Keras ")
    assert "CPU" in line
