"""What the run.json records give: results CSV, REPORT.md (verdicts on constructed records), best models."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from lightning_lab.experiments import best, report, results, stats

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
                        "callbacks": [{"class_path": "lightning_lab.callbacks.run_record.RunRecord",
                                       "init_args": {"run_id": run_id}}]},
            "model": {"net": {"class_path": net, "init_args": net_args}, "optimizer": optimizer},
            "data": {"class_path": f"lightning_lab.data.{dataset}DataModule",
                     "init_args": {"batch_size": 64, "seed": seed}}}


def _write_run(root: Path, run_id: str, status: str = "ok", val: float | None = 0.9, test: float | None = 0.88,
               updated: str = "2026-11-25T15:00:00+00:00", version: int = 0, fit: bool = False, **config) -> dict:
    """A run.json (plus config.yaml, checkpoint and weights files) as a sweep (or, `fit`, a plain fit) writes them."""
    folder = Path("digits_cnn") if fit else Path("digits_sweep", run_id)
    log_dir = root / "lightning_logs" / folder / f"version_{version}"
    ckpt_dir = root / "checkpoints" / folder / f"version_{version}"
    log_dir.mkdir(parents=True)
    ckpt_dir.mkdir(parents=True)
    cfg = _config(run_id, **config)
    (log_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    (ckpt_dir / "best.ckpt").write_bytes(run_id.encode())
    (ckpt_dir / "best_weights.pt").write_bytes(b"w" + run_id.encode())
    record = {"run_id": run_id, "status": status,
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


def _ranked(section: str) -> list[str]:
    return [line.split("|")[2].strip() for line in section.splitlines() if line.startswith("| ") and "|---" not in line
            and line.split("|")[1].strip().isdigit()]


def test_report_ranks_on_val_acc_keeps_stopped_and_plain_fits_apart(tmp_path):
    _grid(tmp_path)  # val 0.90..0.93, test 0.80..0.83
    _write_run(tmp_path, "digits-test-best", val=0.85, test=0.99, dropout=0.3)  # best test, worst val
    _write_run(tmp_path, "digits-stop", status="stopped_early", val=0.99, test=None, activation="sigmoid")
    _write_run(tmp_path, "digits-bad", status="failed", val=None, test=None, activation="gelu")
    _write_run(tmp_path, "digits_cnn/version_0", val=0.97, test=0.95, fit=True, dropout=0.5)
    text = _report(tmp_path)
    ranked = _section(text, "### Sweep runs by val/acc")
    assert _ranked(ranked) == ["digits-3", "digits-2", "digits-1", "digits-0", "digits-test-best"]
    assert "digits_cnn/version_0" not in ranked and "digits-stop" not in ranked
    stopped = _section(text, "### Stopped early by the scheduler (ranked apart)")
    assert "| 1 | digits-stop | cnn |" in stopped and "0.9900" in stopped
    effects = _section(text, "### Effect of each choice")
    assert "sigmoid" not in effects and "gelu" not in effects and "0.5" not in effects  # fits: not analysed
    fits = _section(text, "### Plain fit runs")
    assert "digits_cnn/version_0" in fits
    assert "digits-bad" in _section(text, "### Failed and unfinished runs")
    assert "--retry-failed" in _section(text, "### Failed and unfinished runs")
    assert "### Repeats" not in text  # no run repeats another
    # the best CNN of the dataset is chosen on val/acc over every finished run, plain fits included
    comparison = _section(text, "### Best CNN vs fine-tuned ResNet-18")
    assert "| run | digits_cnn/version_0 |" in comparison
    # and it is kept, as a sweep keeps it
    assert best.read_best(tmp_path / "checkpoints", "digits", "cnn")["run_id"] == "digits_cnn/version_0"
    assert "best CNN kept in" in comparison
    assert (tmp_path / "results" / "plots" / "digits_effects.png").stat().st_size > 1000
    assert (tmp_path / "results" / "digits.csv").is_file()
    assert "### Against the textbook baselines" not in text  # no baselines file: no section


def _repeats(root: Path, accs: dict[str, list[float]], other: dict[str, list[float]] | None = None) -> None:
    """Runs per activation and seed (val = test = the accuracy given)."""
    for activation, values in accs.items():
        for seed, acc in enumerate(values):
            _write_run(root, f"{activation}-s{seed}", activation=activation, seed=seed, val=acc, test=acc)


def test_a_steady_small_advantage_under_seed_noise_is_reported_as_a_difference(tmp_path):
    levels = [0.80, 0.90, 0.85, 0.88, 0.82]  # seed-to-seed spread ±0.05
    _repeats(tmp_path, {"relu": [v + 0.02 for v in levels], "tanh": [v + (0.001 if i % 2 else -0.001)
                                                                    for i, v in enumerate(levels)]})
    text = _report(tmp_path)
    effects = _section(text, "### Effect of each choice")
    assert "| activation | tanh | relu | 5 |" in effects and "| worse |" in effects
    assert "tanh is worse than relu" in effects and "excluding 0" in effects
    repeats = _section(text, "### Repeats: mean per combination")
    assert "is ahead of the second" in repeats and "over 5 seeds (paired by seed)" in repeats
    assert "seed" not in effects.split("![")[0].split("|---|")[1].replace("seeds", "")  # a seed is no choice


def test_the_best_by_mean_can_be_behind_on_the_seeds_the_two_share(tmp_path):
    """relu has a third, lucky seed (its mean leads) but trails tanh on both shared seeds: the sentence says so."""
    _repeats(tmp_path, {"relu": [0.80, 0.81, 0.99], "tanh": [0.85, 0.861]})
    repeats = _section(_report(tmp_path), "### Repeats: mean per combination")
    assert "is behind, on the seeds they share, the second" in repeats and "not detectably" not in repeats


def test_pure_noise_is_no_detectable_difference(tmp_path):
    _repeats(tmp_path, {"relu": [0.91, 0.88, 0.90, 0.87, 0.92], "tanh": [0.90, 0.895, 0.90, 0.865, 0.93]})
    effects = _section(_report(tmp_path), "### Effect of each choice")
    assert "no detectable difference" in effects and "contains 0" in effects
    assert "| better |" not in effects and "| worse |" not in effects


def test_two_by_two_without_repeats_keeps_the_optimizer_effect(tmp_path):
    for run_id, activation, optimizer, acc in [("a", "relu", SGD, 0.921), ("b", "relu", ADAM, 0.900),
                                               ("c", "tanh", SGD, 0.719), ("d", "tanh", ADAM, 0.700)]:
        _write_run(tmp_path, run_id, activation=activation, optimizer=optimizer, val=acc, test=acc)
    effects = _section(_report(tmp_path), "### Effect of each choice")
    assert "| optimizer | Adam(lr=0.002) | SGD(lr=0.05, momentum=0.9) | 2 |" in effects
    assert "Adam(lr=0.002) is worse than SGD(lr=0.05, momentum=0.9)" in effects
    assert "noise" not in effects.split("![")[0].replace("from noise", "")


def test_one_at_a_time_studies_compare_only_runs_that_differ_in_the_setting(tmp_path):
    _write_run(tmp_path, "base", val=0.80)                       # relu, dropout 0.1
    _write_run(tmp_path, "tanh", val=0.70, activation="tanh")    # study 1: activation
    _write_run(tmp_path, "nodrop", val=0.90, dropout=0.0)        # study 2: dropout
    runs = [r for r in results.load_runs(tmp_path) if r["status"] == "ok"]
    table = report.effects(runs, results.varying_settings(runs))
    assert {name: [(d.value, d.reference, d.n, round(d.mean, 4)) for d in diffs] for name, diffs in table.items()} == {
        "activation": [("tanh", "relu", 1, -0.1)], "dropout": [("0.1", "0", 1, -0.1)]}
    assert "single matched pair, so no interval" in report.verdict_sentence("activation", table["activation"][0])


def test_baselines_appear_beside_the_best_runs_when_their_file_exists(tmp_path):
    _grid(tmp_path)
    folder = tmp_path / "results" / "baselines"
    folder.mkdir(parents=True)
    with open(folder / "digits.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "runs", "test_acc", "test_acc_sd", "test_loss", "params", "train_seconds", "epochs",
                         "batch_size"])
        writer.writerow(["svc", "1", "0.9722", "", "", "", "0.1", "", ""])
        writer.writerow(["keras_mnist_cnn", "3", "0.9861", "0.0042", "0.05", "225034", "12.5", "12", "128"])
    section = _section(_report(tmp_path), "### Against the textbook baselines")
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows[0].startswith("| CNN (digits-3) | lab, best by val/acc | 0.8300 |")
    assert rows[1].startswith("| keras_mnist_cnn | baseline | 0.9861 ± 0.0042 (mean of 3 seeds) | 0.0500 | 225,034 "
                              "| 12.5 | 12 |")
    assert rows[2].startswith("| svc | baseline | 0.9722 |  |")  # fitted once: no spread


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


def test_a_tie_on_val_acc_goes_to_the_run_that_finished_first_in_the_report_and_the_best_folder(tmp_path):
    """Test accuracy never breaks a tie: the report's best run is the one kept in checkpoints/best/."""
    _write_run(tmp_path, "first", val=0.95, test=0.80)
    later = _write_run(tmp_path, "later", val=0.95, test=0.99, activation="tanh")
    later["finished_at"] = "2026-11-25T16:00:00+00:00"
    Path(later["log_dir"], "run.json").write_text(json.dumps(later))
    text = _report(tmp_path)
    comparison = _section(text, "### Best CNN vs fine-tuned ResNet-18")
    assert "| run | first |" in comparison
    assert ("- 2 CNN runs tie at the top val acc (0.9500): the tie goes to the one that finished first, first, "
            "never to test accuracy (their test acc: 0.8000 to 0.9900)") in comparison
    assert _ranked(_section(text, "### Sweep runs by val/acc")) == ["first", "later"]
    assert best.read_best(tmp_path / "checkpoints", "digits", "cnn")["run_id"] == "first"


