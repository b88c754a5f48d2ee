"""Shared by the tests of tools/*.py (tools/ is not a package)."""

import importlib.util
import os

import pytest

REPO = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _load_tool(name):
    path = os.path.join(REPO, "tools", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_tool():
    """load_tool(name) -> tools/<name>.py as a module."""
    return _load_tool


@pytest.fixture(scope="module", autouse=True)
def _forget_tool_flags():
    """Deletes, after each test module, the flags its tool defined.

    Two tools may define flags of the same name (e.g. --eval_split, with
    different defaults); in one test process the second would be a
    DuplicateFlagError. The package's own flags (train_fsr's, defined once
    per process) stay.
    """
    from absl import flags

    before = set(flags.FLAGS)
    yield
    package = {
        flag.name
        for module, defined in flags.FLAGS.flags_by_module_dict().items()
        if module.startswith("fsr_fer_tf")
        for flag in defined
    }
    for name in set(flags.FLAGS) - before - package:
        if name in flags.FLAGS:
            delattr(flags.FLAGS, name)
