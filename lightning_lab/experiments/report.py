"""`python -m lightning_lab report`: results/<dataset>.csv -> results/REPORT.md (+ results/plots/*.png)."""
from __future__ import annotations

import math
import os
import statistics
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from lightning_lab.experiments import best, plots, results

REPORT_NAME = "REPORT.md"
PLOTS_DIR = "plots"
KIND_LABEL = {"cnn": "CNN", "resnet18": "ResNet-18", "mlp": "MLP"}
TINY_SWEEP = "python -m lightning_lab sweep --config configs/digits.yaml --grid configs/grids/digits_tiny.yaml"


def write_report(results_dir: str | os.PathLike = results.DEFAULT_RESULTS_DIR, top: int = 5,
                 checkpoint_root: str | os.PathLike = "checkpoints") -> Path:
    results_dir = Path(results_dir)
    data = results.all_results(results_dir)
    total = sum(len(rows) for rows in data.values())
    lines = ["# Experiment report", "",
             f"Generated {datetime.now().isoformat(timespec='seconds')} from `{results_dir}/*.csv` "
             f"({total} runs, {len(data)} dataset{'s' if len(data) != 1 else ''}). Accuracy is the fraction of "
             "correct predictions; runs are selected on val/acc, test/acc is reported only.", ""]
    if not data:
        lines += [f"No results yet. Run a sweep first, e.g. `{TINY_SWEEP}`.", ""]
    if len(data) > 1:
        lines += ["Datasets: " + ", ".join(f"[{d}](#{d})" for d in data), ""]
    for dataset, rows in data.items():
        lines += dataset_section(dataset, rows, results_dir, top, checkpoint_root)
    path = results_dir / REPORT_NAME
    results_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- sections
def dataset_section(dataset: str, rows: list[dict[str, Any]], results_dir: Path, top: int,
                    checkpoint_root: str | os.PathLike) -> list[str]:
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] != "ok"]
    configs = sorted({Path(r["config"]).name for r in rows if r.get("config")})
    lines = [f"## {dataset}", "",
             f"{len(rows)} runs: {len(ok)} finished, {len(failed)} failed. Configs: "
             + ", ".join(f"`{c}`" for c in configs) + ".", ""]
    shown = shown_settings(rows)
    lines += runs_table(ok, shown)
    lines += effects_section(dataset, ok, results_dir)
    lines += curves_section(dataset, ok, results_dir, top)
    lines += comparison_section(dataset, ok, checkpoint_root)
    if failed:
        lines += ["### Failed runs", "", "| run | status | study | settings | error |", "|---|---|---|---|---|"]
        for r in failed:
            settings = ", ".join(f"{n}={results.setting(r, n)}" for n in shown if results.setting(r, n))
            lines.append(f"| {r['run_id']} | {r['status']} | {r['study']} | {_md(settings)} | "
                         f"{_md(r.get('error', ''))} |")
        lines += ["", "The next sweep retries `crashed` runs (resuming their last.ckpt); run `failed` ones again "
                  "with `--retry-failed` once the cause is fixed.", ""]
    return lines


def shown_settings(rows: list[dict[str, Any]]) -> list[str]:
    """The settings varied by any run's studies, in the CSV's column order (extras last); lr follows the
    optimizer it belongs to."""
    names = dict.fromkeys(n for r in rows for n in r["varied"])
    if "optimizer" in names:
        names.setdefault("lr")
    order = results.SETTING_COLUMNS
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def _by_test(row: dict[str, Any]) -> tuple:
    return (row["test_acc"] is None, -(row["test_acc"] or 0.0), -(row["val_acc"] or 0.0))


def _by_val(row: dict[str, Any]) -> tuple:
    return (row["val_acc"] is None, -(row["val_acc"] or 0.0), -(row["test_acc"] or 0.0))


