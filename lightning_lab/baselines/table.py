"""One table of results: printed, and written as CSV and Markdown."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from lightning_lab.atomic import atomic_write_text

COLUMNS = ("model", "test_acc", "test_loss", "params", "train_seconds", "epochs", "batch_size")


@dataclass
class Row:
    model: str
    test_acc: float
    test_loss: float | None
    params: int
    train_seconds: float
    epochs: int | None = None  # None: not trained in epochs (scikit-learn)
    batch_size: int | None = None

    def cells(self) -> dict[str, str]:
        """The row as the CSV writes it: fixed decimals, empty where a value does not apply."""
        def text(value: float | int | None, fmt: str) -> str:
            return "" if value is None else format(value, fmt)

        return {"model": self.model, "test_acc": text(self.test_acc, ".4f"), "test_loss": text(self.test_loss, ".4f"),
                "params": str(self.params), "train_seconds": text(self.train_seconds, ".1f"),
                "epochs": text(self.epochs, "d"), "batch_size": text(self.batch_size, "d")}


def as_text(rows: list[Row], skipped: dict[str, str]) -> str:
    """The aligned table for the terminal, then one line per skipped model with the reason."""
    table = [list(COLUMNS)] + [[row.cells()[c] or "-" for c in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
             for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"skipped {name}: {why}" for name, why in skipped.items()]
    return "\n".join(lines)


def as_markdown(rows: list[Row], skipped: dict[str, str], title: str, notes: list[str]) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row.cells()[c] or "-" for c in COLUMNS) + " |" for row in rows]
    lines += [""] + [f"- skipped {name}: {why}" for name, why in skipped.items()] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write(rows: list[Row], skipped: dict[str, str], csv_path: Path, title: str, notes: list[str]) -> Path:
    """Write `csv_path` (the rows; skipped models are not rows) and the Markdown table beside it; return the .md."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(row.cells() for row in rows)
    atomic_write_text(csv_path, text.getvalue())
    md_path = csv_path.with_suffix(".md")
    atomic_write_text(md_path, as_markdown(rows, skipped, title, notes))
    return md_path

