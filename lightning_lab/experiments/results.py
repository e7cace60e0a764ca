"""Runs as their run.json records describe them, and results/<dataset>.csv derived from them.

API (what the sweep and the report call)::

    load_runs(where: str | Path | Sequence[str | Path]) -> list[dict]
        every run.json under the folder(s) (searched recursively), newest record per run_id, each record
        with four added keys: "path" (its run.json), "dataset" (cifar10, digits, ...), "kind" (cnn, resnet18,
        mlp, ...), "sweep" (whether a sweep trained it); ordered by started_at.
    write_results(results_dir: str | Path, log_root: str | Path | Sequence = LOG_DIR,
                  runs: list[dict] | None = None) -> dict[str, Path]
        rewrite results/<dataset>.csv for every dataset (atomically); {dataset: csv path}.
    varying_settings(runs: list[dict]) -> list[Setting]
        what differs between the runs' configs; `Setting.value(run)` is a run's value, as shown.

The CSV is derived, never appended to: the run.json files are the one source of truth, and writing the CSV
again gives the same file. Its columns: run_id, status, model, the dotted config keys that differ between the
dataset's runs (discovered by comparing the flattened configs, see `varying_settings`), the metrics, then
times, host, device and files.
"""
from __future__ import annotations

import csv
import enum
import functools
import importlib
import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from lightning_lab.atomic import atomic_open
from lightning_lab.callbacks.run_record import read_record
from lightning_lab.paths import LOG_DIR, RECORD_NAME, RESULTS_DIR, dataset_name

SWEEP_SUFFIX = "_sweep"  # a sweep's runs log to <save_dir>/<dataset>_sweep/<run_id>/

# Keys that name or place a run rather than configure it (they differ between any two runs, or only in how a
# path is written: a sweep hands its trials absolute paths, a plain fit keeps the config's relative ones).
BOOKKEEPING_KEYS = ("trainer.logger", "ckpt_path", "weights_only", "checkpoint.dirpath", "checkpoint.root",
                    "trainer.default_root_dir", "run_record", "config", "data.init_args.data_dir",
                    "prediction_writer", "test_after_fit")
SEED_NAMES = ("seed", "seed_everything")
RECORD_CLASS = "run_record.RunRecord"  # given in trainer.callbacks, its run_id differs between any two runs
METRIC_COLUMNS = {"val_acc": "val/acc", "test_acc": "test/acc", "test_loss": "test/loss", "epochs": "epochs",
                  "params": "params"}
TAIL_COLUMNS = ("wall_time_s", "attempts", "started_at", "finished_at", "host", "device", "checkpoint", "weights",
                "log_dir", "error")
_UNSET = object()  # a key a run does not have, or has at its class's default value


# ------------------------------------------------------------------------------------------- loading runs
def short_class(class_path: Any) -> str:
    return str(class_path).rsplit(".", 1)[-1]


def model_kind(class_path: Any) -> str:
    """The model kind from the net's class (or a LightningModule's, its "Classifier" suffix left off):
    ParametricCNN/CNNClassifier -> cnn, ResNet18/ResNet18Classifier -> resnet18, MLP/MLPClassifier -> mlp."""
    if not class_path:
        return "model"
    name = short_class(class_path).lower().removesuffix("classifier")
    if "cnn" in name:
        return "cnn"
    return name or "model"


def net_class_path(config: dict[str, Any]) -> str | None:
    """`model.net.class_path` (the Classifier's injected net), else `model.class_path` (a model given as a class)."""
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict):
        return None
    for node in (model.get("net"), (model.get("init_args") or {}).get("net")):
        if isinstance(node, dict) and node.get("class_path"):
            return str(node["class_path"])
    return str(model["class_path"]) if model.get("class_path") else None


def _dataset_of(config: dict[str, Any]) -> str:
    data = config.get("data") if isinstance(config, dict) else None
    return dataset_name(data["class_path"]) if isinstance(data, dict) and data.get("class_path") else "runs"


