"""Losses computed from logits, returning (mean loss, dLoss/dlogits); stable for any finite logit."""
from __future__ import annotations

import numpy as np

from .layers import sigmoid


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row max so exp never overflows."""
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray, out: np.ndarray | None = None
                          ) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of integer labels y under softmax(logits), and its gradient w.r.t. logits.

    Fused: the gradient is (softmax - onehot) / N, so the softmax is never differentiated on its own.
    `out` (same shape as logits) receives the gradient if given, saving an allocation.
    """
    n = logits.shape[0]
    rows = np.arange(n)
    shifted = np.subtract(logits, logits.max(axis=1, keepdims=True), out=out)
    correct = shifted[rows, y]  # a copy (fancy indexing), taken before shifted is overwritten
    probs = np.exp(shifted, out=shifted)
    sums = probs.sum(axis=1, keepdims=True)
    # log-sum-exp of the shifted logits minus the correct one: log(sums) >= 0, so no log(0).
    loss = float(np.log(sums).sum() - correct.sum()) / n
    probs *= 1.0 / sums  # reciprocal then multiply: one divide per row instead of per element
    probs[rows, y] -= 1
    probs *= 1.0 / n
    return loss, probs


def binary_cross_entropy(logits: np.ndarray, y: np.ndarray, out: np.ndarray | None = None
                         ) -> tuple[float, np.ndarray]:
    """Mean binary cross-entropy of 0/1 labels y under sigmoid(logits), logits of shape (N, 1)."""
    z = logits.reshape(-1)
    t = y.reshape(-1).astype(logits.dtype, copy=False)
    n = z.shape[0]
    # log(1 + e^z) - y*z == max(z, 0) - y*z + log1p(e^-|z|): no overflow for large |z|.
    loss = float((np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).sum()) / n
    grad = out if out is not None else np.empty_like(logits)
    g = sigmoid(z, out=grad.reshape(-1))  # a view: fills grad
    g -= t
    g *= 1.0 / n
    return loss, grad


LOSSES = {"softmax": softmax_cross_entropy, "sigmoid": binary_cross_entropy}
