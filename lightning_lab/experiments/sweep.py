"""`python -m lightning_lab sweep`: plan the grid, then train each planned run as one Ray Tune trial.

Ray underneath: with no `--address` a local Ray sized to the machine (listening on 127.0.0.1 only, usage
statistics off) starts and stops with the sweep; `--address HOST:PORT|auto` joins a running cluster. Ray's
experiment folder lives under `<results-dir>/ray/` (or `--storage`): the same command again restores it
(`Tuner.restore`), so finished runs are skipped, an unfinished run continues from its last.ckpt, and
`--retry-failed` trains failed runs again. Each run's own record is its run.json (`RunRecord`); the CSVs,
the report and the best models are derived from those records at the end.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from lightning_lab.errors import ConfigError
from lightning_lab.experiments.plan import PlannedRun, plan_sweep, study_id
from lightning_lab.experiments.trial import FINISHED, latest_record, train_trial, version_dirs

SCHEDULERS = ("fifo", "asha")
DDP_TRIAL_CPU = 0.01


@dataclass
class Placement:
    """What one run gets: CPUs, GPUs (fractional packs several runs on one GPU) and DDP workers."""

    cpus: float
    gpus: float
    workers: int

    def trial_resources(self) -> dict[str, float]:
        # A DDP run's Ray Train workers hold its CPUs/GPUs; the trial that waits for them keeps a sliver of the
        # run's CPUs (Ray refuses a trial with no resources at all).
        return {"CPU": DDP_TRIAL_CPU} if self.workers > 1 else {"CPU": self.cpus, "GPU": self.gpus}

    def worker_cpus(self) -> float:
        """CPUs of each DDP worker: the run's CPUs less the trial's sliver, shared out."""
        return (self.cpus - DDP_TRIAL_CPU) / self.workers


def placement(resources: dict[str, float], cpus_per_run: float | None, gpus_per_run: float | None,
              workers_per_run: int | None) -> Placement:
    """The defaults: one GPU per run where the cluster has GPUs, else one core per run side by side; several
    GPUs per run (or --workers-per-run) mean DDP over that many workers."""
    total_cpus, total_gpus = float(resources.get("CPU", 1)), float(resources.get("GPU", 0))
    gpus = (1.0 if total_gpus else 0.0) if gpus_per_run is None else float(gpus_per_run)
    if gpus < 0 or (cpus_per_run is not None and cpus_per_run <= 0):
        raise ConfigError("--cpus-per-run must be > 0 and --gpus-per-run >= 0")
    if gpus > total_gpus:
        raise ConfigError(f"--gpus-per-run {gpus:g}: Ray sees {total_gpus:g} GPU(s)")
    if gpus > 1 and gpus != int(gpus):
        raise ConfigError(f"--gpus-per-run {gpus:g}: above one GPU, give a whole number (one DDP worker per GPU)")
    workers = workers_per_run or (int(gpus) if gpus > 1 else 1)
    if workers < 1:
        raise ConfigError("--workers-per-run must be at least 1")
    if cpus_per_run is None:
        slots = total_gpus / gpus if gpus else total_cpus
        cpus_per_run = max(1, int(total_cpus // max(1.0, slots))) if gpus else 1
        cpus_per_run = max(cpus_per_run, workers)
    if cpus_per_run > total_cpus:
        raise ConfigError(f"--cpus-per-run {cpus_per_run:g}: Ray sees {total_cpus:g} CPU(s)")
    return Placement(float(cpus_per_run), gpus, workers)


# -------------------------------------------------------------------------------------------------- Ray
def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def ray_environment(address: str | None) -> None:
    """Ray's settings from the environment; Ray reads some when it is first imported, so call this before."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address and (Path.home().joinpath(".ray", "auth_token").is_file() or os.environ.get("RAY_AUTH_TOKEN")
                    or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # present the token `ray start --head` wrote
    if not address:
        # Ray replaces a loopback node address by the machine's network address unless told not to (the
        # switch meant for single-machine Windows/macOS use).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[dict[str, float]]:
    """A local Ray on 127.0.0.1 (stopped at the end) or a connection to the cluster at `address`; yields the
    cluster's resources."""
    ray_environment(address)
    import ray

    if address:
        join(address)
    else:
        import torch

        # `_node_ip_address` is Ray's documented way to keep a local instance on the loopback interface
        # (there is no public argument for it); the default listens on the machine's network address.
        # address="local": always a new instance of our own, never one a `ray start` left on this machine.
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                 num_cpus=num_cpus or _usable_cpus(),
                 num_gpus=torch.cuda.device_count() if torch.cuda.is_available() else 0, configure_logging=False)
    try:
        yield dict(ray.cluster_resources())
    finally:
        ray.shutdown()


