"""Linear SVM on L2-normalised outputs: the released code's classifier.

The released CovPoolFER and FSR-FER code classify with sklearn
`SVC(kernel='linear')` fitted on the L2-normalised network outputs of the
training split. `evaluate --classifier=svm` offers the same protocol without
sklearn: a one-vs-rest linear SVM with the squared hinge loss (the loss of
sklearn's LinearSVC; libsvm's SVC uses one-vs-one with the plain hinge), C = 1,
solved exactly in the primal by Newton's method (Chapelle 2007, "Training a
support vector machine in the primal"), which takes a few iterations on
7-d inputs.
"""

import numpy as np


def l2_normalize(x, epsilon=1e-10):
    """Rows scaled to unit L2 norm (facenet's `embeddings`)."""
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), epsilon)


def _fit_binary(x, y, c, max_iter, tol):
    """min_w 0.5 |w|^2 + c sum_i max(0, 1 - y_i w.x_i)^2 (x has a bias 1)."""
    w = np.zeros(x.shape[1])
    for _ in range(max_iter):
        margin = 1.0 - y * (x @ w)
        active = margin > 0
        xa, ya, ma = x[active], y[active], margin[active]
        grad = w - 2.0 * c * xa.T @ (ya * ma)
        if np.linalg.norm(grad) < tol:
            break
        hessian = np.eye(len(w)) + 2.0 * c * xa.T @ xa
        w = w - np.linalg.solve(hessian, grad)
    return w


class LinearSVM:
    """One-vs-rest linear SVM with squared hinge loss, on L2-normalised input.

    Args:
        c: inverse regularisation strength (sklearn's default 1).
        max_iter: Newton iterations per class at most.
        tol: stop when the gradient norm is below this.

    Example:
        svm = LinearSVM().fit(train_logits, train_labels, num_classes=7)
        scores = svm.decision_function(test_logits)  # argmax = prediction
    """

    def __init__(self, c=1.0, max_iter=100, tol=1e-10):
        self.c = float(c)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.weights = None  # [d + 1, num_classes], last row the bias

    @staticmethod
    def _design(x):
        x = l2_normalize(x)
        return np.concatenate([x, np.ones((len(x), 1))], axis=1)

    def fit(self, x, labels, num_classes):
        x = self._design(x)
        labels = np.asarray(labels)
        self.weights = np.stack(
            [
                _fit_binary(
                    x,
                    np.where(labels == k, 1.0, -1.0),
                    self.c,
                    self.max_iter,
                    self.tol,
                )
                for k in range(num_classes)
            ],
            axis=1,
        )
        return self

    def decision_function(self, x):
        if self.weights is None:
            raise ValueError("LinearSVM.fit must run before predicting.")
        return self._design(x) @ self.weights

    def predict(self, x):
        return np.argmax(self.decision_function(x), axis=-1)
