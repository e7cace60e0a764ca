"""Layers with forward/backward: Dense and the activations.

Each layer caches what its backward pass needs. Read `y = self.buffer("y", shape, dtype)` as
`y = np.empty(shape, dtype)`: the one speed trick, in `Layer.buffer`, is that the array is reused while the batch
shape stays the same (allocating ~100 KB arrays every step is slow). So an output is valid until the same layer
is called again: copy it if you want to keep it.
"""
from __future__ import annotations

import numpy as np

INITS = ("xavier", "kaiming", "random")  # the names the Lightning side (lightning_lab.models) uses too


def init_weights(n_in: int, n_out: int, init: str, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """A (n_in, n_out) weight matrix, normal with std sqrt(2 / (n_in + n_out)) for xavier (sigmoid/tanh),
    sqrt(2 / n_in) for kaiming (ReLU family, also called He), or 0.01 for random (the naive scheme)."""
    if init == "kaiming":
        std = np.sqrt(2.0 / n_in)
    elif init == "xavier":
        std = np.sqrt(2.0 / (n_in + n_out))
    elif init == "random":
        std = 0.01
    else:
        raise ValueError(f"unknown init {init!r}; valid: {', '.join(INITS)}")
    return (rng.standard_normal((n_in, n_out)) * std).astype(dtype)


class Layer:
    """Base class: forward(x) -> y and backward(dL/dy) -> dL/dx."""

    params: dict[str, np.ndarray] = {}
    grads: dict[str, np.ndarray] = {}

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    # ---- SPEED: the one place where arrays are reused instead of allocated ----
    def buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Like np.empty(shape, dtype), but the same array comes back while shape and dtype stay the same."""
        buf = self._bufs.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._bufs[name] = np.empty(shape, dtype=dtype)
        return buf

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Dense(Layer):
    """y = x @ W + b, with W of shape (n_in, n_out)."""

    def __init__(self, n_in: int, n_out: int, init: str = "kaiming", rng: np.random.Generator | None = None,
                 dtype=np.float32) -> None:
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng()
        self.W = init_weights(n_in, n_out, init, rng, dtype)
        self.b = np.zeros(n_out, dtype=dtype)
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)
        self.params = {"W": self.W, "b": self.b}
        self.grads = {"W": self.dW, "b": self.db}
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        y = self.buffer("y", (x.shape[0], self.W.shape[1]), self.W.dtype)
        np.matmul(x, self.W, out=y)
        y += self.b
        return y

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Fill dW and db; return dL/dx unless need_input_grad is False (the first layer skips it)."""
        np.matmul(self._x.T, grad, out=self.dW)
        np.sum(grad, axis=0, out=self.db)
        if not need_input_grad:
            return None
        dx = self.buffer("dx", self._x.shape, self.W.dtype)
        np.matmul(grad, self.W.T, out=dx)
        return dx

    def __repr__(self) -> str:
        return f"Dense({self.W.shape[0]}, {self.W.shape[1]})"


class ReLU(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        y = self._y = self.buffer("y", x.shape, x.dtype)
        return np.maximum(x, 0, out=y)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        dx = self.buffer("dx", grad.shape, grad.dtype)
        return np.multiply(grad, self._y > 0, out=dx)


class LeakyReLU(Layer):
    def __init__(self, slope: float = 0.01) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        y = self.buffer("y", x.shape, x.dtype)
        np.multiply(x, self.slope, out=y)
        return np.maximum(x, y, out=y)  # max(x, slope*x) is leaky ReLU for 0 < slope < 1

    def backward(self, grad: np.ndarray) -> np.ndarray:
        dx = self.buffer("dx", grad.shape, grad.dtype)
        np.multiply(grad, self.slope, out=dx)
        np.copyto(dx, grad, where=self._x > 0)
        return dx

    def __repr__(self) -> str:
        return f"LeakyReLU({self.slope})"


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """1 / (1 + exp(-x)), written into `out` if given; the loss and the predicted probabilities use it too."""
    # 0.5 * (1 + tanh(x / 2)) equals 1 / (1 + exp(-x)) but never overflows.
    y = np.multiply(x, 0.5, out=out)
    np.tanh(y, out=y)
    y += 1
    y *= 0.5
    return y


class Sigmoid(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = sigmoid(x, out=self.buffer("y", x.shape, x.dtype))
        return self._y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        dx = self.buffer("dx", grad.shape, grad.dtype)
        np.subtract(1, self._y, out=dx)
        dx *= self._y
        dx *= grad
        return dx


class Tanh(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        y = self._y = self.buffer("y", x.shape, x.dtype)
        return np.tanh(x, out=y)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        dx = self.buffer("dx", grad.shape, grad.dtype)
        np.multiply(self._y, self._y, out=dx)
        np.subtract(1, dx, out=dx)
        dx *= grad
        return dx


ACTIVATIONS: dict[str, type[Layer]] = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh}


def make_activation(name: str) -> Layer:
    """An activation layer by name (relu, leaky_relu, sigmoid, tanh)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()
