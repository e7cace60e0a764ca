"""Shared test helpers and fixtures. Other test files can use these names (import the plain helpers with
`from conftest import quick_args, run_entry`; fixtures need no import):

- `REPO`: the repository root.
- `quick_args(max_epochs=1, train_batches=3, val_batches=2, test_batches=2)`: Trainer options for a run of a
  few batches per epoch, no progress bar, no model summary, a log entry every step (`max_epochs=None` leaves
  the epochs to the caller). `QUICK` is `quick_args()`.
- `cli(*args) -> int`: `python -m lightning_lab ...` in this process: the exit code, LabErrors printed as one
  `error: ...` line on stderr (jsonargparse's parse errors exit through SystemExit: its code is returned).
- `run_entry(*args, cwd, timeout=300)`: the real entry point in a subprocess, as users run it (the package as
  installed: `make test` installs it editable; no PYTHONPATH is set here; the subprocess's working directory
  is on its sys.path, so a test can put a helper module there).
- `all_batches(loader) -> (x, y)`: every batch of a loader concatenated, as stored.
- `ready(datamodule)`: prepare_data then setup, as the Trainer does; `network_batches(datamodule, loader,
  training=False, rank=0)`: every batch as the network sees it (through `on_after_batch_transfer`, with
  `as_trainer(training, rank)` standing in for the Trainer); `assert_augments_only_training(plain, augmented,
  batch_size)`.
- `tensorboard_scalars(log_dir)`: {tag: [(step, value), ...]} of a run folder, as TensorBoard shows them.
- fixtures: `workdir` (a fresh working directory), `skip_cifar_md5`, `no_network`.
- marker `slow`: the test trains for more than a few seconds or starts a Python subprocess; `pytest -m "not
  slow"` is the quick tier, `make test` runs everything.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Iterable, TypeVar

import lightning as L
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
DataModule = TypeVar("DataModule", bound=L.LightningDataModule)

# Tests never reach the internet; a stray download attempt must fail fast instead of hanging.
os.environ.setdefault("TORCH_HOME", str(REPO / ".pytest_cache" / "torch_home"))


def quick_args(max_epochs: int | None = 1, train_batches: int = 3, val_batches: int = 2,
               test_batches: int = 2) -> list[str]:
    """Trainer options for a run of a few batches per epoch, without progress bar and model summary."""
    epochs = ["--trainer.max_epochs", str(max_epochs)] if max_epochs is not None else []
    return [*epochs, "--trainer.limit_train_batches", str(train_batches), "--trainer.limit_val_batches",
            str(val_batches), "--trainer.limit_test_batches", str(test_batches), "--trainer.enable_progress_bar",
            "false", "--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "1"]


QUICK = quick_args()


def cli(*args: str) -> int:
    """The CLI in-process as `python -m lightning_lab` runs it: exit code, LabErrors printed as `error: ...`."""
    from lightning_lab.__main__ import run

    try:
        return run(list(args))
    except SystemExit as exit_:  # jsonargparse's parse errors
        return exit_.code if isinstance(exit_.code, int) else 1


def run_entry(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m lightning_lab *args` in a subprocess, as users run it."""
    return subprocess.run([sys.executable, "-m", "lightning_lab", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout)


def all_batches(loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every batch of a loader concatenated: (inputs, targets)."""
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def ready(datamodule: DataModule) -> DataModule:
    """prepare_data then setup, as the Trainer does."""
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def as_trainer(training: bool, rank: int = 0, epoch: int = 0) -> SimpleNamespace:
    """The parts of a Trainer the data modules' batch hook reads."""
    return SimpleNamespace(training=training, global_rank=rank, current_epoch=epoch, world_size=1,
                           strategy=SimpleNamespace(root_device=torch.device("cpu")))


def network_batches(datamodule: L.LightningDataModule, loader: Iterable, training: bool = False,
                    rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every batch as the network sees it: through ``on_after_batch_transfer`` as in a fit (``training``) or an
    evaluation, with a stand-in trainer of the given global rank."""
    datamodule.trainer = as_trainer(training, rank)
    try:
        xs, ys = zip(*(datamodule.on_after_batch_transfer(batch, 0) for batch in loader))
    finally:
        datamodule.trainer = None
    return torch.cat(xs), torch.cat(ys)


def assert_augments_only_training(plain: L.LightningDataModule, augmented: L.LightningDataModule,
                                  batch_size: int) -> None:
    """Two data modules alike but for `augment`: validation batches are identical, training batches through the
    augmenting module differ between a training and an evaluation pass, and the plain one never augments."""
    torch.testing.assert_close(network_batches(augmented, augmented.val_dataloader())[0],
                               network_batches(plain, plain.val_dataloader())[0])
    train = torch.utils.data.DataLoader(augmented.data_train, batch_size=batch_size)
    changed, clean = network_batches(augmented, train, training=True)[0], network_batches(augmented, train)[0]
    assert changed.shape == clean.shape and not torch.allclose(changed, clean)
    torch.testing.assert_close(network_batches(plain, train, training=True)[0], clean)


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of every scalar tag, read from all event files of a run folder as TensorBoard shows them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a fresh directory, as a user would in a new project folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def skip_cifar_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated CIFAR-10 batches have the real format but not the real MD5 sums. torchvision checks every
    batch (``_check_integrity``) and, separately, the metadata file (``check_integrity`` in ``_load_meta``)."""
    import torchvision

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every download fails as it does offline (never touches the network)."""
    import urllib.error
    import urllib.request

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


# The file that takes longest (the Ray sweeps: ~3.5 of the suite's ~11 minutes of work on the 2-core machine).
LONGEST_FILE = "test_experiments.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest file first, then files by their number of `slow` tests: with `make test`'s two workers
    (`-n 2 --dist loadfile`, one file per worker at a time) the long files start at once instead of finishing
    alone at the end."""
    slow_per_file: dict[str, int] = {}
    for item in items:
        slow_per_file[item.path.name] = slow_per_file.get(item.path.name, 0) + bool(item.get_closest_marker("slow"))
    items.sort(key=lambda item: (item.path.name != LONGEST_FILE, -slow_per_file[item.path.name]))
