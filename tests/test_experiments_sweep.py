"""The sweep on a real Ray cluster: one head per module, started as docs/study.md's recipe says (a token first, then
`ray start --head`) in a temporary HOME on 127.0.0.1; every sweep here joins it with the token, as a user's
command in its own process. The head is stopped by the process id of what the module started.

Proved here: a driver SIGKILLed mid-training and the same command again (runs continue from their checkpoint in
their one folder); a trial's process SIGKILLed (failed, others finish, --retry-failed); Ctrl-C under ASHA
(interrupted, never stopped_early; exit 130; the same command finishes); a client without the token refused by
Ray with one error line; an open cluster warned about; a 2-worker DDP trial on CPU."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from lightning_lab.callbacks.run_record import read_record
from lightning_lab.experiments.plan import plan_sweep

REPO = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).with_name("ray"))
FAST = ["--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.log_every_n_steps", "1"]
ACTIVATION = "model.net.init_args.activation"
pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------------------------- helpers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "HOME": str(home), "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _start_head(home: Path, cwd: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = _base_env(home)
    head = subprocess.Popen([RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
                             "--disable-usage-stats", "--num-cpus", "4", "--include-dashboard", "false"],
                            env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return head, f"127.0.0.1:{port}"


def _stop_head(head: subprocess.Popen) -> None:
    head.terminate()  # ending `ray start --block` stops the whole one-node cluster it started
    try:
        head.wait(60)
    except subprocess.TimeoutExpired:
        head.kill()
        head.wait(30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A closed one-node cluster: the recipe's token (`ray get-auth-token --generate`), then `ray start --head`."""
    home = tmp_path_factory.mktemp("home")
    made = subprocess.run([RAY, "get-auth-token", "--generate"], env=_base_env(home), capture_output=True, text=True,
                          timeout=120)
    assert made.returncode == 0 and (home / ".ray" / "auth_token").is_file(), made.stderr
    head, address = _start_head(home, home)
    try:
        yield {"home": home, "address": address, "head": head}
    finally:
        _stop_head(head)


def sweep_command(cluster: dict, *args: str) -> list[str]:
    return [sys.executable, "-m", "lightning_lab", "sweep", "--address", cluster["address"], *args]


