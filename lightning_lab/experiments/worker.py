"""`python -m lightning_lab.experiments.worker RUN.json ROW.json`: one sweep run in its own process.

The sweep starts it with `--isolate` (and for multi-device runs). Under DDP, Lightning re-runs this same
command for ranks 1..n-1; every rank trains, and only rank 0 writes the result row.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from lightning_lab.experiments.sweep import PlannedRun, execute


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m lightning_lab.experiments.worker RUN.json ROW.json", file=sys.stderr)
        return 2
    run = PlannedRun(**json.loads(Path(argv[0]).read_text()))
    row = execute(run, hide_argv=False)
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0:
        tmp = Path(argv[1] + ".tmp")
        tmp.write_text(json.dumps(row, default=str))
        tmp.replace(argv[1])
    return 0 if row.get("status") == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
