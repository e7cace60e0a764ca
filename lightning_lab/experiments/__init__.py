"""Experiments: `python -m lightning_lab sweep ...` (grid of LightningCLI runs) and `... report` (REPORT.md).

    python -m lightning_lab sweep --config configs/cifar.yaml --grid configs/grids/cnn_ablation.yaml \\
        [--shard 2/8] [--results-dir results] [--retry-failed] [--dry-run] [--isolate] \\
        [-- --trainer.max_epochs 2 ...]
    python -m lightning_lab report [--results-dir results]
"""
from __future__ import annotations

import argparse
from typing import Sequence

from lightning_lab.experiments.results import DEFAULT_RESULTS_DIR

__all__ = ["main"]


def _sweep_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_lab sweep",
        description="Run every combination of a grid file as an ordinary `fit` run; record each in "
                    "<results-dir>/<dataset>.csv and keep the best model per dataset in checkpoints/best/.",
        epilog="Arguments after `--` are passed to every run, e.g. `-- --trainer.max_epochs 2`. Finished runs "
               "(found in the CSV) are skipped; an interrupted run resumes from its last.ckpt.")
    parser.add_argument("--config", required=True, help="base config, e.g. configs/cifar.yaml")
    parser.add_argument("--grid", help="grid file (configs/grids/*.yaml); without it: one run of the config")
    parser.add_argument("--shard", metavar="I/N", help="run only shard I of N (deterministic, no overlap)")
    parser.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR, help="where the CSVs go (default: results)")
    parser.add_argument("--retry-failed", action="store_true", help="run again the runs recorded as failed")
    parser.add_argument("--dry-run", action="store_true", help="validate and list the runs, train nothing")
    parser.add_argument("--isolate", action="store_true",
                        help="train each run in its own process (survives crashes; automatic for multi-device "
                             "runs, whose DDP ranks re-run the process)")
    return parser


def _report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_lab report",
        description="Write <results-dir>/REPORT.md and plots from the sweep results.")
    parser.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR, help="default: results")
    parser.add_argument("--top", type=int, default=5, help="learning curves of the N best runs (default 5)")
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
        from lightning_lab.experiments.sweep import sweep

        return sweep(args.config, args.grid, args.shard, args.results_dir, extra, args.retry_failed, args.dry_run,
                     args.isolate)
    if command == "report":
        args = _report_parser().parse_args(rest)
        from lightning_lab.experiments.report import write_report

        path = write_report(args.results_dir, top=args.top)
        print(f"report: {path}")
        return 0
    raise SystemExit(f"usage: python -m lightning_lab {{sweep,report}} ... (got {command!r})")
