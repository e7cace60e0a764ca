"""`python -m lightning_lab report`: the run.json records -> results/REPORT.md (+ results/plots/*.png, the CSVs).

Per dataset: the sweep runs ranked by val/acc (test/acc beside it), runs stopped early apart, means over repeats,
the effect of each choice as paired differences with intervals (`stats`), learning curves, the best CNN
against the best ResNet-18, the textbook baselines (results/baselines/<dataset>.csv, when present), and the
plain `fit` runs in their own section (still candidates for the best model of the dataset).
"""
from __future__ import annotations

import csv
import math
import os
import statistics
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import yaml

from lightning_lab.atomic import atomic_write_text
from lightning_lab.experiments import best, plots, results, stats
from lightning_lab.experiments.results import Setting, metric
from lightning_lab.paths import CHECKPOINT_ROOT, CONFIG_DIR, LOG_DIR, RESULTS_DIR, dataset_name

REPORT_NAME = "REPORT.md"
PLOTS_DIR = "plots"
BASELINES_DIR = "baselines"
KIND_LABEL = {"cnn": "CNN", "resnet18": "ResNet-18", "mlp": "MLP"}
TINY_SWEEP = "python -m lightning_lab sweep --config configs/digits.yaml --grid configs/grids/digits_tiny.yaml"
CONFIDENCE = stats.CONFIDENCE


def write_report(results_dir: str | os.PathLike = RESULTS_DIR,
                 log_root: str | os.PathLike | Sequence[str | os.PathLike] = LOG_DIR,
                 top: int = 5, checkpoint_root: str | os.PathLike = CHECKPOINT_ROOT,
                 runs: list[dict[str, Any]] | None = None) -> Path:
    """Write REPORT.md (and the CSVs, plots) from the run records under `log_root` (or the `runs` given), and keep
    the best run of each dataset and model kind in `checkpoint_root`/best/ (as a sweep does), so that the models
    the report names are the ones kept."""
    results_dir = Path(results_dir)
    runs = results.load_runs(log_root) if runs is None else runs
    results.write_results(results_dir, runs=runs)
    best.promote_best(runs, checkpoint_root)
    data = results.by_dataset(runs)
    roots = ", ".join(f"`{Path(r).as_posix()}`" for r in results.as_roots(log_root))
    lines = ["# Experiment report", "",
             f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} from {len(runs)} run records "
             f"(`run.json`) under {roots}, {len(data)} dataset{'s' if len(data) != 1 else ''}. Accuracy is the "
             "fraction of correct predictions; runs are ranked and chosen on val/acc, test/acc is reported only. "
             f"Intervals are {CONFIDENCE:.0%} Student-t intervals; a difference is called only when the interval "
             "of the difference excludes 0. How to read it: docs/study.md.", ""]
    if not data:
        lines += [f"No results yet. Run a sweep first, e.g. `{TINY_SWEEP}`.", ""]
    if len(data) > 1:
        lines += ["Datasets: " + ", ".join(f"[{d}](#{d})" for d in data), ""]
    for dataset, group in data.items():
        lines += dataset_section(dataset, group, results_dir, top, checkpoint_root)
    path = results_dir / REPORT_NAME
    results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


# ---------------------------------------------------------------------------------------------- analysis
def _pm(mean: float, half: float, signed: bool = False) -> str:
    text = f"{mean:+.4f}" if signed else f"{mean:.4f}"
    return text if math.isnan(half) else f"{text} ± {half:.4f}"


def _seed(run: dict[str, Any], seeds: Sequence[Setting]) -> str:
    return ",".join(s.value(run) for s in seeds)


def effects(ok: list[dict[str, Any]], settings: Sequence[Setting]) -> dict[str, list[stats.Difference]]:
    """{setting label: differences of each value against the best one}, from runs matched on every other
    setting and the seed (stats.effects); selection metric val/acc, test/acc beside."""
    choices = [s for s in settings if not s.seed]
    seeds = [s for s in settings if s.seed]
    by_label = {s.label: s for s in choices}
    return stats.effects(ok, list(by_label), lambda run, label: by_label[label].value(run),
                         lambda run: metric(run, "val/acc"), lambda run: metric(run, "test/acc"),
                         lambda run: _seed(run, seeds))


