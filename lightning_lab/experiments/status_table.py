"""Ray Tune's status table for the sweep: one row per run (run id, state, settings, val/acc, epoch)."""
from __future__ import annotations

import time
from typing import Any

from ray.tune import ProgressReporter


class StatusTable(ProgressReporter):
    """Printed every `every_s` seconds and at the end, instead of Tune's table of the raw trial config."""

    def __init__(self, tensorboard_hint: str, every_s: float = 30.0) -> None:
        self.hint = tensorboard_hint
        self.every_s = every_s
        self.last = 0.0

    def should_report(self, trials: list[Any], done: bool = False) -> bool:
        return done or time.monotonic() - self.last >= self.every_s

    def report(self, trials: list[Any], done: bool, *sys_info: str) -> None:
        self.last = time.monotonic()
        rows = [("run", "state", "settings", "val/acc", "epoch")]
        for trial in trials:
            run = trial.config["run"]
            result = trial.last_result or {}
            acc = result.get("val/acc")
            rows.append((run["run_id"], trial.status, run["describe"], "" if acc is None else f"{acc:.4f}",
                         str(result.get("epoch", ""))))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        print("\n".join(["sweep: status" + (" (final)" if done else ""), *lines, self.hint]), flush=True)
