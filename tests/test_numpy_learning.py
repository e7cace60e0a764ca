"""numpy_core learns: perceptron and MLP on moons, MLP on digits; SGD and Adam reduce the loss."""
from __future__ import annotations

import numpy as np
import pytest

from numpy_core import MLP, Perceptron, load_dataset, make_moons, stratified_split, train


@pytest.mark.slow
def test_perceptron_on_moons():
    d = load_dataset("moons", noise=0.2, n_samples=2000, seed=0)
    net = Perceptron(2, seed=0)
    train(net, d.X_train, d.y_train, epochs=20, batch_size=32, optimizer="adam", lr=0.01, seed=0)
    assert net.accuracy(d.X_test, d.y_test) >= 0.84


@pytest.mark.slow
def test_mlp_on_moons():
    # noise 0.15: at noise 0.2 the classes overlap so much that ~0.97 is the best any classifier gets,
    # which would make a 0.97 threshold a test of the split's luck rather than of learning.
    d = load_dataset("moons", noise=0.15, n_samples=1000, seed=0)
    net = MLP([2, 16, 16, 1], activation="relu", output="sigmoid", seed=0)
    train(net, d.X_train, d.y_train, epochs=60, batch_size=32, optimizer="adam", lr=0.01, seed=0)
    assert net.accuracy(d.X_test, d.y_test) >= 0.97


@pytest.mark.slow
def test_mlp_on_digits():
    d = load_dataset("digits", seed=0)
    net = MLP([64, 64, 10], activation="relu", output="softmax", seed=0)
    history = train(net, d.X_train, d.y_train, epochs=30, batch_size=32, optimizer="adam", lr=0.003, seed=0)
    assert history["train_accuracy"][-1] > 0.99
    assert net.accuracy(d.X_test, d.y_test) >= 0.96


@pytest.mark.slow
@pytest.mark.parametrize("optimizer, lr, momentum", [("sgd", 0.1, 0.0), ("sgd", 0.05, 0.9), ("adam", 0.01, 0.0)])
def test_optimizers_reduce_loss(optimizer, lr, momentum):
    X, y = make_moons(400, noise=0.1, seed=1)
    net = MLP([2, 8, 2], activation="tanh", output="softmax", init="xavier", seed=1)
    before = net.loss(X, y)
    history = train(net, X, y, epochs=15, batch_size=32, optimizer=optimizer, lr=lr, momentum=momentum, seed=1)
    assert history["train_loss"][-1] < 0.6 * before
    assert net.loss(X, y) < 0.6 * before


def test_training_is_reproducible_and_float64_works():
    X, y = make_moons(200, seed=2)
    results = []
    for dtype in (np.float32, np.float32, np.float64):
        net = MLP([2, 8, 1], output="sigmoid", seed=3, dtype=dtype)
        train(net, X, y, epochs=3, batch_size=16, lr=0.01, seed=4)
        assert net.params["W1"].dtype == dtype
        results.append(net.params["W1"].astype(np.float64))
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_allclose(results[0], results[2], atol=1e-4)


def test_stratified_split_keeps_class_proportions():
    y = np.array([0] * 80 + [1] * 20)
    X = np.arange(100.0)[:, None]
    X_train, y_train, X_test, y_test = stratified_split(X, y, test_size=0.25, seed=0)
    assert (np.bincount(y_test) == [20, 5]).all() and (np.bincount(y_train) == [60, 15]).all()
    assert sorted(np.concatenate([X_train, X_test])[:, 0]) == list(range(100))


def test_digits_are_real_scaled_images():
    d = load_dataset("digits", seed=0)
    assert d.X_train.shape[1] == 64 and len(d.X_train) + len(d.X_test) == 1797
    assert d.X_train.min() >= 0 and d.X_train.max() <= 1