def run_sweep(cluster: dict, cwd: Path, *args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(sweep_command(cluster, *args), cwd=cwd, env=_base_env(home or cluster["home"]),
                          capture_output=True, text=True, timeout=400)


STARTED: list[subprocess.Popen] = []


def start_sweep(cluster: dict, cwd: Path, *args: str) -> subprocess.Popen:
    driver = subprocess.Popen(sweep_command(cluster, *args), cwd=cwd, env=_base_env(cluster["home"]),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    STARTED.append(driver)
    return driver


@pytest.fixture(autouse=True)
def end_started_drivers():
    """A failing test leaves no sweep driver of its own behind."""
    yield
    while STARTED:
        driver = STARTED.pop()
        if driver.poll() is None:
            driver.kill()
            driver.wait(30)


def records(workdir: Path) -> dict[str, list[dict]]:
    """{run id: its records} of every run.json under the sweep's log folders."""
    out: dict[str, list[dict]] = {}
    for path in sorted((workdir / "lightning_logs").glob("*_sweep/*/version_*/run.json")):
        record = read_record(path)
        out.setdefault(record["run_id"], []).append(record)
    return out


def grid(workdir: Path, values: dict) -> str:
    path = workdir / "grid.yaml"
    path.write_text(yaml.safe_dump({"grid": values}))
    return str(path)


def trial_pids(cluster: dict, run_id: str) -> list[int]:
    """The processes of this module's cluster (they inherit its temporary HOME) whose working directory is the
    run's trial folder (Ray starts each trial in a folder named after it)."""
    home = f"HOME={cluster['home']}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.readlink(proc / "cwd").endswith("/" + run_id) and home in (proc / "environ").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def wait_for(condition, timeout: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the sweep ended before {what}: {process.stdout.read()[-3000:]}")
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def last_checkpoint(workdir: Path, run_id: str) -> dict | None:
    path = workdir / "checkpoints" / "digits_sweep" / run_id / "version_0" / "last.ckpt"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not written yet, or being replaced
        return None


def event_files(workdir: Path, run_id: str) -> set[Path]:
    return set((workdir / "lightning_logs" / "digits_sweep" / run_id / "version_0").glob("events.out.tfevents.*"))


def first_step(files: set[Path]) -> int:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    steps = [event.step for path in files for event in EventFileLoader(str(path)).Load()
             if event.HasField("summary") and event.summary.value]
    return min(steps)


def wait_until_gone(pids: list[int]) -> None:
    wait_for(lambda: not [p for p in pids if Path(f"/proc/{p}").exists()], 60, "the killed driver's trials to end")


# ---------------------------------------------------------------------------------------------- the tests
def test_driver_killed_mid_training_then_the_same_command_continues_each_run(cluster, tmp_path):
    args = ["--config", "configs/digits.yaml", "--grid", grid(tmp_path, {ACTIVATION: ["relu", "tanh"]}), "--",
            *FAST, "--trainer.max_epochs", "6", "--trainer.limit_train_batches", "12"]
    driver = start_sweep(cluster, tmp_path, *args)
    run_ids = wait_for(lambda: sorted(records(tmp_path)) if len(records(tmp_path)) == 2 else None, 200,
                       "both runs to start", driver)
    checkpoints = wait_for(lambda: (lambda c: c if all(x and x["epoch"] >= 3 for x in c.values()) else None)(
        {r: last_checkpoint(tmp_path, r) for r in run_ids}), 200, "checkpoints of epoch >= 3", driver)
    pids = [p for r in run_ids for p in trial_pids(cluster, r)]
    before = {r: event_files(tmp_path, r) for r in run_ids}
    driver.kill()
    driver.wait(30)
    driver.stdout.close()
    wait_until_gone(pids)
    # the checkpoint a run continues from: the newest one, written by now
    checkpoints = {r: last_checkpoint(tmp_path, r) or checkpoints[r] for r in run_ids}
    killed = records(tmp_path)
    assert all(rs[0]["status"] == "running" for rs in killed.values())  # a killed driver writes nothing more

    again = run_sweep(cluster, tmp_path, *args)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "2 unfinished (continued from their last checkpoint)" in again.stdout
    after = records(tmp_path)
    assert sorted(after) == run_ids and all(len(rs) == 1 for rs in after.values())  # one folder, one record
    for run_id in run_ids:
        [record] = after[run_id]
        assert record["status"] == "ok" and record["metrics"]["epochs"] == 6 and record["attempts"] == 2
        assert record["metrics"]["test/acc"] is not None
        # the continued attempt logs from the checkpoint's step on (global_step: the steps done), never from 0
        new_files = event_files(tmp_path, run_id) - before[run_id]
        assert new_files and first_step(new_files) >= checkpoints[run_id]["global_step"] > 0
        assert len(list((tmp_path / "lightning_logs" / "digits_sweep" / run_id).iterdir())) == 1


def test_a_killed_trial_fails_alone_and_trains_again_only_on_request(cluster, tmp_path):
    args = ["--config", "configs/digits.yaml", "--grid", grid(tmp_path, {ACTIVATION: ["relu", "tanh"]}), "--",
            *FAST, "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "20"]
    driver = start_sweep(cluster, tmp_path, *args)
    victim = plan_sweep(args[1], args[3], extra=args[5:])[0].run_id  # the plan's first run: Ray starts it first
    pids = wait_for(lambda: trial_pids(cluster, victim), 400, "the first run to start", driver)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    out, _ = driver.communicate(timeout=300)
    assert driver.returncode == 1, out[-3000:]
    first = {run_id: rs[0] for run_id, rs in records(tmp_path).items()}
    assert first[victim]["status"] == "failed" and "died" in first[victim]["error"]
    assert [r["status"] for run_id, r in first.items() if run_id != victim] == ["ok"]  # the other one finished
    assert "--retry-failed" in out

    again = run_sweep(cluster, tmp_path, *args)
    assert again.returncode == 1
    assert "1 failed (not trained again; add --retry-failed to train them)" in again.stdout
    assert "0 to train" in again.stdout
    assert records(tmp_path)[victim][0]["updated_at"] == first[victim]["updated_at"]

    retried = run_sweep(cluster, tmp_path, *args[:4], "--retry-failed", *args[4:])
    assert retried.returncode == 0, retried.stdout[-3000:] + retried.stderr[-3000:]
    final = records(tmp_path)
    assert final[victim][0]["status"] == "ok" and final[victim][0]["error"] is None
    others = [run_id for run_id in final if run_id != victim]
    assert all(final[r][0]["updated_at"] == first[r]["updated_at"] for r in others)  # not trained again

    # the records give the CSV, the report and the best model
    from lightning_lab import experiments

    os.chdir(tmp_path)
    try:
        assert experiments.main(["report"]) == 0
    finally:
        os.chdir(REPO)
    report = (tmp_path / "results" / "REPORT.md").read_text()
    assert all(run_id in report for run_id in final)
    assert (tmp_path / "results" / "digits.csv").is_file()
    assert (tmp_path / "checkpoints" / "best" / "digits" / "cnn" / "model.ckpt").is_file()


def test_ctrl_c_under_asha_interrupts_and_the_same_command_finishes(cluster, tmp_path):
    optimizers = [{"class_path": "torch.optim.SGD", "init_args": {"lr": 0.0}},   # never learns
                  {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}}]
    args = ["--config", "configs/digits.yaml", "--grid", grid(tmp_path, {"model.optimizer": optimizers}),
            "--scheduler", "asha", "--max-concurrent", "1", "--", *FAST, "--trainer.max_epochs", "4",
            "--trainer.limit_train_batches", "12"]
    driver = start_sweep(cluster, tmp_path, *args)
    [run_id] = wait_for(lambda: [r for r in records(tmp_path) if last_checkpoint(tmp_path, r)], 200,
                        "a checkpoint of the first run", driver)
    os.killpg(driver.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
    out, _ = driver.communicate(timeout=120)
    assert driver.returncode == 130, out[-3000:]
    assert "The same command continues them" in out
    interrupted = records(tmp_path)
    assert [r["status"] for rs in interrupted.values() for r in rs] == ["interrupted"]

    again = run_sweep(cluster, tmp_path, *args)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    final = {r: rs[0] for r, rs in records(tmp_path).items()}
    assert len(final) == 2 and all(len(rs) == 1 for rs in records(tmp_path).values())
    assert {r["status"] for r in final.values()} <= {"ok", "stopped_early"}
    assert all(r["metrics"]["epochs"] < 4 for r in final.values() if r["status"] == "stopped_early")
    learner = [r for r in final.values() if r["config"]["model"]["optimizer"]["init_args"]["lr"] == 0.01]
    assert learner[0]["status"] == "ok"
    assert final[run_id]["attempts"] == 2 or final[run_id]["status"] == "stopped_early"


def test_a_client_without_the_token_is_refused_and_an_open_cluster_is_named(cluster, tmp_path):
    stranger = tmp_path / "stranger"  # a home without the cluster's token
    stranger.mkdir()
    refused = subprocess.Popen(sweep_command(cluster, "--config", "configs/digits.yaml", "--", *FAST,
                                             "--trainer.max_epochs", "1"),
                               cwd=tmp_path, env=_base_env(stranger), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    # meanwhile: a head started without a token runs without authentication; a sweep joining it says so
    open_home = tmp_path / "open"
    open_home.mkdir()
    head, address = _start_head(open_home, open_home)
    try:
        joined = subprocess.run(
            [sys.executable, "-c", "from lightning_lab.experiments.cluster import ray_session\n"
                                   f"with ray_session('{address}') as resources: print(resources['CPU'])"],
            cwd=tmp_path, env=_base_env(stranger), capture_output=True, text=True, timeout=200)
    finally:
        _stop_head(head)
    assert joined.returncode == 0, joined.stderr[-3000:]
    warning = [line for line in joined.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "without authentication" in warning[0] and "run any code" in warning[0]

    out, err = refused.communicate(timeout=300)
    assert refused.returncode == 2, out[-2000:] + err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "token" in errors[0] and err.rstrip().splitlines()[-1] == errors[0]
    assert not (tmp_path / "lightning_logs").exists()  # nothing trained


@pytest.mark.timeout(300)  # a collective called on one rank only would otherwise wait for gloo's 30-minute timeout
def test_two_worker_ddp_trial_on_cpu(cluster, tmp_path):
    done = run_sweep(cluster, tmp_path, "--config", "configs/digits.yaml", "--workers-per-run", "2",
                     "--cpus-per-run", "2", "--", *FAST, "--trainer.max_epochs", "1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [[record]] = records(tmp_path).values()
    assert record["status"] == "ok" and record["world_size"] == 2 and record["metrics"]["test/acc"] is not None
    assert record["config"]["trainer"]["strategy"]["class_path"].endswith("RayDDPStrategy")