def combinations(ok: list[dict[str, Any]], settings: Sequence[Setting]) -> list[tuple[tuple[str, ...], list[dict]]]:
    """[(values of the non-seed settings, runs)], best mean val/acc first."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for run in ok:
        groups.setdefault(results.combination(run, settings), []).append(run)

    def mean_val(item: tuple[tuple[str, ...], list[dict]]) -> float:
        vals = [v for v in (metric(r, "val/acc") for r in item[1]) if v is not None]
        return -statistics.fmean(vals) if vals else math.inf

    return sorted(groups.items(), key=mean_val)


def verdict_sentence(label: str, diff: stats.Difference) -> str:
    """One plain sentence on a value's difference from the best value of its setting."""
    pairs = f"{diff.n} matched pair{'s' * (diff.n != 1)}"
    shown = f"{_pm(diff.mean, diff.half, signed=True)} val/acc"
    if diff.verdict.startswith("no interval"):
        return (f"- **{label}**: {diff.value} vs {diff.reference}: {shown} from a single matched pair, so no "
                "interval; repeat the runs (`--repeats N`) to tell it from noise.")
    if diff.verdict == "no detectable difference":
        return (f"- **{label}**: {diff.value} vs {diff.reference}: {shown} over {pairs}; the "
                f"{CONFIDENCE:.0%} interval of the difference contains 0: no detectable difference.")
    return (f"- **{label}**: {diff.value} is {diff.verdict} than {diff.reference}: {shown} over {pairs} "
            f"({CONFIDENCE:.0%} interval [{diff.low:+.4f}, {diff.high:+.4f}], excluding 0).")


# ---------------------------------------------------------------------------------------------- sections
def dataset_section(dataset: str, runs: list[dict[str, Any]], results_dir: Path, top: int,
                    checkpoint_root: str | os.PathLike) -> list[str]:
    swept = [r for r in runs if r.get("sweep")]
    fits = [r for r in runs if not r.get("sweep")]
    ok = [r for r in swept if r.get("status") == "ok"]
    stopped = [r for r in swept if r.get("status") == "stopped_early"]
    unfinished = [r for r in swept if r.get("status") not in ("ok", "stopped_early")]
    settings = results.varying_settings(swept) if swept else []
    lines = [f"## {dataset}", "",
             f"{len(swept)} sweep runs: {len(ok)} ok (trained and tested), {len(stopped)} stopped early by the "
             f"scheduler, {len(unfinished)} failed or unfinished; {len(fits)} plain `fit` run"
             f"{'s' * (len(fits) != 1)} (their own section below). Settings that differ between the sweep runs: "
             + (", ".join(f"`{s.label}`" for s in settings) or "none") + f" (`{results_dir.as_posix()}/{dataset}.csv` "
             "has one column per differing config key).", ""]
    lines += runs_table("Sweep runs by val/acc", ok, settings)
    lines += stopped_table(stopped, settings)
    lines += repeats_section(ok, settings)
    lines += effects_section(dataset, ok, settings, results_dir)
    lines += curves_section(dataset, ok + [r for r in fits if r.get("status") == "ok"], settings, results_dir, top)
    lines += comparison_section(dataset, [r for r in runs if r.get("status") == "ok"], checkpoint_root)
    lines += baselines_section(dataset, [r for r in runs if r.get("status") == "ok"], results_dir)
    lines += fits_section(fits)
    lines += unfinished_section(unfinished, settings)
    return lines


def _by_val(run: dict[str, Any]) -> tuple:
    return best.selection_order(run)  # as the best model is chosen: ties never go by test/acc


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(_md(c) for c in cells) + " |"


def _header(names: Sequence[str]) -> list[str]:
    return [_row(names), "|" + "---|" * len(names)]


def runs_table(title: str, ok: list[dict[str, Any]], settings: Sequence[Setting]) -> list[str]:
    lines = [f"### {title}", "", "Ranked by val/acc (the selection metric); test/acc is shown beside it, never used "
             "to choose.", ""]
    if not ok:
        return lines + ["No finished runs.", ""]
    lines += _header(["#", "run", "model", *(s.label for s in settings), "val acc", "test acc", "test loss",
                      "epochs", "time (s)", "params"])
    for rank, r in enumerate(sorted(ok, key=_by_val), 1):
        lines.append(_row([rank, r["run_id"], r["kind"], *(s.value(r) for s in settings),
                           _fmt(metric(r, "val/acc")), _fmt(metric(r, "test/acc")), _fmt(metric(r, "test/loss")),
                           _fmt(metric(r, "epochs"), "d"), _fmt(r.get("wall_time_s"), ".1f"),
                           _fmt(metric(r, "params"), ",")]))
    return lines + [""]


