"""Count host reads of tensor values (`.item()`, `float(t)`, `bool(t)`, `.tolist()`, ...): on a GPU each is a sync.

A diagnostic that wraps public methods: while a `HostReads` is active, the value-reading methods of `torch.Tensor`
(`READ_METHODS`) are replaced by thin wrappers that count the call and where it came from before calling the
original; when the last active counter stops they are restored exactly (the class attributes are back to what they
were, inherited or not). It costs a few microseconds per read: use it to find reads, not to time runs. Reads made
through `__format__` (f-strings) and `numpy.asarray` count too (they call `item` / `numpy`); printing a tensor does
not. Syncs inside torch ops that never hand a value to Python (`torch.unique`, `nonzero`, boolean-mask indexing,
`.cpu()` of a CUDA tensor) are invisible here: on a GPU, `torch.cuda.set_sync_debug_mode("warn")` reports those.
Counts do not depend on the device, so a CPU run shows what would sync on a GPU.

    with HostReads() as reads:
        train_one_step()
    print(reads.total, reads.by_kind, reads.report())

    counter = HostReadCounter()                 # counts during fit, per training step
    L.Trainer(callbacks=[counter]).fit(model, datamodule)
    print(counter.report())
"""
from __future__ import annotations

import functools
import inspect
import os
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

# Each of these hands a tensor's value to Python: on an accelerator the host first waits for the device.
READ_METHODS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "__complex__")
# Code that reads CPU-only tensors on any device (see HostReads); matched against the reading frame's path.
HOST_ONLY_SITES = ("torch/optim/", "torch/utils/data/")

_active: list["HostReads"] = []
_originals: dict[str, tuple[bool, Any]] = {}  # name -> (defined on torch.Tensor itself?, its value there)
_lock = threading.RLock()
_reading = threading.local()  # a read inside a read (e.g. a subclass's item calling float) counts once
_THIS_FILE = os.path.normcase(os.path.abspath(__file__))
# torch/_tensor.py: Tensor.__format__ / __array__ read through item / numpy; their caller is the interesting frame.
_SKIP_FILES = (_THIS_FILE, os.path.normcase(os.path.abspath(torch.Tensor.__format__.__code__.co_filename)))


def _where(frame: Any, depth: int) -> tuple[str, ...]:
    """`depth` caller frames as 'path:line (function)', innermost first, skipping this module and torch/_tensor.py."""
    out: list[str] = []
    while frame is not None and len(out) < depth:
        filename = os.path.normcase(os.path.abspath(frame.f_code.co_filename))
        if filename not in _SKIP_FILES:
            path = _short_path(frame.f_code.co_filename).replace(os.sep, "/")
            out.append(f"{path}:{frame.f_lineno} ({frame.f_code.co_name})")
        frame = frame.f_back
    return tuple(out)


def _short_path(path: str) -> str:
    """site-packages/x/y.py -> x/y.py; a path under the working directory -> relative."""
    marker = "site-packages" + os.sep
    if marker in path:
        return path.split(marker, 1)[1]
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if rel.startswith("..") else rel


