"""tf.distribute for both stages (fsr_fer_tf.distribute): on this CPU, two
logical devices with `mirrored`, and two local worker processes with
`multi_worker_mirrored`. Each check runs tests/train/_distributed_check.py
in a subprocess, since devices and TF_CONFIG are fixed when TensorFlow
starts."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from fsr_fer_tf import distribute
from fsr_fer_tf import errors

HERE = os.path.dirname(os.path.abspath(__file__))
CHECK = os.path.join(HERE, "_distributed_check.py")


def _env(**extra):
    """The test's environment without a TF_CONFIG of its own, plus extra."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(extra)
    return env


def _results(out):
    """Every RESULT line's JSON, in order."""
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert lines, out[-3000:]
    return [json.loads(line[len("RESULT ") :]) for line in lines]


def _run(*args, env=None, timeout=600):
    """The RESULTs of one _distributed_check.py run."""
    proc = subprocess.run(
        [sys.executable, CHECK, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or _env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _results(proc.stdout)


@pytest.mark.slow
def test_mirrored_equals_one_device_in_both_stages(tmp_path):
    # Global batch 8 over 2 replicas of 4, against one device: stage 1 with
    # synchronised batch-norm, stage 2 with re-weighting gradients, a
    # weighted critic and the WGAN-div penalty. float32 sums in another
    # order: 1e-5 on the weights.
    (result,) = _run("fsr", str(tmp_path))
    assert result["replicas_default"] == 1 and result["replicas_mirrored"] == 2
    assert result["fer_weights"] < 1e-5, result
    assert result["fsr_generator"] < 1e-5, result
    assert result["fsr_critic"] < 1e-5, result
    # evaluate --distribution_strategy=mirrored: the same report.
    assert result["eval_equal"], result


def _weights(path):
    return [w.numpy() for w in keras.models.load_model(path).weights]


@pytest.mark.slow
def test_killed_mirrored_run_resumes_at_its_checkpoint(tmp_path):
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, CHECK, "mirrored_fer", str(killed), "14"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
    )
    deadline = time.time() + 600
    try:  # epochs are 7 steps: the first checkpoint is ckpt-7
        while not (killed / "ckpt-7.index").exists():
            assert proc.poll() is None, "the run ended before its checkpoint"
            assert time.time() < deadline
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (killed / "final.keras").exists()
    assert tf.train.latest_checkpoint(str(killed)).endswith("ckpt-7")
    # One process (a fresh TensorFlow) resumes the killed run, then trains
    # the same run straight through in another folder.
    straight = tmp_path / "straight"
    resumed, whole = _run(
        "mirrored_fer", str(killed), "14", str(straight), "14"
    )
    assert resumed["steps"] == 14 and resumed["replicas"] == 2
    assert resumed["latest"] == "ckpt-14" and resumed["final"]
    assert whole["steps"] == 14 and whole["replicas"] == 2
    for a, b in zip(
        _weights(str(straight / "final.keras")),
        _weights(str(killed / "final.keras")),
    ):
        np.testing.assert_allclose(a, b, atol=1e-6)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _workers(model_dir, *steps):
    """Two local workers of one multi-worker run, trained to each of
    `steps` in turn (the later calls resume): each worker's RESULTs."""
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for index in range(2):
        config = {
            "cluster": cluster,
            "task": {"type": "worker", "index": index},
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, CHECK, "multi_worker", model_dir]
                + [str(n) for n in steps],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_env(TF_CONFIG=json.dumps(config)),
            )
        )
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        results.append(_results(out))
    return results


@pytest.mark.slow
def test_two_local_workers_train_and_resume(tmp_path):
    # One launch of the two workers: each trains 4 steps, then resumes
    # the run from its checkpoint to 6.
    model_dir = str(tmp_path / "mw")
    (chief_first, chief_again), (other_first, other_again) = _workers(
        model_dir, 4, 6
    )
    first, again = [chief_first, other_first], [chief_again, other_again]
    assert [r["chief"] for r in first] == [True, False]
    assert all(r["replicas"] == 2 and r["steps"] == 4 for r in first)
    assert chief_first["latest"] == "ckpt-4"
    # Only the chief wrote the run; the other's scratch copy is gone.
    assert chief_first["final"]
    assert not other_first["scratch_left"] and not other_again["scratch_left"]
    assert not os.path.exists(os.path.join(model_dir, ".workers", "worker_1"))
    assert all(r["steps"] == 6 for r in again)
    assert chief_again["latest"] == "ckpt-6"
    assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-6")


def test_strategy_names_and_batch_split():
    assert distribute.make_strategy("default") is tf.distribute.get_strategy()
    with pytest.raises(errors.ConfigError, match="is unknown"):
        distribute.make_strategy("tpu_pod")
    one = distribute.make_strategy("default")
    assert distribute.check_batch_size(32, one) == 32
    assert distribute.is_chief(one)
    assert distribute.worker_dir("/runs/a", one) == "/runs/a"


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(errors.ConfigError, match="needs TF_CONFIG"):
        distribute.make_strategy("multi_worker_mirrored")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(errors.ConfigError, match="TF_CONFIG is not JSON"):
        distribute.make_strategy("multi_worker_mirrored")
