"""The sweep's book: Ray Tune's trial lifecycle, written down as each run's run.json by its only writer, the driver.

Statuses, from what Ray saw:

- ``running``: the trial reported (each validation epoch; the record the trial's RunRecord built);
- ``ok``: the trial returned after its fit and its test (its own record says so);
- ``stopped_early``: the scheduler (ASHA) stopped it, and only that;
- ``failed``: the trial raised or its process died (``error``: the first line of what happened);
- ``interrupted``: the driver stopped (Ctrl-C, SIGTERM) or the trial's node was lost while it ran.

A driver killed outright writes nothing more: its runs keep ``running``, which the next sweep treats like
``interrupted``. The same command continues ``running``/``interrupted``/unrecorded runs; ``failed`` ones only
with ``--retry-failed``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from lightning_lab.callbacks.run_record import now_iso, read_record, write_record
from lightning_lab.errors import first_line
from lightning_lab.experiments.plan import PlannedRun
from lightning_lab.experiments.trial import RECORD_KEY
from lightning_lab.paths import CONFIG_NAME

DONE = ("ok", "stopped_early")          # never trained again
CONTINUED = ("running", "interrupted")  # continued by the same command
LOST_NODE = ("node has died", "node died", "NodeDiedError")


def status_of(run: PlannedRun) -> str | None:
    """The status in the run's record, or None where it has none yet."""
    record = read_record(run.log_dir)
    return record.get("status") if record else None


def to_train(plan: Sequence[PlannedRun], retry_failed: bool) -> tuple[list[PlannedRun], dict[str, int]]:
    """The runs this command trains, and how many runs have each status (None: not started)."""
    counts: dict[str, int] = {}
    todo = []
    for run in plan:
        status = status_of(run)
        counts[str(status)] = counts.get(str(status), 0) + 1
        if status not in DONE and (status != "failed" or retry_failed):
            todo.append(run)
    return todo, counts


def _run_of(trial: Any) -> dict[str, Any]:
    return trial.config["run"]


def trial_name(trial: Any) -> str:
    """Tune's trial (and folder) name: the run id."""
    return _run_of(trial)["run_id"]


def _error_line(trial: Any) -> str:
    """The first line of what ended a trial: the exception the trial raised, or how its process died."""
    error = _local_error(trial)
    if error is None:
        try:  # the copies in the experiment's storage (synced there later than on_trial_error runs)
            error = trial.get_pickled_error() or trial.get_error()
        except Exception:  # an unreadable error file: say what Ray keeps
            error = None
    if error is None:
        return "the trial ended with an error (no details from Ray)"
    cause = getattr(error, "cause", None)  # RayTaskError wraps what the trainable raised
    return first_line(cause if isinstance(cause, BaseException) else error)


def _local_error(trial: Any) -> BaseException | None:
    """The error Ray has just written beside the trial on this machine (Trial.pickled_error_file/error_file)."""
    import cloudpickle

    try:
        if trial.pickled_error_file and Path(trial.pickled_error_file).is_file():
            with open(trial.pickled_error_file, "rb") as handle:
                return cloudpickle.load(handle)
        if trial.error_file and Path(trial.error_file).is_file():
            lines = [line for line in Path(trial.error_file).read_text().splitlines() if line.strip()]
            return RuntimeError(lines[-1]) if lines else None
    except Exception:  # unreadable: fall back to the storage copies
        return None
    return None


def lost_node(error_line: str) -> bool:
    return any(word in error_line for word in LOST_NODE)


