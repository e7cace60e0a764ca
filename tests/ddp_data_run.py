"""A small DDP run of a data module with its own tiny model, for tests/test_data_ddp.py (run as a script, so that
Lightning's DDP launcher can start the other ranks with the same command line).

python tests/ddp_data_run.py DATA_DIR OUT_DIR --devices 2 [--device-resident]

Data: MNIST IDX files in DATA_DIR. The model's learning rate is 0, so every number it reports depends only on the
data each rank reads. Writes OUT_DIR/result.json (rank 0: the test metrics) and OUT_DIR/rank{R}.pt (each rank:
the first training batch as the network saw it, the number of test samples the rank read).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import lightning as L
import torch
import torchmetrics

from lightning_lab.data import MNISTDataModule


class Probe(L.LightningModule):
    """A fixed linear classifier that records what reaches it."""

    def __init__(self, out: Path) -> None:
        super().__init__()
        self.out = out
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
        self.test_acc = torchmetrics.classification.MulticlassAccuracy(num_classes=10, average="micro")
        self.test_count = torchmetrics.SumMetric()
        self.first_train_batch: torch.Tensor | None = None
        self.local_test_count = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.first_train_batch is None:
            self.first_train_batch = x.detach().cpu()
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.test_acc(self.net(x), y)
        self.test_count.update(torch.tensor(float(len(y))))
        self.local_test_count += len(y)
        self.log("test/acc", self.test_acc, on_epoch=True)
        self.log("test/count", self.test_count, on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def on_test_end(self) -> None:
        torch.save({"first_train_batch": self.first_train_batch, "test_count": self.local_test_count},
                   self.out / f"rank{self.global_rank}.pt")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("out")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--device-resident", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(0, verbose=False)
    dm = MNISTDataModule(data_dir=args.data_dir, download=False, batch_size=8, val_split=10, augment=True,
                         device_resident=args.device_resident)
    model = Probe(out)
    trainer = L.Trainer(accelerator="cpu", devices=args.devices, strategy="ddp" if args.devices > 1 else "auto",
                        max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    results = trainer.test(model, datamodule=dm, verbose=False)
    if trainer.global_rank == 0:
        (out / "result.json").write_text(json.dumps(results[0]))


if __name__ == "__main__":
    main()
