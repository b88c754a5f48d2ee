"""Fixtures shared by the training-loop tests."""

import numpy as np
import pytest
import tensorflow as tf

from fsr_fer_tf.train import loop


@pytest.fixture()
def nan_after_step(monkeypatch):
    """fn(module, name, step): from step `step` + 1 on, module.name returns NaN.

    The loss term module.name(...) is multiplied by a variable that the
    progress logger sets to NaN when it sees `step`. The training step that
    follows then has a NaN loss and NaN gradients.
    """

    def poison(module, name, step=2):
        factor = tf.Variable(1.0)
        term = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *args: term(*args) * factor)
        original = loop.ProgressLogger.maybe_log

        def maybe_log(self, current, metrics, force=False):
            if current == step:
                factor.assign(float("nan"))
            return original(self, current, metrics, force)

        monkeypatch.setattr(loop.ProgressLogger, "maybe_log", maybe_log)

    return poison


def checkpoint_floats(path):
    """{name: value} of every float variable a checkpoint holds (not the
    run's params)."""
    values = {
        n: tf.train.load_variable(path, n)
        for n, _ in tf.train.list_variables(path)
        if "VARIABLE_VALUE" in n and "params" not in n
    }
    return {n: v for n, v in values.items() if np.asarray(v).dtype.kind == "f"}


@pytest.fixture()
def finite_checkpoint():
    """fn(path) -> its float variables, asserting every one is finite except
    `best` (-inf until the first validation), which is returned apart."""

    def check(path):
        floats = checkpoint_floats(path)
        best = floats.pop("best/.ATTRIBUTES/VARIABLE_VALUE", None)
        assert len(floats) > 20
        bad = [n for n, v in floats.items() if not np.all(np.isfinite(v))]
        assert not bad, bad
        return floats, best

    return check
