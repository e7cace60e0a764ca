"""`python -m lightning_lab report`: the run.json records -> results/REPORT.md (+ results/plots/*.png, the CSVs).

API::

    write_report(results_dir: str | Path = "results", log_root: str | Path | Sequence = "lightning_logs",
                 top: int = 5, checkpoint_root: str | Path = "checkpoints",
                 runs: list[dict] | None = None) -> Path
        also rewrites results/<dataset>.csv (results.write_results), so the two always agree.
    mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]
        mean and half-width of its Student-t interval (nan with fewer than 2 values).

Per dataset: finished runs ranked by test accuracy; runs stopped early by the scheduler ranked apart (they never
had their full budget); with repeats (runs that differ only by seed) mean ± 95% interval per combination; the
effect of each choice over full-budget runs only, with a plain sentence wherever two values differ by less than
the noise (their intervals overlap); learning curves; the best CNN against the best ResNet-18.
"""
from __future__ import annotations

import math
import os
import statistics
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import yaml

from lightning_lab.experiments import best, plots, results
from lightning_lab.experiments.results import Setting, metric

REPORT_NAME = "REPORT.md"
PLOTS_DIR = "plots"
KIND_LABEL = {"cnn": "CNN", "resnet18": "ResNet-18", "mlp": "MLP"}
TINY_SWEEP = "python -m lightning_lab sweep --config configs/digits.yaml --grid configs/grids/digits_tiny.yaml"
CONFIDENCE = 0.95


def write_report(results_dir: str | os.PathLike = results.DEFAULT_RESULTS_DIR,
                 log_root: str | os.PathLike | Sequence[str | os.PathLike] = results.DEFAULT_LOG_ROOT,
                 top: int = 5, checkpoint_root: str | os.PathLike = "checkpoints",
                 runs: list[dict[str, Any]] | None = None) -> Path:
    """Write REPORT.md (and the CSVs, plots) from the run records under `log_root` (or the `runs` given)."""
    results_dir = Path(results_dir)
    runs = results.load_runs(log_root) if runs is None else runs
    results.write_results(results_dir, runs=runs)
    data = results.by_dataset(runs)
    roots = ", ".join(f"`{Path(r).as_posix()}`" for r in results.as_roots(log_root))
    lines = ["# Experiment report", "",
             f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} from {len(runs)} run records "
             f"(`run.json`) under {roots}, {len(data)} dataset{'s' if len(data) != 1 else ''}. Accuracy is the "
             "fraction of correct predictions; runs are selected on val/acc, test/acc is reported only. "
             f"Intervals are {CONFIDENCE:.0%} Student-t confidence intervals of the mean.", ""]
    if not data:
        lines += [f"No results yet. Run a sweep first, e.g. `{TINY_SWEEP}`.", ""]
    if len(data) > 1:
        lines += ["Datasets: " + ", ".join(f"[{d}](#{d})" for d in data), ""]
    for dataset, group in data.items():
        lines += dataset_section(dataset, group, results_dir, top, checkpoint_root)
    path = results_dir / REPORT_NAME
    results_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ statistics
