"""The baselines command: scikit-learn, the textbook CNN and the lab's config on one split, in one table; and the
NumPy MLP beside scikit-learn's."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import cli
from fake_datasets import write_cifar10, write_mnist, write_pet_images

# The learning test's budget: at 2 epochs of 11 steps (batch 128) the lab's batch-norm statistics still lag its
# weights and the textbook CNN (no batch norm) is ahead; 3 epochs of batch 64 (mnist.yaml's own) give 63 steps.
EPOCHS = 3
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
ROWS = ["LogisticRegression", "SVC(rbf)", "keras mnist_cnn", "lab digits.yaml (ParametricCNN)"]
# The embedded digits upsampled on the device to MNIST's 28x28, with the split digits.yaml uses.
DIGITS_28 = json.dumps({"class_path": "lightning_lab.data.DigitsDataModule",
                        "init_args": {"image_size": 28, "val_split": 0.1, "test_split": 0.2, "seed": 42,
                                      "num_workers": 0, "batch_size": 64}})


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """`baselines --config digits.yaml --seeds 0 1` at 3 epochs, run once in a fresh folder: (its stdout, its
    CSV)."""
    folder = tmp_path_factory.mktemp("baselines")
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.chdir(folder)
        code = cli("baselines", "--config", "digits.yaml", "--seeds", "0", "1", "--trainer.max_epochs", "3", *QUIET)
    assert code == 0, out.getvalue()
    return out.getvalue(), folder / "results" / "baselines" / "digits.csv"


def printed_table(stdout: str) -> list[list[str]]:
    """The rows of the table the command printed (header and rule left out)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("model "))
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        name, rest = line[:len(max(ROWS, key=len))].strip(), line[len(max(ROWS, key=len)):].split()
        rows.append([name, *rest])
    return rows


@pytest.mark.slow
def test_baselines_on_digits_prints_and_writes_every_row(digits_run: tuple[str, Path]) -> None:
    stdout, csv_path = digits_run
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["model", "runs", "test_acc", "test_acc_sd", "test_loss", "params",
                                     "train_seconds", "epochs", "batch_size"]
        written = list(reader)
    assert [row["model"] for row in written] == ROWS
    for row in written:
        assert float(row["test_acc"]) > 0.8, row  # chance is 0.1
        assert int(row["params"]) > 0
    networks = [row for row in written if row["epochs"]]
    assert [(row["runs"], row["epochs"], row["batch_size"]) for row in networks] == [("2", "3", "64")] * 2
    assert [row["runs"] for row in written[:2]] == ["1", "1"] and written[0]["test_acc_sd"] == ""  # fitted once
    assert written[1]["test_loss"] == ""  # the SVC has no probabilities
    assert printed_table(stdout) == [[value or "-" for value in row.values()] for row in written]
    markdown = csv_path.with_suffix(".md").read_text()
    assert all(f"| {row['model']} | {row['runs']} | {row['test_acc']} |" in markdown for row in written)
    # each network's row is the mean and sample sd of its two seeds, as printed seed by seed
    for row in networks:
        by_seed = [float(line.rsplit(" ", 1)[1]) for line in stdout.splitlines()
                   if line.startswith(f"{row['model']}, seed ")]
        assert len(by_seed) == 2
        assert float(row["test_acc"]) == pytest.approx(np.mean(by_seed), abs=6e-5)
        assert float(row["test_acc_sd"]) == pytest.approx(np.std(by_seed, ddof=1), abs=6e-5)
    assert sum(line.startswith("lab minus ") and "over 2 seed(s)" in line for line in stdout.splitlines()) == 3
    # the lab's run of each seed: finished and tested, in the comparison's own experiment
    logs = csv_path.parents[2] / "lightning_logs"
    assert sorted(p.name for p in logs.iterdir()) == ["digits_cnn_baselines"]
    records = [json.loads((logs / "digits_cnn_baselines" / f"version_{v}" / "run.json").read_text()) for v in (0, 1)]
    assert [(r["status"], r["metrics"]["test/acc"] is not None) for r in records] == [("ok", True)] * 2


