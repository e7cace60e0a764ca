"""One table of results: printed, and written as CSV and Markdown."""
from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass
from pathlib import Path

from lightning_lab.atomic import atomic_write_text

COLUMNS = ("model", "runs", "test_acc", "test_acc_sd", "test_loss", "params", "train_seconds", "epochs",
           "batch_size")


@dataclass
class Row:
    """A model's results: one value per run (one run per seed; scikit-learn's models are fitted once)."""

    model: str
    test_acc: list[float]
    test_loss: list[float] | None  # None: the model gives no probabilities (the SVC)
    params: int
    train_seconds: list[float]
    epochs: int | None = None  # None: not trained in epochs (scikit-learn)
    batch_size: int | None = None

    def cells(self) -> dict[str, str]:
        """The row as the CSV writes it: means over the runs, the sample standard deviation of the test accuracy
        (empty for one run), fixed decimals, empty where a value does not apply."""
        def text(value: float | int | None, fmt: str) -> str:
            return "" if value is None else format(value, fmt)

        sd = statistics.stdev(self.test_acc) if len(self.test_acc) > 1 else None
        loss = statistics.mean(self.test_loss) if self.test_loss else None
        return {"model": self.model, "runs": str(len(self.test_acc)),
                "test_acc": text(statistics.mean(self.test_acc), ".4f"), "test_acc_sd": text(sd, ".4f"),
                "test_loss": text(loss, ".4f"), "params": str(self.params),
                "train_seconds": text(statistics.mean(self.train_seconds), ".1f"),
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

