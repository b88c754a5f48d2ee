"""Tests for fsr_fer_tf.benchmark, the timing helpers of tools/bench_*.py."""

import tensorflow as tf

from fsr_fer_tf import benchmark


def test_timed_warms_up_once_then_times_each_call(monkeypatch):
    # A fake clock: each call of fn advances it by 0.01 s x its call number,
    # so the test reads durations exactly, whatever the machine's load.
    clock = [0.0]
    monkeypatch.setattr(benchmark.time, "perf_counter", lambda: clock[0])
    calls = []

    def fn(x):
        calls.append(x)
        clock[0] += 0.01 * len(calls)  # later calls are slower
        return tf.constant(x)

    median, minimum = benchmark.timed(fn, 3, repeats=4)
    assert calls == [3] * 5  # one warm-up + 4 timed calls
    # Timed calls took 0.02, 0.03, 0.04, 0.05 s: the warm-up is excluded.
    assert abs(minimum - 0.02) < 1e-12
    assert abs(median - 0.035) < 1e-12


def test_environment_names_versions_and_devices():
    line = benchmark.environment()
    assert line.startswith(f"TensorFlow {tf.__version__}, Keras ")
    assert "CPU" in line
