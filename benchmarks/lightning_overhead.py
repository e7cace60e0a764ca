"""What does Lightning (and our classifier module on top) cost over a plain PyTorch loop?

The same network, the same in-memory data, the same batches in the same order, the same seed, the same
optimizer: trained by our classifier module + `lightning.Trainer` and by a hand-written loop. Reported per variant:
seconds per epoch (epoch start to next epoch start, so epoch-end work such as checkpointing counts; the first
epoch is dropped as warm-up) and the whole `fit` wall time per epoch (Trainer construction and setup included).

Variants, run interleaved (the order rotates every repeat, so load on a shared machine hits all alike):
  plain  - the PyTorch loop: forward, cross-entropy, zero_grad, backward, step. Nothing else.
  loop   - Lightning's loop alone: a minimal LightningModule (same network, training_step = forward + loss,
           no metrics, no self.log) with the 'bare' Trainer. loop - plain = Lightning's own cost.
  bare   - our classifier module (metrics, logging, checks) with logger, checkpointing, progress bar and model
           summary off. bare - loop = the cost of our module.
  users  - Lightning as users run it: TensorBoard logger, a checkpoint every epoch, progress bar (to /dev/null),
           model summary.
No validation in any variant (the plain loop has none). The final training loss of each variant is printed:
identical numbers show the runs did the same steps.

Two modes:
  default  - MNIST-shaped images, the ParametricCNN, batch 64 (goal: every variant within 3% of plain).
  --tiny   - negligible compute (a 16-16-10 MLP on 16 features, batch 8, ~0.3 ms per plain step here), so what is
             left is the loop's own cost per step (goal: `users` within +1.0 ms/step of plain).
Host reads of tensor values (`host_reads.HostReadCounter`, beside this script: `.item()`, `float()`, `bool()`, ... each
a device sync on a GPU) are counted per training step in one extra, untimed run of each Lightning variant
(goal: no reads on ordinary steps, at most one per 5 steps on average); `--sources` prints where they come from.

    python benchmarks/lightning_overhead.py --tiny               # the loop's own cost and host reads, ~1 minute
    python benchmarks/lightning_overhead.py                      # MNIST-shaped, CPU
    python benchmarks/lightning_overhead.py --device cuda --n 16384 --batch-size 256
    python benchmarks/lightning_overhead.py --profile            # cProfile of one 'users' run vs 'plain'
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import cProfile
import io
import logging
import os
import pstats
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lightning as L  # noqa: E402
from lightning.pytorch.callbacks import Callback, ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402

from _common import interleaved, machine, median, now as device_now, spread  # noqa: E402
from lightning.pytorch.callbacks import TQDMProgressBar  # noqa: E402
from lightning_lab.cli import PROGRESS_REFRESH_STEPS  # noqa: E402
from lightning_lab import models  # noqa: E402
from host_reads import HostReadCounter  # noqa: E402

SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32), "tiny": (16,)}
CHANNELS = (32, 64)
HIDDEN = (128,)
TINY_HIDDEN = (16,)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]  # set by --clock


def now(device: torch.device) -> float:
    return device_now(device, clock)


def our_module(shape: tuple[int, ...]) -> L.LightningModule:
    """Our classifier as a config builds it: the CNN for images, a 16-wide MLP for the tiny features."""
    tiny = len(shape) == 1
    net = (functools.partial(models.MLP, hidden=TINY_HIDDEN) if tiny
           else functools.partial(models.ParametricCNN, channels=CHANNELS, hidden=HIDDEN))
    return models.Classifier(net=net, num_classes=10, input_shape=shape, channels_last=False, compile=False)


def make_data(n: int, shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable synthetic images (or feature vectors): a fixed random prototype per class plus noise."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(10, *shape, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    x = prototypes[y] + 1.5 * torch.randn(n, *shape, generator=g)
    return x, y


def make_loader(data: tuple[torch.Tensor, torch.Tensor], batch_size: int, seed: int) -> DataLoader:
    """Shuffled by (seed, epoch) only: Lightning calls ``sampler.set_epoch`` each epoch, the plain loop does too.
    (A ``generator=`` loader would not do: Lightning draws from it an extra time between epochs, so the orders
    would drift apart after epoch 1.)"""
    dataset = TensorDataset(*data)
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler)


class EpochClock(Callback):
    """Times from each train-epoch start to the next (epoch-end callbacks such as checkpointing included)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.marks: list[float] = []
        self.last_loss = float("nan")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.marks.append(now(self.device))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[override]
        self.loss = outputs["loss"]

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.marks.append(now(self.device))
        self.last_loss = float(self.loss.detach())


