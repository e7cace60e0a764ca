"""The classical baselines: scikit-learn's logistic regression and RBF SVC on the pixels the network sees."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

# Beyond these sizes (training samples x features) a model does not fit a CPU in minutes: kernel SVC's time
# grows with the square of the samples (libsvm, one core); logistic regression needs the float32 matrix in
# memory (1 GB at the limit).
SVC_LIMIT = 50_000_000
LOGREG_LIMIT = 250_000_000


@dataclass
class ClassicalResult:
    test_acc: float
    test_loss: float | None  # None: the model has no class probabilities (SVC without Platt scaling)
    params: int
    train_seconds: float


def logistic_regression() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000)  # the default 100 iterations stop short of convergence on pixels


def rbf_svc() -> Any:
    from sklearn.svm import SVC

    return SVC()  # scikit-learn's defaults: RBF kernel, C=1, gamma="scale"


# name in the table -> (factory, size limit, why a larger problem is skipped)
CLASSICAL: dict[str, tuple[Callable[[], Any], int, str]] = {
    "LogisticRegression": (logistic_regression, LOGREG_LIMIT, "its float32 pixel matrix would pass 1 GB"),
    "SVC(rbf)": (rbf_svc, SVC_LIMIT, "kernel SVC's time grows with samples squared (hours on a CPU)"),
}


def skip_reason(name: str, n_train: int, n_features: int) -> str | None:
    """Why `name` is not trained on `n_train` x `n_features` pixels, or None when it fits the machine."""
    _, limit, why = CLASSICAL[name]
    if n_train * n_features <= limit:
        return None
    return f"{n_train} images x {n_features} pixels: {why}"


def stored_parameters(model: Any) -> int:
    """Numbers the fitted model keeps to predict: weights and biases, or support vectors and their coefficients."""
    if hasattr(model, "support_vectors_"):
        return int(model.support_vectors_.size + model.dual_coef_.size + model.intercept_.size)
    return int(model.coef_.size + model.intercept_.size)


def fit_classical(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                  y_test: np.ndarray) -> ClassicalResult:
    """Fit the named model on flattened images; accuracy and (where it has probabilities) log loss on test."""
    from sklearn.metrics import log_loss

    model = CLASSICAL[name][0]()
    start = time.perf_counter()
    model.fit(x_train, y_train)
    seconds = time.perf_counter() - start
    accuracy = float((model.predict(x_test) == y_test).mean())
    loss = None
    if hasattr(model, "predict_proba"):  # an SVC has it only when fitted with probability=True
        loss = float(log_loss(y_test, model.predict_proba(x_test), labels=model.classes_))
    return ClassicalResult(accuracy, loss, stored_parameters(model), seconds)
