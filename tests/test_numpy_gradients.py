"""numpy_core gradients against PyTorch autograd (float64) and finite differences."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from numpy_core import (MLP, Dense, LeakyReLU, ReLU, Sigmoid, Tanh, binary_cross_entropy, sigmoid,
                        softmax_cross_entropy)

TORCH_ACT = {"relu": torch.relu, "leaky_relu": lambda x: torch.nn.functional.leaky_relu(x, 0.01),
             "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def rel_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), np.abs(b).max(), 1e-12))


def t(a: np.ndarray, grad: bool = False):
    return torch.tensor(np.asarray(a, np.float64), requires_grad=grad)


def test_dense_forward_backward_match_torch():
    rng = np.random.default_rng(0)
    layer = Dense(5, 3, rng=rng, dtype=np.float64)
    layer.b[:] = rng.standard_normal(3)
    x, upstream = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    y = layer.forward(x)
    dx = layer.backward(upstream)
    tx, tW, tb = t(x, True), t(layer.W, True), t(layer.b, True)
    ty = tx @ tW + tb
    ty.backward(t(upstream))
    assert rel_error(y, ty.detach()) < 1e-12
    for mine, theirs in ((dx, tx.grad), (layer.dW, tW.grad), (layer.db, tb.grad)):
        assert rel_error(mine, theirs) < 1e-6


@pytest.mark.parametrize("layer_cls, name", [(ReLU, "relu"), (LeakyReLU, "leaky_relu"), (Sigmoid, "sigmoid"),
                                             (Tanh, "tanh")])
def test_activation_matches_torch(layer_cls, name):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 7)) * 3
    upstream = rng.standard_normal((6, 7))
    layer = layer_cls()
    y = layer.forward(x).copy()
    dx = layer.backward(upstream)
    tx = t(x, True)
    ty = TORCH_ACT[name](tx)
    ty.backward(t(upstream))
    assert rel_error(y, ty.detach()) < 1e-12
    assert rel_error(dx, tx.grad) < 1e-6


def test_sigmoid_matches_torch_and_never_overflows():
    x = np.array([-1e4, -50.0, -3.0, -0.5, 0.0, 0.5, 3.0, 50.0, 1e4])
    for dtype in (np.float64, np.float32):
        with np.errstate(over="raise", invalid="raise"):
            y = sigmoid(x.astype(dtype))
        assert y.dtype == dtype
        np.testing.assert_allclose(y, torch.sigmoid(t(x)).numpy(), rtol=1e-6, atol=1e-7)
    out = np.empty_like(x)
    assert sigmoid(x, out=out) is out


def test_predict_proba_of_a_sigmoid_output_is_the_sigmoid_of_its_logit():
    net = MLP([3, 5, 1], output="sigmoid", seed=0, dtype=np.float64)
    X = np.random.default_rng(9).standard_normal((6, 3)) * 3
    p1 = torch.sigmoid(t(net.forward(X)[:, 0])).numpy()
    np.testing.assert_allclose(net.predict_proba(X), np.stack([1 - p1, p1], axis=1), rtol=1e-12, atol=1e-15)


def test_softmax_cross_entropy_matches_torch():
    rng = np.random.default_rng(2)
    logits, y = rng.standard_normal((8, 5)) * 4, rng.integers(0, 5, 8)
    loss, grad = softmax_cross_entropy(logits.copy(), y)
    tl = t(logits, True)
    tloss = torch.nn.functional.cross_entropy(tl, torch.tensor(y))
    tloss.backward()
    assert abs(loss - tloss.item()) / tloss.item() < 1e-12
    assert rel_error(grad, tl.grad) < 1e-6


def test_binary_cross_entropy_matches_torch():
    rng = np.random.default_rng(3)
    logits, y = rng.standard_normal((9, 1)) * 4, rng.integers(0, 2, 9)
    loss, grad = binary_cross_entropy(logits, y)
    tl = t(logits, True)
    tloss = torch.nn.functional.binary_cross_entropy_with_logits(tl[:, 0], torch.tensor(y, dtype=torch.float64))
    tloss.backward()
    assert abs(loss - tloss.item()) / tloss.item() < 1e-12
    assert rel_error(grad, tl.grad) < 1e-6


@pytest.mark.parametrize("loss_fn, n_out", [(softmax_cross_entropy, 3), (binary_cross_entropy, 1)])
def test_losses_stable_for_huge_logits(loss_fn, n_out):
    logits = np.array([[1e4] * n_out, [-1e4] * n_out, [1e4] + [-1e4] * (n_out - 1)], dtype=np.float64)
    y = np.array([0, n_out - 1, n_out - 1]) if n_out > 1 else np.array([0, 1, 1])
    for dtype in (np.float64, np.float32):
        with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
            loss, grad = loss_fn(logits.astype(dtype), y)
        assert np.isfinite(loss) and np.isfinite(grad).all()
        assert loss > 1000  # confidently wrong rows cost about 1e4 / 3 on average, not inf
    # confidently right: zero loss and zero gradient, not NaN
    right = np.array([[1e4] + [-1e4] * (n_out - 1)]) if n_out > 1 else np.array([[1e4]])
    loss, grad = loss_fn(right, np.array([0 if n_out > 1 else 1]))
    assert loss == pytest.approx(0.0, abs=1e-12) and np.abs(grad).max() < 1e-12


def torch_mlp_loss(net: MLP, X, y):
    params = {k: t(v, True) for k, v in net.params.items()}
    h = t(X)
    n_layers = len(net.sizes) - 1
    for i in range(1, n_layers + 1):
        h = h @ params[f"W{i}"] + params[f"b{i}"]
        if i < n_layers:
            h = TORCH_ACT[net.activation](h)
    if net.output == "softmax":
        loss = torch.nn.functional.cross_entropy(h, torch.tensor(y))
    else:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(h[:, 0], torch.tensor(y, dtype=torch.float64))
    loss.backward()
    return h.detach().numpy(), loss.item(), {k: p.grad.numpy() for k, p in params.items()}


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
@pytest.mark.parametrize("hidden", [[], [7], [6, 5, 4]])
def test_network_gradients_match_torch(activation, output, hidden):
    rng = np.random.default_rng(4)
    n_out = 4 if output == "softmax" else 1
    net = MLP([3, *hidden, n_out], activation=activation, output=output, init="xavier", seed=5, dtype=np.float64)
    for k, v in net.params.items():
        if k.startswith("b"):
            v[:] = rng.standard_normal(v.shape) * 0.5  # non-zero biases so their gradients are exercised
    X = rng.standard_normal((10, 3))
    y = rng.integers(0, max(n_out, 2), 10)
    loss, grads = net.loss_and_grads(X, y)
    logits, tloss, tgrads = torch_mlp_loss(net, X, y)
    assert rel_error(net.forward(X), logits) < 1e-12
    assert abs(loss - tloss) / tloss < 1e-10
    assert grads.keys() == net.params.keys() == tgrads.keys()
    for k in grads:
        assert grads[k].shape == net.params[k].shape
        assert rel_error(grads[k], tgrads[k]) < 1e-6, k


def test_network_gradients_match_finite_differences():
    rng = np.random.default_rng(6)
    net = MLP([4, 6, 5, 3], activation="tanh", output="softmax", init="xavier", seed=7, dtype=np.float64)
    X, y = rng.standard_normal((8, 4)), rng.integers(0, 3, 8)
    _, grads = net.loss_and_grads(X, y)
    eps = 1e-6
    for k, p in net.params.items():
        numeric = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            plus = net.loss(X, y)
            p[idx] = old - eps
            minus = net.loss(X, y)
            p[idx] = old
            numeric[idx] = (plus - minus) / (2 * eps)
        assert rel_error(grads[k], numeric) < 1e-6, k


def test_loss_and_grads_returns_copies():
    rng = np.random.default_rng(8)
    net = MLP([3, 4, 2], seed=0, dtype=np.float64)
    X1, X2, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), rng.integers(0, 2, 5)
    _, g1 = net.loss_and_grads(X1, y)
    kept = {k: v.copy() for k, v in g1.items()}
    net.loss_and_grads(X2, y)
    for k in g1:
        np.testing.assert_array_equal(g1[k], kept[k])


@pytest.mark.parametrize("init, std", [("kaiming", np.sqrt(2 / 400)), ("xavier", np.sqrt(2 / 600)), ("random", 0.01)])
def test_init_schemes_have_their_std_and_the_lightning_names(init, std):
    from lightning_lab.models.layers import INITS as LIGHTNING_INITS
    from numpy_core.layers import INITS, init_weights

    assert set(INITS) == set(LIGHTNING_INITS) == {"xavier", "kaiming", "random"}
    W = init_weights(400, 200, init, np.random.default_rng(0), np.float64)
    assert W.shape == (400, 200) and W.std() == pytest.approx(std, rel=0.02)