def join(address: str) -> None:
    """Connect to a running cluster. `ray start --head` turns token authentication on; its token
    (~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH) is presented when RAY_AUTH_MODE=token, which
    `ray_environment` sets where a token is at hand (Ray reads it when first imported)."""
    import ray

    try:
        ray.init(address=address, configure_logging=False)
    except Exception as err:  # ConnectionError, RaySystemError, auth errors: all one line for the user
        text = " ".join(str(err).split()) or type(err).__name__
        if "auth" in text.lower() or "token" in text.lower():
            raise ConfigError(f"could not join the Ray cluster at {address}: it requires a token; set "
                              "RAY_AUTH_MODE=token and put the cluster's token in ~/.ray/auth_token (or "
                              "RAY_AUTH_TOKEN)") from err
        raise ConfigError(f"could not join the Ray cluster at {address}: {text[:300]}") from err


# -------------------------------------------------------------------------------------------- progress
def _run_of(trial: Any) -> dict[str, Any]:
    return trial.config["run"]


def trial_name(trial: Any) -> str:
    """Tune's trial (and folder) name: the run id."""
    return _run_of(trial)["run_id"]


def _progress_callback(total: int) -> Any:
    from ray.tune import Callback

    class Progress(Callback):
        """One line per trial start and end (run id, settings, val/acc, time) and an estimate of the time left."""

        def __init__(self) -> None:
            self.started: dict[str, float] = {}
            self.durations: list[float] = []
            self.begin = time.monotonic()

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            run = _run_of(trial)
            self.started[run["run_id"]] = time.monotonic()
            print(f"sweep: start  {run['run_id']}  {run['describe']}", flush=True)

        def _end(self, trial: Any, word: str) -> None:
            run = _run_of(trial)
            took = time.monotonic() - self.started.pop(run["run_id"], time.monotonic())
            self.durations.append(took)
            acc = (trial.last_result or {}).get("val/acc")
            done = len(self.durations)
            left = total - done
            eta = (time.monotonic() - self.begin) / done * left
            print(f"sweep: {word:<6} {run['run_id']}  {run['describe']}"
                  + (f"  val/acc {acc:.4f}" if acc is not None else "")
                  + f"  in {took:.0f}s  [{done}/{total} done"
                  + (f", {len(self.started)} running, about {eta:.0f}s left]" if left > 0 else "]"), flush=True)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._end(trial, "done")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._end(trial, "failed")

    return Progress()


# ----------------------------------------------------------------------------------------------- sweep
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


def _storage(options: SweepOptions) -> str:
    if options.storage and "://" in options.storage:
        return options.storage
    return str(Path(options.storage or Path(options.results_dir) / "ray").expanduser().resolve())


def _status(run: PlannedRun) -> str | None:
    record = latest_record(run.as_dict())
    return record.get("status") if record else None


def sweep(config: str, grid: str | None = None, extra: Sequence[str] = (),
          options: SweepOptions | None = None) -> int:
    """Plan, skip what is recorded as finished, train the rest on Ray; 0 when no run failed, else 1."""
    options = options or SweepOptions()
    if options.scheduler not in SCHEDULERS:
        raise ConfigError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, not {options.scheduler!r}")
    plan = plan_sweep(config, grid, extra, options.repeats)
    status = {run.run_id: _status(run) for run in plan}
    skip = set(FINISHED) | (set() if options.retry_failed else {"failed"})
    todo = [run for run in plan if status[run.run_id] not in skip]
    print(f"sweep: {len(plan)} run{'s' * (len(plan) != 1)} planned; {len(plan) - len(todo)} already recorded "
          f"as finished, {len(todo)} to run", flush=True)
    if options.dry_run:
        for run in plan:
            state = status[run.run_id] or "todo"
            print(f"  {run.run_id:<24} {state:<13} {'+'.join(run.studies):<20} {run.describe}")
        return 0
    if todo:
        _run_on_ray(plan, todo, options)
    failed = [run for run in todo if _status(run) == "failed"]
    _derive(options.results_dir, plan)
    statuses = [_status(run) for run in todo]
    print(f"sweep: {statuses.count('ok')} ok, {statuses.count('stopped_early')} stopped early, {len(failed)} "
          f"failed, {len(todo) - len(failed) - statuses.count('ok') - statuses.count('stopped_early')} "
          f"unfinished of the {len(todo)} runs of this invocation"
          + ("; retry the failed ones with --retry-failed" if failed else ""), flush=True)
    return 1 if failed or len(todo) > statuses.count("ok") + statuses.count("stopped_early") else 0


