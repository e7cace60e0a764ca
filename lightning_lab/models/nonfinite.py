"""Stopping a run on a NaN/inf loss without reading the loss on the host at every step."""
from __future__ import annotations

import torch

from lightning_lab.errors import LabError


class NonFiniteLossError(LabError, FloatingPointError):
    """Training produced a NaN/inf loss; raised instead of training on garbage."""


class NonFiniteLossWatch:
    """Keeps each step's loss on the loss's device; `check()` reads on the host whether one was NaN/inf.

    `if not torch.isfinite(loss)` at every step would make the host wait for each forward pass before it can
    queue the backward (a device sync per step, leaving a GPU idle meanwhile). `record` only keeps a reference to
    the step's loss; the caller runs `check` every N steps and at epoch end, which stacks them and names the first
    bad step.
    """

    def __init__(self) -> None:
        self._losses: list[torch.Tensor] = []  # the losses recorded since the last check, on their device
        self._steps: list[tuple[int, int, int, float]] = []  # (step, epoch, batch, lr) of each

    def record(self, loss: torch.Tensor, step: int, epoch: int, batch_idx: int, lr: float) -> None:
        # A reference, not a copy into a buffer: no device work per step (a copy would be a kernel launch).
        self._losses.append(loss.detach())
        self._steps.append((step, epoch, batch_idx, lr))

    def check(self, along: torch.Tensor | None = None) -> float | None:
        """Raise NonFiniteLossError naming the first bad step recorded since the last check. One host read, which
        also brings `along` (a scalar on the same device, e.g. the loss to log) back as a float."""
        n = len(self._steps)
        if n == 0:
            return None if along is None else float(along)
        losses = torch.stack(self._losses)
        bad = ~torch.isfinite(losses)
        first_bad = torch.where(bad.any(), bad.to(torch.uint8).argmax(), -1)  # -1: every loss was finite
        if along is None:
            index, value = int(first_bad), None
        else:
            index_f, value = torch.stack([first_bad.to(along.dtype), along.detach()]).tolist()
            index = int(index_f)
        steps, self._steps, self._losses = self._steps, [], []
        if index >= 0:
            step, epoch, batch_idx, lr = steps[index]
            raise NonFiniteLossError(
                f"loss became {losses[index].item()} at step {step} (epoch {epoch}, batch {batch_idx}) with "
                f"learning rate {lr:g}; lower the learning rate or check the data"
            )
        return value
