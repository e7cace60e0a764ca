"""Sweep packing: the same grid of digits runs, once one at a time with every core, once packed (one core per
run, side by side), in one invocation; prints both study wall times and their ratio (goal on 2 cores: <= 0.75x).

    python benchmarks/sweep_packing.py                 # 6 runs x 10 epochs (realistic length)
    python benchmarks/sweep_packing.py --epochs 1 --limit-batches 4   # a smoke run
    python benchmarks/sweep_packing.py --gpus-per-run 0.25            # on a GPU: four runs per GPU vs one

Each study runs in a fresh scratch folder (nothing is skipped as already finished) through the normal
`python -m lightning_lab sweep` command, so Ray's start-up is part of both times.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
GRID = {"grid": {
    "model.net.init_args.activation": ["relu", "tanh", "leaky_relu"],
    "model.optimizer": [{"class_path": "torch.optim.SGD", "init_args": {"lr": 0.05, "momentum": 0.9}},
                        {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.002}}],
}}


def study(workdir: Path, placement: list[str], extra: list[str]) -> float:
    """Wall time of one whole sweep (a new local Ray included)."""
    grid = workdir / "grid.yaml"
    grid.write_text(yaml.safe_dump(GRID))
    command = [sys.executable, "-m", "lightning_lab", "sweep", "--config", "configs/digits.yaml", "--grid",
               str(grid), *placement, "--", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"sweep failed ({' '.join(placement)}):\n{done.stderr[-3000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit-batches", type=int, default=None, help="batches per epoch (smoke runs)")
    parser.add_argument("--gpus-per-run", type=float, default=None, help="packed study on GPUs: e.g. 0.25")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    extra = ["--trainer.max_epochs", str(args.epochs), "--trainer.enable_progress_bar", "false",
             "--trainer.enable_model_summary", "false"]
    if args.limit_batches:
        extra += [f"--trainer.limit_{stage}_batches={args.limit_batches}" for stage in ("train", "val", "test")]
    if args.gpus_per_run:
        serial, packed = ["--gpus-per-run", "1", "--max-concurrent", "1"], ["--gpus-per-run", str(args.gpus_per_run)]
        label = f"one run per GPU vs {1 / args.gpus_per_run:g} per GPU"
    else:
        serial = ["--cpus-per-run", str(cores), "--max-concurrent", "1", "--gpus-per-run", "0"]
        packed = ["--cpus-per-run", "1", "--gpus-per-run", "0"]
        label = f"one at a time on {cores} cores vs {cores} side by side on one core each"
    runs = len(GRID["grid"]["model.net.init_args.activation"]) * len(GRID["grid"]["model.optimizer"])
    print(f"sweep packing: {runs} digits runs x {args.epochs} epochs; {label}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sweep-serial-") as one, \
            tempfile.TemporaryDirectory(prefix="sweep-packed-") as two:
        serial_s = study(Path(one), serial, extra)
        print(f"  one at a time: {serial_s:7.1f} s", flush=True)
        packed_s = study(Path(two), packed, extra)
        print(f"  packed       : {packed_s:7.1f} s", flush=True)
    print(f"  ratio packed/one-at-a-time: {packed_s / serial_s:.2f}x "
          f"(goal: <= {0.5 if args.gpus_per_run else 0.75}x)")


if __name__ == "__main__":
    main()