def stopped_table(stopped: list[dict[str, Any]], settings: Sequence[Setting]) -> list[str]:
    if not stopped:
        return []
    lines = ["### Stopped early by the scheduler (ranked apart)", "",
             "ASHA stopped these runs before their full budget because they trailed the others at a rung; their "
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
    seeds = [s for s in settings if s.seed]
    lines = ["### Repeats: mean per combination", "",
             f"Runs that differ only by seed form a combination: mean ± {CONFIDENCE:.0%} interval over its seeds, "
             "best mean val/acc first.", ""]
    lines += _header(["#", *(s.label for s in choices), "runs", "val acc (mean ± 95% CI)", "test acc (mean ± 95% CI)"])
    for rank, (values, runs) in enumerate(groups, 1):
        vals = [v for v in (metric(r, "val/acc") for r in runs) if v is not None]
        tests = [v for v in (metric(r, "test/acc") for r in runs) if v is not None]
        lines.append(_row([rank, *values, len(runs), _pm(*stats.mean_ci(vals)) if vals else "",
                           _pm(*stats.mean_ci(tests)) if tests else ""]))
    lines.append("")
    if len(groups) > 1:
        first, second = groups[0], groups[1]
        diffs = stats.paired({_seed(r, seeds): metric(r, "val/acc") for r in first[1] if metric(r, "val/acc") is not None},
                             {_seed(r, seeds): metric(r, "val/acc") for r in second[1] if metric(r, "val/acc") is not None})
        mean, half = stats.mean_ci(diffs)
        name = lambda values: ", ".join(f"{s.label}={v}" for s, v in zip(choices, values)) or "the config"  # noqa: E731
        if len(diffs) < 2:
            lines.append(f"The best combination ({name(first[0])}) and the second ({name(second[0])}) share fewer than "
                         "two seeds: no interval for their difference.")
        else:
            diff = stats.Difference(name(first[0]), name(second[0]), len(diffs), mean, half)
            # Ranked by mean over all their seeds, the two can compare the other way on the seeds they share.
            words = {"better": "ahead of", "worse": "behind, on the seeds they share,"}.get(
                diff.verdict, "not detectably different from")
            lines.append(f"The best combination ({diff.value}) is {words} the second ({diff.reference}): "
                         f"{_pm(mean, half, signed=True)} val/acc over {len(diffs)} seeds (paired by seed).")
    return lines + [""]


def effects_section(dataset: str, ok: list[dict[str, Any]], settings: Sequence[Setting],
                    results_dir: Path) -> list[str]:
    table = effects(ok, settings)
    lines = ["### Effect of each choice", ""]
    if not table:
        return lines + ["No setting takes two values across finished runs that otherwise agree (a single run, or "
                        "no grid).", ""]
    lines += ["Each value against the best value of its setting: the mean paired difference in val/acc over runs "
              "matched on every other setting and the seed, with its 95% paired-t interval (n - 1 degrees of "
              "freedom over n pairs; without repeats the error term is the interaction with the other settings). "
              "test/acc of the same pairs beside it. Runs stopped early are left out.", ""]
    lines += _header(["setting", "value", "vs", "pairs", "val acc difference (95% CI)", "test acc difference",
                      "verdict"])
    for name, diffs in table.items():
        for d in diffs:
            lines.append(_row([name, d.value, d.reference, d.n, _pm(d.mean, d.half, signed=True),
                               "" if math.isnan(d.test_mean) else f"{d.test_mean:+.4f}", d.verdict]))
    lines += [""]
    for name, diffs in table.items():
        lines += [verdict_sentence(name, d) for d in diffs]
    chart = plots.effects_chart(table, results_dir / PLOTS_DIR / f"{dataset}_effects.png",
                                f"{dataset}: val/acc difference from the best value (95% paired CI)")
    return lines + ["", f"![val/acc difference per choice]({chart.relative_to(results_dir).as_posix()})", ""]


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
            label = f"{r['run_id']}{' (' + shown + ')' if shown and r.get('sweep') else ' (fit)'}"
            curves.append((f"{label}: {metric(r, 'val/acc') or 0:.3f}", epochs, values))
    lines = ["### Learning curves", ""]
    if not curves:
        return lines + ["No TensorBoard logs found in the best runs' log folders.", ""]
    chart = plots.curves_chart(curves, results_dir / PLOTS_DIR / f"{dataset}_curves.png",
                               f"{dataset}: val/acc per epoch, best runs")
    which = "the best run" if len(curves) == 1 else f"the {len(curves)} best runs"
    return lines + [f"val/acc per epoch of {which} by val/acc, read from the TensorBoard "
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
        tied = [r for r in ok if r["kind"] == kind and metric(r, "val/acc") == metric(run, "val/acc")]
        if len(tied) > 1:
            tests = [t for t in (metric(r, "test/acc") for r in tied) if t is not None]
            spread = f" (their test acc: {_fmt(min(tests))} to {_fmt(max(tests))})" if tests else ""
            lines.append(f"- {len(tied)} {name} runs tie at the top val acc ({_fmt(metric(run, 'val/acc'))}): the tie "
                         f"goes to the one that finished first, {run['run_id']}, never to test accuracy{spread}")
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
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        try:
            cfg = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(cfg, dict):
            continue
        net = results.net_class_path(cfg)
        data = (cfg.get("data") or {}).get("class_path", "") if isinstance(cfg.get("data"), dict) else ""
        if net and results.model_kind(net) == kind and dataset_name(data) == dataset:
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
    return lines + ["", "`running` and `interrupted` runs continue from their last checkpoint when the same sweep "
                    "command runs again; `failed` ones train again with `--retry-failed` once the cause is fixed.", ""]


def fits_section(fits: list[dict[str, Any]]) -> list[str]:
    """Plain `fit` runs: listed apart, not part of the sweep's analysis."""
    if not fits:
        return []
    lines = ["### Plain fit runs", "", "Runs trained with `python -m lightning_lab fit`, or as the config's own rows "
             "of `python -m lightning_lab baselines` (their experiment names end in `_baselines`), not by a sweep: "
             "not part of the analysis above, but candidates for the best model of the dataset.", ""]
    lines += _header(["run", "status", "model", "val acc", "test acc", "epochs", "time (s)"])
    for r in sorted(fits, key=_by_val):
        lines.append(_row([r["run_id"], r.get("status", ""), r["kind"], _fmt(metric(r, "val/acc")),
                           _fmt(metric(r, "test/acc")), _fmt(metric(r, "epochs"), "d"),
                           _fmt(r.get("wall_time_s"), ".1f")]))
    return lines + [""]


def read_baselines(results_dir: str | os.PathLike, dataset: str) -> list[dict[str, str]]:
    """results/baselines/<dataset>.csv (model, runs, test_acc, test_acc_sd, test_loss, params, train_seconds,
    epochs, batch_size; the networks' values are means over `runs` seeds); [] when there is none."""
    path = Path(results_dir) / BASELINES_DIR / f"{dataset}.csv"
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return []


def baselines_section(dataset: str, ok: list[dict[str, Any]], results_dir: Path) -> list[str]:
    rows = read_baselines(results_dir, dataset)
    if not rows:
        return []
    lines = ["### Against the textbook baselines", "",
             f"`{(results_dir / BASELINES_DIR).as_posix()}/{dataset}.csv` (`python -m lightning_lab baselines`) beside "
             "the best lab run of each model kind (chosen on val/acc). Only test accuracy is comparable: the "
             "baselines have no validation split of ours.", ""]
    lines += _header(["model", "source", "test acc", "test loss", "params", "train time (s)", "epochs"])
    for kind, run in best_per_kind(ok).items():
        lines.append(_row([f"{KIND_LABEL.get(kind, kind)} ({run['run_id']})", "lab, best by val/acc",
                           _fmt(metric(run, "test/acc")), _fmt(metric(run, "test/loss")),
                           _fmt(metric(run, "params"), ","), _fmt(run.get("wall_time_s"), ".1f"),
                           _fmt(metric(run, "epochs"), "d")]))
    for row in sorted(rows, key=lambda r: -_number(r.get("test_acc"))):
        accuracy = _fmt(_maybe(row.get("test_acc")))
        if (sd := _maybe(row.get("test_acc_sd"))) is not None:
            accuracy += f" ± {sd:.4f} (mean of {row.get('runs')} seeds)"
        lines.append(_row([row.get("model", ""), "baseline", accuracy,
                           _fmt(_maybe(row.get("test_loss"))), _fmt(_maybe(row.get("params")), ","),
                           _fmt(_maybe(row.get("train_seconds")), ".1f"), _fmt(_maybe(row.get("epochs")), "d")]))
    return lines + [""]


def _maybe(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _number(text: Any) -> float:
    value = _maybe(text)
    return -math.inf if value is None else value


# ------------------------------------------------------------------------------------------------ helpers
def _fmt(value: Any, spec: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if spec in ("d", ","):
        return format(int(value), spec)
    return format(float(value), spec)


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
