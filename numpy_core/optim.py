"""Optimizers that update a dict of parameter arrays in place: SGD (with momentum) and Adam."""
from __future__ import annotations

import numpy as np

OPTIMIZERS = ("sgd", "adam")


class SGD:
    """p -= lr * v, with v = momentum * v + grad (PyTorch's convention; v = grad when momentum is 0)."""

    def __init__(self, params: dict[str, np.ndarray], lr: float = 0.1, momentum: float = 0.0) -> None:
        if lr <= 0 or not np.isfinite(lr):
            raise ValueError(f"lr must be a positive number, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.params, self.lr, self.momentum = params, lr, momentum
        self.velocity = {k: np.zeros_like(p) for k, p in params.items()} if momentum else {}

    def step(self, grads: dict[str, np.ndarray]) -> None:
        for k, p in self.params.items():  # in place (-=, *=): the network's layers hold these same arrays
            g = grads[k]
            if self.momentum:
                v = self.velocity[k]
                v *= self.momentum
                v += g
                g = v
            p -= self.lr * g


class Adam:
    """Adam (Kingma & Ba, 2015) with bias correction folded into the step size."""

    def __init__(self, params: dict[str, np.ndarray], lr: float = 1e-3, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8) -> None:
        if lr <= 0 or not np.isfinite(lr):
            raise ValueError(f"lr must be a positive number, got {lr}")
        self.params, self.lr, self.beta1, self.beta2, self.eps = params, lr, beta1, beta2, eps
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.v = {k: np.zeros_like(p) for k, p in params.items()}
        self.t = 0

    def step(self, grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        lr_t = self.lr * np.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        eps_t = self.eps * np.sqrt(1 - b2 ** self.t)  # keeps eps on the bias-corrected scale
        for k, p in self.params.items():  # in place (-=, *=): the network's layers hold these same arrays
            g, m, v = grads[k], self.m[k], self.v[k]
            m *= b1
            m += (1 - b1) * g  # running mean of the gradient
            v *= b2
            v += (1 - b2) * g * g  # running mean of its square
            p -= lr_t * m / (np.sqrt(v) + eps_t)


def make_optimizer(name: str, params: dict[str, np.ndarray], lr: float, momentum: float = 0.0):
    """SGD or Adam by name."""
    if name == "sgd":
        return SGD(params, lr=lr, momentum=momentum)
    if name == "adam":
        return Adam(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