def _run_on_ray(plan: list[PlannedRun], todo: list[PlannedRun], options: SweepOptions) -> None:
    ray_environment(options.address)
    from ray import tune

    storage = _storage(options)
    name = study_id(plan)
    path = f"{storage.rstrip('/')}/{name}"
    with ray_session(options.address, options.num_cpus) as resources:
        place = placement(resources, options.cpus_per_run, options.gpus_per_run, options.workers_per_run)
        print(f"sweep: Ray has {resources.get('CPU', 0):g} CPU(s), {resources.get('GPU', 0):g} GPU(s); each run "
              f"gets {place.cpus:g} CPU(s), {place.gpus:g} GPU(s)"
              + (f" over {place.workers} DDP workers" if place.workers > 1 else "") + f"; Ray experiment {path}",
              flush=True)
        trainable = tune.with_resources(train_trial, place.trial_resources())
        scheduler = _scheduler(options.scheduler, todo)
        if tune.Tuner.can_restore(path):
            print(f"sweep: resuming the Ray experiment {path}", flush=True)
            tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False,
                                       restart_errored=options.retry_failed, param_space=None)
        else:
            options_for_trials = {"cpus": place.cpus, "gpus": place.gpus, "workers": place.workers,
                                  "worker_cpus": place.worker_cpus(), "storage": storage}
            tuner = tune.Tuner(
                trainable,
                param_space={"run": tune.grid_search([run.as_dict() for run in todo]), "options": options_for_trials},
                tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=options.max_concurrent,
                                            trial_name_creator=trial_name, trial_dirname_creator=trial_name,
                                            reuse_actors=False),
                run_config=tune.RunConfig(name=name, storage_path=storage, callbacks=[_progress_callback(len(todo))],
                                          failure_config=tune.FailureConfig(max_failures=0), verbose=1),
            )
        tuner.fit()
    if scheduler is not None:
        _mark_stopped(todo)


def _scheduler(kind: str, runs: list[PlannedRun]) -> Any:
    if kind != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    max_epochs = max([int(r.max_epochs) for r in runs if r.max_epochs] or [100])
    # One past the runs' own budget: a run that reaches it ends by itself, and is not "stopped" by ASHA.
    return ASHAScheduler(time_attr="epoch", metric="val/acc", mode="max", max_t=max_epochs + 1, grace_period=1,
                         reduction_factor=2)


def _mark_stopped(runs: list[PlannedRun]) -> None:
    """Runs the scheduler stopped: their process is gone mid-fit, so their record still says `running`."""
    from lightning_lab.run_record import mark_status

    for run in runs:
        folders = version_dirs(run.as_dict())
        record = latest_record(run.as_dict())
        if folders and record is not None and record.get("status") == "running":
            for folder in reversed(folders):
                if (folder / "run.json").is_file():
                    mark_status(folder, "stopped_early")
                    print(f"sweep: {run.run_id} stopped early by ASHA", flush=True)
                    break


def _derive(results_dir: str, plan: list[PlannedRun]) -> None:
    """results/<dataset>.csv and checkpoints/best/ from the run.json records."""
    from lightning_lab.experiments import best, results

    runs = results.load_runs(sorted({run.save_dir for run in plan}))
    written = results.write_results(results_dir, runs=runs)
    for root in sorted({run.checkpoint_root for run in plan}):
        best.promote_best(runs, root)
    print(f"sweep: results -> {', '.join(str(p) for p in written.values())}; next: python -m lightning_lab "
          f"report --results-dir {results_dir}", flush=True)