def epoch_seconds(marks: list[float]) -> float:
    """Median epoch time without the first (warm-up) epoch."""
    deltas = [b - a for a, b in zip(marks, marks[1:])]
    return median(deltas[1:] if len(deltas) > 1 else deltas)


def run_plain(args: argparse.Namespace, data: tuple[torch.Tensor, torch.Tensor],
              device: torch.device) -> tuple[float, float, float]:
    start = now(device)
    L.seed_everything(args.seed, verbose=False)
    net = our_module(SHAPES[args.shape]).net.to(device)  # the same initial weights as the Lightning variants
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = make_loader(data, args.batch_size, args.seed)
    net.train()
    marks = []
    loss = torch.tensor(float("nan"))
    for epoch in range(args.epochs):
        marks.append(now(device))
        loader.sampler.set_epoch(epoch)
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    marks.append(now(device))
    return epoch_seconds(marks), (marks[-1] - start) / args.epochs, float(loss.detach())


class MinimalModule(L.LightningModule):
    """The least a LightningModule can be: Lightning's loop cost without anything of ours."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.net = our_module(shape).net

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def run_lightning(args: argparse.Namespace, data: tuple[torch.Tensor, torch.Tensor], device: torch.device,
                  as_users: bool, minimal: bool = False,
                  counter: HostReadCounter | None = None) -> tuple[float, float, float]:
    start = now(device)
    L.seed_everything(args.seed, verbose=False)
    model = MinimalModule(SHAPES[args.shape]) if minimal else our_module(SHAPES[args.shape])
    clock = EpochClock(device)
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as devnull, \
            contextlib.redirect_stderr(devnull), contextlib.redirect_stdout(devnull), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        common = dict(max_epochs=args.epochs, accelerator=device.type, devices=1, num_sanity_val_steps=0,
                      limit_val_batches=0, callbacks=[clock] + ([counter] if counter else []), default_root_dir=tmp,
                      log_every_n_steps=args.log_every_n_steps)
        if as_users:
            # One ModelCheckpoint, as the CLI has (given here, Lightning adds no default one): with no validation
            # it writes the epoch's checkpoint and last.ckpt, the CLI's most per epoch.
            common["callbacks"] += [TQDMProgressBar(refresh_rate=args.refresh_rate),
                                    ModelCheckpoint(dirpath=tmp, save_last=True)]
            trainer = L.Trainer(logger=TensorBoardLogger(tmp, name="bench"), enable_progress_bar=True,
                                enable_model_summary=True, **common)
        else:
            trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, **common)
        trainer.fit(model, train_dataloaders=make_loader(data, args.batch_size, args.seed))
    end = now(device)
    return epoch_seconds(clock.marks), (end - start) / args.epochs, clock.last_loss


def profile(args: argparse.Namespace, data: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> None:
    for name, fn in (("plain", lambda: run_plain(args, data, device)),
                     ("users", lambda: run_lightning(args, data, device, as_users=True))):
        profiler = cProfile.Profile(clock)
        profiler.enable()
        fn()
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
        stats.print_stats(25)
        print(f"===== cProfile, {name} (top 25 by own time) =====")
        print("\n".join(out.getvalue().splitlines()[:60]))


def count_reads(args: argparse.Namespace, data: tuple[torch.Tensor, torch.Tensor],
                device: torch.device) -> dict[str, HostReadCounter]:
    """One untimed run of each Lightning variant with the host-read counter (it slows reads down a little)."""
    counters = {}
    for name, kwargs in (("loop", dict(as_users=False, minimal=True)), ("bare", dict(as_users=False)),
                         ("users", dict(as_users=True))):
        counters[name] = HostReadCounter(depth=args.source_depth)
        run_lightning(args, data, device, counter=counters[name], **kwargs)
    return counters


def print_reads(counters: dict[str, HostReadCounter], sources: bool) -> None:
    print("host reads of tensor values per training step (goal: 0 on ordinary steps, <= 0.20 on average; "
          "'ordinary' = no logging, no progress-bar refresh, not an epoch's last batch):")
    print(f"{'variant':<7} {'steps':>6} {'per step':>9} {'on steps':>9} {'ordinary':>9} {'between':>8} "
          f"{'host-only':>9}")
    for name, c in counters.items():
        steps = len(c.steps)
        on_steps = sum(s.reads for s in c.steps) / max(1, steps)
        ordinary = c.ordinary_reads / max(1, len(c.ordinary_steps))
        print(f"{name:<7} {steps:>6} {c.per_step:>9.2f} {on_steps:>9.2f} {ordinary:>9.2f} {c.outside:>8} "
              f"{c.reads.host_only_total / max(1, steps):>9.2f}")
    print("  per step = all reads during fit / steps; on steps = reads inside training-step windows / steps; "
          "ordinary = reads per ordinary step;\n  between = reads between steps in all (epoch ends, checkpoints); "
          "host-only = reads of CPU-only tensors per step (torch.optim step counters, samplers): no sync")
    if sources:
        for name, c in counters.items():
            print(f"===== {name}: where the reads come from =====")
            print(c.report(8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tiny", action="store_true",
                        help="negligible compute: a 16-16-10 MLP on 16 features, batch 8: the loop's own cost")
    parser.add_argument("--shape", default=None, choices=["mnist", "cifar"], help="image shape (default mnist)")
    parser.add_argument("--n", type=int, default=None, help="training samples (default 2048; --tiny 800)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 64; --tiny 8")
    parser.add_argument("--epochs", type=int, default=None,
                        help="per run; the first is dropped as warm-up (default 4; --tiny 3)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved repeats per variant, median (default 5; --tiny 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a shared 2-core machine more threads make the timing "
                             "swing with other users' load; 0 keeps torch's default)")
    parser.add_argument("--refresh-rate", type=int, default=PROGRESS_REFRESH_STEPS,
                        help=f"progress-bar refresh every N steps in 'users' (default {PROGRESS_REFRESH_STEPS}, as "
                             f"python -m lightning_lab runs it)")
    parser.add_argument("--log-every-n-steps", type=int, default=50, help="Trainer's log_every_n_steps (default 50)")
    parser.add_argument("--count-reads", action=argparse.BooleanOptionalAction, default=None,
                        help="count host reads per step in one extra run per Lightning variant (default: with --tiny)")
    parser.add_argument("--sources", action="store_true", help="print where the host reads come from")
    parser.add_argument("--source-depth", type=int, default=3, help="frames shown per read site (with --sources)")
    parser.add_argument("--clock", choices=list(CLOCKS), default=None,
                        help="wall: elapsed time (default on cuda); cpu: this process's CPU time, all threads "
                             "(default on cpu: other processes' load on a shared machine does not count, disk "
                             "waits such as checkpoint writes do not count either)")
    parser.add_argument("--profile", action="store_true", help="cProfile one 'plain' and one 'users' run")
    args = parser.parse_args()
    mode = dict(shape="tiny", n=800, batch_size=8, epochs=3, repeats=3) if args.tiny else \
        dict(shape="mnist", n=2048, batch_size=64, epochs=4, repeats=5)
    if args.tiny and args.shape:
        parser.error("--tiny has its own input shape")
    for key, value in mode.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.count_reads is None:
        args.count_reads = args.tiny or args.sources
    device = torch.device(args.device)
    global clock
    args.clock = args.clock or ("cpu" if device.type == "cpu" else "wall")
    clock = CLOCKS[args.clock]
    for name in ("lightning.pytorch", "lightning.fabric"):  # keep the model summary / tips off the report
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    data = make_data(args.n, SHAPES[args.shape], args.seed)
    steps = -(-args.n // args.batch_size)
    print(machine(device))
    net = (f"MLP hidden={list(TINY_HIDDEN)}" if args.tiny
           else f"ParametricCNN channels={list(CHANNELS)} hidden={list(HIDDEN)}")
    print(f"{net}, {args.shape}-shaped {SHAPES[args.shape]}, {args.n} samples, batch {args.batch_size} ({steps} "
          f"steps/epoch), {args.epochs} epochs x {args.repeats} repeats, device {device}; 'users': progress bar "
          f"refresh every {args.refresh_rate} steps, log_every_n_steps {args.log_every_n_steps}; {args.clock} clock")
    if args.profile:
        profile(args, data, device)
        return

    losses: dict[str, float] = {}
    fit_times: dict[str, list[float]] = {"plain": [], "loop": [], "bare": [], "users": []}

    def measured(name: str, fn) -> float:
        def run() -> float:
            epoch, fit, loss = fn()
            fit_times[name].append(fit)
            losses[name] = loss
            return epoch
        return run

    run_plain(args, data, device)  # warm-up (allocator, kernels, imports) outside the measurement
    started = time.perf_counter()
    results = interleaved({
        "plain": measured("plain", lambda: run_plain(args, data, device)),
        "loop": measured("loop", lambda: run_lightning(args, data, device, as_users=False, minimal=True)),
        "bare": measured("bare", lambda: run_lightning(args, data, device, as_users=False)),
        "users": measured("users", lambda: run_lightning(args, data, device, as_users=True)),
    }, args.repeats)
    base = median(results["plain"])
    base_fit = median(fit_times["plain"])
    print(f"{'variant':<7} {'s/epoch':>8} {'ms/step':>8} {'min':>7} {'vs plain':>9} {'paired':>8} {'fit s/epoch':>12} "
          f"{'vs plain':>9} {'final loss':>11}   s/epoch over repeats")
    for name, values in results.items():
        epoch, fit = median(values), median(fit_times[name])
        # paired: median over repeats of (this variant / plain in the same repeat), robust to slow load drifts
        paired = median([v / p for v, p in zip(values, results["plain"])])
        print(f"{name:<7} {epoch:>8.4f} {1000 * epoch / steps:>8.3f} {1000 * min(values) / steps:>7.3f} "
              f"{100 * (epoch / base - 1):>+8.1f}% {100 * (paired - 1):>+7.1f}% {fit:>12.4f} "
              f"{100 * (fit / base_fit - 1):>+8.1f}% {losses[name]:>11.6f}   {spread(values)}")
    # Other processes only ever add time: the fastest repeat is the least disturbed one (min), the median the typical.
    extra = {name: 1000 * (median(results[name]) - base) / steps for name in ("loop", "bare", "users")}
    extra_min = {name: 1000 * (min(results[name]) - min(results["plain"])) / steps
                 for name in ("loop", "bare", "users")}
    print(f"per step (median / fastest repeat): plain {1000 * base / steps:.3f} / "
          f"{1000 * min(results['plain']) / steps:.3f} ms; extra over plain: "
          f"loop {extra['loop']:+.3f} / {extra_min['loop']:+.3f} ms (Lightning), "
          f"bare {extra['bare']:+.3f} / {extra_min['bare']:+.3f} ms (+ our module), "
          f"users {extra['users']:+.3f} / {extra_min['users']:+.3f} ms (+ logger, checkpoints, progress bar)")
    if args.tiny:
        print(f"goal: users within +1.0 ms/step of plain: {extra['users']:+.3f} ms median, "
              f"{extra_min['users']:+.3f} ms fastest repeat [{'met' if extra['users'] <= 1.0 else 'NOT met'}]")
    else:
        ratio, ratio_min = median(results["users"]) / base - 1, min(results["users"]) / min(results["plain"]) - 1
        print(f"goal: users within 3% of plain: {100 * ratio:+.1f}% median, {100 * ratio_min:+.1f}% "
              f"fastest repeat [{'met' if ratio <= 0.03 else 'NOT met'}]")
    if args.count_reads:
        print_reads(count_reads(args, data, device), args.sources)
    print(f"total {time.perf_counter() - started:.0f} s; "
          f"load average after: {machine(device).split('load average ')[1]}")


if __name__ == "__main__":
    main()
