"""Training throughput (images/s) and achieved FLOP/s, with the data pipeline off and on.

Models, as the configs build them: the parametric CNN of configs/cifar.yaml on CIFAR-10 (`cnn32`), ResNet-18
(`lightning_lab.models.ResNet18`, weights none) on CIFAR-10 at the stored 32x32 (`resnet32`), upsampled to
160x160 as configs/resnet18_cifar.yaml does (`resnet160`, not in the default list), and on Cats-vs-Dogs at
224x224 (`resnet224`, configs/resnet18_cats_dogs.yaml). Data: synthetic, shaped as the product stores it, fed
through the product's own data module (CIFAR10DataModule / CatsDogsDataModule, augment on). A training step is
forward + cross-entropy + backward + SGD step in a plain PyTorch loop (the hardware and the data path), and
the same as users run it: `lightning_lab.models.Classifier` around the same net, fitted by `lightning.Trainer`
(`users` below; where Lightning's cost per step comes from is `lightning_overhead.py`'s job).

The data pipeline is the product's one pipeline: a loader yields uint8 batches as stored; on the device the data
module's `on_after_batch_transfer` (called here as Lightning calls it, with a stand-in trainer in its training
stage) converts to float, augments (batched, seeded), resizes to `image_size` and normalises.

Per model, interleaved over repeats (the order rotates, so load on a shared machine hits all alike):
  step     - data off: one batch, already transformed and on the device, reused every step
  loader   - the DataLoader alone, as the data module builds it (`--num-workers` workers): uint8 batches/s it can
             supply. 32 px: slices of in-memory uint8 tensors (CIFAR-10's TensorDataset); 224 px: JPEGs decoded
             and resized to 224 in the workers (CatsDogsDataModule's `image_to_tensor`; synthetic 500x375 JPEGs)
  batch    - `on_after_batch_transfer` alone on a uint8 batch already on the device (float, augment, resize,
             normalise): images/s the device-side transform supplies
  pipeline - data on: that DataLoader -> host-to-device copy -> `on_after_batch_transfer` -> training step
  resident - data on, CIFAR-10 only: `DeviceResidentLoader` (uint8 dataset on the device, batches sliced there;
             the default on CUDA) -> `on_after_batch_transfer` -> training step
  users    - data on, as users run it: Classifier (SGD, channels_last/compile as given) + the data module +
             `L.Trainer` with the CLI's progress bar (TQDMProgressBar, refresh every 10 steps, to /dev/null),
             TensorBoard logger and model summary; the loader is the one the data module picks for the device
             (CIFAR-10 on CUDA: device-resident). Timed from the first step after the warm-up to the last step's
             end; Trainer set-up and fit's start/end are not counted
If `loader` or `batch` supplies fewer images/s than `step` consumes, the run is data-bound: the line says DATA-BOUND.

FLOPs: `torch.utils.flop_counter.FlopCounterMode` over one forward+backward; achieved FLOP/s = FLOPs/step x
steps/s. Reference: a large square matmul in the run's dtype, timed in the same run (before and after; best).

    python benchmarks/throughput.py                                  # CPU, small defaults (a few minutes)
    python benchmarks/throughput.py --models cnn32 --steps 1 --repeats 1 --batch-size 8 --no-users   # smoke run
    python benchmarks/throughput.py --device cuda --precision bf16 --channels-last --compile --steps 50
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
import logging
import os
import sys
import time
import types
import warnings
from pathlib import Path
import tempfile
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import Dataset, TensorDataset
from torch.utils.flop_counter import FlopCounterMode
import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import interleaved, machine, median, now, sync  # noqa: E402
from lightning.pytorch.callbacks import TQDMProgressBar  # noqa: E402
from lightning_lab.cli import PROGRESS_REFRESH_STEPS  # noqa: E402
from lightning_lab.data import CatsDogsDataModule, CIFAR10DataModule  # noqa: E402
from lightning_lab.data.cats_dogs import SkipUnreadable  # noqa: E402
from lightning_lab.data.device import DeviceResidentLoader  # noqa: E402
from lightning_lab.data.images import ImageDataModule  # noqa: E402
from lightning_lab.models import Classifier, ParametricCNN, ResNet18  # noqa: E402

DTYPES = {"32": torch.float32, "bf16": torch.bfloat16, "16": torch.float16}
LIGHTNING_PRECISION = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}
MODELS = ("cnn32", "resnet32", "resnet160", "resnet224")
MODES = ("step", "loader", "batch", "pipeline", "resident", "users")
LR, MOMENTUM = 0.01, 0.9


def build(name: str) -> tuple[Callable[..., nn.Module], ImageDataModule]:
    """(net factory called as `net(input_shape, num_classes)`, data module) as the config behind `name` builds
    them (augment on, weights none)."""
    if name == "cnn32":  # configs/cifar.yaml
        return (functools.partial(ParametricCNN, channels=(64, 128, 256), convs_per_block=2, dropout=0.3,
                                  hidden=(256,)), CIFAR10DataModule(augment=True))
    resnet = functools.partial(ResNet18, weights="none")
    if name == "resnet32":
        return resnet, CIFAR10DataModule(augment=True)
    if name == "resnet160":  # configs/resnet18_cifar.yaml
        return resnet, CIFAR10DataModule(augment=True, image_size=160, normalization="imagenet")
    if name == "resnet224":  # configs/resnet18_cats_dogs.yaml
        return resnet, CatsDogsDataModule(augment=True, image_size=224, normalization="imagenet")
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def stand_in_trainer(device: torch.device) -> Any:
    """What the data module reads from its trainer: the device, rank 0 of 1, epoch 0, training stage."""
    return types.SimpleNamespace(strategy=types.SimpleNamespace(root_device=device), global_rank=0, world_size=1,
                                 current_epoch=0, training=True, predicting=False)


class SyntheticJPEGs(Dataset):
    """n samples cycling over `distinct` photo-like JPEGs (500x375, PetImages' typical size), decoded per sample
    as CatsDogsDataModule's ImageFolder does (PIL open + RGB), then `transform` (the module's `image_to_tensor`)."""

    def __init__(self, n: int, transform: Callable, num_classes: int, distinct: int = 32, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.files: list[bytes] = []
        for _ in range(distinct):
            small = Image.fromarray(rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8))
            noisy = np.asarray(small.resize((500, 375), Image.Resampling.BICUBIC), dtype=np.int16)
            noisy = np.clip(noisy + rng.integers(-8, 9, size=noisy.shape), 0, 255).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(noisy).save(buffer, format="JPEG", quality=90)
            self.files.append(buffer.getvalue())
        self.labels = rng.integers(0, num_classes, size=n)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = Image.open(io.BytesIO(self.files[i % len(self.files)])).convert("RGB")
        return self.transform(image), int(self.labels[i])


def train_dataset(data: ImageDataModule, n: int, g: torch.Generator) -> Dataset:
    """n synthetic training samples stored as `data` stores them."""
    if isinstance(data, CatsDogsDataModule):
        return SkipUnreadable(SyntheticJPEGs(n, data.to_stored_tensor(), data.num_classes))
    images = torch.randint(0, 256, (n, *data.stored_shape), dtype=torch.uint8, generator=g)
    return TensorDataset(images, torch.randint(0, data.num_classes, (n,), generator=g))


def cycle(loader) -> Iterator:
    while True:
        yield from loader


class Trainer:
    """One model's training step under the chosen precision / memory format / compile."""

    def __init__(self, name: str, args: argparse.Namespace, device: torch.device) -> None:
        torch.manual_seed(0)
        net_factory, self.data = build(name)
        net = net_factory(self.data.input_shape, self.data.num_classes)
        self.data.trainer = stand_in_trainer(device)
        self.data.num_workers = args.num_workers
        self.data.pin_memory = device.type == "cuda"
        self.data.persistent_workers = args.num_workers > 0
        self.size = self.data.input_shape[-1]
        self.device = device
        self.memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
        self.net = net.to(device, memory_format=self.memory_format).train()
        self.step_fn = torch.compile(self.net) if args.compile else self.net
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=LR, momentum=MOMENTUM)
        self.dtype = DTYPES[args.precision]
        self.autocast = args.precision != "32"
        self.scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "16")

    def transfer(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """A loader's uint8 batch as the network gets it: to the device, then the data module's hook, as
        Lightning calls it (`batch_to_device`, then `on_after_batch_transfer(batch, dataloader_idx)`)."""
        x, y = (t.to(self.device, non_blocking=True) for t in batch)
        return self.data.on_after_batch_transfer((x, y), 0)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.autocast):
            loss = F.cross_entropy(self.step_fn(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss

    def flops(self, x: torch.Tensor, y: torch.Tensor) -> int:
        """FLOPs of one forward + backward (eager network: the counter sees the real aten ops)."""
        counter = FlopCounterMode(display=False)
        with counter, torch.autocast(self.device.type, dtype=self.dtype, enabled=self.autocast):
            F.cross_entropy(self.net(x.contiguous(memory_format=self.memory_format)), y).backward()
        self.optimizer.zero_grad(set_to_none=True)
        return counter.get_total_flops()


def matmul_flops_per_s(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 3) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = now(device)
        a @ b
        best = min(best, now(device) - start)
    return 2 * n**3 / best


class StepClock(Callback):
    """The time at the start of optimizer step `first` and at the end of step `last` (device synchronised there
    only: no sync on the steps between)."""

    def __init__(self, first: int, last: int, device: torch.device) -> None:
        self.first, self.last, self.device = first, last, device
        self.start = self.end = float("nan")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if trainer.global_step == self.first:
            self.start = now(self.device)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step == self.last:  # counts the step just taken
            self.end = now(self.device)


def users_run(name: str, args: argparse.Namespace, device: torch.device, dataset: Dataset, batch: int) -> float:
    """images/s of `fit` as users run it (see the module docstring): warm-up steps, then `args.steps` timed."""
    torch.manual_seed(0)
    net_factory, data = build(name)
    data.batch_size, data.num_workers = batch, args.num_workers
    data.pin_memory, data.persistent_workers = device.type == "cuda", args.num_workers > 0
    if isinstance(dataset, TensorDataset):  # its own copy: the device-resident loader moves its tensors
        dataset = TensorDataset(*(t.clone() for t in dataset.tensors))
    data.data_train = data.data_val = dataset  # setup() keeps datasets it already has
    data.prepare_data = lambda: None  # type: ignore[method-assign]  # nothing to download
    model = Classifier(net_factory, data.num_classes, data.input_shape,
                       optimizer=functools.partial(torch.optim.SGD, lr=LR, momentum=MOMENTUM),
                       channels_last=args.channels_last, compile=args.compile)
    clock = StepClock(args.warmup, args.warmup + args.steps, device)
    for logger in ("lightning.pytorch", "lightning.fabric", "lightning_lab"):  # their handlers hold the real stderr
        logging.getLogger(logger).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as devnull, \
            contextlib.redirect_stderr(devnull), contextlib.redirect_stdout(devnull):
        trainer = L.Trainer(accelerator=device.type, devices=1, precision=LIGHTNING_PRECISION[args.precision],
                            max_steps=args.warmup + args.steps, num_sanity_val_steps=0, limit_val_batches=0,
                            logger=TensorBoardLogger(tmp, name="bench"), enable_checkpointing=False,
                            callbacks=[clock, TQDMProgressBar(refresh_rate=PROGRESS_REFRESH_STEPS)],
                            default_root_dir=tmp)
        trainer.fit(model, datamodule=data)
    return args.steps * batch / (clock.end - clock.start)


def timed_steps(fn: Callable[[], object], steps: int, images: int, device: torch.device) -> float:
    """images/s over `steps` calls of fn (each consuming `images` images)."""
    start = now(device)
    for _ in range(steps):
        fn()
    return steps * images / (now(device) - start)


def bench_model(name: str, args: argparse.Namespace, device: torch.device) -> tuple[str, int, int, int, dict]:
    """(name, size, batch, FLOPs per step, median images/s per mode)."""
    trainer = Trainer(name, args, device)
    data, size = trainer.data, trainer.size
    batch = args.batch_size_224 if size >= 128 else args.batch_size
    data.batch_size = batch
    g = torch.Generator().manual_seed(0)
    n_images = batch * max(args.steps + args.warmup, 16)  # whole batches: the loaders drop nothing
    dataset = train_dataset(data, n_images, g)
    stored = torch.randint(0, 256, (batch, *data.stored_shape), dtype=torch.uint8, generator=g).to(device)
    y = torch.randint(0, data.num_classes, (batch,), generator=g).to(device)
    x, y = data.on_after_batch_transfer((stored, y), 0)  # the step's fixed batch: what the network sees
    flops = trainer.flops(x, y)
    loader = data.loader(dataset, train=True)
    loader_batches = cycle(loader)
    runs: dict[str, Callable[[], float]] = {
        "step": lambda: timed_steps(lambda: trainer.step(x, y), args.steps, batch, device),
        "loader": lambda: timed_steps(lambda: next(loader_batches), args.steps, batch, torch.device("cpu")),
        "batch": lambda: timed_steps(lambda: data.on_after_batch_transfer((stored, y), 0), args.steps, batch,
                                     device),
        "pipeline": lambda: timed_steps(lambda: trainer.step(*trainer.transfer(next(loader_batches))), args.steps,
                                        batch, device),
    }
    if isinstance(dataset, TensorDataset):
        on_device = TensorDataset(*(t.to(device) for t in dataset.tensors))
        resident = DeviceResidentLoader(on_device, batch, shuffle=True, seed=data.seed)
        resident_batches = cycle(resident)
        runs["resident"] = lambda: timed_steps(lambda: trainer.step(*trainer.transfer(next(resident_batches))),
                                               args.steps, batch, device)
    if not args.no_users:
        runs["users"] = lambda: users_run(name, args, device, dataset, batch)
    for _ in range(args.warmup):  # compile, allocator, cuDNN autotune, worker start-up
        trainer.step(x, y)
        trainer.step(*trainer.transfer(next(loader_batches)))
    sync(device)
    results = interleaved(runs, args.repeats)
    return name, size, batch, flops, {k: median(v) for k, v in results.items()}


def report(row: tuple[str, int, int, int, dict], peak: float) -> str:
    name, size, batch, flops, rate = row
    achieved = flops * rate["step"] / batch
    slow = [k for k in ("loader", "batch") if rate[k] < rate["step"]]
    bound = f"DATA-BOUND ({' and '.join(slow)} alone slower than the step)" if slow else "compute-bound"
    return (f"{name:<10} {size:>4} {batch:>5} {flops / batch / 1e9:>12.3f} "
            + " ".join(f"{rate.get(k, float('nan')):>9.1f}" for k in MODES)
            + f" {achieved / 1e9:>9.2f} {100 * achieved / peak:>7.1f}%  {bound}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32", choices=list(DTYPES),
                        help="32: fp32; bf16 / 16: autocast (16 with a GradScaler; 16 needs a GPU)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (warm-up steps compile)")
    parser.add_argument("--batch-size", type=int, default=None, help="32-px models (default: cpu 32, cuda 256)")
    parser.add_argument("--batch-size-224", type=int, default=None,
                        help="160/224-px models (default: cpu 8, cuda 128)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default: cpu 3, cuda 30)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1; 3 with --compile)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats per mode (median)")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--models", default="cnn32,resnet32,resnet224", help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--no-users", action="store_true", help="skip the 'users' mode (a Trainer.fit per repeat)")
    parser.add_argument("--matmul-n", type=int, default=None, help="reference matmul size (cpu 2048, cuda 8192)")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device visible")
    if args.precision == "16" and not cuda:
        parser.error("--precision 16 (float16 autocast + GradScaler) is GPU-only; on CPU use --precision bf16")
    models = args.models.split(",")
    if unknown := [m for m in models if m not in MODELS]:
        parser.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    args.batch_size = args.batch_size or (256 if cuda else 32)
    args.batch_size_224 = args.batch_size_224 or (128 if cuda else 8)
    args.steps = args.steps or (30 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (3 if args.compile else 1)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    dtype = DTYPES[args.precision]
    n = args.matmul_n or (8192 if cuda else 2048)
    started = time.perf_counter()
    print(machine(device))
    print(f"device {device}, precision {args.precision}, channels_last {args.channels_last}, compile {args.compile}, "
          f"{args.steps} steps x {args.repeats} repeats, {args.num_workers} loader workers")
    peaks = [matmul_flops_per_s(device, dtype, n)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = [bench_model(name, args, device) for name in models]
    peaks.append(matmul_flops_per_s(device, dtype, n))
    peak = max(peaks)
    print(f"reference: {n}x{n} {str(dtype).replace('torch.', '')} matmul "
          f"{' / '.join(f'{p / 1e9:.1f}' for p in peaks)} GFLOP/s before / after the models; the best is 100%")
    print(f"{'model':<10} {'px':>4} {'batch':>5} {'GFLOP/image':>12} "
          + " ".join(f"{k:>9}" for k in MODES) + f" {'GFLOP/s':>9} {'of mm':>8}   (step..users: images/s)")
    for row in rows:
        print(report(row, peak))
    print(f"total {time.perf_counter() - started:.0f} s; load average after: "
          f"{machine(device).split('load average ')[1].split(';')[0]}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
