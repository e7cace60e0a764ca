"""MLP and Perceptron: a stack of Dense layers and activations trained with a loss on logits."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .layers import ACTIVATIONS, INITS, Dense, Layer, make_activation, sigmoid
from .losses import LOSSES, softmax

OUTPUTS = tuple(LOSSES)  # "softmax" (multi-class) and "sigmoid" (binary)


class MLP:
    """Multi-layer perceptron: sizes=[n_in, hidden..., n_out]; returns logits, trains on a loss of logits.

    output="softmax": n_out classes, integer labels 0..n_out-1, softmax cross-entropy.
    output="sigmoid": n_out == 1, labels 0/1, binary cross-entropy.
    """

    def __init__(self, sizes: list[int], activation: str = "relu", output: str = "softmax", init: str = "kaiming",
                 seed: int | None = 0, dtype=np.float32) -> None:
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must be [n_inputs, hidden..., n_outputs] with every size >= 1, got {sizes}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; valid: {', '.join(OUTPUTS)}")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; valid: {', '.join(INITS)}")
        if output == "sigmoid" and sizes[-1] != 1:
            raise ValueError(f"output='sigmoid' needs sizes[-1] == 1 (one logit), got {sizes[-1]}")
        if output == "softmax" and sizes[-1] < 2:
            raise ValueError(f"output='softmax' needs sizes[-1] >= 2 classes, got {sizes[-1]}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.config = {"sizes": sizes, "activation": activation, "output": output, "init": init,
                       "seed": seed, "dtype": self.dtype.name}
        self.sizes, self.activation, self.output = sizes, activation, output
        rng = np.random.default_rng(seed)
        self.dense: list[Dense] = [Dense(a, b, init, rng, self.dtype) for a, b in zip(sizes[:-1], sizes[1:])]
        self.layers: list[Layer] = []
        for i, layer in enumerate(self.dense):
            self.layers.append(layer)
            if i < len(self.dense) - 1:
                self.layers.append(make_activation(activation))
        self._loss_fn = LOSSES[output]
        self.last_logits: np.ndarray | None = None  # of the last training batch (a reused buffer)
        # Shared arrays, not copies: optimizers update params in place and layers see the change.
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        for i, layer in enumerate(self.dense, start=1):
            self.params[f"W{i}"], self.params[f"b{i}"] = layer.W, layer.b
            self.grads[f"W{i}"], self.grads[f"b{i}"] = layer.dW, layer.db

    @property
    def n_classes(self) -> int:
        return 2 if self.output == "sigmoid" else self.sizes[-1]

    # ---- input checks (the trainer checks the whole data set once, then skips them per batch) ----
    def check_inputs(self, X) -> np.ndarray:
        """X as a C-contiguous array of the network's dtype; ValueError on a wrong shape or NaN/inf."""
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"X must have shape (n_samples, {self.sizes[0]}), got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or inf values")
        return X

    def check_labels(self, y, n: int | None = None) -> np.ndarray:
        """y as an int64 vector of valid labels (0..C-1, or 0/1 for a sigmoid output)."""
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or (n is not None and y.shape[0] != n):
            expected = f"({n},)" if n is not None else "(n_samples,)"
            raise ValueError(f"y must have shape {expected} (one integer label per row of X), got {y.shape}")
        if y.dtype.kind == "f":
            if not np.isfinite(y).all():
                raise ValueError("y contains NaN or inf values")
            if (y != np.round(y)).any():
                raise ValueError("y must hold integer class labels")
        elif y.dtype.kind not in "iub":
            raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
        y = y.astype(np.int64)
        if y.size and (y.min() < 0 or y.max() >= self.n_classes):
            bad = y[(y < 0) | (y >= self.n_classes)][0]
            raise ValueError(f"label {bad} out of range: this network expects labels 0..{self.n_classes - 1}")
        return y

    # ---- forward / backward ----
    def _forward(self, X: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            X = layer.forward(X)
        return X

    def forward(self, X) -> np.ndarray:
        """Logits (N, C) before the softmax, or (N, 1) before the sigmoid."""
        return self._forward(self.check_inputs(X)).copy()

    __call__ = forward

    def train_step_grads(self, X: np.ndarray, y: np.ndarray) -> float:
        """Forward + backward on inputs already checked (check_inputs/check_labels): fills self.grads in place
        (no copies, for the training loop) and returns the mean loss; the batch's logits stay in last_logits."""
        logits = self.last_logits = self._forward(X)
        loss, grad = self._loss_fn(logits, y)
        for layer in reversed(self.layers[1:]):
            grad = layer.backward(grad)
        self.layers[0].backward(grad, need_input_grad=False)  # nobody needs dL/dX
        return loss

    def loss_and_grads(self, X, y) -> tuple[float, dict[str, np.ndarray]]:
        """Mean loss over the batch and its gradient for every entry of self.params (fresh copies)."""
        X = self.check_inputs(X)
        y = self.check_labels(y, X.shape[0])
        loss = self.train_step_grads(X, y)
        return loss, {k: g.copy() for k, g in self.grads.items()}

    def loss(self, X, y, batch_size: int = 4096) -> float:
        """Mean loss over a data set, evaluated in chunks."""
        X = self.check_inputs(X)
        y = self.check_labels(y, X.shape[0])
        total = 0.0
        for i in range(0, X.shape[0], batch_size):
            logits = self._forward(X[i:i + batch_size])
            total += self._loss_fn(logits, y[i:i + batch_size])[0] * logits.shape[0]
        return total / max(X.shape[0], 1)

    def predict_from_logits(self, logits: np.ndarray) -> np.ndarray:
        if self.output == "sigmoid":
            return (logits[:, 0] > 0).astype(np.int64)
        return logits.argmax(axis=1)

    def predict_proba(self, X, batch_size: int = 4096) -> np.ndarray:
        """Class probabilities (N, C); for a sigmoid output, C = 2 columns [P(0), P(1)]."""
        X = self.check_inputs(X)
        out = []
        for i in range(0, X.shape[0], batch_size):
            logits = self._forward(X[i:i + batch_size])
            if self.output == "sigmoid":
                p1 = sigmoid(logits[:, 0])
                out.append(np.stack([1 - p1, p1], axis=1))
            else:
                out.append(softmax(logits))
        return np.concatenate(out) if out else np.empty((0, self.n_classes), self.dtype)

    def predict(self, X, batch_size: int = 4096) -> np.ndarray:
        """Class labels (N,)."""
        X = self.check_inputs(X)
        parts = [self.predict_from_logits(self._forward(X[i:i + batch_size]))
                 for i in range(0, X.shape[0], batch_size)]
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    def accuracy(self, X, y) -> float:
        y = self.check_labels(y)
        return float((self.predict(X) == y).mean())

    # ---- persistence ----
    def save(self, path) -> Path:
        """Write params and config to an .npz file (load with MLP.load, or Perceptron.load for a perceptron)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, __config__=np.array(json.dumps(self.config)), **self.params)
        return path

    @classmethod
    def from_config(cls, config: dict) -> "MLP":
        """A freshly initialised network built from a `config` dict (the MLP constructor's arguments)."""
        return cls(**config)

    @classmethod
    def load(cls, path) -> "MLP":
        """The network written by save(), with its trained params; a ValueError for any other file."""
        try:
            data = np.load(path)  # never unpickles: allow_pickle is False
        except FileNotFoundError:
            raise
        except (ValueError, EOFError, OSError) as err:
            raise ValueError(f"{path} is not a network written by save() (an .npz archive): {err}") from err
        if not hasattr(data, "files") or "__config__" not in data.files:
            if hasattr(data, "close"):
                data.close()
            raise ValueError(f"{path} is not a network written by save() (an .npz archive with its config)")
        with data:
            net = cls.from_config(json.loads(str(data["__config__"])))
            for k, v in net.params.items():
                v[...] = data[k]
        return net

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.layers))}, output={self.output!r})"


class Perceptron(MLP):
    """No hidden layer: one Dense layer, a sigmoid output and binary labels (logistic regression)."""

    def __init__(self, n_features: int, seed: int | None = 0, init: str = "xavier", dtype=np.float32) -> None:
        super().__init__([n_features, 1], activation="relu", output="sigmoid", init=init, seed=seed, dtype=dtype)

    @classmethod
    def from_config(cls, config: dict) -> "Perceptron":
        # config holds the MLP constructor's arguments (what every MLP saves); take the perceptron's from it.
        if len(config["sizes"]) != 2 or config["output"] != "sigmoid":
            raise ValueError(f"not a perceptron (sizes {config['sizes']}, output {config['output']!r}); "
                             f"load it with MLP.load")
        return cls(config["sizes"][0], seed=config["seed"], init=config["init"], dtype=config["dtype"])
