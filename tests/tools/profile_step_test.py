"""Tests of tools/profile_step.py (the top ops of one training step)."""

import os
import subprocess
import sys

import pytest
import tensorflow as tf

from fsr_fer_tf import errors

REPO = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="module")
def tool(load_tool):
    return load_tool("profile_step")


def test_op_stats_counts_every_run_of_each_op(tool, tmp_path):
    x = tf.random.stateless_normal((64, 64), seed=(1, 2))
    w, _ = tf.linalg.qr(tf.random.stateless_normal((64, 64), seed=(3, 4)))
    spd = tf.matmul(x, x, transpose_a=True) + tf.eye(64)

    @tf.function
    def f(x, w, spd):
        for _ in range(3):
            x = tf.matmul(x, w)
        return x, tf.linalg.eigh(spd)[0]

    paths, wall = tool.profile(f, (x, w, spd), steps=2, logdir=str(tmp_path))
    assert paths and wall > 0
    types = {t.type: t for t in tool.by_type(tool.op_stats(paths))}
    # Three matmuls and one eigh a call, two calls (oneDNN may rename the
    # matmul _MklMatMul).
    (matmul,) = [t for name, t in types.items() if name.endswith("MatMul")]
    assert matmul.count == 6 and matmul.self_us > 0
    assert types["SelfAdjointEigV2"].count == 2
    assert types["SelfAdjointEigV2"].self_us > 0


def test_table_lists_the_top_types_and_sums_the_rest(tool):
    rows = [
        {"type": "Conv2D", "name": "c1", "count": 2, "self_us": 600.0},
        {"type": "Conv2D", "name": "c2", "count": 2, "self_us": 200.0},
        {"type": "Mul", "name": "m", "count": 4, "self_us": 150.0},
        {"type": "Add", "name": "a", "count": 1, "self_us": 50.0},
    ]
    types = tool.by_type(rows)
    assert [t.type for t in types] == ["Conv2D", "Mul", "Add"]
    assert types[0] == tool.OpType("Conv2D", 4, 800.0, "c1", 600.0)
    lines = tool.markdown_table(types, top=1, steps=2).splitlines()
    assert lines[2] == "| 1 | `Conv2D` | 4 | 0.8 | 0.4 | 80.0 | `c1` (75%) |"
    assert lines[3] == "|  | rest (2 types) | 5 | 0.2 | 0.1 | 20.0 |  |"
    assert lines[4] == "|  | **all ops** | 9 | 1.0 | 0.5 | 100.0 |  |"


def test_bad_stage_or_preset_is_a_config_error(tool):
    with pytest.raises(errors.ConfigError, match="--stage must be one of"):
        tool.make_step("gan", "demo")
    with pytest.raises(errors.ConfigError, match="--preset must be one of"):
        tool.make_step("fer", "huge")


def test_profiles_a_stage_1_step_end_to_end(tmp_path):
    out = tmp_path / "ops.md"
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "profile_step.py"),
            "--stage=fer",
            "--preset=demo",
            "--batch_size=2",
            "--steps=1",
            "--top=5",
            f"--out={out}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = out.read_text().splitlines()
    assert lines[0].startswith("fer train step, preset demo, batch 2")
    table = lines[2:]
    assert [line.split(" | ")[0] for line in table[2:7]] == [
        f"| {i}" for i in range(1, 6)
    ]
    assert table[7].startswith("|  | rest (")
    assert table[8].startswith("|  | **all ops** |")
    assert "Conv2D" in out.read_text()  # the CNN's convolutions
    assert "**all ops**" in result.stdout
