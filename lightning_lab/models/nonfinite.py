"""Stopping a run on a NaN/inf loss without reading the loss on the host at every step."""
from __future__ import annotations

import torch

from lightning_lab.errors import LabError


class NonFiniteLossError(LabError, FloatingPointError):
    """Training produced a NaN/inf loss; raised instead of training on garbage."""


class NonFiniteLossWatch:
    """Remembers the first step whose loss was NaN/inf, on the loss's device; `check()` reads it on the host.

    `if not torch.isfinite(loss)` at every step would make the host wait for each forward pass before it can
    queue the backward (a device sync per step, leaving a GPU idle meanwhile). `record` only queues two tiny
    device ops; the caller runs `check` every N steps and at epoch end, which names the first bad step.
    """

    def __init__(self) -> None:
        self._first_bad: torch.Tensor | None = None  # index into _steps of the first non-finite loss, -1 if none
        self._first_loss: torch.Tensor | None = None
        self._steps: list[tuple[int, int, int, float]] = []  # (step, epoch, batch, lr) since the last check

    def record(self, loss: torch.Tensor, step: int, epoch: int, batch_idx: int, lr: float) -> None:
        loss = loss.detach()
        if self._first_bad is None:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._first_loss = torch.zeros((), dtype=loss.dtype, device=loss.device)
        new_bad = ~torch.isfinite(loss) & (self._first_bad < 0)
        self._first_bad = torch.where(new_bad, len(self._steps), self._first_bad)
        self._first_loss = torch.where(new_bad, loss, self._first_loss)
        self._steps.append((step, epoch, batch_idx, lr))

    def check(self) -> None:
        """Raise NonFiniteLossError naming the first bad step recorded since the last check (one host read)."""
        if self._first_bad is None:
            return
        index = int(self._first_bad)
        steps, self._steps, self._first_bad = self._steps, [], None
        if index >= 0:
            step, epoch, batch_idx, lr = steps[index]
            raise NonFiniteLossError(
                f"loss became {self._first_loss.item()} at step {step} (epoch {epoch}, batch {batch_idx}) with "
                f"learning rate {lr:g}; lower the learning rate or check the data"
            )
