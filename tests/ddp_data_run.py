"""Fit (one step), validate and test the lab's Classifier on MNIST files, for tests/test_data_ddp.py: called in the
test's own process for the 1-process numbers, and run as a script for DDP, so that Lightning's launcher can start
the other ranks with the same command line.

python tests/ddp_data_run.py DATA_DIR OUT_DIR --devices 2

One launch runs every variant in VARIANTS one after the other (the same process group serves each new Trainer).
The learning rate is 0 and the net has no batch norm, so every metric depends only on which samples each rank
reads. Per variant it writes OUT_DIR/<variant>.json (rank 0: the val metrics after fit and the test metrics) and
OUT_DIR/<variant>_rank<R>.pt (each rank: the first training batch as the network saw it, and how many val and test
samples and batches the rank read).
"""
from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch

from lightning_lab.data import MNISTDataModule
from lightning_lab.models import Classifier, ParametricCNN

BATCH_SIZE = 4
VAL_SPLIT = 9  # 5 + 4 samples over two ranks: 2 and 1 batches
# (name, device_resident); `again` repeats the first, to show that a rank's augmentation repeats from the seed.
VARIANTS = (("dataloader", False), ("device_resident", True), ("again", False))


class Recorder(L.Callback):
    """What reached the network on this rank."""

    def __init__(self) -> None:
        self.first_train_batch: torch.Tensor | None = None
        self.read = {"val_count": 0, "val_batches": 0, "test_count": 0, "test_batches": 0}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.first_train_batch is None:
            self.first_train_batch = batch[0].detach().cpu()

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self.read["val_count"] += len(batch[1])
        self.read["val_batches"] += 1

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self.read["test_count"] += len(batch[1])
        self.read["test_batches"] += 1


def run(data_dir: Path, out: Path, devices: int, variant: str, device_resident: bool) -> None:
    """One fit + test of the Classifier; writes the files named in the module docstring."""
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(0, verbose=False)
    data = MNISTDataModule(data_dir=str(data_dir), download=False, batch_size=BATCH_SIZE, val_split=VAL_SPLIT,
                           augment=True, device_resident=device_resident)
    model = Classifier(functools.partial(ParametricCNN, channels=[4], hidden=[], batch_norm=False),
                       num_classes=10, input_shape=(1, 28, 28), optimizer=functools.partial(torch.optim.SGD, lr=0.0))
    recorder = Recorder()
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                        max_epochs=1, limit_train_batches=1, num_sanity_val_steps=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[recorder])
    trainer.fit(model, datamodule=data)
    val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    (test,) = trainer.test(model, datamodule=data, verbose=False)
    torch.save({"first_train_batch": recorder.first_train_batch, **recorder.read},
               out / f"{variant}_rank{trainer.global_rank}.pt")
    if trainer.is_global_zero:
        (out / f"{variant}.json").write_text(json.dumps({**val, **test}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--devices", type=int, default=2)
    args = parser.parse_args()
    for variant, device_resident in VARIANTS:
        run(args.data_dir, args.out, args.devices, variant, device_resident)


if __name__ == "__main__":
    main()
