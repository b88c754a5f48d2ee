"""README.md tells the truth about the commands it shows."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY_POINTS = [
    ["-m", "fsr_fer_tf.train_fer"],
    ["-m", "fsr_fer_tf.train_fsr"],
    ["-m", "fsr_fer_tf.train_isr"],
    ["-m", "fsr_fer_tf.evaluate"],
    ["-m", "fsr_fer_tf.demo"],
    ["-m", "fsr_fer_tf.data.inspect"],
    ["-m", "fsr_fer_tf.predict"],
    ["tools/ablation_reweight.py"],
    ["tools/ablation_recipes.py"],
    ["tools/export_models.py"],
    ["tools/bench_predict.py"],
    ["tools/make_synthetic_faces.py"],
    ["tools/make_group_picture.py"],
    ["tools/bench_fer_step.py"],
    ["tools/bench_isr.py"],
    ["tools/profile_step.py"],
]


def _readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def _code_blocks(text):
    return re.findall(r"```(?:bash)?\n(.*?)```", text, re.S)


def test_readme_opens_with_the_demo_and_the_test_command():
    blocks = _code_blocks(_readme())
    assert blocks[0].strip() == "pip install -e . && fsr-fer-demo"
    test_command = blocks[1].strip()
    assert (
        test_command
        == 'pip install -q -e ".[dev]" && python -m pytest -q tests'
    )
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = [
            line.strip()
            for line in f
            if line.strip() and not line.startswith("#")
        ]
    assert ci[-1] == test_command  # .ci/run runs exactly the README's command


def test_readme_has_no_unfilled_placeholders():
    # Results and timings are pasted in from real runs; none may be missing.
    text = _readme()
    assert not re.findall(r"\b[A-Z_]*PLACEHOLDER[A-Z_]*\b", text)
    assert "TODO" not in text and "TBD" not in text


def test_console_scripts_named_in_readme_exist():
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        setup = f.read()
    for script in set(re.findall(r"\bfsr-fer-[a-z-]+", _readme())):
        assert f'"{script}=' in setup, script


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", _readme(), re.S)


@pytest.fixture(scope="module")
def readme_commands(run_commands):
    """(`ENTRY_POINTS[i] --helpfull` for each i, `python -c BLOCK` for each
    ```python block of the README), as CompletedProcesses. All run from the
    repository root in one interpreter (TensorFlow imported once, a fork
    per command: see tests/_forked_commands.py)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    helpfull = [[*args, "--helpfull"] for args in ENTRY_POINTS]
    blocks = [["-c", block] for block in _python_blocks()]
    results = run_commands(helpfull + blocks, cwd=ROOT, env=env)
    return results[: len(helpfull)], results[len(helpfull) :]


@pytest.fixture(scope="module")
def defined_flags(readme_commands):
    """Every flag an entry point defines (parsed from --helpfull)."""
    names = set()
    for args, proc in zip(ENTRY_POINTS, readme_commands[0]):
        out = proc.stdout + proc.stderr
        found = set(re.findall(r"^\s+--(?:\[no\])?(\w+)", out, re.M))
        assert "flagfile" in found, (args, out[-1000:])
        # Booleans are listed as --[no]name: --noname is a flag too.
        negated = re.findall(r"^\s+--\[no\](\w+)", out, re.M)
        names |= found | {f"no{name}" for name in negated}
    return names


def test_every_flag_in_readme_exists(defined_flags):
    mentioned = set(re.findall(r"(?<![\w-])--(\w+)", _readme()))
    prefixes = {"g_", "d_"}  # "--g_*" / "--d_*" stand for families
    missing = sorted(
        m
        for m in mentioned - defined_flags
        if m not in prefixes and m not in ("logdir", "help")
    )  # tensorboard's, absl's
    assert not missing, missing
    assert {"g_filters", "d_base_filters"} <= defined_flags


def test_readme_python_blocks_run_as_written(readme_commands):
    # Each ```python block, run from the repository root in a fresh
    # namespace of a Python that imported nothing but fsr_fer_tf, exactly
    # as a reader would paste it.
    blocks = _python_blocks()
    assert blocks and len(readme_commands[1]) == len(blocks)
    for block, proc in zip(blocks, readme_commands[1]):
        assert proc.returncode == 0, (block, proc.stderr[-2000:])
