"""Helpers shared by the speed benchmarks: machine description, device sync, interleaved timing."""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from typing import Callable

import torch


def sync(device: torch.device | str) -> None:
    """Wait for queued kernels: a CUDA timing without this measures the launch, not the work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def now(device: torch.device | str, clock: Callable[[], float] = time.perf_counter) -> float:
    """The time on `clock` once the device's queued work is done. `time.process_time` (CPU time of this process, all
    its threads) ignores the time other processes take the cores away: steadier on a shared machine, but blind to
    waits (disk, GPU), so only for CPU runs."""
    sync(device)
    return clock()


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def machine(device: torch.device | str) -> str:
    """One line: CPU, cores, threads torch uses, load average, GPU if used, torch version."""
    text = (f"CPU: {cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
            f"load average {load_average()}; torch {torch.__version__}")
    if torch.device(device).type == "cuda":
        text += f"; GPU: {torch.cuda.get_device_name()}"
    return text


def interleaved(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call every run once per repeat, rotating the order each repeat, so load changes on a shared machine hit
    every side alike. Each run returns its own measurement (e.g. seconds per epoch)."""
    names = list(runs)
    results: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            results[name].append(runs[name]())
    return results


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    return f"min {min(values):.3f} / median {median(values):.3f} / max {max(values):.3f}"
