"""The sweep runner and the report: the shipped tiny digits grid end to end (a few batches per epoch), skipping
finished runs, sharding, grid validation before training, best-model promotion, concurrent CSV appends."""
from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
import torch
import yaml

from lightning_lab import __main__ as entry
from lightning_lab import experiments
from lightning_lab.errors import ConfigError
from lightning_lab.experiments import best, grid, results
from lightning_lab.experiments import sweep as sweep_mod
from lightning_lab.models import ParametricCNN

TINY = ["--config", "configs/digits.yaml", "--grid", "configs/grids/digits_tiny.yaml"]
FAST = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2",
        "--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """Run the shipped tiny grid once (4 runs) in a scratch directory; the tests below read what it left."""
    workdir = tmp_path_factory.mktemp("sweep")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs on a shared 2-core machine: one thread is faster
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        status = experiments.main(["sweep", *TINY, "--", *FAST])
    torch.set_num_threads(threads)
    return workdir, status


@pytest.fixture
def in_sweep_dir(tiny_sweep, monkeypatch):
    workdir, _ = tiny_sweep
    monkeypatch.chdir(workdir)
    return workdir


def _rows(workdir: Path) -> list[dict]:
    return results.read_rows(workdir / "results" / "digits.csv", latest_only=False)


# ------------------------------------------------------------------------------------------ end to end
def test_tiny_sweep_records_one_row_per_run(tiny_sweep):
    workdir, status = tiny_sweep
    assert status == 0
    rows = _rows(workdir)
    assert len(rows) == 4 and len({r["run_id"] for r in rows}) == 4
    assert {(r["activation"], r["optimizer"]) for r in rows} == {
        ("relu", "SGD"), ("relu", "Adam"), ("tanh", "SGD"), ("tanh", "Adam")}
    for r in rows:
        assert r["status"] == "ok" and r["study"] == "act_opt" and r["model"] == "CNNClassifier"
        assert r["run_id"].startswith("digits-") and r["dataset"] == "digits"
        assert r["lr"] in ("0.05", "0.002") and r["channels"] == "[32, 64]" and r["batch_norm"] == "true"
        assert 0.0 <= r["val_acc"] <= 1.0 and 0.0 <= r["test_acc"] <= 1.0 and r["test_loss"] > 0
        assert r["epochs"] == 2 and r["wall_time_s"] > 0 and r["params"] > 1000
        assert r["varied"] == ["activation", "optimizer"]
        assert Path(workdir, r["checkpoint"]).is_file() and Path(workdir, r["weights"]).is_file()
        assert Path(workdir, r["run_config"]).is_file()
        assert Path(workdir, r["log_dir"]).parts[-3:-1] == ("digits_sweep", r["run_id"])
        assert json.loads(r["overrides"])["model.init_args.activation"] == r["activation"]
        assert "--trainer.limit_train_batches 4" in r["command"]


def test_report_has_table_effects_comparison_and_plots(in_sweep_dir, capsys):
    assert experiments.main(["report"]) == 0
    report = (in_sweep_dir / "results" / "REPORT.md").read_text()
    assert "## digits" in report and "### Runs by test accuracy" in report
    for r in _rows(in_sweep_dir):
        assert f"| {r['run_id']} |" in report
    accs = [float(line.split("|")[9]) for line in report.splitlines() if line.startswith("| ") and "digits-" in line
            and line.split("|")[1].strip().isdigit()]
    assert len(accs) == 4 and accs == sorted(accs, reverse=True)  # sorted by test accuracy
    assert "### Effect of each choice" in report
    for setting, value in (("activation", "relu"), ("activation", "tanh"), ("optimizer", "SGD"),
                           ("optimizer", "Adam")):
        assert f"| {setting} | {value} | 2 | " in report
    assert "### Best CNN vs fine-tuned ResNet-18" in report and "ResNet-18 results are missing" in report
    for name in ("digits_effects.png", "digits_curves.png"):
        assert (in_sweep_dir / "results" / "plots" / name).stat().st_size > 1000
        assert f"](plots/{name})" in report


def test_second_invocation_skips_finished_runs(in_sweep_dir, monkeypatch, capsys):
    def no_training(run):
        raise AssertionError(f"{run.run_id} should have been skipped")

    monkeypatch.setattr(sweep_mod, "execute", no_training)
    before = (in_sweep_dir / "results" / "digits.csv").read_text()
    assert experiments.main(["sweep", *TINY, "--", *FAST]) == 0
    assert (in_sweep_dir / "results" / "digits.csv").read_text() == before
    assert "4 already finished" in capsys.readouterr().out


def test_best_cnn_is_promoted_and_loads(in_sweep_dir):
    folder = in_sweep_dir / "checkpoints" / "best" / "digits" / "cnn"
    info = json.loads((folder / "best.json").read_text())
    rows = _rows(in_sweep_dir)
    assert info["val_acc"] == pytest.approx(max(r["val_acc"] for r in rows))
    assert info["run_id"] in {r["run_id"] for r in rows if r["val_acc"] == max(x["val_acc"] for x in rows)}
    config = yaml.safe_load((folder / "config.yaml").read_text())
    args = config["model"]["init_args"]
    net = ParametricCNN(1, 10, args["channels"], args["kernel_size"], args["convs_per_block"], args["pooling"],
                        args["batch_norm"], args["dropout"], args["activation"], args["init"], args["init_std"],
                        args["hidden"])
    net.load_state_dict(torch.load(folder / "best_weights.pt", map_location="cpu"))
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    checkpoint = torch.load(folder / "model.ckpt", map_location="cpu", weights_only=False)
    assert any(k.startswith("net.") for k in checkpoint["state_dict"])


# ------------------------------------------------------------------------------------- promotion rules
def test_promotion_replaces_only_on_higher_val_acc(tmp_path):
    ckpt = tmp_path / "a.ckpt"
    ckpt.write_bytes(b"x")
    row = {"status": "ok", "dataset": "toy", "checkpoint": str(ckpt), "run_id": "toy-1", "val_acc": 0.8}
    root = tmp_path / "checkpoints"
    assert best.promote(row, "cnn", root) == root / "best" / "toy" / "cnn"
    assert best.promote({**row, "run_id": "toy-2", "val_acc": 0.8}, "cnn", root) is None   # a tie keeps the old
    assert best.promote({**row, "run_id": "toy-3", "val_acc": 0.7, "test_acc": 0.99}, "cnn", root) is None
    assert best.read_best(root, "toy", "cnn")["run_id"] == "toy-1"
    assert best.promote({**row, "run_id": "toy-4", "val_acc": 0.9}, "cnn", root) is not None
    assert best.read_best(root, "toy", "cnn")["run_id"] == "toy-4"
    assert sorted(p.name for p in (root / "best" / "toy").iterdir()) == [".cnn.lock", "cnn"]


# ------------------------------------------------------------------------------------------- sharding
@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 43, 50])
def test_shards_cover_the_grid_without_overlap(count):
    items = [f"run{i}" for i in range(43)]
    shards = [grid.shard(items, i, count) for i in range(1, count + 1)]
    flat = [x for s in shards for x in s]
    assert sorted(flat) == sorted(items) and len(flat) == len(set(flat))
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    assert shards == [grid.shard(items, i, count) for i in range(1, count + 1)]  # deterministic


@pytest.mark.parametrize("text", ["0/4", "5/4", "2", "a/b", "1/0"])
def test_bad_shard_spec_is_a_config_error(text):
    with pytest.raises(ConfigError, match="shard"):
        grid.parse_shard(text)


# ------------------------------------------------------------------------------------- grid validation
@pytest.mark.parametrize("grid_text, message", [
    ("studies:\n  - name: s\n    grid:\n      model.init_args.activaton: [relu, tanh]\n", "activaton"),
    ("studies:\n  - name: s\n    grid:\n      model.init_args.activation: [relu, sigmoid]\n", "sigmoid"),
    ("studies:\n  - name: s\n    grid:\n      model.init_args.kernel_size: [3, 4]\n", "odd"),
    ("studies:\n  - name: s\n    grid:\n      model.init_args.dropout: 0.5\n", "non-empty list"),
    ("grid:\n  trainer.logger.init_args.name: [x]\n", "set by the sweep"),
    ("studys: []\n", "unknown top-level"),
])
def test_bad_grid_fails_before_any_training(tmp_path, monkeypatch, capsys, grid_text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(grid_text)

    def no_training(run):
        raise AssertionError("trained despite a bad grid")

    monkeypatch.setattr(sweep_mod, "execute", no_training)
    assert entry.run(["sweep", "--config", "configs/digits.yaml", "--grid", "bad.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not (tmp_path / "results").exists() and not (tmp_path / "lightning_logs").exists()


def test_plan_deduplicates_across_studies_and_ids_are_stable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.yaml").write_text(yaml.safe_dump({"studies": [
        {"name": "act", "grid": {"model.init_args.activation": ["relu", "tanh"]}},
        # dropout 0.1 with relu is the config itself, i.e. the 'relu' run of the first study
        {"name": "drop", "grid": {"model.init_args.dropout": [0.1, 0.0]}},
    ]}))
    plan = sweep_mod.plan_sweep("configs/digits.yaml", "g.yaml")
    assert len(plan) == 3
    assert [r.studies for r in plan] == [["act", "drop"], ["act"], ["drop"]]
    assert plan[0].varied == ["activation", "dropout"] and plan[1].varied == ["activation"]
    assert [r.run_id for r in plan] == [r.run_id for r in sweep_mod.plan_sweep("configs/digits.yaml", "g.yaml")]
    # the extra overrides are part of a run's identity
    other = sweep_mod.plan_sweep("configs/digits.yaml", "g.yaml", ["--trainer.max_epochs", "1"])
    assert not {r.run_id for r in plan} & {r.run_id for r in other}
    # no grid: one run of the config, the same id as the config's own combination
    single = sweep_mod.plan_sweep("configs/digits.yaml")
    assert len(single) == 1 and single[0].run_id == plan[0].run_id


# --------------------------------------------------------------------------- failures, retries, resume
def test_failed_run_is_recorded_and_retried_only_on_request(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.yaml").write_text("grid:\n  model.init_args.activation: [relu, tanh]\n")
    calls = []

    def fake(run):
        calls.append(run.run_id)
        status = "failed" if run.settings["activation"] == "tanh" else "ok"
        return {**sweep_mod._base_row(run), "status": status, "error": "boom" if status == "failed" else "",
                "wall_time_s": 0.1}

    monkeypatch.setattr(sweep_mod, "execute", fake)
    args = ["sweep", "--config", "configs/digits.yaml", "--grid", "g.yaml"]
    assert experiments.main(args) == 1 and len(calls) == 2          # the sweep went on after the failure
    assert [r["status"] for r in _rows(tmp_path)] == ["ok", "failed"]
    assert experiments.main(args) == 0 and len(calls) == 2          # both recorded: nothing to do
    assert experiments.main([*args, "--retry-failed"]) == 1 and len(calls) == 3
    latest = results.read_rows(tmp_path / "results" / "digits.csv")
    assert len(latest) == 2 and len(_rows(tmp_path)) == 3


def test_interrupted_run_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = sweep_mod.plan_sweep("configs/digits.yaml")[0]
    last = tmp_path / "checkpoints" / run.logger_name / "version_0" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    seen = []

    class FakeCLI:
        def __init__(self, args):
            seen.append(args)
            raise RuntimeError("stop here")

    monkeypatch.setattr("lightning_lab.cli.LabCLI", FakeCLI)
    row = sweep_mod.execute(run)
    assert seen[0][:1] == ["fit"] and seen[0][-2:] == ["--ckpt_path", str(last.relative_to(tmp_path))]
    assert row["status"] == "failed" and "stop here" in row["error"]


# ------------------------------------------------------------------------------------------- CSV writes
def _append_many(results_dir: str, worker: int) -> None:
    for i in range(40):
        results.append_row(results_dir, "toy", {"run_id": f"w{worker}-{i}", "status": "ok", "error": "x" * 500,
                                                "overrides": {"k": [worker, i]}})


def test_concurrent_appends_keep_whole_rows(tmp_path):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_many, args=(str(tmp_path), w)) for w in range(3)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(30)
    rows = results.read_rows(tmp_path / "toy.csv", latest_only=False, typed=False)
    assert len(rows) == 120 and len({r["run_id"] for r in rows}) == 120
    assert all(r["error"] == "x" * 500 and json.loads(r["overrides"])["k"][1] >= 0 for r in rows)
    assert (tmp_path / "toy.csv").read_text().count("run_id,study,status") == 1


def test_isolated_run_trains_in_a_child_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert experiments.main(["sweep", "--config", "configs/digits.yaml", "--isolate", "--", *FAST,
                             "--trainer.max_epochs", "1"]) == 0
    [row] = results.read_rows(tmp_path / "results" / "digits.csv")
    assert row["status"] == "ok" and row["epochs"] == 1 and row["study"] == "base"
    assert Path(row["weights"]).is_file() and (tmp_path / "checkpoints/best/digits/cnn/best.json").is_file()
