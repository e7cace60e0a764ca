"""Reliability: a run killed with SIGKILL resumes where it stopped and continues the same TensorBoard run, one
stopped with Ctrl-C is recorded `interrupted` and resumes too,
checkpoints on disk are never half-written, the same config and seed reproduce the same numbers, and bad input
ends in one readable `error: ...` line before training.

Runs in-process where it can (`lightning_lab.__main__.run`); only the SIGKILL and the Ctrl-C need a subprocess.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, cli, quick_args, tensorboard_scalars
from fake_datasets import write_cifar10, write_mnist

SMALL = quick_args(max_epochs=None, train_batches=5)
EPOCH_METRICS = ("val/acc", "val/acc_best", "train/acc")
scalars = tensorboard_scalars


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------------------------------------- 1. SIGKILL
HOOKS = '''
"""Loaded by the killed run (its callback's module): a stop point to kill at, and TensorBoard event writing
buffered until flush() as real file systems / tf.io.gfile do (tensorboard's local stub appends each event at
once, which would hide a missing flush)."""
import os
import time
from pathlib import Path

import lightning as L
from tensorboard.summary.writer import record_writer

_write = record_writer.RecordWriter.write
_flush = record_writer.RecordWriter.flush


def write(self, data):
    self.__dict__.setdefault("pending", []).append(data)


def flush(self):
    for data in self.__dict__.pop("pending", []):
        _write(self, data)
    _flush(self)


record_writer.RecordWriter.write = write
record_writer.RecordWriter.flush = flush


class StopPoint(L.Callback):
    """At `batch` of `epoch`: write the pid to `marker` and wait there to be killed."""

    def __init__(self, marker: str = "stop_point", epoch: int = 2, batch: int = 2) -> None:
        self.marker, self.epoch, self.batch = marker, epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            Path(self.marker).write_text(str(os.getpid()))
            time.sleep(600)
'''


@pytest.mark.slow
def test_run_killed_mid_epoch_resumes_into_the_same_tensorboard_run(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["fit", "--config", "digits.yaml", "--trainer.max_epochs", "4", "--test_after_fit", "false", *SMALL]
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    killed.mkdir(), reference.mkdir()
    (killed / "reliability_hooks.py").write_text(HOOKS)  # `python -m` puts the working directory on sys.path
    proc = subprocess.Popen([sys.executable, "-m", "lightning_lab", *args,
                             "--trainer.callbacks+=reliability_hooks.StopPoint"],
                            cwd=killed, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # While the subprocess imports and trains, the uninterrupted reference run goes here.
        monkeypatch.chdir(reference)
        assert cli(*args) == 0
        deadline = time.monotonic() + 240
        while not (killed / "stop_point").exists():  # inside epoch 2: epochs 0 and 1 are checkpointed
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the run never reached its stop point"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    before = load(killed / "checkpoints/digits_cnn/version_0/last.ckpt")
    assert before["epoch"] == 1

    monkeypatch.chdir(killed)
    assert cli(*args, "--ckpt_path", "last") == 0

    # The resumed run ends where an uninterrupted run ends, in the same checkpoint and log folders.
    assert [p.name for p in (killed / "checkpoints/digits_cnn").iterdir()] == ["version_0"]
    assert [p.name for p in (killed / "lightning_logs/digits_cnn").iterdir()] == ["version_0"]
    resumed_last = load(killed / "checkpoints/digits_cnn/version_0/last.ckpt")
    reference_last = load(reference / "checkpoints/digits_cnn/version_0/last.ckpt")
    assert (resumed_last["epoch"], resumed_last["global_step"]) == (reference_last["epoch"],
                                                                    reference_last["global_step"]) == (3, 20)
    # TensorBoard shows one value per epoch for epoch metrics (none lost in the kill, none doubled by the
    # re-run of epoch 2) and each training step once, exactly the steps of the uninterrupted run.
    got = scalars(killed / "lightning_logs/digits_cnn/version_0")
    want = scalars(reference / "lightning_logs/digits_cnn/version_0")
    assert len(list((killed / "lightning_logs/digits_cnn/version_0").glob("events.out.tfevents.*"))) == 2
    for tag in EPOCH_METRICS:
        finite = [(step, value) for step, value in got[tag] if value == value]  # minus the hparams NaN placeholder
        assert [step for step, _ in finite] == [step for step, value in want[tag] if value == value] == [4, 9, 14, 19]
    assert [step for step, _ in got["train/loss"]] == list(range(20))
    assert [step for step, _ in got["val/acc_best"] if _ != _] == [0]  # hparams placeholder not logged again
    # val/acc_best survives the resume: it is the best val/acc of all epochs, not only of those after it.
    acc = [value for _, value in got["val/acc"]]
    assert [value for _, value in got["val/acc_best"] if value == value] == pytest.approx(
        [max(acc[: i + 1]) for i in range(4)])


@pytest.mark.slow
def test_ctrl_c_during_fit_records_interrupted_skips_the_test_and_resumes(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in a terminal during `fit` (SIGINT to the process group) while epoch 1 is held: run.json says
    `interrupted`, no test runs after the interrupted fit, the summary says so on stderr, and `--ckpt_path last`
    trains the rest of the budget in the same run folders."""
    hold, held = tmp_path / "hold", tmp_path / "held"
    hold.touch()
    args = ["fit", "--config", "digits.yaml", "--trainer.max_epochs", "3", *SMALL]
    gate = ["--trainer.callbacks+=tests.epoch_gate.HoldAtEpochStart", f"--trainer.callbacks.hold={hold}",
            f"--trainer.callbacks.held={held}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "lightning_lab", *args, *gate], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not held.exists():  # waiting at the start of epoch 1: epoch 0 is checkpointed
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the run was never held"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    hold.unlink()
    assert proc.returncode == 130, err[-3000:]  # as a shell reports Ctrl-C, and as `sweep` exits
    run_dir = tmp_path / "lightning_logs/digits_cnn/version_0"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted" and record["metrics"]["epochs"] == 1, record
    assert record["metrics"]["test/acc"] is None  # no test after an interrupted fit ...
    tested = [tag for tag, values in scalars(run_dir).items() if tag.startswith("test/")
              and any(value == value for _, value in values)]  # minus the hparams NaN placeholders
    assert not tested  # ... nor logged
    assert load(tmp_path / "checkpoints/digits_cnn/version_0/last.ckpt")["epoch"] == 0

    monkeypatch.chdir(tmp_path)
    assert cli(*args, "--ckpt_path", "last") == 0
    assert [p.name for p in (tmp_path / "checkpoints/digits_cnn").iterdir()] == ["version_0"]
    assert [p.name for p in (tmp_path / "lightning_logs/digits_cnn").iterdir()] == ["version_0"]
    last = load(tmp_path / "checkpoints/digits_cnn/version_0/last.ckpt")
    assert (last["epoch"], last["global_step"]) == (2, 15)  # the rest of the budget, not a fresh 3 epochs
    resumed = json.loads((run_dir / "run.json").read_text())
    assert resumed["status"] == "ok" and resumed["attempts"] == 2 and resumed["metrics"]["epochs"] == 3
    assert resumed["started_at"] == record["started_at"] and resumed["metrics"]["test/acc"] is not None

    # the interrupted run's summary, on stderr: where its last checkpoint is, to continue from
    assert "Run interrupted." not in out and "Run finished." not in out + err
    assert "Run interrupted." in err and "last.ckpt  (resume with --ckpt_path last)" in err


# ---------------------------------------------------------------------------------------------- 2. atomic save
SAVE_FOREVER = """
import sys, torch
from lightning_lab.callbacks import AtomicCheckpointIO

payload = torch.arange(6_000_000, dtype=torch.float32)  # 24 MB: most of the loop's time is spent writing
for epoch in range(1_000_000):
    AtomicCheckpointIO().save_checkpoint({"epoch": epoch, "payload": payload}, sys.argv[1])
"""


@pytest.mark.slow
def test_checkpoint_io_killed_while_saving_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    """The trainer's CheckpointIO, in a real process killed with SIGKILL in the middle of a save: the file on
    disk is the previous complete checkpoint. (Any save that writes into the final path fails here.)"""
    from lightning_lab.atomic import partial_files

    target = tmp_path / "last.ckpt"
    proc = subprocess.Popen([sys.executable, "-c", SAVE_FOREVER, str(target)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not target.exists():  # a first save completed
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint was ever saved"
            time.sleep(0.01)
        deadline = time.monotonic() + 20
        while not partial_files(target) and time.monotonic() < deadline:  # the next save is under way
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    checkpoint = load(target)
    assert checkpoint["epoch"] >= 0 and checkpoint["payload"].numel() == 6_000_000
    assert torch.equal(checkpoint["payload"][-3:], torch.tensor([5_999_997.0, 5_999_998.0, 5_999_999.0]))
    assert partial_files(target)  # the kill did land in the middle of a save


def test_checkpoint_io_save_that_fails_keeps_the_previous_file_and_no_partial(tmp_path: Path) -> None:
    from lightning_lab.atomic import partial_files
    from lightning_lab.callbacks import AtomicCheckpointIO

    io_plugin, target = AtomicCheckpointIO(), tmp_path / "deep" / "last.ckpt"
    io_plugin.save_checkpoint({"epoch": 0, "state_dict": {}}, target)  # creates the folder too
    with pytest.raises(Exception):
        io_plugin.save_checkpoint({"epoch": 1, "unpicklable": lambda: None}, target)
    assert load(target)["epoch"] == 0
    assert not partial_files(target)


def test_two_writers_of_one_file_each_publish_a_whole_file(tmp_path: Path) -> None:
    """Two processes writing the same file at once (two trials caching one dataset's corrupt-file list, two sweeps
    rewriting one results CSV): the file is always one writer's whole text, and neither write fails."""
    from lightning_lab.atomic import atomic_open, partial_files

    target = tmp_path / "results.csv"
    with atomic_open(target) as first:
        first.write("first\n" * 100)
        with atomic_open(target) as second:
            second.write("second\n")
        assert target.read_text() == "second\n"
        assert len(partial_files(target)) == 1  # the first write's, still under way
    assert target.read_text() == "first\n" * 100 and not partial_files(target)


def test_partial_files_are_told_apart_by_their_target(tmp_path: Path) -> None:
    from lightning_lab.atomic import partial_files, remove_partial_files

    mine, other = tmp_path / ".a.0123abcd.partial", tmp_path / ".a.b.0123abcd.partial"
    for path in (mine, other, tmp_path / "a"):
        path.write_text("")
    assert partial_files(tmp_path / "a") == [mine] and partial_files(tmp_path / "a.b") == [other]
    remove_partial_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


@pytest.mark.slow
def test_partial_file_of_a_killed_save_is_ignored_and_cleaned(workdir: Path) -> None:
    from lightning_lab.atomic import partial_files
    from lightning_lab.checkpoint import find_last_checkpoint

    args = ["fit", "--config", "moons.yaml", "--trainer.max_epochs", "1", "--test_after_fit", "false", *SMALL]
    assert cli(*args) == 0
    last = workdir / "checkpoints/moons_mlp/version_0/last.ckpt"
    partial = last.with_name(f".{last.name}.0a1b2c3d4e5f6a7b.partial")
    partial.write_bytes(last.read_bytes()[:1000])  # what a kill during the next save leaves
    assert partial_files(last) == [partial]
    assert find_last_checkpoint("moons_mlp").resolve() == last
    assert cli(*[a if a != "1" else "2" for a in args], "--ckpt_path", "last") == 0
    assert load(last)["epoch"] == 1 and not partial.exists()


# ---------------------------------------------------------------------------------------------- 3. reproducible
@pytest.mark.slow
def test_same_config_and_seed_reproduce_metrics_and_weights(workdir: Path) -> None:
    args = ["fit", "--config", "digits.yaml", "--trainer.max_epochs", "2", *SMALL]  # digits.yaml: deterministic
    assert cli(*args) == 0 and cli(*args) == 0
    runs = [workdir / "lightning_logs/digits_cnn" / v for v in ("version_0", "version_1")]
    first, second = (scalars(run_dir) for run_dir in runs)
    for tag in ("val/acc", "val/loss", "train/loss", "test/acc", "test/loss"):
        assert repr(first[tag]) == repr(second[tag]) and first[tag], tag  # repr: NaN placeholders equal too
    ckpts = [workdir / "checkpoints/digits_cnn" / v for v in ("version_0", "version_1")]
    for name in ("last.ckpt", "best_weights.pt"):
        a, b = (load(c / name) for c in ckpts)
        a, b = a.get("state_dict", a), b.get("state_dict", b)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name


# ---------------------------------------------------------------------------------------------- 4. bad input
def without_logging_errors(err: str) -> str:
    """Drop "--- Logging error ---" reports: log handlers of earlier tests still write to their closed capsys."""
    chunks = err.split("--- Logging error ---")
    return chunks[0] + "".join(c.split("\nArguments:", 1)[-1].split("\n", 1)[-1] for c in chunks[1:])


def assert_refused(capsys: pytest.CaptureFixture, code: int, *needles: str) -> str:
    """Exit 2, one `error: ...` line naming `needles`, no traceback."""
    err = without_logging_errors(capsys.readouterr().err)
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(lines) == 1, err[-3000:]
    assert all(needle in lines[0] for needle in needles), lines[0]
    assert "Traceback" not in err
    return lines[0]


def nothing_written(workdir: Path, experiment: str) -> bool:
    return not (workdir / "checkpoints" / experiment).exists() and not any(
        (workdir / "lightning_logs" / experiment).glob("version_*/events.out.tfevents.*"))


MNIST_FIT = ["fit", "--config", "mnist.yaml", "--data.init_args.download", "false", "--data.init_args.num_workers",
             "0", "--data.init_args.val_split", "40", "--trainer.max_epochs", "1", *SMALL]


def test_missing_data_directory_is_named_and_nothing_is_left_behind(workdir: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    code = cli(*MNIST_FIT)
    assert_refused(capsys, code, "data")
    assert nothing_written(workdir, "mnist_cnn")
    (workdir / "data").mkdir()  # empty
    assert_refused(capsys, cli(*MNIST_FIT), str(Path("data") / "MNIST" / "raw"))
    assert nothing_written(workdir, "mnist_cnn")


def test_text_file_named_as_idx_file_is_named_through_the_cli(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    raw = write_mnist(workdir / "data", n_train=120, n_test=40)
    (raw / "train-images-idx3-ubyte").write_text("these are not images\n")
    assert_refused(capsys, cli(*MNIST_FIT), "train-images-idx3-ubyte")
    assert nothing_written(workdir, "mnist_cnn")


def test_cifar_pickle_with_wrong_shapes_is_named_through_the_cli(workdir: Path, capsys: pytest.CaptureFixture,
                                                                 skip_cifar_md5: None) -> None:
    import pickle

    folder = write_cifar10(workdir / "data", n_per_batch=10, n_test=10)
    batch = pickle.loads((folder / "data_batch_3").read_bytes())
    batch["data"] = batch["data"][:, :100]
    (folder / "data_batch_3").write_bytes(pickle.dumps(batch))
    code = cli("fit", "--config", "cifar.yaml", "--data.init_args.download", "false", "--data.init_args.num_workers",
               "0", "--data.init_args.val_split", "10", "--trainer.max_epochs", "1", *SMALL)
    assert_refused(capsys, code, "data_batch_3")
    assert nothing_written(workdir, "cifar_cnn")


def test_unknown_optimizer_class_is_refused_before_training(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    code = cli("fit", "--config", "digits.yaml", "--model.optimizer.class_path", "torch.optim.Nope")
    err = without_logging_errors(capsys.readouterr().err)
    assert code == 2 and "torch.optim.Nope" in err and "Traceback" not in err
    assert nothing_written(workdir, "digits_cnn")


@pytest.fixture(scope="module")
def moons_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("moons")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert cli("fit", "--config", "moons.yaml", "--trainer.max_epochs", "1", "--test_after_fit", "false",
                   *SMALL) == 0
    finally:
        os.chdir(cwd)
    return root / "checkpoints/moons_mlp/version_0/last.ckpt"


@pytest.mark.parametrize("subcommand", ["fit", pytest.param("validate", marks=pytest.mark.slow),
                                        pytest.param("test", marks=pytest.mark.slow)])
def test_checkpoint_of_another_model_is_refused_naming_both(workdir: Path, capsys: pytest.CaptureFixture,
                                                           moons_checkpoint: Path, subcommand: str) -> None:
    """LightningCLI would take the model class from the checkpoint: the digits run would become an MLP run."""
    code = cli(subcommand, "--config", "digits.yaml", "--ckpt_path", str(moons_checkpoint), *SMALL)
    assert_refused(capsys, code, "MLP", "ParametricCNN", str(moons_checkpoint))
    assert nothing_written(workdir, "digits_cnn")


@pytest.mark.slow
def test_checkpoint_that_does_not_fit_the_network_is_refused(workdir: Path, capsys: pytest.CaptureFixture,
                                                             moons_checkpoint: Path) -> None:
    args = ["--config", "digits.yaml", "--trainer.max_epochs", "1", "--test_after_fit", "false", *SMALL]
    # Same class (an MLP), but 8x8 digits give its first layer 64 inputs instead of the 2 of moons.
    code = cli("validate", *args, "--model.net", "lightning_lab.models.MLP", "--ckpt_path", str(moons_checkpoint))
    assert_refused(capsys, code, str(moons_checkpoint), "MLP", "has shape [16, 2]", "expects [16, 64]")
    (workdir / "notes.ckpt").write_text("not a checkpoint")
    assert_refused(capsys, cli("fit", *args, "--ckpt_path", "notes.ckpt"), "notes.ckpt", "not a readable")
    assert_refused(capsys, cli("fit", *args, "--ckpt_path", "missing.ckpt"), "missing.ckpt", "does not exist")
    weights = moons_checkpoint.parent / "best_weights.pt"
    assert_refused(capsys, cli("test", *args, "--ckpt_path", str(weights)), "best_weights.pt", "no state_dict")
    assert nothing_written(workdir, "digits_cnn")


@pytest.mark.slow
def test_weights_of_another_architecture_are_refused_through_the_cli(workdir: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    from lightning_lab.models import ParametricCNN

    torch.save(ParametricCNN((3, 32, 32), 10).state_dict(), workdir / "cnn.pt")
    code = cli("fit", "--config", "resnet18_cifar.yaml", "--model.net.init_args.weights", "cnn.pt")
    assert_refused(capsys, code, "cnn.pt", "ResNet-18")
    assert nothing_written(workdir, "cifar_resnet18")


@pytest.mark.slow
def test_non_finite_loss_stops_with_step_epoch_and_learning_rate(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    code = cli("fit", "--config", "digits.yaml", "--trainer.max_epochs", "3", "--model.optimizer",
               '{"class_path": "torch.optim.SGD", "init_args": {"lr": 1e6}}', "--model.scheduler", "null",
               *SMALL)
    line = assert_refused(capsys, code, "error: loss became nan at step", "(epoch ", "with learning rate 1e+06")
    assert "lower the learning rate" in line


@pytest.mark.parametrize("subcommand", ["fit", pytest.param("test", marks=pytest.mark.slow)])
def test_truncated_checkpoint_is_one_line_naming_the_file(workdir: Path, capsys: pytest.CaptureFixture,
                                                          moons_checkpoint: Path, subcommand: str) -> None:
    data = moons_checkpoint.read_bytes()
    (workdir / "cut.ckpt").write_bytes(data[: len(data) // 2])  # what a copy interrupted half-way leaves
    code = cli(subcommand, "--config", "moons.yaml", "--ckpt_path", "cut.ckpt", *SMALL)
    line = assert_refused(capsys, code, "cut.ckpt", "not a readable", "complete")
    assert "mmap" not in line and "zipfile" not in line
    assert nothing_written(workdir, "moons_mlp")


@pytest.mark.parametrize("saved,wanted,refused", [
    # subclass mode (today's configs): the LightningModule class
    ({"_class_path": "lab.MLPClassifier", "hidden": [16]}, {"class_path": "lab.CNNClassifier"}, True),
    ({"_class_path": "lab.CNNClassifier"}, {"class_path": "lab.CNNClassifier", "init_args": {}}, False),
    # one Classifier with an injected network: the network's class
    ({"net": {"class_path": "lab.MLP", "init_args": {}}, "num_classes": 2},
     {"net": {"class_path": "lab.ParametricCNN", "init_args": {"channels": [8]}}}, True),
    ({"net": {"class_path": "lab.ParametricCNN", "init_args": {"channels": [4]}}},
     {"net": {"class_path": "lab.ParametricCNN", "init_args": {"channels": [8]}}}, False),
])
def test_model_identity_of_a_checkpoint_is_its_network_class_where_there_is_one(
        tmp_path: Path, saved: dict, wanted: dict, refused: bool) -> None:
    from lightning_lab.checkpoint import refuse_checkpoint_of_another_model
    from lightning_lab.errors import ConfigError

    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": saved}, path)
    if refused:
        with pytest.raises(ConfigError, match="other.ckpt"):
            refuse_checkpoint_of_another_model(str(path), wanted)
    else:
        refuse_checkpoint_of_another_model(str(path), wanted)


@pytest.mark.slow
def test_last_checkpoint_is_written_every_epoch_without_improvement(workdir: Path) -> None:
    """With a learning rate of 0 only epoch 0 is ever the best; last.ckpt must still hold the newest epoch."""
    assert cli("fit", "--config", "moons.yaml", "--model.optimizer.init_args.lr", "0",
               "--model.scheduler", "null", "--test_after_fit", "false",
               *quick_args(max_epochs=3)) == 0
    folder = workdir / "checkpoints/moons_mlp/version_0"
    best = list(folder.glob("epoch*.ckpt"))
    assert len(best) == 1 and best[0].name.startswith("epoch000-")
    assert load(folder / "last.ckpt")["epoch"] == 2
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("last")) == ["last.ckpt"]
