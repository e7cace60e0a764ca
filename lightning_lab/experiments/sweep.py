"""`python -m lightning_lab sweep`: plan (validate every combination), then run each as an ordinary LabCLI fit.

Runs execute in-process, one after the other (no interpreter start-up per run). A run that raises is
recorded as ``failed`` with its error and the sweep goes on; Ctrl-C (or a killed process) records nothing, so
the next invocation retries that run, resuming from its ``last.ckpt``.

Run ids are ``<config stem>-<8 hex>``: a hash of the config's name, the extra CLI overrides and the grid
values that differ from the config (so a combination equal to the config's own settings, reached from two
studies, is one run). Each run logs to ``lightning_logs/<dataset>_sweep/<run_id>/version_<n>`` and checkpoints
to ``checkpoints/<dataset>_sweep/<run_id>/version_<n>``.
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import shlex
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from lightning_lab.errors import ConfigError
from lightning_lab.experiments import best, results
from lightning_lab.experiments.grid import Study, canonical, expand, load_grid, override_args, parse_shard, shard
from lightning_lab.experiments.results import setting_name

RESERVED_EXTRAS = ("--ckpt_path", "--trainer.logger")


@dataclass
class PlannedRun:
    run_id: str
    studies: list[str]
    overrides: dict[str, Any]        # the grid values of this run (as written in the grid file)
    args: list[str]                  # LabCLI arguments after `fit`, without --ckpt_path
    config: str
    dataset: str
    model: str
    kind: str                        # cnn, resnet18, mlp: the folder under checkpoints/best/<dataset>/
    logger_name: str
    checkpoint_root: str
    params: int
    settings: dict[str, str]
    extra_settings: dict[str, str]
    varied: list[str] = field(default_factory=list)
    multi_device: bool = False       # DDP: must run in its own process (see execute_isolated)

    def command(self) -> str:
        return shlex.join([Path(sys.executable).name, "-m", "lightning_lab", "fit", *self.args])


# ------------------------------------------------------------------------------------------------ planning
@contextlib.contextmanager
def plain_argv() -> Iterator[None]:
    """LightningCLI warns when given `args` while sys.argv has arguments (ours: `sweep ...`); hide them."""
    saved = sys.argv[1:]
    sys.argv[1:] = []
    try:
        yield
    finally:
        sys.argv[1:] = saved


def _checker(args: list[str], where: str) -> tuple[Any, Any]:
    """The CLI's parser (a LabCLI that parses `args` and stops before instantiating anything) and the config
    it parsed. Parsing one more combination with it takes ~50 ms."""
    from lightning_lab.cli import LabCLI

    class _ParserOnly(LabCLI):
        def instantiate_classes(self) -> None:
            pass

    try:
        with plain_argv():
            cli = _ParserOnly(args=args, run=False,
                              parser_kwargs={"allow_abbrev": False, "exit_on_error": False,
                                             "prog": "python -m lightning_lab"})
    except Exception as err:
        raise ConfigError(f"{where}: {_one_line(err)}") from err
    return cli.parser, cli.config


def _one_line(err: BaseException, limit: int = 600) -> str:
    """jsonargparse's multi-line union errors reduced to the lines that say what is wrong."""
    noise = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:",
             "Expected a <class 'NoneType'>", "Given value type:", "Given value:")
    lines = [line.strip(" -") for line in str(err).splitlines()]
    text = " ".join(line for line in lines if line and not line.startswith(noise))
    text = text or type(err).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


def _parse(parser: Any, args: list[str], where: str, instantiate: bool) -> tuple[Any, Any]:
    try:
        cfg = parser.parse_args(args)
        if not instantiate:
            return cfg, None
        make = getattr(parser, "instantiate", None) or parser.instantiate_classes
        return cfg, make(cfg)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from err
    except Exception as err:  # jsonargparse's ArgumentError, a model's ValueError, ...
        raise ConfigError(f"{where}: {_one_line(err)}") from err


def _lookup(cfg: Any, key: str) -> Any:
    try:
        value = cfg[key]
    except (KeyError, TypeError, AttributeError):
        return None
    return value.as_dict() if hasattr(value, "as_dict") else value