def runs_table(ok: list[dict[str, Any]], shown: list[str]) -> list[str]:
    lines = ["### Runs by test accuracy", ""]
    if not ok:
        return lines + ["No finished runs.", ""]
    header = ["#", "run", "study", "model", *shown, "val acc", "test acc", "test loss", "epochs", "time (s)",
              "params"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, r in enumerate(sorted(ok, key=_by_test), 1):
        cells = [str(rank), r["run_id"], r["study"], r["model"], *(results.setting(r, n) for n in shown),
                 _fmt(r["val_acc"]), _fmt(r["test_acc"]), _fmt(r["test_loss"]), _fmt(r["epochs"], "d"),
                 _fmt(r["wall_time_s"], ".1f"), _fmt(r["params"], ",")]
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    return lines + [""]


def effects(ok: list[dict[str, Any]]) -> dict[str, list[plots.Effect]]:
    """{setting: [(value, runs, mean test acc, std)]} over the runs whose studies vary that setting."""
    out: dict[str, list[plots.Effect]] = {}
    for name in shown_settings(ok):
        groups: dict[str, list[float]] = {}
        for r in ok:
            if name in r["varied"] and r["test_acc"] is not None:
                groups.setdefault(results.setting(r, name) or "(unset)", []).append(r["test_acc"])
        if len(groups) < 2:
            continue
        out[name] = [(value, len(accs), statistics.fmean(accs),
                      statistics.stdev(accs) if len(accs) > 1 else math.nan) for value, accs in groups.items()]
    return out


def effects_section(dataset: str, ok: list[dict[str, Any]], results_dir: Path) -> list[str]:
    table = effects(ok)
    lines = ["### Effect of each choice", ""]
    if not table:
        return lines + ["No setting takes two values across finished runs (a single run, or no grid).", ""]
    lines += ["Mean ± standard deviation of test accuracy over the runs of the studies that vary the setting; "
              "the other settings of those studies vary too, so each mean is averaged over them.", "",
              "| setting | value | runs | test acc (mean ± std) | best |", "|---|---|---|---|---|"]
    for name, values in table.items():
        best_mean = max(m for _, _, m, _ in values)
        for value, n, mean, std in values:
            spread = f"{mean:.4f} ± {std:.4f}" if not math.isnan(std) else f"{mean:.4f}"
            lines.append(f"| {name} | {_md(value)} | {n} | {spread} | {'**best**' if mean == best_mean else ''} |")
    chart = plots.effects_chart(table, results_dir / PLOTS_DIR / f"{dataset}_effects.png",
                                f"{dataset}: test accuracy per choice (mean ± std)")
    return lines + ["", f"![test accuracy per choice]({chart.relative_to(results_dir).as_posix()})", ""]


def curves_section(dataset: str, ok: list[dict[str, Any]], results_dir: Path, top: int) -> list[str]:
    chosen = sorted(ok, key=_by_val)[:max(0, top)]
    for kind_best in best_per_kind(ok).values():  # the best of every model kind, even outside the top N
        if kind_best not in chosen:
            chosen.append(kind_best)
    curves = []
    for r in chosen:
        epochs, values = plots.read_curve(r.get("log_dir", ""))
        if epochs:
            settings = ", ".join(results.setting(r, n) for n in shown_settings(ok) if results.setting(r, n))
            label = f"{r['run_id']} ({results.model_kind(r['model'])}{', ' + settings if settings else ''})"
            curves.append((f"{label}: val {r['val_acc']:.3f}", epochs, values))
    lines = ["### Learning curves", ""]
    if not curves:
        return lines + ["No TensorBoard logs found for the best runs (were `lightning_logs/` moved?).", ""]
    chart = plots.curves_chart(curves, results_dir / PLOTS_DIR / f"{dataset}_curves.png",
                               f"{dataset}: val/acc per epoch, best runs")
    return lines + [f"val/acc per epoch of the {len(curves)} best runs by val/acc, read from their TensorBoard "
                    "event files.", "", f"![learning curves]({chart.relative_to(results_dir).as_posix()})", ""]


def best_per_kind(ok: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in sorted(ok, key=_by_val):
        out.setdefault(results.model_kind(r["model"]), r)
    return out


def comparison_section(dataset: str, ok: list[dict[str, Any]], checkpoint_root: str | os.PathLike) -> list[str]:
    best_runs = best_per_kind(ok)
    cnn, resnet = best_runs.get("cnn"), best_runs.get("resnet18")
    lines = ["### Best CNN vs fine-tuned ResNet-18", ""]
    if cnn is None and resnet is None:
        return lines + ["No CNN or ResNet-18 run finished on this dataset.", ""]
    columns = [("CNN", cnn), ("ResNet-18", resnet)]
    lines += ["| | " + " | ".join(label for label, _ in columns) + " |", "|---|---|---|"]
    metrics = [("run", lambda r: r["run_id"]), ("val acc (selection)", lambda r: _fmt(r["val_acc"])),
               ("test acc", lambda r: _fmt(r["test_acc"])), ("test loss", lambda r: _fmt(r["test_loss"])),
               ("parameters", lambda r: _fmt(r["params"], ",")), ("epochs", lambda r: _fmt(r["epochs"], "d")),
               ("training time (s)", lambda r: _fmt(r["wall_time_s"], ".1f")),
               ("time per epoch (s)", lambda r: _fmt(r["wall_time_s"] / r["epochs"], ".2f")
                if r["wall_time_s"] is not None and r["epochs"] else "")]
    for label, get in metrics:
        lines.append(f"| {label} | " + " | ".join(_md(get(r)) if r else "missing" for _, r in columns) + " |")
    lines.append("")
    for kind, run in (("cnn", cnn), ("resnet18", resnet)):
        name = KIND_LABEL[kind]
        if run is None:
            lines += ["", f"**{name} results are missing for {dataset}.** " + _how_to_produce(dataset, kind), ""]
            continue
        kept = best.read_best(checkpoint_root, dataset, kind)
        if kept:
            folder = best.best_dir(checkpoint_root, dataset, kind)
            lines.append(f"- best {name} kept in `{folder.as_posix()}/` (run {kept.get('run_id')}, "
                         f"val acc {_fmt(kept.get('val_acc'))}): `model.ckpt`, `best_weights.pt`, `config.yaml`")
    if cnn is not None and resnet is not None and cnn["test_acc"] is not None and resnet["test_acc"] is not None:
        diff = resnet["test_acc"] - cnn["test_acc"]
        ratio = resnet["params"] / cnn["params"] if cnn["params"] else float("nan")
        lines.append(f"- ResNet-18 is {abs(diff) * 100:.1f} points {'above' if diff >= 0 else 'below'} the best CNN "
                     f"on test accuracy with {ratio:.0f}x its parameters.")
    return lines + [""]


def _how_to_produce(dataset: str, kind: str) -> str:
    from lightning_lab.cli import CONFIG_DIR

    wanted = {"cnn": "CNNClassifier", "resnet18": "ResNet18Classifier"}[kind]
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        try:
            cfg = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        model = str((cfg.get("model") or {}).get("class_path", ""))
        data = (cfg.get("data") or {}).get("class_path", "")
        if model.endswith(wanted) and results.dataset_name(data) == dataset:
            return f"Produce them with `python -m lightning_lab sweep --config configs/{path.name}`."
    return (f"No config in configs/ trains a {KIND_LABEL[kind]} on {dataset}; copy one "
            f"(e.g. configs/{'resnet18_cifar' if kind == 'resnet18' else 'cifar'}.yaml), point its `data:` at "
            f"{dataset} and run `python -m lightning_lab sweep --config <it>`.")


# ------------------------------------------------------------------------------------------------ helpers
def _fmt(value: Any, spec: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if spec in ("d", ","):
        return format(int(value), spec)
    return format(float(value), spec)


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