def test_a_promotion_killed_between_its_renames_is_undone_by_the_next(tmp_path):
    """Killed after retiring the old folder, before renaming the new one into place: no best/<kind> folder, the
    retired one beside it. The next promotion puts it back and removes what the dead process left."""
    import subprocess
    import sys

    _write_run(tmp_path, "a", val=0.90)
    runs = results.load_runs(tmp_path)
    root = tmp_path / "checkpoints"
    best.promote_best(runs, root)
    folder = root / "best" / "digits" / "cnn"
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(ended.stdout)  # a process that has ended
    folder.rename(folder.with_name(f".cnn.old-{pid}"))
    (folder.with_name(f".cnn.new-{pid}")).mkdir()  # its half-copied new folder
    assert best.promote_best(runs, root) == {}  # the run is back in place: nothing to copy
    assert best.read_best(root, "digits", "cnn")["run_id"] == "a" and (folder / "model.ckpt").read_bytes() == b"a"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["cnn"]


def test_model_kind_from_the_net_or_the_model_class():
    assert results.model_kind(results.net_class_path(_config("x"))) == "cnn"
    assert results.model_kind(results.net_class_path({"model": {"class_path": "lab.ResNet18Classifier"}})) == "resnet18"
    assert results.model_kind(results.net_class_path({"model": {"class_path": "lab.CNNClassifier"}})) == "cnn"
    assert results.model_kind("lightning_lab.models.MLP") == "mlp" and results.model_kind(None) == "model"


