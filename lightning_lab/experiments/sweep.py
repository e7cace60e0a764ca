"""`python -m lightning_lab sweep`: plan → train on Ray → records → CSV and best models.

1. Plan: every combination of the grid, checked by the CLI's parser (`plan.plan_sweep`).
2. Choose: the runs whose record is not `ok`/`stopped_early` (`failed` ones only with ``--retry-failed``).
3. Train them on Ray Tune, one trial per run, with this command's scheduler, concurrency and resources (a new
   Tune experiment each time: nothing of an earlier command's Ray state is reused, so changed options apply).
   Each trial continues its run from its last.ckpt (`trial`); the driver writes each run's run.json from
   Ray's trial lifecycle (`book`).
4. Derive <results-dir>/<dataset>.csv and checkpoints/best/ from the records (`results`, `best`).

Exit status: 0 when every planned run is done, 1 when some failed (or remain failed), 130 after Ctrl-C.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from lightning_lab.cli import INTERRUPTED_EXIT
from lightning_lab.errors import ConfigError
from lightning_lab.experiments import best, book, results
from lightning_lab.experiments.cluster import placement, ray_environment, ray_session
from lightning_lab.experiments.plan import PlannedRun, plan_sweep, study_id
from lightning_lab.experiments.trial import DDP_ARGS, train_trial
from lightning_lab.paths import CHECKPOINT_ROOT, LOG_DIR
from lightning_lab.quiet import hide_ray_restore_advice

SCHEDULERS = ("fifo", "asha")


@dataclass
class SweepOptions:
    """The sweep's command-line options besides config, grid and the extra arguments."""

    results_dir: str = "results"
    retry_failed: bool = False
    dry_run: bool = False
    repeats: int = 1
    address: str | None = None
    storage: str | None = None
    cpus_per_run: float | None = None
    gpus_per_run: float | None = None
    workers_per_run: int | None = None
    max_concurrent: int | None = None
    scheduler: str = "fifo"
    num_cpus: int | None = None          # local Ray only: logical CPUs (default: the machine's)


def sweep(config: str, grid: str | None = None, extra: Sequence[str] = (),
          options: SweepOptions | None = None) -> int:
    """Plan, train what is not done on Ray, derive the results; the exit status."""
    options = options or SweepOptions()
    if options.scheduler not in SCHEDULERS:
        raise ConfigError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, not {options.scheduler!r}")
    if options.max_concurrent is not None and options.max_concurrent < 1:
        raise ConfigError(f"--max-concurrent must be at least 1, got {options.max_concurrent}")
    plan = plan_sweep(config, grid, extra, options.repeats)
    if options.scheduler == "asha":
        unbounded = [run.run_id for run in plan if not run.max_epochs or int(run.max_epochs) < 1]
        if unbounded:  # ASHA's rungs are epochs up to the runs' budget
            raise ConfigError(f"--scheduler asha needs trainer.max_epochs >= 1 in every run; {unbounded[0]} has "
                              f"{next(r.max_epochs for r in plan if r.run_id == unbounded[0])}")
    todo, counts = book.to_train(plan, options.retry_failed)
    print(f"sweep: {len(plan)} run{'s' * (len(plan) != 1)} planned; " + _counts_line(counts, options.retry_failed)
          + f"; {len(todo)} to train", flush=True)
    if options.dry_run:
        for run in plan:
            print(f"  {run.run_id:<24} {book.status_of(run) or 'todo':<13} {'+'.join(run.studies):<20} "
                  f"{run.describe}")
        return 0
    interrupted: list[str] = []
    if todo:
        interrupted = _train_on_ray(plan, todo, options)
    _derive(options.results_dir, plan)
    return _summary(plan, todo, interrupted, options)


def _counts_line(counts: dict[str, int], retry_failed: bool) -> str:
    parts = [f"{counts[s]} {s}" for s in ("ok", "stopped_early") if counts.get(s)]
    unfinished = sum(counts.get(s, 0) for s in book.CONTINUED)
    if unfinished:
        parts.append(f"{unfinished} unfinished (continued from their last checkpoint)")
    failed = counts.get("failed", 0)
    if failed:
        parts.append(f"{failed} failed (" + ("trained again: --retry-failed" if retry_failed else
                                             "not trained again; add --retry-failed to train them") + ")")
    return ", ".join(parts) or "none started yet"


def _summary(plan: list[PlannedRun], todo: list[PlannedRun], interrupted: list[str], options: SweepOptions) -> int:
    statuses = [book.status_of(run) for run in plan]
    line = ", ".join(f"{statuses.count(s)} {s}" for s in ("ok", "stopped_early", "failed", "interrupted", "running")
                     if statuses.count(s))
    not_started = statuses.count(None)
    print(f"sweep: {len(plan)} runs: {line}" + (f", {not_started} not started" if not_started else ""), flush=True)
    if interrupted or (todo and any(book.status_of(run) in book.CONTINUED + (None,) for run in todo)):
        print(f"sweep: interrupted; {len(interrupted)} run(s) in flight recorded as interrupted. The same command "
              "continues them from their last checkpoint.", flush=True)
        return INTERRUPTED_EXIT
    failed = statuses.count("failed")
    if failed:
        print(f"sweep: {failed} run(s) failed (the error is in their run.json and the report); after fixing the "
              "cause, train them again with the same command and --retry-failed", flush=True)
        return 1
    return 0