def check_extras(extra: Sequence[str]) -> list[str]:
    from lightning_lab.cli import resolve_config_paths

    for arg in extra:
        if arg.startswith(RESERVED_EXTRAS):
            raise ConfigError(f"{arg.split('=')[0]} is set by the sweep (run names, resuming); leave it out")
    return resolve_config_paths(list(extra))


def plan_sweep(config: str, grid: str | None = None, extra: Sequence[str] = ()) -> list[PlannedRun]:
    """Every run of the sweep, deduplicated, each combination parsed and instantiated by the CLI's parser
    (so unknown keys, wrong types and values the model rejects fail here, before any training)."""
    from lightning_lab.cli import resolve_config_paths

    config_path = resolve_config_paths(["--config", config])[1]
    if not Path(config_path).is_file():
        raise ConfigError(f"config {config!r} not found")
    extra = check_extras(extra)
    stem = Path(config_path).stem
    studies = load_grid(grid) if grid else [Study("base", {}, {})]
    grid_name = f"grid {grid}" if grid else f"config {config_path}"
    parser, base_cfg = _checker(["--config", config_path, *extra],
                                f"{config_path}" + (f" with {' '.join(extra)}" if extra else ""))

    runs: dict[str, PlannedRun] = {}
    study_settings: dict[str, list[dict[str, str]]] = {s.name: [] for s in studies}
    for number, combo in enumerate(expand(studies), 1):
        shown = ", ".join(f"{k}={canonical(v)}" for k, v in combo.overrides.items()) or "the config as is"
        where = f"{grid_name}, study {combo.study!r}, combination {number} ({shown})"
        args = ["--config", config_path, *override_args(combo.overrides), *extra]
        cfg, init = _parse(parser, args, where, instantiate=True)
        differs = {k: v for k, v in combo.overrides.items() if _lookup(cfg, k) != _lookup(base_cfg, k)}
        digest = hashlib.sha1(canonical({"config": stem, "set": differs, "extra": list(extra)}).encode())
        run_id = f"{stem}-{digest.hexdigest()[:8]}"
        settings = results.settings_from_config(cfg)
        extra_settings = {setting_name(k): results.readable(v) for k, v in combo.overrides.items()
                          if setting_name(k) not in settings and setting_name(k) not in ("optimizer", "scheduler")}
        study_settings[combo.study].append({**settings, **extra_settings})
        if run_id in runs:
            if combo.study not in runs[run_id].studies:
                runs[run_id].studies.append(combo.study)
            continue
        dataset = results.dataset_name(cfg["data.class_path"])
        logger_name = f"{dataset}_sweep/{run_id}"
        model = init.model if init is not None else None
        runs[run_id] = PlannedRun(
            run_id=run_id, studies=[combo.study], overrides=dict(combo.overrides),
            args=[*args, "--trainer.logger.init_args.name", logger_name], config=config_path, dataset=dataset,
            model=results.short_class(cfg["model.class_path"]), kind=results.model_kind(cfg["model.class_path"]),
            logger_name=logger_name, checkpoint_root=str(_lookup(cfg, "checkpoint.root") or "checkpoints"),
            params=sum(p.numel() for p in model.parameters()) if model is not None else 0,
            settings=settings, extra_settings=extra_settings, multi_device=_multi_device(cfg),
        )
        del init, model

    varied_by_study = {name: _varied(rows) for name, rows in study_settings.items()}
    for run in runs.values():
        run.varied = sorted({col for s in run.studies for col in varied_by_study[s]},
                            key=lambda c: (results.SETTING_COLUMNS + [c]).index(c))
    return list(runs.values())


OPTIMIZER_SETTINGS = ("lr", "momentum", "weight_decay")


def _multi_device(cfg: Any) -> bool:
    """Whether the trainer will start several processes (DDP), which re-run the command line of the process."""
    devices = _lookup(cfg, "trainer.devices")
    if isinstance(devices, (list, tuple)):
        return len(devices) > 1
    if str(devices) in ("auto", "-1"):
        import torch

        accelerator = str(_lookup(cfg, "trainer.accelerator") or "auto")
        return accelerator in ("auto", "gpu", "cuda") and torch.cuda.device_count() > 1
    try:
        return int(devices) > 1
    except (TypeError, ValueError):
        return False


