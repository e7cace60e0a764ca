"""The sweep on a real Ray cluster: one head per module, started as docs/study.md's recipe says (a token first, then
`ray start --head`) in a temporary HOME on 127.0.0.1; every sweep here joins it with the token, as a user's
command in its own process. The head is stopped by the process id of what the module started.

Proved here, in one study stopped every way it can be: a trial's process SIGKILLed (that run fails alone) and the
driver SIGKILLed mid-training (the same command continues each run from its checkpoint in its one folder; failed
runs train again only with --retry-failed); Ctrl-C under ASHA (interrupted, never stopped_early; exit 130; the same
command finishes). Also: a client without the token refused by Ray with one error line; an open cluster warned
about; a 2-worker DDP trial on CPU, run beside the others on the same cluster."""
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
    # Ray runs its workers at niceness 15 (its `worker_niceness` setting), so that on a machine of its own its
    # raylet comes first. Here the other pytest worker's processes run at 0 beside them, and under that load a
    # trial at 15 waited minutes for a core to start (trials PENDING for 300 s); the cluster's own processes
    # inherit this environment and run at the tests' priority.
    return {**env, "HOME": str(home), "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_worker_niceness": "0"}


def _start_head(home: Path, cwd: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = _base_env(home)
    head = subprocess.Popen([RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
                             "--disable-usage-stats", "--num-cpus", "4", "--include-dashboard", "false"],
                            env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return head, f"127.0.0.1:{port}"


def _stop_head(head: subprocess.Popen) -> None:
    # Ending `ray start --block` stops the whole one-node cluster it started. On SIGINT (a terminal's Ctrl-C) it
    # stops its processes in about two seconds; on SIGTERM it gives each one a grace period in turn (~30 s here).
    # Under a full suite's load its shutdown has taken over a minute (in fresh clones): then every process it had
    # started is killed by its own pid (psutil checks the pid still names that process), and the command too.
    import psutil

    started = psutil.Process(head.pid).children(recursive=True)
    head.send_signal(signal.SIGINT)
    try:
        head.wait(15)
    except subprocess.TimeoutExpired:
        for process in started:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        head.kill()
        head.wait(30)
        psutil.wait_procs(started, timeout=30)


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


STARTED: list[subprocess.Popen] = []


def start_sweep(cluster: dict, cwd: Path, *args: str) -> subprocess.Popen:
    """A sweep command in its own process group, its stdout and stderr in cwd/driver-<n>.log (`output`)."""
    log = cwd / f"driver-{len(list(cwd.glob('driver-*.log')))}.log"
    with log.open("w") as out:
        driver = subprocess.Popen(sweep_command(cluster, *args), cwd=cwd, env=_base_env(cluster["home"]), stdout=out,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
    driver.log = log
    STARTED.append(driver)
    return driver


def output(driver: subprocess.Popen) -> str:
    return driver.log.read_text(errors="replace")


def finish(driver: subprocess.Popen, timeout: float) -> str:
    """Wait for the driver; its output. One that outlives `timeout` is killed and its output's end quoted."""
    try:
        driver.wait(timeout)
    except subprocess.TimeoutExpired:
        driver.kill()
        driver.wait(30)
        raise AssertionError(f"the sweep ran past {timeout:g} s; its output ends:\n{output(driver)[-4000:]}")
    return output(driver)


def run_sweep(cluster: dict, cwd: Path, *args: str, timeout: float = 300) -> tuple[int, str]:
    """A sweep command to its end: its exit status and output."""
    driver = start_sweep(cluster, cwd, *args)
    out = finish(driver, timeout)
    return driver.returncode, out


DDP_TEST = "test_two_worker_ddp_trial_on_cpu"


@pytest.fixture(scope="module", autouse=True)
def ddp_sweep(cluster: dict, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The 2-worker DDP trial's sweep, started with the module and run beside its other tests on the same cluster,
    as a second user's sweep would (it takes 2 of the head's 4 CPUs, the study the other 2); its test, last in
    the file, waits for it. Started only when that test is selected."""
    if not any(item.name == DDP_TEST for item in request.session.items):
        yield None
        return
    workdir = tmp_path_factory.mktemp("ddp_trial")
    driver = start_sweep(cluster, workdir, "--config", "configs/digits.yaml", "--workers-per-run", "2",
                         "--cpus-per-run", "2", "--", *FAST, "--trainer.max_epochs", "1")
    STARTED.remove(driver)  # outlives the tests in between; its own test waits for it
    yield {"driver": driver, "workdir": workdir}
    if driver.poll() is None:
        driver.kill()
        driver.wait(30)


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
            raise AssertionError(f"the sweep ended before {what}: {output(process)[-4000:]}")
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}"
                         + (f"; the sweep's output ends:\n{output(process)[-4000:]}" if process is not None else ""))


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


@pytest.fixture
def step():
    """step(what) prints the seconds since the test began: a failing or timed-out test's output says where it was."""
    began = time.monotonic()
    return lambda what: print(f"{time.monotonic() - began:6.1f} s  {what}", flush=True)


def wait_until_gone(pids: list[int]) -> None:
    wait_for(lambda: not [p for p in pids if Path(f"/proc/{p}").exists()], 60, "the killed driver's trials to end")


# ---------------------------------------------------------------------------------------------- the tests
# Each step waits with its own limit and quotes the sweep's output when it runs out; the whole test's limit sits
# above their usual sum on a slow machine (138-177 s here, 266 s with the 2 cores a third busy), so a stuck step
# fails with its own message rather than pytest-timeout's stack dump.
@pytest.mark.timeout(900)
def test_kills_and_ctrl_c_each_end_in_the_right_record_and_the_same_command_continues(cluster, tmp_path, step):
    """One study through everything that can stop it. Runs are held at the start of an epoch (the last one's
    checkpoint written) while the file `hold` exists, so every kill lands mid-training, at a known point:
    1. one run's trial process is SIGKILLed: that run `failed`, the other trains on; then the driver is SIGKILLed;
    2. the same command: the unfinished run continues from its checkpoint in its one folder (logging from the
       checkpoint's step on); the failed one is not trained again without --retry-failed (exit 1);
    3. with --retry-failed under ASHA, Ctrl-C while the failed run trains again: `interrupted`, never
       `stopped_early`; exit 130;
    4. the same command finishes it; the other run is never trained again; the records give the report."""
    hold = tmp_path / "hold"
    hold.touch()
    gate = ["--trainer.callbacks+=tests.epoch_gate.HoldAtEpochStart", f"--trainer.callbacks.hold={hold}"]
    args = ["--config", "configs/digits.yaml", "--grid", grid(tmp_path, {ACTIVATION: ["relu", "tanh"]}), "--",
            *FAST, "--trainer.max_epochs", "3", *gate]
    victim, other = [run.run_id for run in plan_sweep(args[1], args[3], extra=args[5:])]

    # 1. a trial killed, then the driver killed
    driver = start_sweep(cluster, tmp_path, *args)
    step("1. sweep started")
    wait_for(lambda: all(last_checkpoint(tmp_path, r) for r in (victim, other)), 300, "both runs held", driver)
    step("both runs held")
    for pid in trial_pids(cluster, victim):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: records(tmp_path).get(victim, [{}])[0].get("status") == "failed", 120, "the killed run recorded", driver)
    step("the killed run recorded")
    pids = trial_pids(cluster, other)
    before = event_files(tmp_path, other)
    checkpoint = last_checkpoint(tmp_path, other)
    driver.kill()
    driver.wait(30)
    step("driver killed")
    wait_until_gone(pids)
    step("its trial gone")
    killed = {r: rs[0] for r, rs in records(tmp_path).items()}
    assert killed[other]["status"] == "running"  # a killed driver writes nothing more
    assert "died" in killed[victim]["error"] and killed[victim]["metrics"]["epochs"] == 1
    hold.unlink()

    # 2. the same command: the unfinished run continues, the failed one waits for --retry-failed
    step("2. the same command")
    code, out = run_sweep(cluster, tmp_path, *args)
    step("it ended")
    assert code == 1, out[-4000:]
    assert "1 unfinished (continued from their last checkpoint)" in out
    assert "1 failed (not trained again; add --retry-failed to train them)" in out
    continued = records(tmp_path)
    assert all(len(rs) == 1 for rs in continued.values())  # one folder, one record per run
    assert continued[victim][0] == killed[victim]
    assert continued[other][0]["status"] == "ok" and continued[other][0]["attempts"] == 2
    assert continued[other][0]["metrics"]["epochs"] == 3 and continued[other][0]["metrics"]["test/acc"] is not None
    # the continued attempt logs from the checkpoint's step on (global_step: the steps done), never from 0
    new_files = event_files(tmp_path, other) - before
    assert new_files and first_step(new_files) >= checkpoint["global_step"] > 0
    assert len(list((tmp_path / "lightning_logs" / "digits_sweep" / other).iterdir())) == 1

    # 3. retry the failed run under ASHA; Ctrl-C once it is held after its next epoch
    retry = [*args[:4], "--retry-failed", "--scheduler", "asha", *args[4:]]
    hold.touch()
    step("3. --retry-failed under ASHA")
    driver = start_sweep(cluster, tmp_path, *retry)
    wait_for(lambda: (last_checkpoint(tmp_path, victim) or {}).get("epoch") == 1, 300, "the retried run held", driver)
    step("the retried run held; Ctrl-C")
    os.killpg(driver.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
    out = finish(driver, 120)
    step("the driver ended")
    assert driver.returncode == 130, out[-4000:]
    assert "The same command continues them" in out
    assert "Tuner.restore" not in out  # Ray's own advice, which this study does not follow, is not shown
    assert records(tmp_path)[victim][0]["status"] == "interrupted"
    hold.unlink()

    # 4. the same command finishes it
    step("4. the same command")
    code, out = run_sweep(cluster, tmp_path, *retry)
    step("it ended")
    assert code == 0, out[-4000:]
    final = {r: rs[0] for r, rs in records(tmp_path).items()}
    assert final[victim]["status"] == "ok" and final[victim]["error"] is None and final[victim]["attempts"] == 3
    assert final[victim]["metrics"]["epochs"] == 3
    assert final[other] == continued[other][0]  # not trained again

    # the records give the CSV, the report and the best model
    from lightning_lab import experiments

    os.chdir(tmp_path)
    try:
        assert experiments.main(["report"]) == 0
    finally:
        os.chdir(REPO)
    report = (tmp_path / "results" / "REPORT.md").read_text()
    assert victim in report and other in report
    assert (tmp_path / "results" / "digits.csv").is_file()
    assert (tmp_path / "checkpoints" / "best" / "digits" / "cnn" / "model.ckpt").is_file()


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
def test_two_worker_ddp_trial_on_cpu(ddp_sweep: dict):
    driver, workdir = ddp_sweep["driver"], ddp_sweep["workdir"]
    out = finish(driver, 280)
    assert driver.returncode == 0, out[-4000:]
    [[record]] = records(workdir).values()
    assert record["status"] == "ok" and record["world_size"] == 2 and record["metrics"]["test/acc"] is not None
    assert record["config"]["trainer"]["strategy"]["class_path"].endswith("RayDDPStrategy")