# The downloadable datasets in their real on-disk formats (generated), each through its config as users run it.
DOWNLOADED = {
    "mnist.yaml": (lambda root: write_mnist(root, n_train=160, n_test=40), "keras mnist_cnn", "mnist",
                   ["--data.init_args.val_split", "40", "--data.init_args.batch_size", "16"]),
    "cifar.yaml": (lambda root: write_cifar10(root, n_per_batch=20, n_test=20), "keras cifar10_cnn", "cifar10",
                   ["--data.init_args.val_split", "20", "--data.init_args.batch_size", "8"]),
    "cats_dogs.yaml": (lambda root: write_pet_images(root, n_per_class=12, size=40), "keras cifar10_cnn",
                       "cats_dogs", ["--data.init_args.image_size", "32", "--data.init_args.batch_size", "4"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("config", DOWNLOADED)
def test_baselines_run_the_same_on_the_downloadable_datasets(config: str, workdir: Path, skip_cifar_md5: None,
                                                             capsys: pytest.CaptureFixture) -> None:
    write, textbook, name, data_args = DOWNLOADED[config]
    written = write(workdir / "data")
    assert cli("baselines", "--config", config, "--trainer.max_epochs", "1", "--data.init_args.download", "false",
               "--data.init_args.num_workers", "0", *data_args, *QUIET) == 0, capsys.readouterr().err[-3000:]
    csv_path = workdir / "results" / "baselines" / f"{name}.csv"
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["model"] for row in rows] == ["LogisticRegression", "SVC(rbf)", textbook,
                                              f"lab {config} (ParametricCNN)"]
    assert all(0 <= float(row["test_acc"]) <= 1 and int(row["params"]) > 0 for row in rows)
    assert [row["epochs"] for row in rows] == ["", "", "1", "1"]
    if config == "cats_dogs.yaml":  # the tree's corrupt and non-image files are left out of every split
        notes = csv_path.with_suffix(".md").read_text()
        sizes = re.search(r"(\d+) train / (\d+) val / (\d+) test images", notes)
        assert sizes and sum(map(int, sizes.groups())) == len(written["good"])


def test_classical_models_are_fitted_on_the_train_split_and_scored_on_the_test_split() -> None:
    from sklearn.linear_model import LogisticRegression

    from conftest import all_batches, ready
    from lightning_lab.baselines import classical_rows, split_arrays
    from lightning_lab.data import DigitsDataModule

    data = ready(DigitsDataModule(seed=42, val_split=0.1, test_split=0.2))
    x_train, y_train = split_arrays(data, "train")
    x_test, y_test = split_arrays(data, "test")
    assert len(x_train) == len(data.data_train) and len(x_test) == len(data.data_test)
    assert y_test.tolist() == all_batches(data.test_dataloader())[1].tolist()  # the split the lab is tested on
    rows, skipped = classical_rows(data)
    assert skipped == {} and [row.model for row in rows] == ["LogisticRegression", "SVC(rbf)"]
    expected = LogisticRegression(max_iter=1000).fit(x_train, y_train).score(x_test, y_test)
    assert rows[0].test_acc == [pytest.approx(expected, abs=1e-12)] and expected < 0.99  # not the train score


def test_classical_models_are_skipped_with_the_reason_where_they_would_not_fit() -> None:
    from lightning_lab.baselines import classical_rows
    from lightning_lab.baselines.classical import skip_reason

    # the full datasets' training splits: MNIST fits both; CIFAR-10 is too many pixels for the kernel SVC
    assert skip_reason("SVC(rbf)", 55_000, 28 * 28) is None and skip_reason("LogisticRegression", 55_000, 784) is None
    assert "samples squared" in skip_reason("SVC(rbf)", 45_000, 3 * 32 * 32)
    assert skip_reason("LogisticRegression", 45_000, 3 * 32 * 32) is None
    # PetImages at 128 px: neither is fitted, and no image is loaded to find that out
    pets = SimpleNamespace(data_train=[None] * 20_000, input_shape=(3, 128, 128))
    rows, skipped = classical_rows(pets)
    assert rows == [] and set(skipped) == {"LogisticRegression", "SVC(rbf)"}
    assert skipped["LogisticRegression"].startswith("20000 images x 49152 pixels: ") and "1 GB" in skipped[
        "LogisticRegression"]


def test_the_lab_is_compared_seed_by_seed_in_test_images() -> None:
    from lightning_lab.baselines import compared
    from lightning_lab.baselines.table import Row

    def network(name: str, correct: list[int]) -> Row:
        return Row(name, [c / 359 for c in correct], [0.1] * len(correct), 10, [1.0] * len(correct), 3, 64)

    lab = network("lab", [355, 357, 352])
    # differences -1, +4, 0: mean 1, sd 7 ** 0.5, t(2) = 4.303 -> half-width 6.57
    assert compared(lab, network("textbook", [356, 353, 352]), 359) == (
        "lab minus textbook: +1.0 test images over 3 seed(s), 95% interval -5.6 to +7.6: no detectable difference; "
        "ahead in 1, level in 1, behind in 1")
    # a model fitted once is compared with each seed: -1, +1, -4
    assert compared(lab, Row("SVC", [356 / 359], None, 10, [0.0]), 359).startswith(
        "lab minus SVC: -1.3 test images over 3 seed(s), 95% interval -7.6 to +4.9: no detectable difference;")
    # +7, +6, +5: the interval (3.5 to 8.5) excludes 0
    assert ": better; ahead in 3," in compared(network("lab", [357] * 3), network("textbook", [350, 351, 352]), 359)
    assert compared(network("lab", [357]), network("textbook", [350]), 359) == (
        "lab minus textbook: +7.0 test images over 1 seed(s): no interval (one pair); ahead in 1, level in 0, "
        "behind in 0")


@pytest.mark.slow
def test_mnist_config_beats_the_textbook_cnn_on_digits_at_28px(workdir: Path) -> None:
    """At the same small budget (epochs, batch size, no augmentation, split, seed and checkpoint rule), the lab's
    MNIST config learns more than Keras' mnist_cnn on the digits upsampled to MNIST's size."""
    from lightning_lab.baselines.lab import lab_cli, train_lab
    from lightning_lab.baselines.textbook import textbook_cnn, train_textbook

    config = lab_cli(["--config", "mnist.yaml", "--data", DIGITS_28, "--trainer.max_epochs", str(EPOCHS), *QUIET])
    data = config.datamodule
    data.setup("fit")
    data.setup("test")
    assert data.input_shape == (1, 28, 28) and not data.augment
    textbook = train_textbook(textbook_cnn(data.input_shape, 10, seed=42), data, epochs=EPOCHS, seed=42,
                              monitor=config.config.checkpoint.monitor)  # the epoch the lab's checkpoint keeps
    lab = train_lab(config, seed=42)
    print(f"lab {lab.test_acc:.4f}  textbook {textbook.test_acc:.4f}")
    assert lab.test_acc > 0.95
    assert lab.test_acc > textbook.test_acc, (lab, textbook)


def test_the_lab_run_is_recorded_finished_under_an_experiment_of_its_own(workdir: Path) -> None:
    """The config's run in a comparison ends `ok` with its test metrics, and never lands among `fit`'s runs (whose
    newest last.ckpt `fit --ckpt_path last` resumes)."""
    from lightning_lab.baselines.lab import lab_cli, train_lab
    from lightning_lab.callbacks.run_record import read_record
    from lightning_lab.checkpoint import find_last_checkpoint

    config = lab_cli(["--config", "digits.yaml", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                      "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1", *QUIET])
    result = train_lab(config, seed=0)
    record = read_record(workdir / "lightning_logs" / "digits_cnn_baselines" / "version_0")
    assert record is not None and record["status"] == "ok" and record["finished_at"]
    assert record["run_id"] == "digits_cnn_baselines/version_0"
    assert record["metrics"]["test/acc"] == pytest.approx(result.test_acc)
    assert (workdir / "checkpoints" / "digits_cnn_baselines" / "version_0" / "last.ckpt").is_file()
    assert find_last_checkpoint("digits_cnn") is None
    assert not (workdir / "lightning_logs" / "digits_cnn").exists()


def test_baselines_needs_a_config(capsys: pytest.CaptureFixture) -> None:
    assert cli("baselines", "--trainer.max_epochs", "1") == 2
    assert "error: baselines needs a config" in capsys.readouterr().err
    assert cli("baselines", "--help") == 0 and "--config CONFIG" in capsys.readouterr().out


@pytest.mark.slow
def test_numpy_mlp_defaults_match_scikit_learn_on_digits() -> None:
    """Experiment 1's MLP with its digits defaults against MLPClassifier with the same hidden sizes and epochs."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from numpy_core.cli import DEFAULTS
    from numpy_core.data import load_dataset
    from numpy_core.network import MLP
    from numpy_core.train import train

    data, defaults = load_dataset("digits", seed=0), DEFAULTS["digits"]
    net = MLP([data.n_features, *defaults["hidden"], 10], seed=0)
    history = train(net, data.X_train, data.y_train, epochs=defaults["epochs"], batch_size=defaults["batch_size"],
                    lr=defaults["lr"], seed=0, X_test=data.X_test, y_test=data.y_test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # it stops at the same epoch count, as asked
        peer = MLPClassifier(hidden_layer_sizes=tuple(defaults["hidden"]), max_iter=defaults["epochs"],
                             random_state=0).fit(data.X_train, data.y_train)
    ours, theirs = history["test_accuracy"][-1], peer.score(data.X_test, data.y_test)
    assert ours >= theirs and ours > 0.95, (ours, theirs)
    assert np.isfinite(history["train_loss"]).all()


def test_baselines_refuses_data_that_is_not_images(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli("baselines", "--config", "moons.yaml") == 2
    assert "error: baselines compares image classifiers; MoonsDataModule gives input_shape (2,)" in \
        capsys.readouterr().err
    assert not (workdir / "results").exists()


@pytest.mark.parametrize("monitor,kept", [("val/acc", 1), ("val/loss", 3), (None, 3)])
def test_textbook_loop_keeps_the_epoch_the_checkpoint_would(monitor: str | None, kept: int) -> None:
    """The highest val/acc (first of a tie), the lowest val/loss, or the last epoch, as ModelCheckpoint keeps it."""
    import torch
    from torch import nn

    from lightning_lab.baselines.textbook import BestEpoch

    keep, net = BestEpoch(monitor), nn.Linear(1, 1)
    for epoch, (acc, loss) in enumerate([(0.90, 0.30), (0.95, 0.20), (0.95, 0.10), (0.93, 0.05)]):
        with torch.no_grad():
            net.weight.fill_(epoch)
        keep.update(acc, loss, net)
    assert keep.state is not None and keep.state["weight"].item() == kept


def test_baselines_refuses_a_checkpoint_rule_the_textbook_loop_cannot_follow(workdir: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    assert cli("baselines", "--config", "digits.yaml", "--checkpoint.monitor", "train/loss") == 2
    assert "error: baselines keeps the textbook CNN's epoch the way the config keeps its checkpoint" in \
        capsys.readouterr().err
    assert not (workdir / "results").exists()


def test_cross_validation_folds_leave_the_test_split_alone() -> None:
    """benchmarks/digits_cv.py: every non-test image is held out exactly once per repeat, train/val/held-out are
    disjoint, and no test image is ever used."""
    import sys

    from conftest import REPO
    from lightning_lab.data import DigitsDataModule

    sys.path.insert(0, str(REPO / "benchmarks"))
    from digits_cv import folds, use_fold

    data = DigitsDataModule(val_split=0.1, test_split=0.2, seed=42)
    data.setup("fit")
    test = set(data.test_indices)
    labels = data.data_train.dataset.tensors[1].numpy()
    non_test = np.sort(np.concatenate([data.train_indices, data.val_indices]))
    cuts = folds(labels, non_test, k=5, repeats=2, seed=42)
    assert len(cuts) == 10
    for repeat in (cuts[:5], cuts[5:]):
        held = np.concatenate([h for _, h in repeat])
        assert sorted(held) == sorted(non_test)
    for rest, held in cuts:
        use_fold(data, rest, held)
        train, val, fold = (set(d.indices) for d in (data.data_train, data.data_val, data.data_test))
        assert not (train & val) and not (train & fold) and not (val & fold)
        assert train | val | fold == set(non_test.tolist()) and not (train | val | fold) & test
        assert len(val) == round(0.1 * len(rest))


def test_the_textbook_network_starts_from_its_seed_alone() -> None:
    """Its initial weights do not depend on what drew random numbers before it (the lab's network, built first,
    has another size in each config), and building it leaves the caller's random stream where it was."""
    from lightning_lab.baselines.textbook import textbook_cnn

    torch.manual_seed(0)
    first = textbook_cnn((1, 8, 8), 10, seed=42).state_dict()
    torch.manual_seed(1)
    torch.randn(1000)
    drawn_next = torch.randn(3)
    torch.manual_seed(1)
    torch.randn(1000)
    second = textbook_cnn((1, 8, 8), 10, seed=42).state_dict()
    assert torch.equal(torch.randn(3), drawn_next)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    other_seed = textbook_cnn((1, 8, 8), 10, seed=43).state_dict()
    assert not torch.equal(other_seed["features.0.weight"], first["features.0.weight"])
