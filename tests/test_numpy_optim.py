"""The NumPy optimizers take torch.optim's steps: same weights, same gradients, same updates (float64)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import torch

from numpy_core.optim import SGD, Adam

STEPS = 12


def loss_gradient(p: dict[str, np.ndarray], step: int) -> dict[str, np.ndarray]:
    """Gradient of sum(c * (p - t)^2) + sum(n_step * p): it depends on where the weights are, so a wrong step
    changes every later gradient too."""
    rng = np.random.default_rng(step)
    return {k: 2 * (1.0 + 0.5 * np.arange(v.size).reshape(v.shape)) * (v - 0.3) + rng.normal(size=v.shape)
            for k, v in p.items()}


def trajectories(numpy_opt: Callable[[dict[str, np.ndarray]], Any],
                 torch_opt: Callable[[list[torch.Tensor]], torch.optim.Optimizer]) -> tuple[list, list]:
    """The weights after each step, NumPy's and torch's, from the same start and the same gradient rule."""
    rng = np.random.default_rng(0)
    start = {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}
    ours = {k: v.copy() for k, v in start.items()}
    theirs = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in start.items()}
    opt_ours, opt_theirs = numpy_opt(ours), torch_opt(list(theirs.values()))
    ours_path, theirs_path = [], []
    for step in range(STEPS):
        opt_ours.step(loss_gradient(ours, step))
        grads = loss_gradient({k: v.detach().numpy() for k, v in theirs.items()}, step)
        for k, v in theirs.items():
            v.grad = torch.tensor(grads[k], dtype=torch.float64)
        opt_theirs.step()
        ours_path.append({k: v.copy() for k, v in ours.items()})
        theirs_path.append({k: v.detach().numpy().copy() for k, v in theirs.items()})
    return ours_path, theirs_path


@pytest.mark.parametrize("name, numpy_opt, torch_opt", [
    ("sgd", lambda p: SGD(p, lr=0.05), lambda p: torch.optim.SGD(p, lr=0.05)),
    ("sgd momentum", lambda p: SGD(p, lr=0.05, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    ("adam", lambda p: Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    ("adam betas eps", lambda p: Adam(p, lr=0.02, beta1=0.8, beta2=0.99, eps=1e-3),
     lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.8, 0.99), eps=1e-3)),
])
def test_numpy_optimizer_takes_torch_steps(name: str, numpy_opt: Callable, torch_opt: Callable) -> None:
    ours, theirs = trajectories(numpy_opt, torch_opt)
    moved = max(np.abs(ours[-1][k] - ours[0][k]).max() for k in ours[0])
    assert moved > 0.01  # the weights travel, so equal paths say something
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for k in a:
            assert a[k].dtype == np.float64
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6, err_msg=f"{name}: {k} after step {step + 1}")
