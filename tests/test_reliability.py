"""Reliability: a run killed with SIGKILL resumes where it stopped and continues the same TensorBoard run,
checkpoints on disk are never half-written, the same config and seed reproduce the same numbers, and bad input
ends in one readable `error: ...` line before training.

Runs in-process where it can (`lightning_lab.__main__.run`); only the SIGKILL needs a subprocess.
"""
from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fake_datasets import write_cifar10, write_mnist
from lightning_lab.__main__ import run

REPO = Path(__file__).resolve().parent.parent
SMALL = ["--trainer.limit_train_batches", "5", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches",
         "2", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.log_every_n_steps", "1"]
EPOCH_METRICS = ("val/acc", "val/acc_best", "train/acc")


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of every scalar tag, read from all event files of a run folder as TensorBoard shows them."""
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def cli(*args: str) -> int:
    """The CLI in-process as `python -m lightning_lab` runs it: exit code, LabErrors printed as `error: ...`."""
    try:
        return run(list(args))
    except SystemExit as exit_:  # jsonargparse's parse errors
        return exit_.code


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


def test_run_killed_mid_epoch_resumes_into_the_same_tensorboard_run(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["fit", "--config", "digits.yaml", "--trainer.max_epochs", "4", "--test_after_fit", "false", *SMALL]
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "reliability_hooks.py").write_text(HOOKS)
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    killed.mkdir(), reference.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "hooks"), str(REPO / "tests")])}
    proc = subprocess.Popen([sys.executable, "-m", "lightning_lab", *args,
                             "--trainer.callbacks+=reliability_hooks.StopPoint"],
                            cwd=killed, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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


# ---------------------------------------------------------------------------------------------- 2. atomic save
class CheckpointWatch:
    """Checks, at every moment checkpoint bytes move (torch.save into a file, fsspec file writes, sendfile copies,
    renames), that the last.ckpt on disk loads: what a SIGKILL at that moment would leave behind."""

    def __init__(self, last: Path) -> None:
        self.last = last
        self.checks = 0  # checks made while a complete last.ckpt already existed
        self.failures: list[str] = []
        self.newest_epoch = -1

    def check(self, where: str) -> None:
        if self.newest_epoch < 0 and not self.last.exists():
            return
        self.checks += 1
        try:
            epoch = torch.load(self.last, map_location="cpu", weights_only=True)["epoch"]
        except Exception as err:  # noqa: BLE001 - any failure to load is the finding
            self.failures.append(f"{where}: {self.last.name} does not load ({type(err).__name__}: {err})")
            return
        if epoch < self.newest_epoch:
            self.failures.append(f"{where}: {self.last.name} went back from epoch {self.newest_epoch} to {epoch}")
        self.newest_epoch = max(self.newest_epoch, epoch)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from fsspec.implementations.local import LocalFileOpener

        real_save, real_write, real_sendfile = torch.save, LocalFileOpener.write, os.sendfile

        def save(obj, f, *args, **kwargs):  # a checkpoint serialised straight into its file, half then rest
            if isinstance(f, io.BytesIO):
                return real_save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            target = open(f, "wb") if isinstance(f, (str, os.PathLike)) else f
            target.write(data[: len(data) // 2])
            target.flush()
            self.check("torch.save half-way")
            target.write(data[len(data) // 2:])
            if target is not f:
                target.close()

        def write(opener, data, *args, **kwargs):
            half = len(data) // 2
            real_write(opener, data[:half])
            self.check("file write half-way")
            return half + real_write(opener, data[half:], *args, **kwargs)

        def sendfile(out_fd, in_fd, offset, count):  # shutil.move's copy across file systems
            half = max(1, os.fstat(in_fd).st_size // 2)
            sent = real_sendfile(out_fd, in_fd, offset, min(count, half))
            self.check("copy half-way")
            return sent

        def after(name, real):
            def wrapped(*args, **kwargs):
                result = real(*args, **kwargs)
                self.check(f"after {name}")
                return result
            return wrapped

        monkeypatch.setattr(torch, "save", save)
        monkeypatch.setattr(LocalFileOpener, "write", write)
        monkeypatch.setattr(os, "sendfile", sendfile)
        monkeypatch.setattr(os, "replace", after("os.replace", os.replace))
        monkeypatch.setattr(os, "rename", after("os.rename", os.rename))
        monkeypatch.setattr(shutil, "move", after("shutil.move", shutil.move))


@pytest.mark.parametrize("staging", ["same_file_system", "other_file_system"])
def test_last_checkpoint_on_disk_always_loads_while_a_new_one_is_written(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, staging: str) -> None:
    """Fails for any save that writes last.ckpt in place (torch.save/open on the final path, an fsspec write
    without its transaction, or Lightning's $TMPDIR staging whose final move is a copy across file systems)."""
    if staging == "other_file_system":
        shm = Path("/dev/shm")
        if not shm.is_dir() or os.stat(shm).st_dev == os.stat(workdir).st_dev:
            pytest.skip("no second file system for $TMPDIR")
        staging_dir = Path(tempfile.mkdtemp(dir=shm))
    else:
        staging_dir = workdir / "tmp"
        staging_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging_dir))  # where fsspec stages Lightning's saves
    watch = CheckpointWatch(workdir / "checkpoints/moons_mlp/version_0/last.ckpt")
    watch.install(monkeypatch)
    try:
        assert cli("fit", "--config", "moons.yaml", "--trainer.max_epochs", "3", "--test_after_fit", "false",
                   *SMALL) == 0
    finally:
        monkeypatch.undo()
        shutil.rmtree(staging_dir, ignore_errors=True)
    assert not watch.failures, watch.failures
    assert watch.checks >= 6 and watch.newest_epoch == 2  # saves of epochs 1 and 2 were watched mid-write
    assert not list((workdir / "checkpoints/moons_mlp/version_0").glob(".*"))  # no partial file left


