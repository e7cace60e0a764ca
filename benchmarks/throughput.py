"""Training throughput (images/s) and achieved FLOP/s, with the data pipeline off and on.

Models: the parametric CNN of configs/cifar.yaml on CIFAR-10-shaped 32x32 images (`cnn32`), and torchvision's
ResNet-18 at 32x32 (`resnet32`) and at 224x224 (`resnet224`). A training step is forward + cross-entropy +
backward + SGD step (plain PyTorch: this measures the hardware and the data path; Lightning's own cost is
`lightning_overhead.py`'s job).

Per model, interleaved over repeats (the order rotates, so load on a shared machine hits all alike):
  step     - data off: one normalised batch already on the device, reused every step
  loader   - the PIL pipeline alone: DataLoader over PIL images with the product's training transforms
             (CIFAR10DataModule(in_memory=False, augment=True) for 32 px; Cats-vs-Dogs' RandomResizedCrop for
             224 px from 256 px images), `--num-workers` workers; images/s it can supply
  pil      - data on: that loader feeding the training step (host-to-device copy included)
  resident - data on, 32 px only: the device-resident loader (whole dataset on the device, crop+flip batched there)
If `loader` supplies fewer images/s than `step` consumes, the run is data-bound: the line says DATA-BOUND.

FLOPs: `torch.utils.flop_counter.FlopCounterMode` over one forward+backward; achieved FLOP/s = FLOPs/step x
steps/s. Reference: a large square matmul in the run's dtype, timed in the same run (before and after; best).

    python benchmarks/throughput.py                                  # CPU, small defaults (~1-2 min)
    python benchmarks/throughput.py --device cuda --precision bf16 --channels-last --compile --steps 50
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import interleaved, machine, median, now, sync  # noqa: E402
from lightning_lab.data import CIFAR10DataModule  # noqa: E402
from lightning_lab.data.cats_dogs import CatsDogsDataModule  # noqa: E402
from lightning_lab.data.device import DeviceResidentLoader, random_crop_flip  # noqa: E402
from lightning_lab.models import ParametricCNN, build_resnet18  # noqa: E402

DTYPES = {"32": torch.float32, "bf16": torch.bfloat16, "16": torch.float16}
CIFAR_MEAN, CIFAR_STD = CIFAR10DataModule.mean, CIFAR10DataModule.std


def build(name: str) -> tuple[nn.Module, int]:
    """(network, input size)."""
    if name == "cnn32":  # configs/cifar.yaml
        return ParametricCNN(3, 10, channels=(64, 128, 256), convs_per_block=2, dropout=0.3, hidden=(256,)), 32
    if name == "resnet32":
        return build_resnet18(10, "none"), 32
    if name == "resnet224":
        return build_resnet18(10, "none"), 224
    raise ValueError(name)


class SyntheticPIL(Dataset):
    """n PIL RGB images (stored as uint8 arrays, converted per sample as a decoded dataset does) and labels."""

    def __init__(self, n: int, size: int, transform: Callable, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
        self.labels = rng.integers(0, 10, size=n)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def pil_loader(size: int, batch_size: int, n: int, workers: int, pin: bool) -> DataLoader:
    if size == 32:
        transform = CIFAR10DataModule(augment=True).transform(train=True, pil=True)
        stored = 32
    else:
        transform = CatsDogsDataModule(augment=True, image_size=size).transform(train=True)
        stored = size * 8 // 7  # 256 for 224
    return DataLoader(SyntheticPIL(n, stored, transform), batch_size=batch_size, shuffle=True, num_workers=workers,
                      pin_memory=pin, persistent_workers=workers > 0, drop_last=True)


def cycle(loader) -> Iterator:
    while True:
        yield from loader


class Trainer:
    """One model's training step under the chosen precision / memory format / compile."""

    def __init__(self, name: str, args: argparse.Namespace, device: torch.device) -> None:
        torch.manual_seed(0)
        net, self.size = build(name)
        self.device = device
        self.memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
        self.net = net.to(device, memory_format=self.memory_format).train()
        self.step_fn = torch.compile(self.net) if args.compile else self.net
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9)
        self.dtype = DTYPES[args.precision]
        self.autocast = args.precision != "32"
        self.scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "16")

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        y = y.to(self.device, non_blocking=True)
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
            F.cross_entropy(self.net(x.to(self.device).contiguous(memory_format=self.memory_format)),
                            y.to(self.device)).backward()
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