def _wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def read(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if not _active or getattr(_reading, "inside", False):
            return original(self, *args, **kwargs)
        _reading.inside = True
        try:
            frame = inspect.currentframe()
            caller = frame.f_back if frame is not None else None
            for counter in list(_active):
                counter._record(name, self, caller)
            del frame, caller
            return original(self, *args, **kwargs)
        finally:
            _reading.inside = False

    return read


def _install() -> None:
    for name in READ_METHODS:
        own = name in torch.Tensor.__dict__
        original = getattr(torch.Tensor, name)
        _originals[name] = (own, torch.Tensor.__dict__.get(name))
        setattr(torch.Tensor, name, _wrap(name, original))


def _uninstall() -> None:
    for name, (own, value) in _originals.items():
        if own:
            setattr(torch.Tensor, name, value)
        else:
            delattr(torch.Tensor, name)  # the inherited torch._C.TensorBase method shows through again
    _originals.clear()


class HostReads:
    """Context manager counting host reads of tensor values while active (nestable).

    Reads of CPU tensors made directly by code under `host_only` (default: torch.optim, whose Adam/SGD `step`
    counters live on the CPU unless `capturable`/`fused`, and torch.utils.data, whose samplers draw seeds and
    permutations on the CPU) are host-side bookkeeping on any device: they are counted apart (`host_only_total`,
    `host_only_sources`), not in `total`.

    Attributes: `total`, `by_kind` (Counter of method names), `by_device` (Counter of the read tensors' device
    types), `sources` (Counter of (method, frame, caller frame, ...) with `depth` frames, innermost first)."""

    def __init__(self, depth: int = 3, host_only: Sequence[str] = HOST_ONLY_SITES,
                 on_read: Callable[[tuple[str, ...]], None] | None = None) -> None:
        self.depth = max(1, depth)
        self.host_only = tuple(host_only)
        self.on_read = on_read
        self.total = 0
        self.by_kind: Counter[str] = Counter()
        self.by_device: Counter[str] = Counter()
        self.sources: Counter[tuple[str, ...]] = Counter()
        self.host_only_total = 0
        self.host_only_sources: Counter[tuple[str, ...]] = Counter()

    @property
    def active(self) -> bool:
        return self in _active

    def start(self) -> "HostReads":
        with _lock:
            if self in _active:
                return self
            if not _active:
                _install()
            _active.append(self)
        return self

    def stop(self) -> None:
        with _lock:
            if self not in _active:
                return
            _active.remove(self)
            if not _active:
                _uninstall()

    def __enter__(self) -> "HostReads":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, kind: str, tensor: torch.Tensor, caller: Any) -> None:
        source = (kind, *_where(caller, self.depth))
        if tensor.device.type == "cpu" and len(source) > 1 and any(site in source[1] for site in self.host_only):
            self.host_only_total += 1
            self.host_only_sources[source] += 1
            return
        self.total += 1
        self.by_kind[kind] += 1
        self.by_device[tensor.device.type] += 1
        self.sources[source] += 1
        if self.on_read is not None:
            self.on_read(source)

    def report(self, n: int = 10) -> str:
        """Total, per method and the top call sites, one per line (each site's callers indented below it)."""
        kinds = ", ".join(f"{k} {v}" for k, v in self.by_kind.most_common())
        lines = [f"{self.total} host reads ({kinds or 'none'}); {self.host_only_total} more of host-only tensors "
                 f"(torch.optim step counters, data samplers: no device sync)"]
        lines.append(format_sources(self.sources, n))
        return "\n".join(lines)


def format_sources(sources: Counter[tuple[str, ...]], n: int = 10, per: float = 1.0, indent: str = "  ") -> str:
    """The `n` most frequent call sites, each with its callers indented below it; counts divided by `per`."""
    lines = []
    for (kind, *frames), count in sources.most_common(n):
        number = f"{count / per:.2f}" if per != 1.0 else str(count)
        lines.append(f"{indent}{number:>6}  {kind:<11} {frames[0] if frames else '?'}")
        lines += [f"{indent}{'':>6}  {'':<11}   <- {frame}" for frame in frames[1:]]
    return "\n".join(lines)


@dataclass
class StepReads:
    """Reads counted from one training batch's start to the next batch (or the next non-batch phase)."""

    global_step: int
    epoch: int
    batch_idx: int
    reads: int = 0
    log_step: bool = False  # the logger connector writes step metrics to the loggers after this batch
    refresh_step: bool = False  # the progress bar refreshes (and reads its metrics) after this batch
    epoch_end: bool = False  # the last batch of the epoch

    @property
    def ordinary(self) -> bool:
        return not (self.log_step or self.refresh_step or self.epoch_end)


