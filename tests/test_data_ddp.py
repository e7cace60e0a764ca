"""Data under 2-process CPU DDP (gloo): the lab's Classifier evaluates exactly (val and test metrics equal the
1-process numbers while the ranks take different numbers of steps), augmentation differs per rank, and a data
error on rank 0 ends the run with one error line.

One DDP launch (tests/ddp_data_run.py as a script, so that Lightning's launcher can start the second rank with
the same command line) runs every variant; the 1-process numbers come from the same code in this process.
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

import ddp_data_run
from conftest import REPO
from fake_datasets import MNIST_FILES, _class_images, write_idx

SCRIPT = Path(ddp_data_run.__file__).resolve()
N_TEST = 41  # odd: two ranks cannot split it evenly
HANG_GUARD_S = 420  # not a speed assertion: only stops a hung run from blocking the suite
COMPARED = ("dataloader", "device_resident")


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MNIST files whose training images are all one picture (so two ranks' batches differ only by their
    augmentation) with random labels, and whose test split has an odd number of varied images."""
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


def outputs(out: Path, variant: str, devices: int) -> dict:
    return {"metrics": json.loads((out / f"{variant}.json").read_text()),
            "ranks": [torch.load(out / f"{variant}_rank{r}.pt") for r in range(devices)]}


@pytest.fixture(scope="module")
def single(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The 1-process run of each compared variant, in this process."""
    out = tmp_path_factory.mktemp("single")
    for variant, resident in ddp_data_run.VARIANTS:
        if variant in COMPARED:
            ddp_data_run.run(mnist_dir, out, 1, variant, resident)
    return {variant: outputs(out, variant, 1) for variant in COMPARED}


@pytest.fixture(scope="module")
def ddp(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every variant under 2-process DDP, in one launch."""
    out = tmp_path_factory.mktemp("ddp")
    done = subprocess.run([sys.executable, str(SCRIPT), str(mnist_dir), str(out), "--devices", "2"], cwd=out,
                          env=env(), capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr[-3000:]
    return {variant: outputs(out, variant, 2) for variant, _ in ddp_data_run.VARIANTS}


@pytest.mark.slow
@pytest.mark.parametrize("variant", COMPARED)
def test_ddp_val_and_test_metrics_equal_one_process_with_uneven_steps(single: dict, ddp: dict,
                                                                      variant: str) -> None:
    one, two = single[variant], ddp[variant]
    # every sample read exactly once over the ranks (no padding), the ranks taking different numbers of steps
    val_split = ddp_data_run.VAL_SPLIT
    assert one["ranks"][0]["val_count"] == val_split and one["ranks"][0]["test_count"] == N_TEST
    assert sorted(r["val_count"] for r in two["ranks"]) == [val_split // 2, val_split // 2 + 1]
    assert sorted(r["test_count"] for r in two["ranks"]) == [N_TEST // 2, N_TEST // 2 + 1]
    assert two["ranks"][0]["test_batches"] != two["ranks"][1]["test_batches"]
    assert two["ranks"][0]["val_batches"] != two["ranks"][1]["val_batches"]
    # so the metrics are those of the whole split, as one process computes them
    expected = one["metrics"]
    assert {"val/acc", "val/loss", "val/acc_best", "test/acc", "test/loss"} <= set(expected)
    assert set(two["metrics"]) == set(expected)
    for name, value in expected.items():
        assert two["metrics"][name] == pytest.approx(value, rel=1e-5, abs=1e-7), name


@pytest.mark.slow
def test_augmentation_differs_per_rank_and_repeats_from_the_seed(single: dict, ddp: dict) -> None:
    for variant in COMPARED:
        first, second = (r["first_train_batch"] for r in ddp[variant]["ranks"])
        # the same picture on both ranks, augmented differently per rank
        assert first.shape == second.shape and not torch.equal(first, second), variant
        assert torch.equal(single[variant]["ranks"][0]["first_train_batch"], first), "rank 0 draws as 1 process"
    again = ddp["again"]["ranks"]
    assert torch.equal(again[0]["first_train_batch"], ddp["dataloader"]["ranks"][0]["first_train_batch"])
    assert torch.equal(again[1]["first_train_batch"], ddp["dataloader"]["ranks"][1]["first_train_batch"])


@pytest.mark.slow
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
