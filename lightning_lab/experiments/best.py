"""checkpoints/best/<dataset>/<kind>/: the best run of each model kind (cnn, resnet18, mlp, ...) per dataset.

API::

    promote_best(runs: Sequence[dict], checkpoint_root: str | Path = "checkpoints") -> dict[tuple[str, str], Path]
        for each (dataset, kind) among `runs` (records from results.load_runs), copy the run with the highest
        val/acc among those with status ok into the folder, unless it is already there or the folder holds
        a better run that is not among `runs`; {(dataset, kind): folder} of the folders (re)written.
    best_of(runs: Sequence[dict]) -> dict[tuple[str, str], dict]      the chosen run per (dataset, kind)
    read_best(checkpoint_root, dataset, kind) -> dict | None          the folder's best.json
    best_dir(checkpoint_root, dataset, kind) -> Path
    recover(folder: Path) -> None           undo a promotion killed between its renames (promote_best calls it)

The folder holds ``model.ckpt`` (the Lightning checkpoint), ``best_weights.pt`` (plain state dict of the bare
network, when the run wrote one), ``config.yaml`` (the run's full config) and ``best.json`` (the run's
record, plus which files were copied from where). The choice is on val/acc only, never on test accuracy; ties
go to the run that finished first. The folder is replaced by renaming a fully written sibling into place; a
promotion killed between its renames is undone by the next one (`recover`).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import yaml

from lightning_lab.experiments.results import metric
from lightning_lab.paths import BEST_MODEL_NAME as CHECKPOINT_NAME
from lightning_lab.paths import BEST_WEIGHTS_NAME as WEIGHTS_NAME
from lightning_lab.paths import CHECKPOINT_ROOT, CONFIG_NAME

BEST_DIR = "best"
INFO_NAME = "best.json"
DERIVED_KEYS = ("path", "dataset", "kind", "sweep")  # added by results.load_runs, not part of the record


def best_dir(checkpoint_root: str | os.PathLike, dataset: str, kind: str) -> Path:
    return Path(checkpoint_root) / BEST_DIR / dataset / kind


def read_best(checkpoint_root: str | os.PathLike, dataset: str, kind: str) -> dict[str, Any] | None:
    try:
        data = json.loads((best_dir(checkpoint_root, dataset, kind) / INFO_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _selectable(run: dict[str, Any]) -> bool:
    return (run.get("status") == "ok" and metric(run, "val/acc") is not None
            and bool(run.get("checkpoint")) and Path(run["checkpoint"]).is_file())


def selection_order(run: dict[str, Any]) -> tuple:
    """How runs rank for the best model: the highest val/acc first, a tie to the run that finished first (never
    test/acc). The report ranks its tables the same way."""
    val = metric(run, "val/acc")
    return (val is None, -(val or 0.0), str(run.get("finished_at") or ""), run["run_id"])


def best_of(runs: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The run with the highest val/acc per (dataset, kind), among finished (ok) runs with a checkpoint."""
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    ordered = sorted((r for r in runs if _selectable(r)), key=selection_order)
    for run in ordered:
        chosen.setdefault((run["dataset"], run["kind"]), run)
    return chosen


def promote_best(runs: Sequence[dict[str, Any]],
                 checkpoint_root: str | os.PathLike = CHECKPOINT_ROOT) -> dict[tuple[str, str], Path]:
    """Keep the best run of each (dataset, kind) in checkpoints/best/<dataset>/<kind>/; the folders written."""
    ids = {r["run_id"] for r in runs}
    written = {}
    for (dataset, kind), run in best_of(runs).items():
        recover(best_dir(checkpoint_root, dataset, kind))
        kept = read_best(checkpoint_root, dataset, kind)
        if kept is not None:
            same = kept.get("run_id") == run["run_id"] and kept.get("source", {}).get("checkpoint") == run["checkpoint"]
            better_elsewhere = (kept.get("run_id") not in ids and kept.get("val_acc") is not None
                                and float(kept["val_acc"]) > metric(run, "val/acc"))
            if same or better_elsewhere:
                continue
        written[(dataset, kind)] = _copy(run, best_dir(checkpoint_root, dataset, kind))
    return written


def recover(target: Path) -> None:
    """Undo what a promotion killed between its two renames left: the retired folder goes back in place if no new
    one replaced it, and retired or half-copied siblings are removed (those of a promotion still running on this
    machine are left to it)."""
    retired = [p for p in target.parent.glob(f".{target.name}.old-*") if _orphan(p)]
    if retired and not target.exists() and (retired[-1] / INFO_NAME).is_file():
        retired.pop().rename(target)
    for leftover in [*retired, *(p for p in target.parent.glob(f".{target.name}.new-*") if _orphan(p))]:
        shutil.rmtree(leftover, ignore_errors=True)


def _orphan(sibling: Path) -> bool:
    """Whether the process named in a `.<kind>.old-<pid>` / `.new-<pid>` folder has ended."""
    pid = sibling.name.rsplit("-", 1)[-1]
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    return False


def _copy(run: dict[str, Any], target: Path) -> Path:
    staging = target.with_name(f".{target.name}.new-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    sources = {"checkpoint": run["checkpoint"], "weights": run.get("weights") or "",
               "config": run.get("config_file") or ""}
    files = {}
    for key, name in (("checkpoint", CHECKPOINT_NAME), ("weights", WEIGHTS_NAME), ("config", CONFIG_NAME)):
        if sources[key] and Path(sources[key]).is_file():
            shutil.copy2(sources[key], staging / name)
            files[key] = name
    if "config" not in files and run.get("config"):  # no config.yaml beside the record: its config
        (staging / CONFIG_NAME).write_text(yaml.safe_dump(run["config"], sort_keys=False), encoding="utf-8")
        files["config"] = CONFIG_NAME
    info = {"run_id": run["run_id"], "dataset": run["dataset"], "kind": run["kind"],
            "val_acc": metric(run, "val/acc"), "test_acc": metric(run, "test/acc"),
            "test_loss": metric(run, "test/loss"), "files": files, "source": sources,
            "record": {k: v for k, v in run.items() if k not in DERIVED_KEYS}}
    (staging / INFO_NAME).write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    retired = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)
    return target