def as_roots(where: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(where, (str, os.PathLike)):
        return [Path(where)]
    return [Path(w) for w in where]


def load_runs(where: str | os.PathLike | Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Every run.json under `where` (folders searched recursively); the newest record of each run id."""
    seen: set[Path] = set()
    newest: dict[str, dict[str, Any]] = {}
    for root in as_roots(where):
        if not root.is_dir():
            continue
        for path in sorted(root.rglob(RECORD_NAME)):
            resolved = path.resolve()
            record = read_record(path)
            if resolved in seen or record is None or not record.get("run_id"):
                continue
            seen.add(resolved)
            config = record.get("config") if isinstance(record.get("config"), dict) else {}
            record.update(path=str(path), dataset=_dataset_of(config), kind=model_kind(net_class_path(config)),
                          sweep=from_sweep(path))
            current = newest.get(record["run_id"])
            if current is None or str(record.get("updated_at") or "") >= str(current.get("updated_at") or ""):
                newest[record["run_id"]] = record
    return sorted(newest.values(), key=lambda r: (str(r.get("started_at") or ""), r["run_id"]))


def from_sweep(path: str | os.PathLike) -> bool:
    """Whether a run.json lies in a sweep's folder (<dataset>_sweep/<run_id>/version_0/run.json)."""
    parts = Path(path).parts
    return len(parts) >= 4 and parts[-4].endswith(SWEEP_SUFFIX)


def by_dataset(runs: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        out.setdefault(run["dataset"], []).append(run)
    return dict(sorted(out.items()))


def metric(run: dict[str, Any], name: str) -> float | None:
    """A number from a run's metrics (val/acc, test/acc, test/loss, epochs, params), or None."""
    value = (run.get("metrics") or {}).get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# --------------------------------------------------------------------------------- what varies between runs
def is_under(key: str, prefixes: Sequence[str]) -> bool:
    """Whether dotted `key` is one of `prefixes` or lies under one (`trainer.logger.init_args.name`)."""
    return any(key == prefix or key.startswith(prefix + ".") for prefix in prefixes)


def flatten(config: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys -> leaf values. A class node {class_path, init_args} gives `<key>.class_path` and
    `<key>.init_args.<arg>`; lists are leaves; bookkeeping keys (logger, ckpt_path, ...) are left out."""
    out: dict[str, Any] = {}

    def walk(value: Any, key: str) -> None:
        if key and is_under(key, BOOKKEEPING_KEYS):
            return
        if isinstance(value, dict) and value:
            for name, item in value.items():
                walk(item, f"{key}.{name}" if key else str(name))
        elif isinstance(value, list) and any(_is_record_callback(v) for v in value):
            out[key] = [v for v in value if not _is_record_callback(v)] or None  # it names the run
        else:
            out[key] = value

    walk(config, "")
    return out


def _is_record_callback(value: Any) -> bool:
    return isinstance(value, dict) and str(value.get("class_path", "")).endswith(RECORD_CLASS)


def canonical(value: Any) -> str:
    """A comparable text of a value: tuples as lists, keys sorted, 0 and 0.0 alike."""
    return json.dumps(_comparable(value), sort_keys=True, default=str)


def _comparable(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _comparable(v) for k, v in value.items()}
    return value


@functools.lru_cache(maxsize=None)
def _defaults(class_path: str) -> dict[str, str]:
    """{argument: canonical default} of a class's constructor; {} when it cannot be imported."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        # a subclass passing **kwargs on (LabCheckpoint -> ModelCheckpoint) takes its parents' defaults too
        owners = [c for c in cls.__mro__ if c is not object and "__init__" in vars(c)] if isinstance(cls, type) \
            else [cls]
        signatures = [inspect.signature(owner) for owner in owners]
    except Exception:  # not importable here (another version, a user's class): compare raw values
        return {}
    defaults: dict[str, str] = {}
    for signature in signatures:
        for p in signature.parameters.values():
            if p.default is not inspect.Parameter.empty:
                defaults.setdefault(p.name, canonical(_plain(p.default)))
    return defaults


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.name  # as jsonargparse writes it
    return value


def _owner(key: str) -> tuple[str, str] | None:
    """(class node, argument) for `<node>.init_args.<argument>`, else None."""
    node, sep, argument = key.rpartition(".init_args.")
    return (node, argument) if sep and "." not in argument else None


# The CLI's groups whose arguments are those of one class (LabCLI's parser: the Trainer and the callbacks it adds).
GROUP_CLASSES = {"trainer": "lightning.pytorch.Trainer", "checkpoint": "lightning_lab.callbacks.LabCheckpoint",
                 "early_stopping": "lightning.pytorch.callbacks.EarlyStopping",
                 "prediction_writer": "lightning_lab.callbacks.PredictionWriter"}


def _normalized(flat: dict[str, Any], key: str) -> Any:
    """A run's value of `key` for comparisons: _UNSET when missing or equal to its class's default."""
    if key not in flat:
        return _UNSET
    owner = _owner(key)
    group, _, argument = key.partition(".")
    class_path = flat.get(f"{owner[0]}.class_path") if owner else GROUP_CLASSES.get(group)
    if class_path and _defaults(str(class_path)).get(owner[1] if owner else argument) == canonical(flat[key]):
        return _UNSET
    return canonical(flat[key])


def non_default_settings(config: dict[str, Any]) -> dict[str, str]:
    """The config's settings (flattened, bookkeeping left out) that differ from their class's default: what a run
    trains with, written so that a library's new argument at its default changes nothing."""
    flat = flatten(config)
    return {key: value for key in sorted(flat) if (value := _normalized(flat, key)) is not _UNSET}


def readable(value: Any) -> str:
    """A cell: class paths as the class name, lists as [32, 64], booleans lower-case, None as empty."""
    if value is None or value is _UNSET:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(readable(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return canonical(value)
    return str(value)


@dataclass(frozen=True)
class Setting:
    """One choice that differs between runs. `key`: a dotted config key, or for a class choice the class
    node (e.g. `model.optimizer`), whose value shows the class with the arguments that go with it
    (`folded`: arguments that only change with the class, e.g. SGD(lr=0.05, momentum=0.9))."""

    key: str
    label: str
    columns: tuple[str, ...]          # the dotted config keys behind it (the CSV columns)
    is_class: bool = False
    folded: tuple[str, ...] = ()
    seed: bool = False

    def value(self, run: dict[str, Any]) -> str:
        flat = flatten(run.get("config") or {})
        if not self.is_class:
            return readable(flat.get(self.key, _UNSET))
        class_path = flat.get(f"{self.key}.class_path")
        if class_path is None:
            return ""
        args = [f"{name}={readable(flat[f'{self.key}.init_args.{name}'])}" for name in self.folded
                if _normalized(flat, f"{self.key}.init_args.{name}") is not _UNSET]
        return short_class(class_path) + (f"({', '.join(args)})" if args else "")


def varying_keys(runs: Sequence[dict[str, Any]]) -> list[str]:
    """The flattened config keys whose values differ between runs (missing = at the class default), in the
    order they first appear in the configs."""
    flats = [flatten(r.get("config") or {}) for r in runs]
    keys = list(dict.fromkeys(k for flat in flats for k in flat))
    return [k for k in keys if len({_key_of(_normalized(flat, k)) for flat in flats}) > 1]


def _key_of(value: Any) -> str:
    return "\0unset" if value is _UNSET else value


def varying_settings(runs: Sequence[dict[str, Any]]) -> list[Setting]:
    """The settings that differ between runs, found by comparing their flattened configs: a varying
    `<node>.class_path` is a class choice; an argument of that class that changes only with the class is
    folded into it; every other varying key is a setting of its own. Seeds are settings flagged `seed`."""
    flats = [flatten(r.get("config") or {}) for r in runs]
    keys = varying_keys(runs)
    class_nodes = {k.removesuffix(".class_path") for k in keys if k.endswith(".class_path")}
    folded: dict[str, list[str]] = {node: [] for node in class_nodes}
    raw: list[tuple[str, tuple[str, ...], bool]] = []   # (key, columns, is_class)
    for key in keys:
        if key.endswith(".class_path") and key.removesuffix(".class_path") in class_nodes:
            raw.append((key.removesuffix(".class_path"), (key,), True))
            continue
        owner = _owner(key)
        if owner is not None and owner[0] in class_nodes and _follows_class(flats, key, owner[0]):
            folded[owner[0]].append(owner[1])
            continue
        raw.append((key, (key,), False))
    labels = _labels([key for key, _, _ in raw])
    settings = []
    for key, columns, is_class in raw:
        extra = tuple(f"{key}.init_args.{a}" for a in folded.get(key, [])) if is_class else ()
        settings.append(Setting(key=key, label=labels[key], columns=columns + extra, is_class=is_class,
                                folded=tuple(folded.get(key, [])) if is_class else (),
                                seed=key.rsplit(".", 1)[-1] in SEED_NAMES))
    return settings


def _follows_class(flats: list[dict[str, Any]], key: str, node: str) -> bool:
    """Whether `key` takes one value per class of `node` (so it is part of that class choice)."""
    per_class: dict[str, set[str]] = {}
    for flat in flats:
        per_class.setdefault(str(flat.get(f"{node}.class_path")), set()).add(_key_of(_normalized(flat, key)))
    return all(len(values) == 1 for values in per_class.values())


def _labels(keys: list[str]) -> dict[str, str]:
    """The shortest dotted suffix (init_args left out) that tells each key from the others."""
    parts = {k: [p for p in k.split(".") if p != "init_args"] for k in keys}
    labels = {}
    for key, segments in parts.items():
        for length in range(1, len(segments) + 1):
            label = ".".join(segments[-length:])
            if not any(".".join(other[-length:]) == label for k, other in parts.items() if k != key):
                break
        labels[key] = label
    return labels


def combination(run: dict[str, Any], settings: Sequence[Setting]) -> tuple[str, ...]:
    """A run's values of the non-seed settings: runs that differ only by seed share it (repeats)."""
    return tuple(s.value(run) for s in settings if not s.seed)


# ------------------------------------------------------------------------------------------------- the CSV
def csv_path(results_dir: str | os.PathLike, dataset: str) -> Path:
    return Path(results_dir) / f"{dataset}.csv"


def csv_rows(runs: Sequence[dict[str, Any]]) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of one dataset's CSV."""
    columns = [c for s in varying_settings(runs) for c in s.columns]
    header = ["run_id", "status", "model", *columns, *METRIC_COLUMNS, *TAIL_COLUMNS]
    rows = []
    for run in runs:
        flat = flatten(run.get("config") or {})
        row = {"run_id": run["run_id"], "status": run.get("status", ""), "model": run["kind"]}
        row.update({c: readable(flat.get(c, _UNSET)) for c in columns})
        for column, name in METRIC_COLUMNS.items():
            value = metric(run, name)
            row[column] = "" if value is None else (f"{value:.0f}" if name in ("epochs", "params") else f"{value:.6g}")
        row.update({c: readable(run.get(c)) for c in TAIL_COLUMNS})
        rows.append(row)
    return header, rows


def write_results(results_dir: str | os.PathLike = RESULTS_DIR,
                  log_root: str | os.PathLike | Sequence[str | os.PathLike] = LOG_DIR,
                  runs: list[dict[str, Any]] | None = None) -> dict[str, Path]:
    """Rewrite results/<dataset>.csv from the run.json files under `log_root` (or the `runs` given)."""
    runs = load_runs(log_root) if runs is None else runs
    written = {}
    for dataset, group in by_dataset(runs).items():
        header, rows = csv_rows(group)
        path = csv_path(results_dir, dataset)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        written[dataset] = path
    return written
