"""The speed settings a run gets when the user leaves them on auto (None): a function of what the machine reports."""
from __future__ import annotations

from dataclasses import dataclass

import torch

# torch.compile costs tens of seconds of compilation once per run; below this many optimizer steps that is
# more than it saves (`make demo` on the digits has 600 steps, configs/cifar.yaml's 40 epochs ~14,000).
COMPILE_MIN_STEPS = 5000


@dataclass(frozen=True)
class FastDefaults:
    """What `auto` means for each speed setting on one machine."""

    device_resident: bool  # MNIST/CIFAR-10 tensors live on the device, batches sliced there
    channels_last: bool
    compile: bool
    precision: str | None  # None: Lightning's default, 32-true


def fast_defaults(device_type: str, bf16_supported: bool, total_steps: int | None = None) -> FastDefaults:
    """CPU keeps the plain defaults; a CUDA device gets the fast path (bf16 where the GPU has it)."""
    if device_type != "cuda":
        return FastDefaults(device_resident=False, channels_last=False, compile=False, precision=None)
    return FastDefaults(
        device_resident=True,
        channels_last=True,
        compile=total_steps is not None and total_steps >= COMPILE_MIN_STEPS,
        precision="bf16-mixed" if bf16_supported else "16-mixed",
    )


def machine_fast_defaults(device: torch.device | str, total_steps: int | None = None) -> FastDefaults:
    """`fast_defaults` for the device a run trains on, asking torch what that device supports."""
    device = torch.device(device)
    bf16 = device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return fast_defaults(device.type, bf16, total_steps)