def test_partial_file_of_a_killed_save_is_ignored_and_cleaned(workdir: Path) -> None:
    from lightning_lab.callbacks import partial_path
    from lightning_lab.cli import find_last_checkpoint

    args = ["fit", "--config", "moons.yaml", "--trainer.max_epochs", "1", "--test_after_fit", "false", *SMALL]
    assert cli(*args) == 0
    last = workdir / "checkpoints/moons_mlp/version_0/last.ckpt"
    partial = partial_path(last)
    partial.write_bytes(last.read_bytes()[:1000])  # what a kill during the next save leaves
    assert find_last_checkpoint("moons_mlp").resolve() == last
    assert cli(*[a if a != "1" else "2" for a in args], "--ckpt_path", "last") == 0
    assert load(last)["epoch"] == 1 and not partial.exists()


# ---------------------------------------------------------------------------------------------- 3. reproducible
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
    code = cli("fit", "--config", "digits.yaml", "--model.init_args.optimizer.class_path", "torch.optim.Nope")
    err = without_logging_errors(capsys.readouterr().err)
    assert code not in (0, None) and "torch.optim.Nope" in err and "Traceback" not in err
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


@pytest.mark.parametrize("subcommand", ["fit", "validate", "test"])
def test_checkpoint_of_another_model_is_refused_naming_both(workdir: Path, capsys: pytest.CaptureFixture,
                                                           moons_checkpoint: Path, subcommand: str) -> None:
    """LightningCLI would take the model class from the checkpoint: the digits run would become an MLP run."""
    code = cli(subcommand, "--config", "digits.yaml", "--ckpt_path", str(moons_checkpoint), *SMALL)
    assert_refused(capsys, code, "MLPClassifier", "CNNClassifier", str(moons_checkpoint))
    assert nothing_written(workdir, "digits_cnn")


def test_checkpoint_that_does_not_fit_the_network_is_refused(workdir: Path, capsys: pytest.CaptureFixture,
                                                             moons_checkpoint: Path) -> None:
    args = ["--config", "digits.yaml", "--trainer.max_epochs", "1", "--test_after_fit", "false", *SMALL]
    # Same class (an MLP), but 8x8 digits give its first layer 64 inputs instead of the 2 of moons.
    code = cli("validate", *args, "--model", "lightning_lab.models.MLPClassifier", "--ckpt_path", str(moons_checkpoint))
    assert_refused(capsys, code, str(moons_checkpoint), "MLPClassifier", "has shape [16, 2]", "expects [16, 64]")
    (workdir / "notes.ckpt").write_text("not a checkpoint")
    assert_refused(capsys, cli("fit", *args, "--ckpt_path", "notes.ckpt"), "notes.ckpt", "not a readable")
    assert_refused(capsys, cli("fit", *args, "--ckpt_path", "missing.ckpt"), "missing.ckpt", "does not exist")
    weights = moons_checkpoint.parent / "best_weights.pt"
    assert_refused(capsys, cli("test", *args, "--ckpt_path", str(weights)), "best_weights.pt", "no state_dict")
    assert nothing_written(workdir, "digits_cnn")


def test_weights_of_another_architecture_are_refused_through_the_cli(workdir: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    from lightning_lab.models import ParametricCNN

    torch.save(ParametricCNN(3, 10).state_dict(), workdir / "cnn.pt")
    code = cli("fit", "--config", "resnet18_cifar.yaml", "--model.init_args.weights", "cnn.pt")
    assert_refused(capsys, code, "cnn.pt", "ResNet-18")
    assert nothing_written(workdir, "cifar_resnet18")


def test_non_finite_loss_stops_with_step_epoch_and_learning_rate(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    code = cli("fit", "--config", "digits.yaml", "--trainer.max_epochs", "3", "--model.init_args.optimizer",
               '{"class_path": "torch.optim.SGD", "init_args": {"lr": 1e6}}', "--model.init_args.scheduler", "null",
               *SMALL)
    line = assert_refused(capsys, code, "error: loss became nan at step", "(epoch ", "with learning rate 1e+06")
    assert "lower the learning rate" in line