# -------------------------------------------------------------------------------------------------- Ray
def _storage(options: SweepOptions) -> str:
    if options.storage and "://" in options.storage:
        return options.storage
    return str(Path(options.storage or Path(options.results_dir) / "ray").expanduser().resolve())


def refuse_grid_over_ddp(runs: Sequence[PlannedRun]) -> None:
    """Runs trained by several Ray workers get Ray's DDP strategy, environment and devices (trial.DDP_ARGS), which
    would silently replace what a grid varies there."""
    owned = [DDP_ARGS[i].removeprefix("--") for i in range(0, len(DDP_ARGS), 2)]
    for run in runs:
        clash = [key for key in run.overrides if results.is_under(key, owned)]
        if clash:
            raise ConfigError(f"run {run.run_id} sets {clash[0]}, which Ray's DDP workers set themselves when a run "
                              f"has several (--workers-per-run, --gpus-per-run > 1): leave it out of the grid")


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    os.kill(os.getpid(), signal.SIGINT)  # Tune stops cleanly on SIGINT; SIGTERM means the same here


def _train_on_ray(plan: list[PlannedRun], todo: list[PlannedRun], options: SweepOptions) -> list[str]:
    """Train `todo` as Tune trials; the run ids left interrupted (Ctrl-C, SIGTERM)."""
    ray_environment(options.address)
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from lightning_lab.experiments.status_table import StatusTable

    storage = _storage(options)
    name = f"{study_id(plan)}-{time.strftime('%Y%m%d-%H%M%S')}"
    with ray_session(options.address, options.num_cpus) as resources:
        place = placement(resources, options.cpus_per_run, options.gpus_per_run, options.workers_per_run)
        if place.workers > 1:
            refuse_grid_over_ddp(todo)
        print(f"sweep: Ray has {resources.get('CPU', 0):g} CPU(s), {resources.get('GPU', 0):g} GPU(s); each run "
              f"gets {place.cpus:g} CPU(s), {place.gpus:g} GPU(s)"
              + (f" over {place.workers} DDP workers" if place.workers > 1 else "")
              + (f", at most {options.max_concurrent} at a time" if options.max_concurrent else "")
              + f"; scheduler {options.scheduler}", flush=True)
        logs = sorted({str(Path(run.save_dir, run.dataset + results.SWEEP_SUFFIX)) for run in todo})
        hint = f"sweep: TensorBoard: tensorboard --logdir {' --logdir '.join(logs)}"
        print(hint, flush=True)
        max_epochs = max([int(r.max_epochs) for r in todo if r.max_epochs] or [100])
        scheduler = book.recording_asha(max_epochs) if options.scheduler == "asha" else None
        keeper = book.make_book(len(todo), scheduler)
        trial_options = {"cpus": place.cpus, "gpus": place.gpus, "workers": place.workers,
                         "worker_cpus": place.worker_cpus(), "storage": storage}
        tuner = tune.Tuner(
            tune.with_resources(train_trial, place.trial_resources()),
            param_space={"run": tune.grid_search([run.as_dict() for run in todo]), "options": trial_options},
            tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=options.max_concurrent,
                                        trial_name_creator=book.trial_name, trial_dirname_creator=book.trial_name,
                                        reuse_actors=False),
            run_config=tune.RunConfig(
                name=name, storage_path=storage, callbacks=[keeper, JsonLoggerCallback()], verbose=1,
                failure_config=tune.FailureConfig(max_failures=0), progress_reporter=StatusTable(hint)),
        )
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
        hide_ray_restore_advice()
        try:
            tuner.fit()
        finally:
            signal.signal(signal.SIGTERM, previous)
        return keeper.interrupted()


def _derive(results_dir: str, plan: list[PlannedRun]) -> None:
    """results/<dataset>.csv and checkpoints/best/ from the run.json records."""
    runs = results.load_runs(sorted({run.save_dir for run in plan}))
    written = results.write_results(results_dir, runs=runs)
    for root in sorted({run.checkpoint_root for run in plan}):
        best.promote_best(runs, root)
    roots = sorted({run.save_dir for run in plan})
    where = "".join(f" --log-root {root}" for root in roots if Path(root) != Path(LOG_DIR).resolve())
    where += "".join(f" --checkpoint-root {root}" for root in sorted({run.checkpoint_root for run in plan})
                     if Path(root) != Path(CHECKPOINT_ROOT).resolve())
    print(f"sweep: results -> {', '.join(str(p) for p in written.values())}; next: python -m lightning_lab "
          f"report --results-dir {results_dir}{where}", flush=True)
