"""Experiments: `python -m lightning_lab sweep ...` (a grid of LightningCLI runs on Ray Tune) and `... report`.

One straight line: grid + plan (grid.py, plan.py) -> train on Ray (sweep.py, cluster.py, trial.py; the book of
statuses: book.py) -> run.json records -> CSV (results.py), best models (best.py), report (stats.py, plots.py,
report.py).

    python -m lightning_lab sweep --config configs/cifar.yaml --grid configs/grids/cnn_ablation.yaml \\
        [--address HOST:PORT|auto] [--storage PATH|URI] [--cpus-per-run N] [--gpus-per-run F] \\
        [--workers-per-run W] [--max-concurrent K] [--scheduler asha] [--repeats N] [--retry-failed] \\
        [--results-dir results] [--dry-run] [-- --trainer.max_epochs 2 ...]
    python -m lightning_lab report [--results-dir results]
"""
from __future__ import annotations

import argparse
from typing import Sequence

from lightning_lab.paths import CHECKPOINT_ROOT, LOG_DIR, RESULTS_DIR

__all__ = ["main"]


def _sweep_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_lab sweep",
        description="Train every combination of a grid file as an ordinary `fit` run, each one a Ray Tune trial "
                    "(a local Ray on this machine, or a cluster with --address); each run writes its run.json, "
                    "from which <results-dir>/<dataset>.csv and checkpoints/best/ are derived.",
        epilog="Arguments after `--` are passed to every run, e.g. `-- --trainer.max_epochs 2`. The same command "
               "again continues the sweep: ok and stopped-early runs are skipped, interrupted and unfinished runs "
               "continue from their last checkpoint in their own folder, failed runs train again only with "
               "--retry-failed; scheduler, concurrency and resources are this command's. Ctrl-C stops cleanly "
               "(exit 130). Guide: docs/study.md.")
    parser.add_argument("--config", required=True, help="base config, e.g. configs/cifar.yaml")
    parser.add_argument("--grid", help="grid file (configs/grids/*.yaml); without it: one run of the config")
    parser.add_argument("--results-dir", default=RESULTS_DIR,
                        help="results and Ray's experiment folder (default: results)")
    parser.add_argument("--retry-failed", action="store_true", help="train again the runs recorded as failed")
    parser.add_argument("--dry-run", action="store_true", help="validate and list the runs, train nothing")
    parser.add_argument("--repeats", type=int, default=1, metavar="N",
                        help="train each combination with N seeds (seed_everything and the data seed)")
    parser.add_argument("--scheduler", choices=("fifo", "asha"), default="fifo",
                        help="asha: stop hopeless runs early on val/acc (Ray Tune's ASHA)")
    ray = parser.add_argument_group("Ray")
    ray.add_argument("--address", help="join a running Ray cluster (HOST:PORT or auto) instead of a local Ray")
    ray.add_argument("--storage", help="Ray's experiment storage: a shared folder or a URI (default: "
                                       "<results-dir>/ray)")
    ray.add_argument("--cpus-per-run", type=float, metavar="N", help="CPUs per run (default 1; on GPUs a share)")
    ray.add_argument("--gpus-per-run", type=float, metavar="F",
                     help="GPUs per run: 0.25 packs four runs on one GPU, 2 trains with DDP on two (default: 1 "
                          "where there are GPUs)")
    ray.add_argument("--workers-per-run", type=int, metavar="W", help="DDP workers per run (Ray Train)")
    ray.add_argument("--max-concurrent", type=int, metavar="K", help="at most K runs at a time")
    ray.add_argument("--num-cpus", type=int, help=argparse.SUPPRESS)  # local Ray's logical CPUs (tests)
    return parser


def _report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_lab report",
        description="Write <results-dir>/REPORT.md and plots from the sweep results.")
    parser.add_argument("--results-dir", default=RESULTS_DIR, help="default: results")
    parser.add_argument("--top", type=int, default=5, help="learning curves of the N best runs (default 5)")
    parser.add_argument("--log-root", action="append", metavar="DIR",
                        help=f"where the runs' logs and run.json records are (repeatable; default {LOG_DIR}: set it "
                             f"when the config's trainer.logger.init_args.save_dir is elsewhere)")
    parser.add_argument("--checkpoint-root", default=CHECKPOINT_ROOT, metavar="DIR",
                        help=f"where best models are kept (<DIR>/best/; default {CHECKPOINT_ROOT})")
    return parser


def main(argv: Sequence[str]) -> int:
    """`argv` starts with the command: ["sweep", ...] or ["report", ...]. Returns the exit status."""
    argv = list(argv)
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "sweep":
        extra: list[str] = []
        if "--" in rest:
            cut = rest.index("--")
            rest, extra = rest[:cut], rest[cut + 1:]
        args = _sweep_parser().parse_args(rest)
        from lightning_lab.experiments.sweep import SweepOptions, sweep

        options = SweepOptions(
            results_dir=args.results_dir, retry_failed=args.retry_failed, dry_run=args.dry_run,
            repeats=args.repeats, address=args.address, storage=args.storage, cpus_per_run=args.cpus_per_run,
            gpus_per_run=args.gpus_per_run, workers_per_run=args.workers_per_run,
            max_concurrent=args.max_concurrent, scheduler=args.scheduler, num_cpus=args.num_cpus)
        return sweep(args.config, args.grid, extra, options)
    if command == "report":
        args = _report_parser().parse_args(rest)
        from lightning_lab.experiments.report import write_report

        path = write_report(args.results_dir, log_root=args.log_root or LOG_DIR, top=args.top,
                            checkpoint_root=args.checkpoint_root)
        print(f"report: {path}")
        return 0
    raise SystemExit(f"usage: python -m lightning_lab {{sweep,report}} ... (got {command!r})")
