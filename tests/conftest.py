"""Shared pytest set-up: quiet TensorFlow, reset global Keras state per test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_dtype_policy():
    """Tests that set mixed_float16 must not leak it into the next test."""
    import keras

    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)


@pytest.fixture(scope="session")
def shared_testdata():
    """Path of ../shared/testdata (MATLAB reference outputs)."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.normpath(os.path.join(here, "..", "..", "shared", "testdata"))
    if not os.path.isdir(path):
        pytest.fail(f"{path} is missing: clone the repo beside ../shared.")
    return path