class HostReadCounter(Callback):
    """Counts host reads of tensor values during `fit` (every callback, progress bar and logger included) per
    training step. `steps` holds one `StepReads` per training batch: the reads from its `on_train_batch_start`
    to the next batch, its progress-bar refresh and step logging included. `outside` counts the reads in the
    sanity check, validation and between epochs. "Ordinary" steps are those that neither log
    (`log_every_n_steps`), nor refresh the progress bar (its `refresh_rate`), nor end an epoch: on a GPU every
    read there is a device sync that nothing asked for. `verbose=True` prints `report()` after fit.

        PYTHONPATH=benchmarks python -m lightning_lab fit --config configs/digits.yaml \\
            --trainer.callbacks+=host_reads.HostReadCounter --trainer.callbacks.verbose=true
    """

    def __init__(self, depth: int = 3, verbose: bool = False, host_only: Sequence[str] = HOST_ONLY_SITES) -> None:
        self.reads = HostReads(depth, host_only, on_read=self._count)
        self.verbose = verbose
        self.steps: list[StepReads] = []
        self.outside = 0
        # call sites of the reads on ordinary steps, on logging/refresh/epoch-end steps, and outside steps
        self.sources: dict[str, Counter[tuple[str, ...]]] = {"ordinary": Counter(), "special": Counter(),
                                                             "outside": Counter()}
        self._current: StepReads | None = None
        self._current_sources: Counter[tuple[str, ...]] = Counter()

    # -- what the counts say --------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return self.reads.total

    @property
    def per_step(self) -> float:
        """All reads during fit / training steps."""
        return self.reads.total / max(1, len(self.steps))

    @property
    def ordinary_steps(self) -> list[StepReads]:
        return [s for s in self.steps if s.ordinary]

    @property
    def ordinary_reads(self) -> int:
        return sum(s.reads for s in self.ordinary_steps)

    def report(self, n: int = 8) -> str:
        """Reads per step, split into ordinary / logging-refresh-epoch-end steps / outside, and their top sources."""
        ordinary = self.ordinary_steps
        special = [s for s in self.steps if not s.ordinary]
        lines = [f"host reads during fit: {self.total} over {len(self.steps)} training steps = {self.per_step:.2f} "
                 f"per step; {self.ordinary_reads} on {len(ordinary)} ordinary steps, "
                 f"{sum(s.reads for s in special)} on {len(special)} logging/refresh/epoch-end steps, "
                 f"{self.outside} outside training steps (sanity check, validation, between epochs); "
                 f"{self.reads.host_only_total} more of host-only tensors (torch.optim step counters, samplers)"]
        for name, steps, title in (("ordinary", ordinary, "per ordinary step"),
                                   ("special", special, "per logging/refresh/epoch-end step"),
                                   ("outside", None, "outside training steps, in all")):
            if self.sources[name]:
                per = max(1, len(steps)) if steps is not None else 1.0
                lines.append(f" {title}:")
                lines.append(format_sources(self.sources[name], n, per=float(per)))
        return "\n".join(lines)

    # -- hooks ----------------------------------------------------------------------------------------------
    def _count(self, source: tuple[str, ...]) -> None:
        if self._current is not None:
            self._current.reads += 1
            self._current_sources[source] += 1
        else:
            self.outside += 1
            self.sources["outside"][source] += 1

    def _close_step(self) -> None:
        if self._current is not None:
            self.sources["ordinary" if self._current.ordinary else "special"].update(self._current_sources)
        self._current = None
        self._current_sources = Counter()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.reads.start()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._close_step()
        n = trainer.log_every_n_steps
        bar = trainer.progress_bar_callback
        rate = getattr(bar, "refresh_rate", 1) if bar is not None and bar.is_enabled else 0
        batches = trainer.num_training_batches
        self._current = StepReads(
            global_step=trainer.global_step, epoch=trainer.current_epoch, batch_idx=batch_idx,
            # Lightning logs after the step when (batches that stepped + 1) % log_every_n_steps == 0
            log_step=n > 0 and (trainer.global_step + 1) % n == 0,
            refresh_step=rate > 0 and (batch_idx + 1) % rate == 0,
            epoch_end=isinstance(batches, int) and batch_idx + 1 == batches)
        self.steps.append(self._current)

    def _between_steps(self, *args: Any, **kwargs: Any) -> None:
        self._close_step()

    on_train_epoch_start = on_train_epoch_end = on_validation_start = on_train_end = _between_steps

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close_step()
        self.reads.stop()
        if self.verbose and trainer.is_global_zero:
            print(self.report())

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._close_step()
        self.reads.stop()
