"""numpy_core's error messages, and that importing it does not import torch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from numpy_core import (MLP, Perceptron, TrainingDivergedError, load_dataset, make_optimizer, stratified_split,
                        train)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_import_does_not_import_torch():
    code = "import sys, numpy_core; print(sorted(m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("kwargs, valid", [
    ({"activation": "gelu"}, "relu, leaky_relu, sigmoid, tanh"),
    ({"init": "zeros"}, "xavier, kaiming, random"),
    ({"output": "linear"}, "softmax, sigmoid"),
])
def test_unknown_names_list_valid_ones(kwargs, valid):
    with pytest.raises(ValueError, match=valid):
        MLP([2, 3, 2], **kwargs)


def test_unknown_optimizer_and_dataset_list_valid_ones():
    net = MLP([2, 2])
    with pytest.raises(ValueError, match="sgd, adam"):
        make_optimizer("rmsprop", net.params, 0.1)
    with pytest.raises(ValueError, match="moons, digits, mnist"):
        load_dataset("cifar")


def test_wrong_input_shape_names_expected_shape():
    net = MLP([4, 3, 2])
    with pytest.raises(ValueError, match=r"\(n_samples, 4\).*\(5, 3\)"):
        net.forward(np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"\(n_samples, 4\)"):
        net.predict(np.zeros(4))
    with pytest.raises(ValueError, match=r"y must have shape \(5,\)"):
        net.loss_and_grads(np.zeros((5, 4)), np.zeros(4, int))


def test_labels_out_of_range():
    with pytest.raises(ValueError, match=r"label 3 out of range.*0\.\.2"):
        MLP([2, 3]).loss_and_grads(np.zeros((2, 2)), [0, 3])
    with pytest.raises(ValueError, match=r"label -1 out of range.*0\.\.1"):
        Perceptron(2).loss_and_grads(np.zeros((2, 2)), [-1, 1])
    with pytest.raises(ValueError, match="integer"):
        MLP([2, 3]).loss_and_grads(np.zeros((2, 2)), [0.5, 1])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_inputs(bad):
    X = np.zeros((3, 2))
    X[1, 0] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        MLP([2, 2]).forward(X)
    with pytest.raises(ValueError, match="NaN or inf"):
        train(MLP([2, 2]), X, [0, 1, 0], epochs=1)


def test_sizes_must_match_output():
    with pytest.raises(ValueError, match="sigmoid.*1"):
        MLP([2, 3], output="sigmoid")


def test_non_finite_loss_stops_training_naming_epoch_step_and_lr():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 2)) * 10, rng.integers(0, 2, 64)
    with pytest.raises(TrainingDivergedError, match=r"epoch \d+, step \d+ .*lr=1e\+30"):
        train(MLP([2, 16, 2], seed=0), X, y, epochs=20, batch_size=8, optimizer="sgd", lr=1e30)


def test_bad_training_settings():
    with pytest.raises(ValueError, match="lr"):
        train(MLP([2, 2]), np.zeros((4, 2)), [0, 1, 0, 1], lr=-0.1)
    with pytest.raises(ValueError, match="batch_size"):
        train(MLP([2, 2]), np.zeros((4, 2)), [0, 1, 0, 1], batch_size=0)


def test_the_smallest_stratified_split_has_every_class_on_both_sides():
    d = load_dataset("moons", n_samples=6, seed=0)
    assert sorted(d.y_train) == [0, 0, 1, 1] and sorted(d.y_test) == [0, 1]
    with pytest.raises(ValueError, match=r"class 0 has too few samples \(2\).*no test sample.*at least 3"):
        stratified_split(np.zeros((5, 1)), np.array([0, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"no training sample.*at least 3"):
        stratified_split(np.zeros((4, 1)), np.array([0, 0, 1, 1]), test_size=0.75)


def test_training_refuses_empty_sets():
    with pytest.raises(ValueError, match="no training samples"):
        train(MLP([2, 2]), np.zeros((0, 2)), np.zeros(0, int))
    with pytest.raises(ValueError, match="X_test has 0 rows"):
        train(MLP([2, 2]), np.zeros((4, 2)), [0, 1, 0, 1], X_test=np.zeros((0, 2)), y_test=np.zeros(0, int))
