"""ParametricCNN's heads on every input size the lab uses; the image configs build; the ablation studies the head."""
from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_lab.cli import LabCLI
from lightning_lab.errors import ConfigError
from lightning_lab.experiments.grid import load_grid
from lightning_lab.models import ParametricCNN
from lightning_lab.models.layers import GlobalAvgPool
from lightning_lab.paths import CONFIG_DIR
from lightning_lab.quiet import ARGS_WARNING

SIZES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 128, 128)]


@pytest.mark.parametrize("shape", SIZES, ids=lambda s: f"{s[0]}x{s[1]}x{s[2]}")
def test_both_heads_build_and_run_on_each_input_size(shape: tuple[int, int, int]) -> None:
    flatten = ParametricCNN(shape, 7, channels=[8, 16], head="flatten")
    gap = ParametricCNN(shape, 7, channels=[8, 16], head="gap")
    x = torch.randn(2, *shape)
    assert flatten(x).shape == gap(x).shape == (2, 7)
    # flatten keeps every position of the last map (two ceil-mode pools: ceil(size / 4) per side), gap one per map
    side = math.ceil(shape[1] / 4)
    assert flatten.head[1].in_features == 16 * side * side
    assert gap.head[1].in_features == 16
    assert any(isinstance(m, GlobalAvgPool) for m in gap.modules())
    assert not any(isinstance(m, GlobalAvgPool) for m in flatten.modules())


def test_gap_head_takes_other_sizes_flatten_head_does_not() -> None:
    gap = ParametricCNN((1, 28, 28), 10, channels=[8, 16], head="gap")
    assert gap(torch.randn(2, 1, 40, 36)).shape == (2, 10)
    flatten = ParametricCNN((1, 28, 28), 10, channels=[8, 16], head="flatten")
    with pytest.raises(RuntimeError):
        flatten(torch.randn(2, 1, 40, 36))


def test_unknown_head_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown head 'mean'.*flatten, gap"):
        ParametricCNN((1, 28, 28), 10, head="mean")  # type: ignore[arg-type]


@pytest.mark.parametrize("config, pool", [("digits.yaml", nn.Flatten), ("mnist.yaml", nn.Flatten),
                                          ("cifar.yaml", nn.Flatten), ("cats_dogs.yaml", GlobalAvgPool)])
def test_image_configs_build_their_network(config: str, pool: type, workdir: Path) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=ARGS_WARNING)
        cli = LabCLI(args=["--config", str(CONFIG_DIR / config), "--trainer.logger", "false"], run=False)
    net = cli.model.net
    assert isinstance(net, ParametricCNN) and isinstance(net.pool, pool)
    net.eval()
    with torch.no_grad():
        assert net(torch.zeros(2, *cli.datamodule.input_shape)).shape == (2, cli.datamodule.num_classes)


def test_ablation_varies_the_head_and_its_comment_counts_the_runs() -> None:
    path = CONFIG_DIR / "grids" / "cnn_ablation.yaml"
    studies = {study.name: study for study in load_grid(path)}
    assert studies["architecture"].grid["model.net.init_args.head"] == ["flatten", "gap"]
    sizes = [len(study.combinations()) for study in studies.values()]
    # one combination of each study is the config as it is, so the sweep runs it once
    stated = re.search(r"(\d+) \+ (\d+) - 1 = (\d+) runs", path.read_text())
    assert stated is not None
    assert [int(stated[1]), int(stated[2]), int(stated[3])] == [*sizes, sum(sizes) - 1]
