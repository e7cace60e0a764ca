"""Mini-batch training loop: shuffle with a seeded Generator, step the optimizer, record history."""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from .network import MLP
from .optim import make_optimizer


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or inf during training (usually a learning rate that is too large)."""


def train(net: MLP, X, y, *, epochs: int = 10, batch_size: int = 32, optimizer: str = "adam",
          lr: float = 1e-3, momentum: float = 0.0, seed: int = 0, X_test=None, y_test=None,
          on_epoch: Callable[[int, dict], None] | None = None) -> dict[str, list]:
    """Train `net` in place; returns per-epoch history: train_loss, train_accuracy (and test_* if given).

    train_loss/train_accuracy are averaged over the epoch's mini-batches as they were trained on.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    X = net.check_inputs(X)  # checked and cast once here, so the hot loop skips the checks
    y = net.check_labels(y, X.shape[0])
    if X.shape[0] == 0:
        raise ValueError("no training samples (X has 0 rows)")
    if X_test is not None:
        X_test = net.check_inputs(X_test)
        y_test = net.check_labels(y_test, X_test.shape[0])
        if X_test.shape[0] == 0:
            raise ValueError("X_test has 0 rows: its loss and accuracy would be meaningless (pass X_test=None)")
    opt = make_optimizer(optimizer, net.params, lr, momentum)
    rng = np.random.default_rng(seed)
    n = X.shape[0]
    batch_size = min(batch_size, n)
    history: dict[str, list] = {"train_loss": [], "train_accuracy": [], "epoch_seconds": []}
    if X_test is not None:
        history.update(test_loss=[], test_accuracy=[])
    step = 0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(n)
        loss_sum, correct = 0.0, 0
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            xb, yb = X[idx], y[idx]
            m = len(idx)
            step += 1
            with np.errstate(over="ignore", invalid="ignore"):
                loss = net.train_step_grads(xb, yb)
            if not math.isfinite(loss):
                raise TrainingDivergedError(
                    f"loss became {loss} at epoch {epoch}, step {step} with {optimizer} lr={lr}; "
                    f"try a smaller learning rate")
            correct += int((net.predict_from_logits(net.last_logits) == yb).sum())
            opt.step(net.grads)
            loss_sum += loss * m
        history["train_loss"].append(loss_sum / n)
        history["train_accuracy"].append(correct / n)
        history["epoch_seconds"].append(time.perf_counter() - start)
        if X_test is not None:
            history["test_loss"].append(net.loss(X_test, y_test))
            history["test_accuracy"].append(net.accuracy(X_test, y_test))
        if on_epoch is not None:
            on_epoch(epoch, {k: v[-1] for k, v in history.items()})
    return history