def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """(mean, half-width of the Student-t confidence interval); the half-width is nan below 2 values."""
    if not values:
        return math.nan, math.nan
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    from scipy.stats import t

    return mean, float(t.ppf(0.5 + confidence / 2, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool | None:
    """Whether two (mean, half-width) intervals overlap; None when either has no interval."""
    if math.isnan(a[1]) or math.isnan(b[1]):
        return None
    return abs(a[0] - b[0]) <= a[1] + b[1]


def _pm(mean: float, half: float) -> str:
    return f"{mean:.4f}" if math.isnan(half) else f"{mean:.4f} ± {half:.4f}"


# ---------------------------------------------------------------------------------------------- analysis
def effects(ok: list[dict[str, Any]], settings: Sequence[Setting]) -> dict[str, list[plots.Effect]]:
    """{setting label: [(value, runs, mean test acc, interval half-width)]}. For each setting, the runs used
    are those with a partner that differs from it in this setting only (seeds aside): in a full grid all
    runs, in one-at-a-time studies the runs of the study that varies it."""
    choices = [s for s in settings if not s.seed]
    table = {s.key: [s.value(r) for r in ok] for s in choices}
    accs = [metric(r, "test/acc") for r in ok]
    out: dict[str, list[plots.Effect]] = {}
    for setting in choices:
        others = [o for o in choices if o is not setting]
        contexts = [tuple(table[o.key][i] for o in others) for i in range(len(ok))]
        values_in: dict[tuple, set[str]] = {}
        for i, context in enumerate(contexts):
            values_in.setdefault(context, set()).add(table[setting.key][i])
        groups: dict[str, list[float]] = {}
        for i, context in enumerate(contexts):
            if len(values_in[context]) > 1 and accs[i] is not None:
                groups.setdefault(table[setting.key][i] or "(unset)", []).append(accs[i])
        if len(groups) > 1:
            out[setting.label] = [(value, len(a), *mean_ci(a)) for value, a in groups.items()]
    return out


def combinations(ok: list[dict[str, Any]], settings: Sequence[Setting]) -> list[tuple[tuple[str, ...], list[dict]]]:
    """[(values of the non-seed settings, runs)], best mean test accuracy first."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for run in ok:
        groups.setdefault(results.combination(run, settings), []).append(run)

    def mean_test(item: tuple[tuple[str, ...], list[dict]]) -> float:
        accs = [a for a in (metric(r, "test/acc") for r in item[1]) if a is not None]
        return -statistics.fmean(accs) if accs else math.inf

    return sorted(groups.items(), key=mean_test)


def noise_sentences(label: str, values: Sequence[plots.Effect]) -> list[str]:
    """Plain sentences on which values of a setting differ by less than the noise (intervals overlap)."""
    ranked = sorted(values, key=lambda v: -v[2])
    single = [str(v[0]) for v in ranked if math.isnan(v[3])]
    if single:
        who = single[0] + " rests" if len(single) == 1 else ", ".join(single[:-1]) + f" and {single[-1]} each rest"
        return [f"- **{label}**: {who} on a single run: no interval, so a difference cannot be told from noise "
                "(repeat the runs with `--repeats N`)."]
    lines = []
    for i, a in enumerate(ranked):
        for b in ranked[i + 1:]:
            if overlap(a[2:], b[2:]):
                lines.append(f"- **{label}**: {a[0]} ({_pm(a[2], a[3])}) and {b[0]} ({_pm(b[2], b[3])}) differ by "
                             f"less than the noise: their {CONFIDENCE:.0%} intervals overlap.")
    if not lines:
        lines.append(f"- **{label}**: every value differs from the others by more than the noise "
                     f"(no {CONFIDENCE:.0%} intervals overlap); best: {ranked[0][0]}.")
    return lines


# ---------------------------------------------------------------------------------------------- sections
def dataset_section(dataset: str, runs: list[dict[str, Any]], results_dir: Path, top: int,
                    checkpoint_root: str | os.PathLike) -> list[str]:
    ok = [r for r in runs if r.get("status") == "ok"]
    stopped = [r for r in runs if r.get("status") == "stopped_early"]
    unfinished = [r for r in runs if r.get("status") not in ("ok", "stopped_early")]
    settings = results.varying_settings(runs)
    lines = [f"## {dataset}", "",
             f"{len(runs)} runs: {len(ok)} finished, {len(stopped)} stopped early by the scheduler, "
             f"{len(unfinished)} failed or unfinished. Settings that differ between them: "
             + (", ".join(f"`{s.label}`" for s in settings) or "none") + f" (`{results_dir.as_posix()}/{dataset}.csv` "
             "has one column per differing config key).", ""]
    lines += runs_table(ok, settings)
    lines += stopped_table(stopped, settings)
    lines += repeats_section(ok, settings)
    lines += effects_section(dataset, ok, settings, results_dir)
    lines += curves_section(dataset, ok, settings, results_dir, top)
    lines += comparison_section(dataset, ok, checkpoint_root)
    lines += unfinished_section(unfinished, settings)
    return lines


def _by_test(run: dict[str, Any]) -> tuple:
    test, val = metric(run, "test/acc"), metric(run, "val/acc")
    return (test is None, -(test or 0.0), -(val or 0.0), run["run_id"])


def _by_val(run: dict[str, Any]) -> tuple:
    val, test = metric(run, "val/acc"), metric(run, "test/acc")
    return (val is None, -(val or 0.0), -(test or 0.0), run["run_id"])


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(_md(c) for c in cells) + " |"


def _header(names: Sequence[str]) -> list[str]:
    return [_row(names), "|" + "---|" * len(names)]


def runs_table(ok: list[dict[str, Any]], settings: Sequence[Setting]) -> list[str]:
    lines = ["### Runs by test accuracy", ""]
    if not ok:
        return lines + ["No finished runs.", ""]
    lines += _header(["#", "run", "model", *(s.label for s in settings), "val acc", "test acc", "test loss",
                      "epochs", "time (s)", "params"])
    for rank, r in enumerate(sorted(ok, key=_by_test), 1):
        lines.append(_row([rank, r["run_id"], r["kind"], *(s.value(r) for s in settings),
                           _fmt(metric(r, "val/acc")), _fmt(metric(r, "test/acc")), _fmt(metric(r, "test/loss")),
                           _fmt(metric(r, "epochs"), "d"), _fmt(r.get("wall_time_s"), ".1f"),
                           _fmt(metric(r, "params"), ",")]))
    return lines + [""]


def stopped_table(stopped: list[dict[str, Any]], settings: Sequence[Setting]) -> list[str]:
    if not stopped:
        return []
    lines = ["### Stopped early by the scheduler (ranked apart)", "",
             "These runs were stopped before their full budget because they trailed the others at a rung; their "
             "val acc is the best they reached. They are left out of the effects below.", ""]
    lines += _header(["#", "run", "model", *(s.label for s in settings), "val acc", "epochs", "time (s)"])
    for rank, r in enumerate(sorted(stopped, key=_by_val), 1):
        lines.append(_row([rank, r["run_id"], r["kind"], *(s.value(r) for s in settings),
                           _fmt(metric(r, "val/acc")), _fmt(metric(r, "epochs"), "d"),
                           _fmt(r.get("wall_time_s"), ".1f")]))
    return lines + [""]


def repeats_section(ok: list[dict[str, Any]], settings: Sequence[Setting]) -> list[str]:
    groups = combinations(ok, settings)
    if not any(len(runs) > 1 for _, runs in groups):
        return []
    choices = [s for s in settings if not s.seed]
    lines = ["### Repeats: mean per combination", "",
             f"Runs that differ only by seed form a combination; mean ± {CONFIDENCE:.0%} interval over its seeds.", ""]
    lines += _header(["#", *(s.label for s in choices), "runs", "val acc (mean)", "test acc (mean ± 95% CI)"])
    stats = []
    for rank, (values, runs) in enumerate(groups, 1):
        vals = [v for v in (metric(r, "val/acc") for r in runs) if v is not None]
        tests = [v for v in (metric(r, "test/acc") for r in runs) if v is not None]
        stats.append((", ".join(f"{s.label}={v}" for s, v in zip(choices, values)) or "the config", *mean_ci(tests)))
        lines.append(_row([rank, *values, len(runs), _fmt(statistics.fmean(vals) if vals else None),
                           _pm(*mean_ci(tests)) if tests else ""]))
    lines.append("")
    best_name, best_mean, best_half = stats[0]
    close = [s for s in stats[1:] if overlap((best_mean, best_half), s[1:])]
    if math.isnan(best_half):
        lines.append(f"The best combination ({best_name}) has a single run: no interval.")
    elif close:
        lines.append(f"The best combination ({best_name}, {_pm(best_mean, best_half)}) differs by less than the noise "
                     f"from {len(close)} other{'s' if len(close) > 1 else ''} (their {CONFIDENCE:.0%} intervals "
                     "overlap): " + "; ".join(f"{n} ({_pm(m, h)})" for n, m, h in close) + ".")
    else:
        lines.append(f"The best combination ({best_name}, {_pm(best_mean, best_half)}) is ahead of every other by "
                     "more than the noise (no interval overlaps its own).")
    return lines + [""]


def effects_section(dataset: str, ok: list[dict[str, Any]], settings: Sequence[Setting],
                    results_dir: Path) -> list[str]:
    table = effects(ok, settings)
    lines = ["### Effect of each choice", ""]
    if not table:
        return lines + ["No setting takes two values across finished runs that otherwise agree (a single run, or "
                        "no grid).", ""]
    lines += [f"Test accuracy per value: mean ± {CONFIDENCE:.0%} interval over the finished, full-budget runs that "
              "have a partner differing in this setting only (runs stopped early are left out). Where other "
              "settings vary as well, each mean is averaged over them.", ""]
    lines += _header(["setting", "value", "runs", "test acc (mean ± 95% CI)", "best"])
    for name, values in table.items():
        best_mean = max(m for _, _, m, _ in values)
        for value, n, mean, half in values:
            lines.append(_row([name, value, n, _pm(mean, half), "**best**" if mean == best_mean else ""]))
    lines += ["", "Noise:", ""]
    for name, values in table.items():
        lines += noise_sentences(name, values)
    chart = plots.effects_chart(table, results_dir / PLOTS_DIR / f"{dataset}_effects.png",
                                f"{dataset}: test accuracy per choice (mean ± 95% CI)")
    return lines + ["", f"![test accuracy per choice]({chart.relative_to(results_dir).as_posix()})", ""]


def curves_section(dataset: str, ok: list[dict[str, Any]], settings: Sequence[Setting], results_dir: Path,
                   top: int) -> list[str]:
    chosen = sorted(ok, key=_by_val)[:max(0, top)]
    for kind_best in best_per_kind(ok).values():  # the best of every model kind, even outside the top N
        if kind_best not in chosen:
            chosen.append(kind_best)
    curves = []
    for r in chosen:
        epochs, values = plots.read_curve(r.get("log_dir", ""))
        if epochs:
            shown = ", ".join(f"{s.label}={s.value(r)}" for s in settings if s.value(r))
            label = f"{r['run_id']} ({r['kind']}{', ' + shown if shown else ''})"
            curves.append((f"{label}: val {metric(r, 'val/acc') or 0:.3f}", epochs, values))
    lines = ["### Learning curves", ""]
    if not curves:
        return lines + ["No TensorBoard logs found in the best runs' log folders.", ""]
    chart = plots.curves_chart(curves, results_dir / PLOTS_DIR / f"{dataset}_curves.png",
                               f"{dataset}: val/acc per epoch, best runs")
    return lines + [f"val/acc per epoch of the {len(curves)} best runs by val/acc, read from their TensorBoard "
                    "event files.", "", f"![learning curves]({chart.relative_to(results_dir).as_posix()})", ""]


def best_per_kind(ok: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The run with the best val/acc of each model kind (the one promoted to checkpoints/best/)."""
    out: dict[str, dict[str, Any]] = {}
    for r in sorted(ok, key=_by_val):
        if metric(r, "val/acc") is not None:
            out.setdefault(r["kind"], r)
    return out


def comparison_section(dataset: str, ok: list[dict[str, Any]], checkpoint_root: str | os.PathLike) -> list[str]:
    best_runs = best_per_kind(ok)
    cnn, resnet = best_runs.get("cnn"), best_runs.get("resnet18")
    lines = ["### Best CNN vs fine-tuned ResNet-18", ""]
    if cnn is None and resnet is None:
        return lines + ["No CNN or ResNet-18 run finished on this dataset.", ""]
    columns = [("CNN", cnn), ("ResNet-18", resnet)]
    lines += ["| | " + " | ".join(label for label, _ in columns) + " |", "|---|---|---|"]

    def per_epoch(r: dict[str, Any]) -> str:
        epochs, wall = metric(r, "epochs"), r.get("wall_time_s")
        return _fmt(wall / epochs, ".2f") if wall is not None and epochs else ""

    rows = [("run", lambda r: r["run_id"]), ("val acc (selection)", lambda r: _fmt(metric(r, "val/acc"))),
            ("test acc", lambda r: _fmt(metric(r, "test/acc"))), ("test loss", lambda r: _fmt(metric(r, "test/loss"))),
            ("parameters", lambda r: _fmt(metric(r, "params"), ",")),
            ("epochs", lambda r: _fmt(metric(r, "epochs"), "d")),
            ("training time (s)", lambda r: _fmt(r.get("wall_time_s"), ".1f")), ("time per epoch (s)", per_epoch),
            ("device", lambda r: r.get("device", ""))]
    for label, get in rows:
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
            lines.append(f"- best {name} kept in `{folder.as_posix()}/` (run {kept.get('run_id')}, val acc "
                         f"{_fmt(kept.get('val_acc'))}): "
                         + ", ".join(f"`{name}`" for name in kept.get("files", {}).values()))
    cnn_test = metric(cnn, "test/acc") if cnn else None
    resnet_test = metric(resnet, "test/acc") if resnet else None
    if cnn_test is not None and resnet_test is not None:
        diff = resnet_test - cnn_test
        cnn_params, resnet_params = metric(cnn, "params"), metric(resnet, "params")
        ratio = f" with {resnet_params / cnn_params:.0f}x its parameters" if cnn_params and resnet_params else ""
        lines.append(f"- ResNet-18 is {abs(diff) * 100:.1f} points {'above' if diff >= 0 else 'below'} the best CNN "
                     f"on test accuracy{ratio}.")
    return lines + [""]


def _how_to_produce(dataset: str, kind: str) -> str:
    from lightning_lab.cli import CONFIG_DIR

    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        try:
            cfg = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(cfg, dict):
            continue
        net = results.net_class_path(cfg)
        data = (cfg.get("data") or {}).get("class_path", "") if isinstance(cfg.get("data"), dict) else ""
        if net and results.model_kind(net) == kind and results.dataset_name(data) == dataset:
            return f"Produce them with `python -m lightning_lab sweep --config configs/{path.name}`."
    return (f"No config in configs/ trains a {KIND_LABEL[kind]} on {dataset}; copy one "
            f"(e.g. configs/{'resnet18_cifar' if kind == 'resnet18' else 'cifar'}.yaml), point its `data:` at "
            f"{dataset} and run `python -m lightning_lab sweep --config <it>`.")


def unfinished_section(unfinished: list[dict[str, Any]], settings: Sequence[Setting]) -> list[str]:
    if not unfinished:
        return []
    lines = ["### Failed and unfinished runs", ""]
    lines += _header(["run", "status", *(s.label for s in settings), "epochs", "error"])
    for r in unfinished:
        lines.append(_row([r["run_id"], r.get("status", ""), *(s.value(r) for s in settings),
                           _fmt(metric(r, "epochs"), "d"), r.get("error") or ""]))
    return lines + ["", "`running` or `interrupted` runs resume from their last.ckpt when the sweep is run again; "
                    "`failed` ones run again with `--retry-failed` once the cause is fixed.", ""]


# ------------------------------------------------------------------------------------------------ helpers
def _fmt(value: Any, spec: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if spec in ("d", ","):
        return format(int(value), spec)
    return format(float(value), spec)


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
