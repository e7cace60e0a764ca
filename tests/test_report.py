"""run.json (RunRecord) and what is derived from it: results CSV, REPORT.md, best-model promotion.

The callback is proved on real (tiny) Lightning fits of a minimal LightningModule; the derived files on synthetic
run.json records written by the tests.
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_lab.experiments import best, report, results
from lightning_lab.run_record import RunRecord, mark_status, read_record


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


class StopAfterFirstEpoch(Callback):
    """What a scheduler does in-process: mark the run, then stop the trainer."""

    def on_validation_end(self, trainer, pl_module):
        RunRecord.of(trainer).mark_stopped_early()
        trainer.should_stop = True


class MarkedFromOutside(Callback):
    """The sweep driver marking the trial while its training thread still writes."""

    def on_validation_end(self, trainer, pl_module):
        if trainer.current_epoch == 0:
            mark_status(trainer.log_dir, "stopped_early")


@pytest.mark.parametrize("stopper", [StopAfterFirstEpoch, MarkedFromOutside])
def test_stopped_early_is_recorded(tmp_path, stopper):
    _fit(tmp_path, Toy(), RunRecord("toy-s"), stopper(), max_epochs=3)
    record = read_record(tmp_path / "logs" / "toy" / "version_0")
    assert record["status"] == "stopped_early" and record["finished_at"]
    assert record["metrics"]["test/acc"] is not None
    assert record["metrics"]["epochs"] == (1 if stopper is StopAfterFirstEpoch else 3)


def test_mark_status_rejects_unknown_status(tmp_path):
    with pytest.raises(ValueError, match="status"):
        mark_status(tmp_path, "done")
    with pytest.raises(FileNotFoundError):
        mark_status(tmp_path, "ok")


# ------------------------------------------------------------------------------- synthetic run records
SGD = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.05, "momentum": 0.9, "dampening": 0.0,
                                                       "nesterov": False}}
ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.002, "betas": [0.9, 0.999], "eps": 1e-8,
                                                         "amsgrad": False}}
CNN = "lightning_lab.models.ParametricCNN"


def _config(run_id: str, activation: str = "relu", optimizer: dict = SGD, dropout: float = 0.1, seed: int = 42,
            net: str = CNN, dataset: str = "Digits") -> dict:
    """A resolved config in the new shape; the logger name and ckpt_path differ between any two runs."""
    net_args = {"channels": [32, 64], "activation": activation, "dropout": dropout} if net == CNN else \
        {"weights": "IMAGENET1K_V1", "freeze_backbone": False}
    return {"seed_everything": seed, "test_after_fit": True, "ckpt_path": f"checkpoints/{run_id}/last.ckpt",
            "trainer": {"max_epochs": 3, "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                                                    "init_args": {"name": f"sweep/{run_id}", "version": 0}},
                        "callbacks": [{"class_path": "lightning_lab.run_record.RunRecord",
                                       "init_args": {"run_id": run_id}}]},
            "model": {"net": {"class_path": net, "init_args": net_args}, "optimizer": optimizer},
            "data": {"class_path": f"lightning_lab.data.{dataset}DataModule",
                     "init_args": {"batch_size": 64, "seed": seed}}}


def _write_run(root: Path, run_id: str, status: str = "ok", val: float | None = 0.9, test: float | None = 0.88,
               updated: str = "2026-11-25T15:00:00+00:00", version: int = 0, **config) -> dict:
    """A run.json (plus config.yaml, checkpoint and weights files) as RunRecord writes them."""
    log_dir = root / "lightning_logs" / "sweep" / run_id / f"version_{version}"
    ckpt_dir = root / "checkpoints" / "sweep" / run_id / f"version_{version}"
    log_dir.mkdir(parents=True)
    ckpt_dir.mkdir(parents=True)
    cfg = _config(run_id, **config)
    (log_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    (ckpt_dir / "best.ckpt").write_bytes(run_id.encode())
    (ckpt_dir / "best_weights.pt").write_bytes(b"w" + run_id.encode())
    record = {"schema": 1, "run_id": run_id, "status": status,
              "error": "RuntimeError: x" if status == "failed" else None,
              "config": cfg, "metrics": {"val/acc": val, "best_epoch": 2, "test/acc": test, "test/loss": 0.3,
                                         "epochs": 3, "params": 1000},
              "checkpoint": str(ckpt_dir / "best.ckpt"), "weights": str(ckpt_dir / "best_weights.pt"),
              "log_dir": str(log_dir), "config_file": str(log_dir / "config.yaml"),
              "started_at": "2026-11-25T14:00:00+00:00", "attempt_started_at": "2026-11-25T14:00:00+00:00",
              "finished_at": "2026-11-25T14:01:00+00:00", "updated_at": updated, "wall_time_s": 60.0,
              "attempts": 1, "host": "node1", "device": "cpu", "world_size": 1}
    (log_dir / "run.json").write_text(json.dumps(record))
    return record


def _grid(root: Path) -> None:
    """activation x optimizer, 4 runs."""
    for i, (activation, optimizer) in enumerate([("relu", SGD), ("tanh", SGD), ("relu", ADAM), ("tanh", ADAM)]):
        _write_run(root, f"digits-{i}", val=0.9 + i / 100, test=0.8 + i / 100, activation=activation,
                   optimizer=optimizer)


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    import csv

    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames), list(reader)


def test_csv_is_derived_from_run_json_with_the_varying_settings_discovered(tmp_path):
    _grid(tmp_path)
    _write_run(tmp_path, "cifar-0", dataset="CIFAR10")
    # an older record of digits-1 (a retried run in another version folder): the newest record wins
    _write_run(tmp_path, "digits-1", status="failed", val=None, test=None, version=1,
               updated="2026-11-25T14:30:00+00:00", activation="tanh")
    written = results.write_results(tmp_path / "results", tmp_path / "lightning_logs")
    assert set(written) == {"digits", "cifar10"}
    columns, rows = _read_csv(written["digits"])
    varying = ["model.net.init_args.activation", "model.optimizer.class_path", "model.optimizer.init_args.lr",
               "model.optimizer.init_args.momentum"]
    assert columns[:3 + len(varying)] == ["run_id", "status", "model", *varying]
    assert {"val_acc", "test_acc", "test_loss", "epochs", "params", "wall_time_s", "started_at", "finished_at",
            "host", "device", "checkpoint", "weights", "error"} <= set(columns)
    assert not any("logger" in c or "ckpt_path" in c or "dampening" in c or "betas" in c for c in columns)
    assert [r["run_id"] for r in rows] == ["digits-0", "digits-1", "digits-2", "digits-3"]
    assert [r["status"] for r in rows] == ["ok"] * 4 and rows[1]["val_acc"] == "0.91"
    assert [(r["model.net.init_args.activation"], r["model.optimizer.class_path"], r["model.optimizer.init_args.lr"],
             r["model.optimizer.init_args.momentum"]) for r in rows] == [
        ("relu", "torch.optim.SGD", "0.05", "0.9"), ("tanh", "torch.optim.SGD", "0.05", "0.9"),
        ("relu", "torch.optim.Adam", "0.002", ""), ("tanh", "torch.optim.Adam", "0.002", "")]
    assert all(r["model"] == "cnn" and r["epochs"] == "3" for r in rows)
    before = written["digits"].read_text()
    results.write_results(tmp_path / "results", tmp_path / "lightning_logs")
    assert written["digits"].read_text() == before  # derived: the same records give the same file
    columns, [row] = _read_csv(written["cifar10"])
    assert row["run_id"] == "cifar-0" and "model.net.init_args.activation" not in columns  # one run: nothing varies


def test_settings_fold_class_arguments_and_flag_seeds(tmp_path):
    _grid(tmp_path)
    _write_run(tmp_path, "digits-seed", seed=7, val=0.95, test=0.9)
    runs = results.load_runs(tmp_path)
    settings = {s.label: s for s in results.varying_settings(runs)}
    assert set(settings) == {"activation", "optimizer", "seed_everything", "seed"}
    assert settings["seed"].seed and settings["seed_everything"].seed and not settings["optimizer"].seed
    assert [settings["optimizer"].value(r) for r in runs[:4]] == \
        ["SGD(lr=0.05, momentum=0.9)"] * 2 + ["Adam(lr=0.002)"] * 2
    assert results.combination(runs[0], list(settings.values())) == results.combination(
        runs[4], list(settings.values()))  # digits-seed repeats digits-0


def _report(tmp_path: Path) -> str:
    path = report.write_report(tmp_path / "results", tmp_path / "lightning_logs",
                               checkpoint_root=tmp_path / "checkpoints")
    return path.read_text()


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n### ", start + 1)
    return text[start:end if end != -1 else len(text)]


def test_report_ranks_stopped_early_apart_and_leaves_them_out_of_effects(tmp_path):
    _grid(tmp_path)
    _write_run(tmp_path, "digits-stop", status="stopped_early", val=0.99, test=None, activation="sigmoid")
    _write_run(tmp_path, "digits-bad", status="failed", val=None, test=None, activation="gelu")
    text = _report(tmp_path)
    ranked = _section(text, "### Runs by test accuracy")
    assert "digits-stop" not in ranked and "digits-bad" not in ranked
    assert [line.split("|")[2].strip() for line in ranked.splitlines() if line.startswith("| ") and "digits-" in line] \
        == ["digits-3", "digits-2", "digits-1", "digits-0"]
    stopped = _section(text, "### Stopped early by the scheduler (ranked apart)")
    assert "| 1 | digits-stop | cnn | sigmoid |" in stopped and "0.9900" in stopped
    effects = _section(text, "### Effect of each choice")
    assert "| activation | relu | 2 |" in effects and "| activation | tanh | 2 |" in effects
    assert "sigmoid" not in effects and "gelu" not in effects
    assert "| optimizer | SGD(lr=0.05, momentum=0.9) | 2 |" in effects
    assert "digits-bad" in _section(text, "### Failed and unfinished runs")
    assert "### Repeats" not in text  # no run repeats another
    assert (tmp_path / "results" / "plots" / "digits_effects.png").stat().st_size > 1000
    assert (tmp_path / "results" / "digits.csv").is_file()


def test_one_at_a_time_studies_compare_only_runs_that_differ_in_the_setting(tmp_path):
    _write_run(tmp_path, "base", test=0.80)                       # relu, dropout 0.1
    _write_run(tmp_path, "tanh", test=0.70, activation="tanh")    # study 1: activation
    _write_run(tmp_path, "nodrop", test=0.90, dropout=0.0)        # study 2: dropout
    runs = [r for r in results.load_runs(tmp_path) if r["status"] == "ok"]
    table = report.effects(runs, results.varying_settings(runs))
    assert {name: [(v, n, m) for v, n, m, _ in values] for name, values in table.items()} == {
        "activation": [("relu", 1, 0.80), ("tanh", 1, 0.70)], "dropout": [("0.1", 1, 0.80), ("0", 1, 0.90)]}
    assert report.noise_sentences("activation", table["activation"]) == [
        "- **activation**: relu and tanh each rest on a single run: no interval, so a difference cannot be told "
        "from noise (repeat the runs with `--repeats N`)."]


def test_mean_ci_is_a_student_t_interval():
    mean, half = report.mean_ci([0.8, 0.9])
    assert mean == pytest.approx(0.85) and half == pytest.approx(12.7062 * 0.070711 / 2 ** 0.5, rel=1e-4)
    mean, half = report.mean_ci([0.5, 0.6, 0.7])
    assert half == pytest.approx(4.3027 * 0.1 / 3 ** 0.5, rel=1e-4)
    assert report.mean_ci([0.5])[1] != report.mean_ci([0.5])[1]  # nan: no interval from one run


def _repeats(root: Path, tanh_accs: list[float], relu_accs: list[float]) -> None:
    for activation, accs in (("tanh", tanh_accs), ("relu", relu_accs)):
        for seed, acc in enumerate(accs):
            _write_run(root, f"{activation}-s{seed}", activation=activation, seed=seed, val=acc, test=acc)


def test_repeats_give_intervals_and_say_when_the_difference_is_noise(tmp_path):
    _repeats(tmp_path, [0.80, 0.90, 0.85], [0.82, 0.92, 0.87])  # wide, overlapping
    text = _report(tmp_path)
    repeats = _section(text, "### Repeats: mean per combination")
    half = report.mean_ci([0.82, 0.92, 0.87])[1]
    assert f"| 1 | relu | 3 | 0.8700 | 0.8700 ± {half:.4f} |" in repeats
    assert "| 2 | tanh | 3 | 0.8500 |" in repeats
    assert "differs by less than the noise" in repeats
    effects = _section(text, "### Effect of each choice")
    assert f"| activation | relu | 3 | 0.8700 ± {half:.4f} | **best** |" in effects
    assert "relu (0.8700" in effects and "differ by less than the noise" in effects
    assert "seed" not in effects  # a seed is a repeat, not a choice


def test_no_noise_sentence_when_intervals_do_not_overlap(tmp_path):
    _repeats(tmp_path, [0.700, 0.701, 0.702], [0.900, 0.901, 0.902])  # tight, far apart
    text = _report(tmp_path)
    assert "less than the noise" not in text
    assert "more than the noise" in _section(text, "### Effect of each choice")
    assert "ahead of every other by more than the noise" in _section(text, "### Repeats: mean per combination")


# ------------------------------------------------------------------------------------------- promotion
def test_best_model_is_promoted_by_val_acc_per_dataset_and_kind(tmp_path):
    _write_run(tmp_path, "a", val=0.90, test=0.99)                         # best test, not best val
    _write_run(tmp_path, "b", val=0.95, test=0.80, activation="tanh")      # best val among ok CNN runs
    _write_run(tmp_path, "c", status="stopped_early", val=0.99, test=None, activation="gelu")
    _write_run(tmp_path, "d", status="failed", val=0.98, test=None, activation="elu")
    _write_run(tmp_path, "r", val=0.70, test=0.75, net="lightning_lab.models.ResNet18")
    runs = results.load_runs(tmp_path)
    root = tmp_path / "checkpoints"
    written = best.promote_best(runs, root)
    assert set(written) == {("digits", "cnn"), ("digits", "resnet18")}
    folder = root / "best" / "digits" / "cnn"
    info = best.read_best(root, "digits", "cnn")
    assert info["run_id"] == "b" and info["val_acc"] == 0.95 and info["record"]["status"] == "ok"
    assert (folder / "model.ckpt").read_bytes() == b"b" and (folder / "best_weights.pt").read_bytes() == b"wb"
    assert yaml.safe_load((folder / "config.yaml").read_text())["model"]["net"]["init_args"]["activation"] == "tanh"
    assert best.read_best(root, "digits", "resnet18")["run_id"] == "r"
    assert best.promote_best(runs, root) == {}  # already there
    # a better kept run that is not among the runs given stays; a record with a better val/acc replaces it
    assert best.promote_best([r for r in runs if r["run_id"] == "a"], root) == {}
    _write_run(tmp_path, "e", val=0.97, test=0.5, activation="selu")
    assert set(best.promote_best(results.load_runs(tmp_path), root)) == {("digits", "cnn")}
    assert best.read_best(root, "digits", "cnn")["run_id"] == "e"
    assert sorted(p.name for p in (root / "best" / "digits").iterdir()) == ["cnn", "resnet18"]  # no leftovers


def test_model_kind_from_the_net_or_legacy_model_class():
    assert results.model_kind(results.net_class_path(_config("x"))) == "cnn"
    assert results.model_kind(results.net_class_path({"model": {"class_path": "lab.ResNet18Classifier"}})) == "resnet18"
    assert results.model_kind(results.net_class_path({"model": {"class_path": "lab.CNNClassifier"}})) == "cnn"
    assert results.model_kind("lightning_lab.models.MLP") == "mlp" and results.model_kind(None) == "model"


def test_plots_module_imports_no_pyplot_and_draws(tmp_path):
    """plots.py alone loads no pyplot (torchmetrics, which Lightning imports, loads it by itself)."""
    import subprocess
    import sys

    import lightning_lab.experiments.plots as plots

    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('p', sys.argv[1]); "
            "spec.loader.exec_module(importlib.util.module_from_spec(spec)); print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, plots.__file__], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    chart = plots.effects_chart({"activation": [("relu", 3, 0.9, 0.01), ("tanh", 1, 0.8, float("nan"))]},
                                tmp_path / "e.png", "t")
    assert chart.read_bytes()[:4] == b"\x89PNG"
