"""Tests for fsr_fer_tf.startup: TensorFlow's start-up notices hidden."""

import os
import subprocess
import sys

from fsr_fer_tf import startup

# Lines TensorFlow 2.21 printed at import on machines of this project.
PREAMBLE = (
    "WARNING: All log messages before absl::InitializeLog() is called are "
    "written to STDERR\n"
)
ONEDNN = (
    "I0000 00:00:1796154756.899539    4487 port.cc:153] oneDNN custom "
    "operations are on. You may see slightly different numerical results "
    "due to floating-point round-off errors from different computation "
    "orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`.\n"
)
CPU_GUARD = (
    "I0000 00:00:1796153897.480197    3032 cpu_feature_guard.cc:227] This "
    "TensorFlow binary is optimized to use available CPU instructions in "
    "performance-critical operations.\n"
    "To enable the following instructions: AVX2 FMA, in other operations, "
    "rebuild TensorFlow with the appropriate compiler flags.\n"
)
WARNING = (
    "W0000 00:00:1796154058.214012    3437 local_rendezvous.cc:412] Local "
    "rendezvous is aborting with status: INVALID_ARGUMENT: Input is empty.\n"
)
ERROR = "E0000 00:00:1796154709.767530    4345 meta_optimizer.cc:967] bad\n"


def test_drop_notices_keeps_everything_else_in_order():
    text = (
        PREAMBLE + ONEDNN + "UserWarning: a Python warning\n" + PREAMBLE
        + CPU_GUARD + WARNING + ERROR + "Traceback (most recent call last):\n"
    )  # fmt: skip
    assert startup.drop_notices(text) == (
        "UserWarning: a Python warning\n" + WARNING + ERROR
        + "Traceback (most recent call last):\n"
    )  # fmt: skip
    assert startup.drop_notices(PREAMBLE + ONEDNN + CPU_GUARD) == ""
    assert startup.drop_notices("no newline at the end") == (
        "no newline at the end"
    )


def test_should_quiet():
    assert startup.should_quiet({}, {})
    assert not startup.should_quiet({"TF_CPP_MIN_LOG_LEVEL": "0"}, {})
    assert not startup.should_quiet({}, {"tensorflow": object()})


def test_onednn_default():
    assert startup.onednn_default({}, {}, "x86_64")
    assert startup.onednn_default({}, {}, "AMD64")
    assert not startup.onednn_default({}, {}, "aarch64")
    assert not startup.onednn_default(
        {"TF_ENABLE_ONEDNN_OPTS": "0"}, {}, "x86_64"
    )
    assert not startup.onednn_default({}, {"tensorflow": 1}, "x86_64")


def test_import_turns_onednn_on_unless_the_user_chose():
    code = (
        "import os, fsr_fer_tf; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"
    )
    import platform

    expected = (
        "1" if platform.machine().lower() in ("x86_64", "amd64") else "None"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        timeout=600, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected
    result = _import_in_subprocess(code, TF_ENABLE_ONEDNN_OPTS="0")
    assert result.stdout.strip() == "0"


def _import_in_subprocess(code, **env_changes):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["TF_ENABLE_ONEDNN_OPTS"] = "1"  # the notice, on any x86 CPU
    env.update(env_changes)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )


def test_import_prints_nothing_but_what_follows():
    result = _import_in_subprocess(
        "import os, sys, fsr_fer_tf\n"
        "assert 'tensorflow' in sys.modules\n"
        "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])\n"
        "print('after import', file=sys.stderr)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2\n"
    assert result.stderr == "after import\n"


def test_a_users_log_level_is_kept():
    result = _import_in_subprocess(
        "import os, fsr_fer_tf; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])",
        TF_CPP_MIN_LOG_LEVEL="0",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "0\n"
