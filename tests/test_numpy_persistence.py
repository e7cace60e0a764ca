"""numpy_core networks saved and loaded: the same network, giving the same predictions."""
from __future__ import annotations

import numpy as np
import pytest

from numpy_core import MLP, Perceptron, make_moons, train


@pytest.fixture(scope="module")
def moons():
    return make_moons(100, noise=0.2, seed=0)


@pytest.mark.parametrize("make", [
    lambda: Perceptron(2, seed=0),
    lambda: MLP([2, 8, 1], activation="tanh", output="sigmoid", init="xavier", seed=0),
    lambda: MLP([2, 8, 6, 2], activation="leaky_relu", output="softmax", seed=0, dtype=np.float64),
], ids=["perceptron", "mlp-sigmoid", "mlp-softmax"])
def test_load_gives_the_saved_network(tmp_path, moons, make):
    X, y = moons
    net = make()
    train(net, X, y, epochs=2, batch_size=16, lr=0.05, seed=0)  # trained: the seed alone no longer rebuilds it
    untrained = make()
    assert not np.array_equal(net.predict_proba(X), untrained.predict_proba(X))

    loaded = type(net).load(net.save(tmp_path / "net.npz"))
    assert type(loaded) is type(net) and loaded.config == net.config
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))


def test_a_perceptron_file_loads_as_an_mlp_but_not_the_reverse(tmp_path, moons):
    X, _ = moons
    perceptron = Perceptron(2, seed=1)
    as_mlp = MLP.load(perceptron.save(tmp_path / "perceptron.npz"))
    np.testing.assert_array_equal(as_mlp.predict_proba(X), perceptron.predict_proba(X))
    with pytest.raises(ValueError, match=r"not a perceptron \(sizes \[2, 8, 1\].*MLP\.load"):
        Perceptron.load(MLP([2, 8, 1], output="sigmoid").save(tmp_path / "mlp.npz"))


def test_a_file_that_is_not_a_saved_network_is_named_as_such(tmp_path):
    import pickle

    (tmp_path / "weights.pkl").write_bytes(pickle.dumps({"W": [1, 2]}))
    np.save(tmp_path / "array.npy", np.zeros(3))
    np.savez(tmp_path / "other.npz", W=np.zeros(3))
    for name in ("weights.pkl", "array.npy", "other.npz"):
        with pytest.raises(ValueError, match=f"{name} is not a network written by save\\(\\)"):
            MLP.load(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        MLP.load(tmp_path / "missing.npz")