def _varied(rows: list[dict[str, str]]) -> list[str]:
    """The settings that take more than one value across a study's runs. An optimizer's own settings (lr,
    momentum, weight_decay) count only where they vary for one optimizer: SGD(lr=0.05) vs Adam(lr=0.001) is
    one choice, of optimizer, not an lr comparison."""
    names = dict.fromkeys(name for row in rows for name in row)
    varied = []
    for name in names:
        if name in OPTIMIZER_SETTINGS:
            per_optimizer: dict[str, set[str]] = {}
            for row in rows:
                per_optimizer.setdefault(row.get("optimizer", ""), set()).add(row.get(name, ""))
            if any(len(values) > 1 for values in per_optimizer.values()):
                varied.append(name)
        elif len({row.get(name, "") for row in rows}) > 1:
            varied.append(name)
    return varied


# ------------------------------------------------------------------------------------------------- running
def finished_ids(results_dir: str, datasets: set[str], retry_failed: bool = False) -> set[str]:
    done = set()
    for dataset in datasets:
        for row in results.read_rows(results.csv_path(results_dir, dataset)):
            if row["status"] == "ok" or (row["status"] == "failed" and not retry_failed):
                done.add(row["run_id"])
    return done


def last_checkpoint(run: PlannedRun) -> Path | None:
    from lightning_lab.cli import find_last_checkpoint

    return find_last_checkpoint(run.logger_name, run.checkpoint_root)


def _base_row(run: PlannedRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id, "study": "+".join(run.studies), "dataset": run.dataset, "model": run.model,
        "config": run.config, **run.settings, "params": run.params, "varied": ";".join(run.varied),
        "extra_settings": run.extra_settings, "overrides": run.overrides, "command": run.command(),
    }