def _fallback_record(run: dict[str, Any]) -> dict[str, Any]:
    """A record for a trial that ended before its first report: the config it saved, if any."""
    try:
        config = yaml.safe_load((Path(run["log_dir"]) / CONFIG_NAME).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    return {"run_id": run["run_id"], "config": config, "metrics": {}, "log_dir": run["log_dir"],
            "started_at": now_iso()}


def make_book(total: int, scheduler: Any) -> Any:
    """The Tune callback that keeps the book (and prints one line per start and end)."""
    from ray.tune import Callback

    class Book(Callback):
        def __init__(self) -> None:
            self.records: dict[str, dict[str, Any]] = {}
            self.own_status: dict[str, str] = {}     # the status the trial's RunRecord gave its last record
            self.ended: dict[str, str] = {}
            self.started: dict[str, float] = {}
            self.trials: dict[str, Any] = {}
            self.begin = time.monotonic()

        # -- writing ---------------------------------------------------------------------------------------------
        def write(self, trial: Any, status: str, error: str | None = None) -> None:
            run = _run_of(trial)
            record = dict(self.records.get(run["run_id"]) or read_record(run["log_dir"]) or _fallback_record(run))
            record.update(status=status, error=error, updated_at=now_iso())
            if status in ("ok", "failed", "stopped_early"):
                record["finished_at"] = record.get("finished_at") or now_iso()
            else:
                record["finished_at"] = None
            self.records[run["run_id"]] = record
            write_record(run["log_dir"], record)

        # -- Tune's hooks ----------------------------------------------------------------------------------------
        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            run = _run_of(trial)
            self.started[run["run_id"]] = time.monotonic()
            self.trials[run["run_id"]] = trial
            print(f"sweep: start   {run['run_id']}  {run['describe']}", flush=True)

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            text = result.get(RECORD_KEY)
            if text:
                record = json.loads(text)
                self.records[trial_name(trial)] = record
                self.own_status[trial_name(trial)] = record.get("status", "")
                self.write(trial, "running")

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            name = trial_name(trial)
            if name in getattr(scheduler, "stopped", ()):
                self.end(trial, "stopped_early")
            elif self.own_status.get(name) == "ok":
                self.end(trial, "ok")
            else:
                self.end(trial, "failed", "the trial returned before its fit and test finished")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            line = _error_line(trial)
            self.end(trial, "interrupted" if lost_node(line) else "failed", line)

        def end(self, trial: Any, status: str, error: str | None = None) -> None:
            name = trial_name(trial)
            self.write(trial, status, error)
            self.ended[name] = status
            took = time.monotonic() - self.started.pop(name, time.monotonic())
            acc = (self.records.get(name, {}).get("metrics") or {}).get("val/acc")
            done = len(self.ended)
            left = total - done
            eta = (time.monotonic() - self.begin) / done * left
            print(f"sweep: {status:<7} {name}  {_run_of(trial)['describe']}"
                  + (f"  val/acc {acc:.4f}" if acc is not None else "") + (f"  ({error})" if error else "")
                  + f"  in {took:.0f}s  [{done}/{total} ended"
                  + (f", {len(self.started)} running, about {eta:.0f}s left]" if left > 0 else "]"),
                  file=sys.stdout, flush=True)

        def interrupted(self) -> list[str]:
            """After Tuner.fit returned: the trials that started and did not end stopped with the driver."""
            names = [name for name in self.trials if name not in self.ended]
            for name in names:
                self.write(self.trials[name], "interrupted")
            return names

    return Book()


def recording_asha(max_epochs: int) -> Any:
    """Ray's ASHA on val/acc per epoch, remembering which trials it stopped (`.stopped`: run ids). A run that has
    trained its own budget (its max_epochs) is never stopped: its test follows and it ends by itself, `ok`."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class RecordingASHA(ASHAScheduler):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.stopped: set[str] = set()

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            decision = super().on_trial_result(tune_controller, trial, result)  # ASHA's rungs still see the result
            budget = _run_of(trial).get("max_epochs") or max_epochs
            if decision == TrialScheduler.STOP and result.get("epoch", 0) >= budget:
                return TrialScheduler.CONTINUE  # a rung at the last epoch: the budget is trained already
            if decision == TrialScheduler.STOP:
                self.stopped.add(trial_name(trial))
            return decision

    # max_t one past the runs' own budget: a run that reaches its budget ends by itself, never "stopped".
    return RecordingASHA(time_attr="epoch", metric="val/acc", mode="max", max_t=max_epochs + 1, grace_period=1,
                         reduction_factor=2)
