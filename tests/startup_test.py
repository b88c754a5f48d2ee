"""Tests for fsr_fer_tf.startup: TensorFlow's start-up notices hidden."""

import os
import subprocess
import sys

import pytest

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


# One `import fsr_fer_tf` per environment (each costs a TensorFlow start):
# it prints TF_ENABLE_ONEDNN_OPTS and TF_CPP_MIN_LOG_LEVEL as the import left
# them, then a line of its own on stderr.
CHECK = (
    "import os, sys, fsr_fer_tf\n"
    "assert 'tensorflow' in sys.modules\n"
    "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))\n"
    "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])\n"
    "print('after import', file=sys.stderr)\n"
)


def _import_in_subprocess(**env_changes):
    """Runs CHECK where the user set neither variable, plus env_changes."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")
    }
    env.update(env_changes)
    result = subprocess.run(
        [sys.executable, "-c", CHECK],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def by_default():
    """The import where the user set neither variable. On x86-64 the package
    turns oneDNN on, so TensorFlow prints its oneDNN notice at import."""
    return _import_in_subprocess()


@pytest.fixture(scope="module")
def user_chose():
    """The import where the user set both variables."""
    return _import_in_subprocess(
        TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="0"
    )


def _onednn_expected():
    import platform

    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return "1" if x86 else "None"


def test_import_turns_onednn_on_unless_the_user_chose(by_default, user_chose):
    assert by_default.stdout.splitlines()[0] == _onednn_expected()
    assert user_chose.stdout.splitlines()[0] == "0"


def test_import_prints_nothing_but_what_follows(by_default):
    assert by_default.stdout == _onednn_expected() + "\n2\n"
    assert by_default.stderr == "after import\n"


def test_a_users_log_level_is_kept(user_chose):
    assert user_chose.stdout == "0\n0\n"
