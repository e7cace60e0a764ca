"""Ray underneath the sweep: a local Ray on 127.0.0.1, or a running cluster joined with its token; and what each
run gets of it (`Placement`).

A local Ray (no `--address`) starts and stops with the sweep, listens on the loopback interface only and sends
no usage statistics. `--address HOST:PORT` joins a cluster; a cluster started as docs/study.md shows requires
its token (Ray's token authentication): the client presents it with ``RAY_AUTH_MODE=token``, which is set here
when a token is at hand (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``).
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from lightning_lab.errors import ConfigError, first_line

DDP_TRIAL_CPU = 0.01
OPEN_CLUSTER_WARNING = (
    "warning: joined the Ray cluster at {address} without a token, so it runs without authentication: anyone who "
    "can reach its port can run any code on its machines and read its data. Close it: docs/study.md, 'A cluster'.")


# ---------------------------------------------------------------------------------------------- placement
@dataclass
class Placement:
    """What one run gets: CPUs, GPUs (fractional packs several runs on one GPU) and DDP workers."""

    cpus: float
    gpus: float
    workers: int

    def trial_resources(self) -> dict[str, float]:
        # A DDP run's Ray Train workers hold its CPUs/GPUs; the trial that waits for them keeps a sliver of the
        # run's CPUs (Ray refuses a trial with no resources at all).
        return {"CPU": DDP_TRIAL_CPU} if self.workers > 1 else {"CPU": self.cpus, "GPU": self.gpus}

    def worker_cpus(self) -> float:
        """CPUs of each DDP worker: the run's CPUs less the trial's sliver, shared out."""
        return (self.cpus - DDP_TRIAL_CPU) / self.workers


def placement(resources: dict[str, float], cpus_per_run: float | None, gpus_per_run: float | None,
              workers_per_run: int | None) -> Placement:
    """The defaults: one GPU per run where the cluster has GPUs, else one core per run side by side; several
    GPUs per run (or --workers-per-run) mean DDP over that many workers."""
    total_cpus, total_gpus = float(resources.get("CPU", 1)), float(resources.get("GPU", 0))
    gpus = (1.0 if total_gpus else 0.0) if gpus_per_run is None else float(gpus_per_run)
    if gpus < 0 or (cpus_per_run is not None and cpus_per_run <= 0):
        raise ConfigError("--cpus-per-run must be > 0 and --gpus-per-run >= 0")
    if gpus > total_gpus:
        raise ConfigError(f"--gpus-per-run {gpus:g}: Ray sees {total_gpus:g} GPU(s)")
    if gpus > 1 and gpus != int(gpus):
        raise ConfigError(f"--gpus-per-run {gpus:g}: above one GPU, give a whole number (one DDP worker per GPU)")
    workers = (int(gpus) if gpus > 1 else 1) if workers_per_run is None else workers_per_run
    if workers < 1:
        raise ConfigError("--workers-per-run must be at least 1")
    if cpus_per_run is None:
        slots = total_gpus / gpus if gpus else total_cpus
        cpus_per_run = max(1, int(total_cpus // max(1.0, slots))) if gpus else 1
        cpus_per_run = max(cpus_per_run, workers)
    if cpus_per_run > total_cpus:
        raise ConfigError(f"--cpus-per-run {cpus_per_run:g}: Ray sees {total_cpus:g} CPU(s)")
    return Placement(float(cpus_per_run), gpus, workers)


# -------------------------------------------------------------------------------------------------- Ray
def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def has_token() -> bool:
    """Whether this client has a cluster token to present (the places Ray looks for one)."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or (Path(path).is_file() if path else
                                                      Path.home().joinpath(".ray", "auth_token").is_file())


def ray_environment(address: str | None) -> None:
    """Ray's settings from the environment; Ray reads some when it is first imported, so call this before."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Only the lab's TensorBoard runs (lightning_logs/<dataset>_sweep), not a second copy in Ray's folder.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # A trial's first report (at fit start) has no val/acc yet; the scheduler waits for it by itself.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    # The classic status table, whose columns the sweep chooses (run id, settings, val/acc).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if address and has_token():
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    if not address:
        # Ray replaces a loopback node address by the machine's network address unless told not to (the
        # switch meant for single-machine Windows/macOS use).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[dict[str, float]]:
    """A local Ray on 127.0.0.1 (stopped at the end) or a connection to the cluster at `address`; yields the
    cluster's resources."""
    ray_environment(address)
    import ray

    if address:
        join(address)
    else:
        import torch

        # `_node_ip_address` is Ray's documented way to keep a local instance on the loopback interface (there is
        # no public argument for it). address="local": always a new instance, never one a `ray start` left.
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                 num_cpus=num_cpus or _usable_cpus(),
                 num_gpus=torch.cuda.device_count() if torch.cuda.is_available() else 0, configure_logging=False)
    try:
        yield dict(ray.cluster_resources())
    finally:
        ray.shutdown()


def join(address: str) -> None:
    """Connect to a running cluster: refused with one ConfigError line saying what to set; a warning when the
    cluster took this client without a token (then it has no authentication)."""
    import ray

    token = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    try:
        ray.init(address=address, configure_logging=False)
    except Exception as err:  # ConnectionError, AuthenticationError, RuntimeError: one line for the user
        text = first_line(err, all_lines=True, chained=True)
        if not token or "auth" in text.lower() or "token" in text.lower():
            raise ConfigError(
                f"could not join the Ray cluster at {address} ({text[:200]}); a closed cluster requires its token: "
                "copy the head's ~/.ray/auth_token to this machine's ~/.ray/auth_token (or set RAY_AUTH_TOKEN) "
                "and run again (the sweep then sets RAY_AUTH_MODE=token)") from err
        raise ConfigError(f"could not join the Ray cluster at {address}: {text[:300]}") from err
    if not token:
        print(OPEN_CLUSTER_WARNING.format(address=address), file=sys.stderr, flush=True)