def execute(run: PlannedRun, hide_argv: bool = True) -> dict[str, Any]:
    """Train one run in this process; the CSV row of its outcome (exceptions become status=failed).

    KeyboardInterrupt and SystemExit (Lightning turns Ctrl-C into sys.exit(1)) propagate: nothing is recorded,
    and the next sweep resumes the run from its last.ckpt. `hide_argv=False` in a worker process, whose
    command line DDP re-runs for the other ranks.
    """
    import torch

    from lightning_lab.cli import LabCLI

    last = last_checkpoint(run)
    args = ["fit", *run.args] + (["--ckpt_path", str(last)] if last else [])
    row = _base_row(run)
    if last:
        print(f"sweep: resuming {run.run_id} from {last}", flush=True)
    start = time.perf_counter()
    cli = None
    try:
        with plain_argv() if hide_argv else contextlib.nullcontext():
            cli = LabCLI(args=args)
        trainer = cli.trainer
        if trainer.interrupted:
            raise KeyboardInterrupt(f"run {run.run_id} was interrupted")
        checkpoint = trainer.checkpoint_callback
        metrics = trainer.callback_metrics
        row.update({
            "status": "ok",
            "val_acc": _item(getattr(checkpoint, "best_model_score", None)),
            "test_acc": _item(metrics.get("test/acc")),
            "test_loss": _item(metrics.get("test/loss")),
            "epochs": trainer.current_epoch,
            "params": sum(p.numel() for p in cli.model.parameters()),
            "checkpoint": getattr(checkpoint, "best_model_path", "") or "",
            "weights": _existing(getattr(checkpoint, "best_weights_path", None)),
            "log_dir": trainer.logger.log_dir if trainer.logger is not None else "",
        })
        if row["log_dir"]:
            row["run_config"] = _existing(Path(row["log_dir"]) / "config.yaml")
    except Exception as err:
        traceback.print_exc()
        row.update({"status": "failed", "error": f"{type(err).__name__}: {_one_line(err, 300)}"})
        print(f"sweep: run {run.run_id} failed: {row['error']}", file=sys.stderr, flush=True)
    finally:
        row["wall_time_s"] = round(time.perf_counter() - start, 2)
        row["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        del cli
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return row


def execute_isolated(run: PlannedRun) -> dict[str, Any]:
    """Train one run in a child process (`python -m lightning_lab.experiments.worker`): a crash (segfault,
    out-of-memory kill) costs that run only, and DDP can re-launch the worker for its other ranks. A child
    that dies without a result is recorded as `crashed`, which the next sweep retries (resuming last.ckpt)."""
    import dataclasses
    import json
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lab-sweep-") as tmp:
        spec, out = Path(tmp, "run.json"), Path(tmp, "row.json")
        spec.write_text(json.dumps(dataclasses.asdict(run)))
        start = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", "lightning_lab.experiments.worker", str(spec), str(out)])
        if out.is_file():
            return json.loads(out.read_text())
    row = _base_row(run)
    row.update(status="crashed", error=f"worker process exited with code {code} and no result",
               wall_time_s=round(time.perf_counter() - start, 2),
               finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    print(f"sweep: run {run.run_id} crashed (exit code {code}); the next sweep retries it", file=sys.stderr)
    return row


def _item(value: Any) -> float | None:
    if value is None:
        return None
    return float(value.item() if hasattr(value, "item") else value)


def _existing(path: Any) -> str:
    return str(path) if path and Path(path).exists() else ""


def sweep(config: str, grid: str | None = None, shard_spec: str | None = None, results_dir: str = "results",
          extra: Sequence[str] = (), retry_failed: bool = False, dry_run: bool = False,
          isolate: bool = False, runner: Callable[[PlannedRun], dict[str, Any]] | None = None) -> int:
    """Plan, skip what is finished, run the rest; 0 when every run of this invocation succeeded, else 1.
    `runner` trains one run and returns its CSV row: `execute` (in this process) unless `isolate` or the
    run uses several devices, then `execute_isolated` (a child process per run)."""
    plan = plan_sweep(config, grid, extra)
    selected = plan
    scope = ""
    if shard_spec:
        index, count = parse_shard(shard_spec)
        selected = shard(plan, index, count)
        scope = f", shard {index}/{count}: {len(selected)}"
    done = finished_ids(results_dir, {r.dataset for r in selected}, retry_failed)
    todo = [r for r in selected if r.run_id not in done]
    print(f"sweep: {_runs(len(plan))} planned{scope}; {len(selected) - len(todo)} already finished "
          f"(in {results_dir}/), {len(todo)} to run", flush=True)
    if dry_run:
        for run in selected:
            state = "done" if run.run_id in done else ("resume" if last_checkpoint(run) else "todo")
            print(f"  {run.run_id:<24} {state:<6} {'+'.join(run.studies):<20} {_describe(run)}")
        return 0
    failed = 0
    sweep_start = time.perf_counter()
    for number, run in enumerate(todo, 1):
        print(f"\nsweep: [{number}/{len(todo)}] {run.run_id} ({'+'.join(run.studies)}): {_describe(run)}",
              flush=True)
        row = (runner or (execute_isolated if isolate or run.multi_device else execute))(run)
        if row.get("status") == "ok":
            try:
                promoted = best.promote(row, run.kind, run.checkpoint_root)
            except OSError as err:
                promoted = None
                print(f"sweep: could not update the best {run.kind} of {run.dataset}: {err}", file=sys.stderr)
            if promoted:
                print(f"sweep: new best {run.kind} for {run.dataset} (val/acc {row['val_acc']:.4f}): {promoted}")
        else:
            failed += 1
        path = results.append_row(results_dir, run.dataset, row)
        print(f"sweep: {run.run_id} {row['status']}"
              + (f": val/acc {row['val_acc']:.4f}" if row.get("val_acc") is not None else "")
              + (f", test/acc {row['test_acc']:.4f}" if row.get("test_acc") is not None else "")
              + f" in {row['wall_time_s']:.1f}s -> {path}", flush=True)
    if todo:
        print(f"\nsweep: {len(todo) - failed} of {len(todo)} runs finished, {failed} failed, in "
              f"{time.perf_counter() - sweep_start:.0f}s. Next: python -m lightning_lab report --results-dir "
              f"{results_dir}", flush=True)
    return 1 if failed else 0


def _runs(count: int) -> str:
    return f"{count} run" + ("" if count == 1 else "s")


def _describe(run: PlannedRun) -> str:
    names = run.varied or [n for n in (setting_name(k) for k in run.overrides)]
    values = {**run.settings, **run.extra_settings}
    shown = [f"{n}={values[n]}" for n in names if values.get(n)]
    if "optimizer" in names and "lr" not in names and values.get("lr"):
        shown.append(f"lr={values['lr']}")
    return ", ".join(shown) or "config as is"
