"""A 2-process CPU DDP fit (gloo) of ResNet18 with staged fine-tuning, run by tests/test_models.py.

python tests/ddp_finetuning_script.py OUT_DIR
Each rank writes OUT_DIR/rank<N>.json: hashes of its backbone and head parameters at the start and after each
epoch. Then, in the same process group, a fit with the pattern of Lightning's BaseFinetuning docs (freeze in setup,
unfreeze later) on a DDP Trainer, which the CLI refuses: each rank writes the refusal to OUT_DIR/refused<N>.txt.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BaseFinetuning
from torch.utils.data import DataLoader, TensorDataset

from lightning_lab.errors import ConfigError
from lightning_lab.callbacks import StagedFinetuning, refuse_finetuning_that_breaks
from lightning_lab.models import Classifier, ResNet18
from lightning_lab.callbacks.finetuning import BATCH_NORMS


def digest(params: list[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for p in params:
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


class Recorder(L.Callback):
    def __init__(self, out: Path) -> None:
        self.out, self.hashes = out, {}

    def record(self, key: str, pl_module: Classifier) -> None:
        net = pl_module.net
        backbone = [p for m in net.backbone.modules() if not isinstance(m, BATCH_NORMS) for p in m.parameters(False)]
        self.hashes[key] = {"backbone": digest(backbone), "head": digest(list(net.fc.parameters()))}

    def on_fit_start(self, trainer: L.Trainer, pl_module: Classifier) -> None:
        self.record("start", pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Classifier) -> None:
        self.record(f"epoch{trainer.current_epoch}", pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: Classifier) -> None:
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.hashes))


class FreezeThenUnfreeze(BaseFinetuning):
    def freeze_before_training(self, pl_module: Classifier) -> None:
        self.freeze(pl_module.net.backbone)

    def finetune_function(self, pl_module: Classifier, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        if epoch == 1:
            self.unfreeze_and_add_param_group(pl_module.net.backbone, optimizer)


def fit(finetuning: L.Callback, callbacks: list[L.Callback]) -> None:
    L.seed_everything(0)
    model = Classifier(functools.partial(ResNet18, weights="none"), num_classes=2, input_shape=(3, 32, 32),
                       optimizer=functools.partial(torch.optim.SGD, lr=0.05))
    data = DataLoader(TensorDataset(torch.randn(16, 3, 32, 32), torch.randint(0, 2, (16,))), batch_size=4)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, callbacks=[finetuning, *callbacks])
    trainer.fit(model, train_dataloaders=data)


def main(out: Path) -> None:
    fit(StagedFinetuning(unfreeze_at_epoch=1, train_bn=False), [Recorder(out)])
    # The CLI runs this check on every Trainer it builds: here on a 2-process DDP Trainer inside the launched ranks.
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[FreezeThenUnfreeze()])
    try:
        refuse_finetuning_that_breaks(trainer)
    except ConfigError as refusal:
        rank = int(os.environ.get("LOCAL_RANK", 0))
        (out / f"refused{rank}.txt").write_text(str(refusal))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