def timed_steps(fn: Callable[[], object], steps: int, images: int, device: torch.device) -> float:
    """images/s over `steps` calls of fn (each consuming `images` images)."""
    start = now(device)
    for _ in range(steps):
        fn()
    return steps * images / (now(device) - start)


def bench_model(name: str, args: argparse.Namespace, device: torch.device) -> tuple[str, int, int, int, dict]:
    """(name, size, batch, FLOPs per step, median images/s per mode)."""
    trainer = Trainer(name, args, device)
    size = trainer.size
    batch = args.batch_size_224 if size == 224 else args.batch_size
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    flops = trainer.flops(x, y)
    n_images = max(batch * (args.steps + args.warmup) * 2, 512)
    loader = pil_loader(size, batch, n_images, args.num_workers, pin=device.type == "cuda")
    pil_batches = cycle(loader)
    runs: dict[str, Callable[[], float]] = {
        "step": lambda: timed_steps(lambda: trainer.step(x, y), args.steps, batch, device),
        "loader": lambda: timed_steps(lambda: next(pil_batches), args.steps, batch, torch.device("cpu")),
        "pil": lambda: timed_steps(lambda: trainer.step(*next(pil_batches)), args.steps, batch, device),
    }
    if size == 32:
        images = torch.randint(0, 256, (n_images, 3, 32, 32), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 10, (n_images,), generator=g)
        resident = DeviceResidentLoader(images, labels, range(n_images), batch, CIFAR_MEAN, CIFAR_STD,
                                        device=device, augment=random_crop_flip, shuffle=True, drop_last=True)
        resident_batches = cycle(resident)
        runs["resident"] = lambda: timed_steps(lambda: trainer.step(*next(resident_batches)), args.steps, batch,
                                               device)
    for _ in range(args.warmup):  # compile, allocator, cuDNN autotune, worker start-up
        trainer.step(x, y)
        trainer.step(*next(pil_batches))
    sync(device)
    results = interleaved(runs, args.repeats)
    return name, size, batch, flops, {k: median(v) for k, v in results.items()}


def report(row: tuple[str, int, int, int, dict], peak: float) -> str:
    name, size, batch, flops, rate = row
    achieved = flops * rate["step"] / batch
    bound = "DATA-BOUND (PIL loader alone slower than the step)" if rate["loader"] < rate["step"] else "compute-bound"
    return (f"{name:<10} {size:>4} {batch:>5} {flops / batch / 1e9:>12.3f} "
            + " ".join(f"{rate.get(k, float('nan')):>9.1f}" for k in ("step", "loader", "pil", "resident"))
            + f" {achieved / 1e9:>9.2f} {100 * achieved / peak:>7.1f}%  {bound}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32", choices=list(DTYPES),
                        help="32: fp32; bf16 / 16: autocast (16 with a GradScaler; 16 needs a GPU)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (warm-up steps compile)")
    parser.add_argument("--batch-size", type=int, default=None, help="32-px models (default: cpu 32, cuda 256)")
    parser.add_argument("--batch-size-224", type=int, default=None, help="224-px model (default: cpu 8, cuda 128)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default: cpu 3, cuda 30)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1; 3 with --compile)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats per mode (median)")
    parser.add_argument("--num-workers", type=int, default=2, help="PIL DataLoader workers")
    parser.add_argument("--models", default="cnn32,resnet32,resnet224")
    parser.add_argument("--matmul-n", type=int, default=None, help="reference matmul size (cpu 2048, cuda 8192)")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device visible")
    if args.precision == "16" and not cuda:
        parser.error("--precision 16 (float16 autocast + GradScaler) is GPU-only; on CPU use --precision bf16")
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
        rows = [bench_model(name, args, device) for name in args.models.split(",")]
    peaks.append(matmul_flops_per_s(device, dtype, n))
    peak = max(peaks)
    print(f"reference: {n}x{n} {str(dtype).replace('torch.', '')} matmul "
          f"{' / '.join(f'{p / 1e9:.1f}' for p in peaks)} GFLOP/s before / after the models; the best is 100%")
    print(f"{'model':<10} {'px':>4} {'batch':>5} {'GFLOP/image':>12} {'step':>9} {'loader':>9} {'pil':>9} "
          f"{'resident':>9} {'GFLOP/s':>9} {'of mm':>8}   (step..resident: images/s)")
    for row in rows:
        print(report(row, peak))
    print(f"total {time.perf_counter() - started:.0f} s; load average after: "
          f"{machine(device).split('load average ')[1].split(';')[0]}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
