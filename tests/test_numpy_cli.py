"""python -m numpy_core train: end to end once in a subprocess as users run it, the rest through its main()."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from numpy_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_mlp_on_moons_writes_metrics_weights_and_plot(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "numpy_core", "train", "--dataset", "moons", "--model", "mlp",
                             "--hidden", "8", "--epochs", "5", "--n-samples", "300", "--seed", "1", "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "epoch 5/5" in result.stdout and "test_accuracy" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["train_loss"]) == len(metrics["train_accuracy"]) == 5
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["test_loss"] > 0
    assert metrics["args"]["hidden"] == [8] and metrics["args"]["optimizer"] == "adam"
    with np.load(out / "weights.npz") as weights:
        assert weights["W1"].shape == (2, 8) and weights["W2"].shape == (8, 1)
    assert (out / "decision_boundary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def exit_code(*args: str) -> int:
    """main() as `python -m numpy_core` runs it: its return value, or the code argparse exits with."""
    try:
        return main(list(args))
    except SystemExit as exit_:
        return exit_.code


@pytest.mark.parametrize("args, message", [
    (["--lr", "-1"], "--lr"),
    (["--batch-size", "0"], "--batch-size"),
    (["--epochs", "0"], "--epochs"),
    (["--model", "perceptron", "--dataset", "digits"], "perceptron"),
    (["--init", "he"], "kaiming"),
    (["--n-samples", "4"], "n_samples=4: class 0 has too few samples (2) to split"),  # no test sample
    (["--n-samples", "5"], "at least 3 samples"),  # a test set of class 1 only
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, message):
    assert exit_code("train", "--out", str(tmp_path / "x"), *args) == 2
    err = capsys.readouterr().err
    assert message in err and "error:" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_train_on_mnist_idx_files(tmp_path, capsys):
    from fake_datasets import write_mnist

    write_mnist(tmp_path / "data", n_train=200, n_test=50, compress=True)
    out = tmp_path / "mnist"
    assert exit_code("train", "--dataset", "mnist", "--data-dir", str(tmp_path / "data"), "--hidden", "32",
                     "--epochs", "3", "--batch-size", "32", "--out", str(out)) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.5  # the fake images' bright band encodes the label
    assert not (out / "decision_boundary.png").exists()


def test_an_empty_mnist_test_set_is_refused(tmp_path, capsys):
    from fake_datasets import write_mnist

    write_mnist(tmp_path / "data", n_train=20, n_test=0)
    assert exit_code("train", "--dataset", "mnist", "--data-dir", str(tmp_path / "data"), "--out",
                     str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err == "error: mnist: the test set is empty\n"
    assert not (tmp_path / "out").exists()


def test_missing_mnist_is_a_clear_error(tmp_path, capsys):
    assert exit_code("train", "--dataset", "mnist", "--data-dir", str(tmp_path / "none"), "--out",
                     str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "MNIST not found" in err and "download=True" in err
    assert not (tmp_path / "out").exists()


def test_a_diverged_run_is_one_error_line_and_exit_1(tmp_path, capsys):
    """The input was valid (exit 2 is for input it can check); the run itself failed."""
    assert exit_code("train", "--dataset", "moons", "--model", "mlp", "--hidden", "8", "--epochs", "2",
                     "--lr", "1e30", "--optimizer", "sgd", "--out", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "lr=1e+30" in err and len(err.strip().splitlines()) == 1
