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
- `conv_dtypes(net)`: the (weight, output) dtypes its convolutions run with while training (filled as it runs).
- `compiling_calls(net)`: for each call of `net`, whether torch.compile was tracing it (filled as it runs).
- `tensorboard_scalars(log_dir)`: {tag: [(step, value), ...]} of a run folder, as TensorBoard shows them.
- fixtures: `workdir` (a fresh working directory), `skip_cifar_md5`, `no_network`, and `digits_run` (session
  scope: one short `fit --config digits.yaml` with its test, trained once per test process; see `DigitsRun`).
- markers: `slow` (trains more than a few steps or starts a process; `pytest -m "not slow"` is the quick tier,
  `make test` runs everything) and `gpu` (needs CUDA: skipped without one; `pytest -m gpu` runs only these).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Iterable, TypeVar

import pytest

if TYPE_CHECKING:
    import lightning as L
    import torch

# Under `pytest -n N` (make test) each worker, and every process it starts, computes on one thread: N workers with
# torch's default of one thread per core would oversubscribe the cores (measured here: a short digits fit took
# 2.7-2.9 s on one thread and 3.3-6.5 s on two while the other core was busy). torch is imported only where a test
# process needs it: xdist's controlling process runs no test and so starts without it (importing lightning takes
# 6-13 s on the 2-core machine, and leaving the interpreter after it 2-5 s more).
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch as _torch

    _torch.set_num_threads(1)  # in case a plugin imported torch before this file

REPO = Path(__file__).resolve().parent.parent
DataModule = TypeVar("DataModule", bound="L.LightningDataModule")

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
    import torch

    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def ready(datamodule: DataModule) -> DataModule:
    """prepare_data then setup, as the Trainer does."""
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def as_trainer(training: bool, rank: int = 0, epoch: int = 0) -> SimpleNamespace:
    """The parts of a Trainer the data modules' batch hook reads."""
    import torch

    return SimpleNamespace(training=training, global_rank=rank, current_epoch=epoch, world_size=1,
                           strategy=SimpleNamespace(root_device=torch.device("cpu")))


def network_batches(datamodule: L.LightningDataModule, loader: Iterable, training: bool = False,
                    rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every batch as the network sees it: through ``on_after_batch_transfer`` as in a fit (``training``) or an
    evaluation, with a stand-in trainer of the given global rank."""
    import torch

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
    import torch

    torch.testing.assert_close(network_batches(augmented, augmented.val_dataloader())[0],
                               network_batches(plain, plain.val_dataloader())[0])
    train = torch.utils.data.DataLoader(augmented.data_train, batch_size=batch_size)
    changed, clean = network_batches(augmented, train, training=True)[0], network_batches(augmented, train)[0]
    assert changed.shape == clean.shape and not torch.allclose(changed, clean)
    torch.testing.assert_close(network_batches(plain, train, training=True)[0], clean)


def conv_dtypes(net: torch.nn.Module) -> set[tuple[torch.dtype, torch.dtype]]:
    """(weight dtype, output dtype) of every Conv2d call of `net` in training mode, filled in as the net runs."""
    import torch

    seen: set[tuple[torch.dtype, torch.dtype]] = set()

    def hook(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if module.training:
            seen.add((module.weight.dtype, output.dtype))

    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(hook)
    return seen


def compiling_calls(net: torch.nn.Module) -> list[bool]:
    """`torch.compiler.is_compiling()` at each call of `net`, filled in as it runs: True where torch.compile traced
    the call (a compiled module runs its hooks inside the traced code, and the recorded value is replayed with each
    later run of that code), False where the module ran eagerly."""
    import torch

    seen: list[bool] = []
    net.register_forward_pre_hook(lambda module, args: seen.append(torch.compiler.is_compiling()))
    return seen


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


# -- a trained model to share ----------------------------------------------------------------------------------
DIGITS_RUN_EPOCHS = 2


@dataclass(frozen=True)
class DigitsRun:
    """What `fit --config digits.yaml --trainer.max_epochs 2` (then its test) leaves in its working directory
    `root`. Shared by every test of a test process: copy it (`copy_to`) before writing into it."""

    root: Path            # the working directory of the run
    checkpoint_dir: Path  # root/checkpoints/digits_cnn/version_0
    best: Path            # checkpoint_dir/epoch...-acc....ckpt (the epoch the checkpoint keeps: digits.yaml's last)
    last: Path            # checkpoint_dir/last.ckpt
    best_weights: Path    # checkpoint_dir/best_weights.pt (plain state dict of the net)
    log_dir: Path         # root/lightning_logs/digits_cnn/version_0 (config.yaml, run.json, TensorBoard events)
    test_acc: float       # test/acc of the best checkpoint, as the run printed it

    def copy_to(self, folder: Path) -> "DigitsRun":
        """This run copied under `folder` (checkpoints/ and lightning_logs/), with every path moved along."""
        for name in ("checkpoints", "lightning_logs"):
            shutil.copytree(self.root / name, folder / name, dirs_exist_ok=True)
        moved = {k: folder / Path(v).relative_to(self.root) for k, v in vars(self).items() if isinstance(v, Path)}
        return DigitsRun(**{**vars(self), **moved})


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> DigitsRun:
    """A digits CNN trained for DIGITS_RUN_EPOCHS full epochs through the CLI in this process, then tested on its
    best checkpoint (test accuracy well above chance: a model whose predictions mean something)."""
    from lightning_lab.cli import LabCLI
    from lightning_lab.paths import BEST_WEIGHTS_NAME, CHECKPOINT_ROOT, LAST_CKPT_NAME, LOG_DIR

    root = tmp_path_factory.mktemp("digits_run")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        cli_ = LabCLI(args=["fit", "--config", str(REPO / "configs" / "digits.yaml"), "--test_after_fit", "true",
                            "--trainer.max_epochs", str(DIGITS_RUN_EPOCHS), "--trainer.enable_progress_bar",
                            "false", "--trainer.enable_model_summary", "false"])
    checkpoint_dir = root / CHECKPOINT_ROOT / "digits_cnn" / "version_0"
    (best,) = checkpoint_dir.glob("epoch*.ckpt")
    return DigitsRun(root=root, checkpoint_dir=checkpoint_dir, best=best, last=checkpoint_dir / LAST_CKPT_NAME,
                     best_weights=checkpoint_dir / BEST_WEIGHTS_NAME, log_dir=root / LOG_DIR / "digits_cnn" /
                     "version_0", test_acc=float(cli_.trainer.callback_metrics["test/acc"]))


# -- tiers and order ----------------------------------------------------------------------------------------------
# Files whose tests run longest, in the order `make test` should start them (one file per worker at a time with
# `--dist loadfile --no-loadscope-reorder`): long files first, so that no long file starts alone at the end.
LONGEST_FILES = ("test_experiments_sweep.py", "test_notebooks.py", "test_baselines.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip `gpu` tests without CUDA; order files: LONGEST_FILES first, then by their number of `slow` tests."""
    import torch

    if not torch.cuda.is_available():
        no_cuda = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(no_cuda)
    slow_per_file: dict[str, int] = {}
    for item in items:
        slow_per_file[item.path.name] = slow_per_file.get(item.path.name, 0) + bool(item.get_closest_marker("slow"))

    def rank(item: pytest.Item) -> tuple[int, int]:
        name = item.path.name
        return (LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES), -slow_per_file[name])

    items.sort(key=rank)  # stable: tests keep their order within a file
