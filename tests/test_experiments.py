"""The sweep on Ray Tune: the shipped tiny digits grid end to end on a local Ray (two runs side by side), a
one-node cluster joined with --address, a driver killed with SIGKILL and the same command again, a failing
combination and --retry-failed, ASHA stopping a hopeless run, --repeats, a 2-worker DDP trial on CPU; and the
planning (grid validation, run ids, placement) without Ray.

Every Ray instance here listens on 127.0.0.1 and is stopped by the process id of what the test started."""
from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from lightning_lab import __main__ as entry
from lightning_lab import experiments
from lightning_lab.errors import ConfigError
from lightning_lab.experiments import plan as plan_mod
from lightning_lab.experiments import sweep as sweep_mod
from lightning_lab.run_record import read_record

REPO = Path(__file__).resolve().parent.parent
TINY = ["--config", "configs/digits.yaml", "--grid", "configs/grids/digits_tiny.yaml"]
FAST = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2",
        "--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "1"]
ACTIVATION = "model.net.init_args.activation"
OPTIMIZER = "model.optimizer"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}


def _records(workdir: Path) -> list[dict]:
    return [read_record(p) for p in sorted((workdir / "lightning_logs").glob("*_sweep/*/version_*/run.json"))]


def _by_run(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for record in records:
        out.setdefault(record["run_id"], []).append(record)
    return out


def _csv_ids(workdir: Path) -> list[str]:
    with open(workdir / "results" / "digits.csv", newline="") as handle:
        return [row["run_id"] for row in csv.DictReader(handle)]


def _grid(path: Path, grid: dict, fixed: dict | None = None) -> str:
    path.write_text(yaml.safe_dump({"fixed": fixed or {}, "grid": grid} if fixed else {"grid": grid}))
    return str(path)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), so a test can end exactly what it started."""
    children: dict[int, list[int]] = {}
    for entry_ in Path("/proc").iterdir():
        if entry_.name.isdigit():
            try:
                stat = (entry_ / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry_.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _end(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ------------------------------------------------------------------------------------- end to end, local
@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """The shipped tiny grid (4 runs) on the embedded local Ray, in a scratch directory."""
    workdir = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        status = experiments.main(["sweep", *TINY, "--", *FAST])
    return workdir, status


@pytest.mark.slow
def test_tiny_grid_runs_two_at_a_time_and_records_each_run_once(tiny_sweep, capsys):
    workdir, status = tiny_sweep
    assert status == 0
    records = _records(workdir)
    assert len(records) == 4 and len({r["run_id"] for r in records}) == 4
    assert all(r["status"] == "ok" and r["metrics"]["epochs"] == 2 for r in records)
    assert {(r["config"]["model"]["net"]["init_args"]["activation"],
             r["config"]["model"]["optimizer"]["class_path"].rsplit(".", 1)[-1]) for r in records} == {
        ("relu", "SGD"), ("relu", "Adam"), ("tanh", "SGD"), ("tanh", "Adam")}
    # two runs side by side on the 2 cores: some pair of runs overlaps in time
    spans = sorted((_time(r["attempt_started_at"]), _time(r["finished_at"])) for r in records)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))
    for r in records:
        assert Path(r["log_dir"]).parts[-3:-1] == ("digits_sweep", r["run_id"])
        assert Path(r["checkpoint"]).is_file() and Path(r["log_dir"], "config.yaml").is_file()
    assert (workdir / "results" / "ray").is_dir()  # Ray's experiment folder lives under the results


@pytest.mark.slow
def test_tiny_grid_gives_csv_report_and_best_model(tiny_sweep, monkeypatch):
    workdir, _ = tiny_sweep
    monkeypatch.chdir(workdir)
    ids = {r["run_id"] for r in _records(workdir)}
    assert sorted(_csv_ids(workdir)) == sorted(ids)
    assert experiments.main(["report"]) == 0
    assert all(run_id in (workdir / "results" / "REPORT.md").read_text() for run_id in ids)
    assert any((workdir / "checkpoints" / "best" / "digits").rglob("*.ckpt"))


@pytest.mark.slow
def test_same_command_again_trains_nothing(tiny_sweep, monkeypatch, capsys):
    workdir, _ = tiny_sweep
    monkeypatch.chdir(workdir)

    def no_ray(*args, **kwargs):
        raise AssertionError("every run is recorded: nothing to train")

    monkeypatch.setattr(sweep_mod, "_run_on_ray", no_ray)
    before = [(r["run_id"], r["updated_at"]) for r in _records(workdir)]
    assert experiments.main(["sweep", *TINY, "--", *FAST]) == 0
    assert "4 already recorded as finished, 0 to run" in capsys.readouterr().out
    assert [(r["run_id"], r["updated_at"]) for r in _records(workdir)] == before


# ------------------------------------------------------------------------------------------- a cluster
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sweep_joins_a_one_node_cluster(tmp_path):
    port = _free_port()
    address_file = Path(tempfile.gettempdir(), "ray", "ray_current_cluster")  # `ray start` leaves it behind
    had_address_file = address_file.exists()
    # `ray start --head` turns token authentication on (its token: ~/.ray/auth_token); the sweep presents it
    env = {**_env(), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # keep 127.0.0.1 as given
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--disable-usage-stats", "--num-cpus", "2", "--include-dashboard", "false"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids: list[int] = []
    try:
        client = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}  # the sweep sets it (before Ray's import)
        sweep = subprocess.run([sys.executable, "-m", "lightning_lab", "sweep", "--config", "configs/digits.yaml",
                                "--address", f"127.0.0.1:{port}", "--", *FAST, "--trainer.max_epochs", "1"],
                               cwd=tmp_path, env=client, capture_output=True, text=True, timeout=400)
        assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
        [record] = _records(tmp_path)
        assert record["status"] == "ok"
    finally:
        pids = _descendants(head.pid)
        head.terminate()  # ending `ray start --block` stops the whole one-node cluster
        try:
            head.wait(90)
        finally:
            _end([pid for pid in pids if Path(f"/proc/{pid}").exists()])
        if not had_address_file:
            address_file.unlink(missing_ok=True)
    assert head.returncode is not None


def test_join_without_a_token_says_what_to_set(tmp_path, monkeypatch):
    import ray

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)

    def refuse(**kwargs):
        raise ConnectionError("InvalidAuthToken: the cluster requires token authentication")

    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(ConfigError, match="set RAY_AUTH_MODE=token"):
        sweep_mod.join("10.0.0.1:6379")


# ------------------------------------------------------------------------------------ nothing lost twice
@pytest.mark.slow
def test_driver_killed_mid_study_then_same_command_records_every_run_once(tmp_path):
    grid = _grid(tmp_path / "g.yaml", {ACTIVATION: ["relu", "tanh", "leaky_relu"]})
    command = [sys.executable, "-m", "lightning_lab", "sweep", "--config", "configs/digits.yaml", "--grid", grid,
               "--max-concurrent", "1", "--", *FAST, "--trainer.max_epochs", "3"]
    driver = subprocess.Popen(command, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    started: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and driver.poll() is None:
            if any(r["status"] == "ok" for r in _records(tmp_path)):
                break
            time.sleep(0.5)
        started = _descendants(driver.pid)
        assert driver.poll() is None, "the study ended before it could be killed"
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
    finally:
        time.sleep(2)
        _end([pid for pid in started if Path(f"/proc/{pid}").exists()])  # what the killed driver left
    before = _by_run(_records(tmp_path))
    assert 1 <= sum(r["status"] == "ok" for rs in before.values() for r in rs) < 3
    again = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    after = _by_run(_records(tmp_path))
    assert len(after) == 3 and all(len(records) == 1 for records in after.values())
    assert all(records[0]["status"] == "ok" for records in after.values())
    for run_id, records in before.items():  # what was finished was not trained again
        if records[0]["status"] == "ok":
            assert after[run_id][0]["updated_at"] == records[0]["updated_at"]
    assert sorted(_csv_ids(tmp_path)) == sorted(after)


@pytest.mark.slow
def test_failing_combination_fails_alone_and_is_retried_on_request(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = _grid(tmp_path / "g.yaml", {"model.scheduler": [
        {"class_path": "torch.optim.lr_scheduler.CosineAnnealingLR"},
        # valid on paper; OneCycleLR raises when stepped past its total steps, in the second epoch
        {"class_path": "torch.optim.lr_scheduler.OneCycleLR", "init_args": {"max_lr": 0.01, "total_steps": 1}},
    ]})
    args = ["sweep", "--config", "configs/digits.yaml", "--grid", grid, "--", *FAST, "--trainer.max_epochs", "3"]
    assert experiments.main(args) == 1
    first = {r["status"]: r for r in _records(tmp_path)}
    assert set(first) == {"ok", "failed"} and "total steps" in first["failed"]["error"]
    recorded = {r["run_id"]: r["updated_at"] for r in _records(tmp_path)}
    assert experiments.main(args) == 0  # recorded failures are not retried without the flag
    assert {r["run_id"]: r["updated_at"] for r in _records(tmp_path)} == recorded
    assert experiments.main([*args[:5], "--retry-failed", *args[5:]]) == 1
    now = _by_run(_records(tmp_path))
    assert [r["updated_at"] for r in now[first["ok"]["run_id"]]] == [recorded[first["ok"]["run_id"]]]
    retried = now[first["failed"]["run_id"]][-1]  # tried again: a new attempt, failing the same way
    assert retried["status"] == "failed" and retried["attempt_started_at"] != first["failed"]["attempt_started_at"]


# ------------------------------------------------------------------------------- ASHA, repeats, DDP
@pytest.mark.slow
def test_asha_stops_a_hopeless_run_and_repeats_use_their_own_seeds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = _grid(tmp_path / "g.yaml", {OPTIMIZER: [
        {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
        {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.0}},  # never learns
    ]})
    status = experiments.main(["sweep", "--config", "configs/digits.yaml", "--grid", grid, "--scheduler", "asha",
                               "--repeats", "2", "--max-concurrent", "2", "--", *FAST, "--trainer.max_epochs", "4",
                               "--trainer.limit_train_batches", "8"])
    assert status == 0
    records = _records(tmp_path)
    assert len(records) == 4 and len({r["run_id"] for r in records}) == 4
    seeds = {(r["config"]["model"]["optimizer"]["class_path"], r["config"]["seed_everything"],
              r["config"]["data"]["init_args"]["seed"]) for r in records}
    assert {s[1] for s in seeds} == {42, 43} and all(s[1] == s[2] for s in seeds) and len(seeds) == 4
    hopeless = [r for r in records if r["config"]["model"]["optimizer"]["init_args"]["lr"] == 0.0]
    assert len(hopeless) == 2 and all(r["status"] == "stopped_early" for r in hopeless)
    assert all(r["metrics"]["epochs"] < 4 for r in hopeless)
    assert "ok" in {r["status"] for r in records}  # the best run trains its whole budget


@pytest.mark.slow
@pytest.mark.timeout(300)  # a collective called on one rank only would otherwise wait for gloo's 30-minute timeout
def test_two_worker_ddp_trial_on_cpu(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = experiments.main(["sweep", "--config", "configs/digits.yaml", "--workers-per-run", "2",
                               "--cpus-per-run", "2", "--", *FAST, "--trainer.max_epochs", "1"])
    assert status == 0
    [record] = _records(tmp_path)
    assert record["status"] == "ok" and record["world_size"] == 2
    assert record["config"]["trainer"]["strategy"]["class_path"].endswith("RayDDPStrategy")


# ------------------------------------------------------------------------------ planning, without Ray
@pytest.mark.parametrize("grid_text, message", [
    ("studies:\n  - name: s\n    grid:\n      model.net.init_args.activaton: [relu, tanh]\n", "activaton"),
    ("studies:\n  - name: s\n    grid:\n      model.net.init_args.activation: [relu, sigmoid]\n", "sigmoid"),
    ("studies:\n  - name: s\n    grid:\n      model.net.init_args.kernel_size: [3, 4]\n", "odd"),
    ("studies:\n  - name: s\n    grid:\n      model.net.init_args.dropout: 0.5\n", "non-empty list"),
    ("grid:\n  trainer.logger.init_args.name: [x]\n", "set by the sweep"),
    ("studys: []\n", "unknown top-level"),
])
def test_bad_grid_fails_before_any_training(tmp_path, monkeypatch, capsys, grid_text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(grid_text)

    def no_ray(*args, **kwargs):
        raise AssertionError("trained despite a bad grid")

    monkeypatch.setattr(sweep_mod, "_run_on_ray", no_ray)
    assert entry.run(["sweep", "--config", "configs/digits.yaml", "--grid", "bad.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not (tmp_path / "results").exists() and not (tmp_path / "lightning_logs").exists()


def test_plan_deduplicates_across_studies_ids_are_stable_and_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.yaml").write_text(yaml.safe_dump({"studies": [
        {"name": "act", "grid": {ACTIVATION: ["relu", "tanh"]}},
        # dropout 0.1 with relu is the config itself, i.e. the 'relu' run of the first study
        {"name": "drop", "grid": {"model.net.init_args.dropout": [0.1, 0.0]}},
    ]}))
    plan = plan_mod.plan_sweep("configs/digits.yaml", "g.yaml")
    assert len(plan) == 3 and [r.studies for r in plan] == [["act", "drop"], ["act"], ["drop"]]
    assert [r.run_id for r in plan] == [r.run_id for r in plan_mod.plan_sweep("configs/digits.yaml", "g.yaml")]
    other = plan_mod.plan_sweep("configs/digits.yaml", "g.yaml", ["--trainer.max_epochs", "1"])
    assert not {r.run_id for r in plan} & {r.run_id for r in other}  # the extra overrides are part of the id
    single = plan_mod.plan_sweep("configs/digits.yaml")
    assert len(single) == 1 and single[0].run_id == plan[0].run_id
    run = plan[1]
    assert run.save_dir == str(tmp_path / "lightning_logs") and run.checkpoint_root == str(tmp_path / "checkpoints")
    config = run.args[run.args.index("--config") + 1]
    assert Path(config).is_absolute() and Path(config).is_file()
    # repeats: the first seed is the config's own (same run id), the others get their own ids
    repeated = plan_mod.plan_sweep("configs/digits.yaml", repeats=3)
    assert [r.seed for r in repeated] == [42, 43, 44] and repeated[0].run_id == single[0].run_id
    assert len({r.run_id for r in repeated}) == 3
    assert "--data.init_args.seed" in repeated[2].args and "seed=44" in repeated[2].describe


@pytest.mark.parametrize("resources, asked, expected", [
    ({"CPU": 2}, (None, None, None), (1, 0, 1)),                  # CPU: one core per run, side by side
    ({"CPU": 16, "GPU": 8}, (None, None, None), (2, 1, 1)),       # one GPU per run, the CPUs shared out
    ({"CPU": 16, "GPU": 1}, (None, 0.25, None), (4, 0.25, 1)),    # four runs packed on one GPU
    ({"CPU": 16, "GPU": 8}, (None, 2, None), (4, 2, 2)),          # two GPUs: DDP over two workers
    ({"CPU": 2}, (2, None, 2), (2, 0, 2)),                        # CPU DDP
])
def test_placement_defaults(resources, asked, expected):
    place = sweep_mod.placement(resources, *asked)
    assert (place.cpus, place.gpus, place.workers) == expected
    if place.workers > 1:  # the DDP workers hold the run's resources, less a sliver for the trial waiting on them
        assert place.trial_resources()["CPU"] + place.workers * place.worker_cpus() == pytest.approx(place.cpus)
    else:
        assert place.trial_resources() == {"CPU": place.cpus, "GPU": place.gpus}


@pytest.mark.parametrize("asked, message", [((None, 2, None), "Ray sees 0 GPU"), ((4, None, None), "Ray sees 2 CPU"),
                                            ((None, 1.5, None), "whole number")])
def test_placement_refuses_what_the_cluster_cannot_give(asked, message):
    with pytest.raises(ConfigError, match=message):
        sweep_mod.placement({"CPU": 2, "GPU": 0 if asked[1] != 1.5 else 2}, *asked)
