"""RunRecord (run.json of a plain fit), proved on real tiny Lightning fits of a minimal LightningModule."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_lab.callbacks.run_record import RunRecord, read_record


# ---------------------------------------------------------------------------------------- a tiny real fit
class Toy(L.LightningModule):
    """Logistic regression on a separable 2-class problem; logs val/acc, test/acc, test/loss."""

    def __init__(self, fail_at_epoch: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(2, 2)
        self.fail_at_epoch = fail_at_epoch

    def training_step(self, batch, batch_idx):
        if self.current_epoch == self.fail_at_epoch:
            raise RuntimeError("boom in training")
        x, y = batch
        return nn.functional.cross_entropy(self.layer(x), y)

    def _eval(self, batch, stage):
        x, y = batch
        logits = self.layer(x)
        self.log(f"{stage}/acc", (logits.argmax(1) == y).float().mean())
        self.log(f"{stage}/loss", nn.functional.cross_entropy(logits, y))

    def validation_step(self, batch, batch_idx):
        self._eval(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval(batch, "test")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=generator)
    return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=16)


def _trainer(tmp_path: Path, *callbacks: Callback, max_epochs: int = 2) -> L.Trainer:
    return L.Trainer(max_epochs=max_epochs, logger=CSVLogger(tmp_path / "logs", name="toy", version=0),
                     callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/acc", mode="max",
                                                save_last=True), *callbacks],
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     accelerator="cpu", devices=1)


def _fit(tmp_path: Path, model: L.LightningModule, *callbacks: Callback, max_epochs: int = 2,
         ckpt_path: str | None = None, test: bool = True) -> L.Trainer:
    trainer = _trainer(tmp_path, *callbacks, max_epochs=max_epochs)
    trainer.fit(model, _loader(), _loader(), ckpt_path=ckpt_path)
    if test:
        trainer.test(model, _loader(), ckpt_path="best", verbose=False)
    RunRecord.of(trainer).finish(trainer)  # what LabCLI does after its test
    return trainer


def _iso(text: str) -> datetime:
    stamp = datetime.fromisoformat(text)
    assert stamp.tzinfo is not None, f"{text} has no time zone"
    return stamp


def test_record_of_a_fit_then_test(tmp_path):
    log_dir = tmp_path / "logs" / "toy" / "version_0"
    log_dir.mkdir(parents=True)
    (log_dir / "config.yaml").write_text("model:\n  net:\n    class_path: toy.Net\ntrainer:\n  max_epochs: 2\n")
    trainer = _fit(tmp_path, Toy(), RunRecord("toy-1"))
    record = read_record(log_dir)
    assert record["run_id"] == "toy-1" and record["status"] == "ok" and record["error"] is None
    assert record["config"] == {"model": {"net": {"class_path": "toy.Net"}}, "trainer": {"max_epochs": 2}}
    metrics = record["metrics"]
    assert metrics["val/acc"] == pytest.approx(trainer.checkpoint_callback.best_model_score.item())
    assert metrics["test/acc"] == pytest.approx(trainer.callback_metrics["test/acc"].item())
    assert metrics["test/loss"] == pytest.approx(trainer.callback_metrics["test/loss"].item())
    assert metrics["epochs"] == 2 and metrics["params"] == 6 and metrics["best_epoch"] in (0, 1)
    assert record["checkpoint"] == str(Path(trainer.checkpoint_callback.best_model_path).resolve())
    assert record["weights"] == ""  # a plain ModelCheckpoint writes no best_weights.pt
    assert record["log_dir"] == str(log_dir.resolve()) and record["device"] == "cpu" and record["host"]
    started, finished = _iso(record["started_at"]), _iso(record["finished_at"])
    assert started <= finished and 0 < record["wall_time_s"] <= (finished - started).total_seconds() + 1
    assert record["attempts"] == 1 and record["world_size"] == 1
    assert sorted(p.name for p in log_dir.iterdir() if p.name.startswith(".")) == []  # no temporary file left


def test_record_without_config_yaml_uses_hparams_and_default_run_id(tmp_path):
    _fit(tmp_path, Toy(), RunRecord(), test=False)
    record = read_record(tmp_path / "logs" / "toy" / "version_0")
    assert record["run_id"] == "toy/version_0" and record["config"] == {"model": {"fail_at_epoch": None}}
    assert record["status"] == "ok" and record["metrics"]["test/acc"] is None


def test_failed_run_is_recorded(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        _fit(tmp_path, Toy(fail_at_epoch=1), RunRecord("toy-bad"))
    record = read_record(tmp_path / "logs" / "toy" / "version_0")
    assert record["status"] == "failed" and record["error"] == "RuntimeError: boom in training"
    assert record["metrics"]["epochs"] == 1 and record["metrics"]["val/acc"] is not None  # epoch 0 validated
    assert _iso(record["started_at"]) <= _iso(record["finished_at"])


def test_resume_keeps_the_first_start_and_adds_up_time(tmp_path):
    _fit(tmp_path, Toy(), RunRecord("toy-r"), max_epochs=1, test=False)
    first = read_record(tmp_path / "logs" / "toy" / "version_0")
    _fit(tmp_path, Toy(), RunRecord("toy-r"), max_epochs=3, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    second = read_record(tmp_path / "logs" / "toy" / "version_0")
    assert second["status"] == "ok" and second["attempts"] == 2 and second["metrics"]["epochs"] == 3
    assert second["started_at"] == first["started_at"]
    assert _iso(second["attempt_started_at"]) >= _iso(first["finished_at"])
    assert second["wall_time_s"] > first["wall_time_s"] * 0.999
    assert second["metrics"]["val/acc"] >= first["metrics"]["val/acc"]
    assert second["metrics"]["test/acc"] is not None


def test_ok_only_after_the_test_that_follows_the_fit(tmp_path):
    """A run killed between its fit and its test is not `ok`: that status comes with finish()."""
    seen = []

    class Look(Callback):
        def on_test_start(self, trainer, pl_module):
            seen.append(read_record(tmp_path / "logs" / "toy" / "version_0")["status"])

    _fit(tmp_path, Toy(), RunRecord("toy-t"), Look())
    assert seen == ["running"]
    assert read_record(tmp_path / "logs" / "toy" / "version_0")["status"] == "ok"


def test_a_sink_receives_the_record_instead_of_run_json(tmp_path):
    record = RunRecord("toy-sink")
    received = []
    record.sink = received.append
    _fit(tmp_path, Toy(), record)
    assert not (tmp_path / "logs" / "toy" / "version_0" / "run.json").exists()
    assert [r["status"] for r in received] == ["running"] * 3 + ["ok"]  # fit start, 2 epochs, finish
    assert received[-1]["metrics"]["test/acc"] is not None and received[1]["metrics"]["epochs"] == 1


@pytest.mark.parametrize("monitor,mode", [("val/loss", "min"), (None, "min")])
def test_the_best_epoch_is_the_one_the_checkpoint_keeps_also_on_val_loss_or_the_last(tmp_path, monitor, mode):
    """With the checkpoint chosen on val/loss (min), or keeping the last epoch (no monitor), val/acc and
    best_epoch describe that checkpoint's epoch."""
    import csv

    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor=monitor, mode=mode)
    trainer = L.Trainer(max_epochs=4, logger=CSVLogger(tmp_path / "logs", name="toy", version=0),
                        callbacks=[checkpoint, RunRecord()], enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, accelerator="cpu", devices=1)
    trainer.fit(Toy(), _loader(), _loader())
    RunRecord.of(trainer).finish(trainer)
    record = read_record(tmp_path / "logs" / "toy" / "version_0")
    kept = torch.load(checkpoint.best_model_path, weights_only=False)["epoch"]
    with open(tmp_path / "logs" / "toy" / "version_0" / "metrics.csv") as f:
        val = {int(row["epoch"]): row for row in csv.DictReader(f) if row.get("val/loss")}
    assert record["metrics"]["best_epoch"] == kept
    assert record["metrics"]["val/acc"] == pytest.approx(float(val[kept]["val/acc"]))
    if monitor is None:
        assert kept == max(val) == 3
    else:
        assert float(val[kept]["val/loss"]) == min(float(row["val/loss"]) for row in val.values())
    assert record["checkpoint"] == str(Path(checkpoint.best_model_path).resolve())
