"""python -m numpy_core train, end to end in a subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "numpy_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_train_mlp_on_moons_writes_metrics_weights_and_plot(tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", "--dataset", "moons", "--model", "mlp", "--hidden", "8", "--epochs", "5",
                     "--n-samples", "300", "--seed", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "epoch 5/5" in result.stdout and "test_accuracy" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["train_loss"]) == len(metrics["train_accuracy"]) == 5
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["test_loss"] > 0
    assert metrics["args"]["hidden"] == [8] and metrics["args"]["optimizer"] == "adam"
    with np.load(out / "weights.npz") as weights:
        assert weights["W1"].shape == (2, 8) and weights["W2"].shape == (8, 1)
    assert (out / "decision_boundary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["--lr", "-1"], "--lr"),
    (["--batch-size", "0"], "--batch-size"),
    (["--epochs", "0"], "--epochs"),
    (["--model", "perceptron", "--dataset", "digits"], "perceptron"),
    (["--init", "he"], "kaiming"),
])
def test_bad_arguments_exit_nonzero_with_one_line(tmp_path, args, message):
    result = run_cli("train", "--out", str(tmp_path / "x"), *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_train_on_mnist_idx_files(tmp_path):
    from fake_datasets import write_mnist

    write_mnist(tmp_path / "data", n_train=200, n_test=50, compress=True)
    out = tmp_path / "mnist"
    result = run_cli("train", "--dataset", "mnist", "--data-dir", str(tmp_path / "data"), "--hidden", "32",
                     "--epochs", "3", "--batch-size", "32", "--out", str(out))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.5  # the fake images' bright band encodes the label
    assert not (out / "decision_boundary.png").exists()


def test_missing_mnist_is_a_clear_error(tmp_path):
    result = run_cli("train", "--dataset", "mnist", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path))
    assert result.returncode == 1
    assert "MNIST not found" in result.stderr and "download=True" in result.stderr
