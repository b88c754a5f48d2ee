"""The released-code classifier: linear SVM on L2-normalised outputs."""

import numpy as np

from fsr_fer_tf import svm


def _blobs(n=60, k=4, d=7, spread=0.15, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    labels = np.arange(n) % k
    x = centres[labels] + spread * rng.normal(size=(n, d))
    return x, labels


def test_optimality_of_each_binary_problem():
    # At the optimum of 0.5|w|^2 + C sum max(0, 1 - y w.x)^2 the gradient
    # w - 2C X_a^T (y_a m_a) vanishes; check it, and that a perturbed w
    # has a larger objective.
    x, labels = _blobs()
    model = svm.LinearSVM(c=1.0).fit(x, labels, num_classes=4)
    design = model._design(x)
    for k in range(4):
        y = np.where(labels == k, 1.0, -1.0)
        w = model.weights[:, k]

        def objective(v):
            m = np.maximum(0.0, 1.0 - y * (design @ v))
            return 0.5 * v @ v + np.sum(m**2)

        m = 1.0 - y * (design @ w)
        a = m > 0
        grad = w - 2.0 * design[a].T @ (y[a] * m[a])
        assert np.linalg.norm(grad) < 1e-8
        rng = np.random.default_rng(k)
        for _ in range(5):
            assert objective(w + 1e-3 * rng.normal(size=w.shape)) > objective(w)


def test_separable_blobs_are_classified_and_scale_invariant():
    x, labels = _blobs(spread=0.05)
    model = svm.LinearSVM().fit(x, labels, num_classes=4)
    assert np.mean(model.predict(x) == labels) == 1.0
    # Inputs are L2-normalised first: scaling a row changes nothing.
    np.testing.assert_allclose(
        model.decision_function(3.0 * x), model.decision_function(x), atol=1e-12
    )


def test_l2_normalize_unit_rows_and_zero_row():
    out = svm.l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
