"""Data under 2-process CPU DDP (gloo): exact evaluation, augmentation per rank, a data error on rank 0.

Each run is a subprocess with its own tiny model (tests/ddp_data_run.py) or the CLI, so Lightning's DDP
launcher can start the second rank with the same command line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fake_datasets import MNIST_FILES, _class_images, write_idx
from conftest import REPO

SCRIPT = Path(__file__).resolve().parent / "ddp_data_run.py"
N_TEST = 41  # odd: two ranks cannot split it evenly
HANG_GUARD_S = 420  # not a speed assertion: only stops a hung run from blocking the suite

pytestmark = pytest.mark.slow


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MNIST files whose training images are all one picture (so two ranks' batches differ only by their
    augmentation) and whose test split has an odd number of varied images."""
    raw = tmp_path_factory.mktemp("mnist") / "MNIST" / "raw"
    rng = np.random.default_rng(0)
    picture = _class_images(rng, np.array([3]), (28, 28))
    train_labels = rng.integers(0, 10, size=60).astype(np.uint8)
    test_labels = rng.integers(0, 10, size=N_TEST).astype(np.uint8)
    write_idx(raw / MNIST_FILES["train"][0], np.repeat(picture, 60, axis=0))
    write_idx(raw / MNIST_FILES["train"][1], train_labels)
    write_idx(raw / MNIST_FILES["test"][0], _class_images(rng, test_labels, (28, 28)))
    write_idx(raw / MNIST_FILES["test"][1], test_labels)
    return raw.parent.parent


def run(data_dir: Path, out: Path, devices: int, resident: bool) -> dict:
    command = [sys.executable, str(SCRIPT), str(data_dir), str(out), "--devices", str(devices)]
    if resident:
        command.append("--device-resident")
    done = subprocess.run(command, cwd=out.parent, env=env(), capture_output=True, text=True,
                          timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"result": json.loads((out / "result.json").read_text()),
            "ranks": [torch.load(out / f"rank{r}.pt") for r in range(devices)]}


@pytest.mark.parametrize("resident", [False, True], ids=["dataloader", "device_resident"])
def test_ddp_test_accuracy_is_exact_and_augmentation_differs_per_rank(mnist_dir, tmp_path, resident):
    single = run(mnist_dir, tmp_path / "single", devices=1, resident=resident)
    ddp = run(mnist_dir, tmp_path / "ddp", devices=2, resident=resident)
    # every test sample read exactly once over the ranks (no padding), so the accuracy is the test set's
    assert single["result"]["test/count"] == ddp["result"]["test/count"] == N_TEST
    assert sorted(r["test_count"] for r in ddp["ranks"]) == [N_TEST // 2, N_TEST // 2 + 1]
    assert ddp["result"]["test/acc"] == single["result"]["test/acc"]
    # the same picture on both ranks, augmented differently per rank, and the same again in a second run
    first, second = (r["first_train_batch"] for r in ddp["ranks"])
    assert first.shape == second.shape and not torch.equal(first, second)
    assert torch.equal(single["ranks"][0]["first_train_batch"], first), "rank 0 draws as a single process does"
    again = run(mnist_dir, tmp_path / "again", devices=2, resident=resident)
    assert torch.equal(again["ranks"][1]["first_train_batch"], second)


def test_missing_dataset_on_rank_0_ends_the_run_with_one_error_line(tmp_path):
    """prepare_data raises on local rank 0 only, while rank 1 waits in the barrier before setup: rank 0 stops
    it (BaseDataModule.on_exception), so the run ends with one error line and no rank left behind."""
    missing = tmp_path / "no_mnist_here"
    command = [sys.executable, "-m", "lightning_lab", "fit", "--config", str(REPO / "configs" / "mnist.yaml"),
               "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
               "--data.init_args.download", "false", "--data.init_args.data_dir", str(missing)]
    done = subprocess.run(command, cwd=tmp_path, env=env(), capture_output=True, text=True,
                          timeout=HANG_GUARD_S)
    output = done.stdout + done.stderr
    errors = [line for line in output.splitlines() if "error:" in line.lower()]
    assert done.returncode == 2, output[-3000:]
    assert len(errors) == 1 and errors[0].startswith("error: MNIST not found") and str(missing) in errors[0]
    assert "Traceback" not in output
    left = [p for p in Path("/proc").glob("[0-9]*") if str(missing) in read_cmdline(p)]  # Linux; empty elsewhere
    assert not left, "a rank is still running"


def read_cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