def test_a_resumed_runs_curve_keeps_the_newest_values_quietly(tmp_path, caplog):
    """A run resumed at step 2 after logging up to 3: its logger starts with a restart marker at 2 (the CLI's
    purge_step), TensorBoard drops the older steps from 2 on, and its "TensorFlow restart" warning is not shown."""
    from torch.utils.tensorboard import SummaryWriter

    from lightning_lab.experiments.plots import read_curve

    for first, values in ((0, [0.5, 0.6, 0.7, 0.8]), (2, [0.75, 0.85])):
        writer = SummaryWriter(tmp_path, purge_step=first or None)
        for step, value in enumerate(values, start=first):
            writer.add_scalar("val/acc", value, step)
            writer.add_scalar("epoch", step, step)
        writer.close()
    with caplog.at_level("WARNING", logger="tensorboard"):
        assert read_curve(tmp_path) == ([1.0, 2.0, 3.0, 4.0], pytest.approx([0.5, 0.6, 0.75, 0.85]))
    assert not [r for r in caplog.records if "out of order" in r.getMessage()]


@pytest.mark.slow
def test_plots_module_imports_no_pyplot_and_draws(tmp_path):
    """plots.py alone loads no pyplot (torchmetrics, which Lightning imports, loads it by itself)."""
    import subprocess
    import sys

    import lightning_lab.experiments.plots as plots

    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('p', sys.argv[1]); "
            "spec.loader.exec_module(importlib.util.module_from_spec(spec)); print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, plots.__file__], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    chart = plots.effects_chart({"activation": [stats.Difference("tanh", "relu", 3, -0.02, 0.01),
                                                stats.Difference("gelu", "relu", 1, 0.01, float("nan"))]},
                                tmp_path / "e.png", "t")
    assert chart.read_bytes()[:4] == b"\x89PNG"


def test_report_reads_the_log_roots_it_is_given(tmp_path, monkeypatch):
    """A study whose config logs elsewhere (trainer.logger.init_args.save_dir) is reported with --log-root."""
    from lightning_lab import experiments

    monkeypatch.chdir(tmp_path)
    _write_run(tmp_path / "elsewhere", "digits-far", val=0.93, test=0.9)
    logs, checkpoints = tmp_path / "elsewhere" / "lightning_logs", tmp_path / "elsewhere" / "checkpoints"
    assert experiments.main(["report"]) == 0
    assert "digits-far" not in (tmp_path / "results" / "REPORT.md").read_text()
    assert experiments.main(["report", "--log-root", str(logs), "--checkpoint-root", str(checkpoints)]) == 0
    assert "digits-far" in (tmp_path / "results" / "REPORT.md").read_text()
    best.promote_best(results.load_runs(logs), checkpoints)  # as the sweep did; the report names the folder
    assert experiments.main(["report", "--log-root", str(logs), "--checkpoint-root", str(checkpoints)]) == 0
    assert f"kept in `{(checkpoints / 'best' / 'digits' / 'cnn').as_posix()}/`" in (
        tmp_path / "results" / "REPORT.md").read_text()
