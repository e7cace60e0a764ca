"""Moved to `lightning_lab.callbacks.run_record` (all callbacks live in callbacks/); this name stays until
cli.py imports it from there."""
from lightning_lab.callbacks.run_record import (STATUSES, RunRecord, now_iso, read_record, record_path,  # noqa: F401
                                                write_record)
