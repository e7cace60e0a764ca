"""results/<dataset>.csv: one row per finished run, appended under a file lock; readable setting columns.

Concurrency: every append takes an exclusive ``fcntl.flock`` on ``results/.lock`` (the header is written,
or the file migrated to new columns, under the same lock), so shards of a sweep started at the same time
on one machine or on a shared POSIX file system append whole rows and never interleave. Where ``fcntl``
does not exist (Windows) the append is a single ``write`` of the whole row in append mode.

A run id may appear more than once (a failed run retried with ``--retry-failed``); readers keep its last row.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

DEFAULT_RESULTS_DIR = "results"
LOCK_NAME = ".lock"

# Readable settings, read from each run's fully resolved config (so every row has every column).
SETTING_COLUMNS = [
    "activation", "init", "optimizer", "lr", "momentum", "weight_decay", "scheduler",
    "channels", "kernel_size", "convs_per_block", "pooling", "batch_norm", "dropout", "hidden",
    "pretrained", "freeze_backbone", "batch_size", "augment", "max_epochs",
]
COLUMNS = [
    "run_id", "study", "status", "dataset", "model", "config",
    *SETTING_COLUMNS,
    "val_acc", "test_acc", "test_loss", "epochs", "wall_time_s", "params",
    "varied", "extra_settings", "error",
    "checkpoint", "weights", "log_dir", "run_config", "overrides", "command", "finished_at",
]
METRIC_COLUMNS = ("val_acc", "test_acc", "test_loss", "wall_time_s")
INT_COLUMNS = ("epochs", "params")


# ---------------------------------------------------------------------------------- settings from a config
def short_class(class_path: Any) -> str:
    return str(class_path).rsplit(".", 1)[-1]


def dataset_name(data_class_path: Any) -> str:
    """lightning_lab.data.CIFAR10DataModule -> cifar10."""
    return short_class(data_class_path).removesuffix("DataModule").lower() or "data"


def model_kind(model_class_path: Any) -> str:
    """CNNClassifier -> cnn, ResNet18Classifier -> resnet18, MLPClassifier -> mlp."""
    return short_class(model_class_path).removesuffix("Classifier").lower() or "model"


def _get(namespace: Any, key: str, default: Any = None) -> Any:
    current = namespace
    for part in key.split("."):
        if current is None:
            return default
        try:
            current = current[part] if isinstance(current, dict) else getattr(current, part)
        except (AttributeError, KeyError, TypeError):
            return default
    return current


def readable(value: Any) -> str:
    """A cell: lists as [32, 64], booleans lower-case, None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(readable(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    if hasattr(value, "class_path"):
        return short_class(value.class_path)
    return str(value)


def settings_from_config(cfg: Any) -> dict[str, str]:
    """The SETTING_COLUMNS of a resolved jsonargparse config (model/data/trainer namespaces)."""
    args = _get(cfg, "model.init_args")
    optimizer = _get(args, "optimizer")
    scheduler = _get(args, "scheduler")
    opt_args = _get(optimizer, "init_args")
    values: dict[str, Any] = {
        "activation": _get(args, "activation"),
        "init": _get(args, "init"),
        "optimizer": short_class(optimizer.class_path) if hasattr(optimizer, "class_path")
        else ("default" if optimizer is not None else None),
        "lr": _get(opt_args, "lr"),
        "momentum": _get(opt_args, "momentum"),
        "weight_decay": _get(opt_args, "weight_decay"),
        "scheduler": short_class(scheduler.class_path) if hasattr(scheduler, "class_path") else "none",
        "channels": _get(args, "channels"),
        "kernel_size": _get(args, "kernel_size"),
        "convs_per_block": _get(args, "convs_per_block"),
        "pooling": _get(args, "pooling"),
        "batch_norm": _get(args, "batch_norm"),
        "dropout": _get(args, "dropout"),
        "hidden": _get(args, "hidden"),
        "pretrained": _get(args, "weights"),
        "freeze_backbone": _get(args, "freeze_backbone"),
        "batch_size": _get(cfg, "data.init_args.batch_size"),
        "augment": _get(cfg, "data.init_args.augment"),
        "max_epochs": _get(cfg, "trainer.max_epochs"),
    }
    return {k: readable(v) for k, v in values.items()}


def setting_name(key: str) -> str:
    """The column a dotted grid key is shown under: its last part (model.init_args.dropout -> dropout)."""
    return key.rsplit(".", 1)[-1]


# ------------------------------------------------------------------------------------------------ files
def csv_path(results_dir: str | os.PathLike, dataset: str) -> Path:
    return Path(results_dir) / f"{dataset}.csv"


@contextlib.contextmanager
def locked(directory: str | os.PathLike, name: str = LOCK_NAME) -> Iterator[None]:
    """An exclusive lock on directory/name for the duration of the block (no-op without fcntl)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(Path(directory) / name, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def append_row(results_dir: str | os.PathLike, dataset: str, row: dict[str, Any]) -> Path:
    """Append one run's row to results/<dataset>.csv (creating it with a header) under the results lock."""
    path = csv_path(results_dir, dataset)
    with locked(results_dir):
        header = _header(path)
        fields = header or COLUMNS
        if header is not None and not set(COLUMNS) <= set(header):
            fields = _migrate(path, header)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        if header is None:
            writer.writeheader()
        writer.writerow({k: _cell(row.get(k)) for k in fields})
        with open(path, "a", newline="", encoding="utf-8") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
    return path


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _header(path: Path) -> list[str] | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), None)


def _migrate(path: Path, old_header: list[str]) -> list[str]:
    """Rewrite a CSV written by an older version: current columns first, unknown old ones kept at the end."""
    rows = read_rows(path, latest_only=False, typed=False)
    fields = COLUMNS + [c for c in old_header if c not in COLUMNS]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return fields


def read_rows(path: str | os.PathLike, latest_only: bool = True, typed: bool = True) -> list[dict[str, Any]]:
    """The rows of one results CSV; with latest_only, the last row of each run id (in first-seen order)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [dict(r) for r in csv.DictReader(handle) if r.get("run_id")]
    if typed:
        rows = [_typed(r) for r in rows]
    if not latest_only:
        return rows
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        latest.pop(row["run_id"], None)
        latest[row["run_id"]] = row
    return list(latest.values())


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in METRIC_COLUMNS:
        out[key] = _float(row.get(key))
    for key in INT_COLUMNS:
        value = _float(row.get(key))
        out[key] = int(value) if value is not None else None
    out["varied"] = [v for v in (row.get("varied") or "").split(";") if v]
    try:
        extra = json.loads(row.get("extra_settings") or "{}")
    except json.JSONDecodeError:
        extra = {}
    out["extra_settings"] = extra if isinstance(extra, dict) else {}
    return out


def _float(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def setting(row: dict[str, Any], name: str) -> str:
    """A row's value of a setting column, or of an extra (grid-only) setting."""
    if name in row and name not in METRIC_COLUMNS:
        return str(row[name])
    return str(row.get("extra_settings", {}).get(name, ""))


def all_results(results_dir: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
    """{dataset: latest rows} for every results/<dataset>.csv."""
    return {p.stem: read_rows(p) for p in sorted(Path(results_dir).glob("*.csv"))}
