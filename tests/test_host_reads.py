"""The host-read counter (benchmarks/host_reads.py) counts every way of reading a tensor's value, restores
torch.Tensor exactly, and a real CLI fit with the progress bar on stays within the goal (no reads on ordinary
steps, <= 1 per 5 steps)."""
from __future__ import annotations

import operator
import sys

import numpy as np
import pytest
import torch

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))  # a diagnostic beside the benchmarks, not part of the package
from host_reads import READ_METHODS, HostReadCounter, HostReads  # noqa: E402


def tensor_attributes() -> dict[str, object]:
    """What torch.Tensor itself holds under each read method's name (absent = inherited from TensorBase)."""
    return {name: torch.Tensor.__dict__.get(name, "absent") for name in READ_METHODS}


READS = {
    "item": lambda t, i: t.item(),
    "__float__": lambda t, i: float(t),
    "__int__": lambda t, i: int(t),
    "__bool__": lambda t, i: bool(t),
    "tolist": lambda t, i: t.tolist(),
    "numpy": lambda t, i: t.numpy(),
    "__index__": lambda t, i: operator.index(i),
    "__complex__": lambda t, i: complex(t),
}


@pytest.mark.parametrize("kind", sorted(READS))
def test_each_kind_of_read_is_counted_once_with_its_call_site(kind: str) -> None:
    t, i = torch.tensor(1.5), torch.tensor(2)
    with HostReads() as reads:
        READS[kind](t, i)
    assert reads.total == 1
    assert reads.by_kind == {kind: 1}
    assert reads.by_device == {"cpu": 1}
    [(source, count)] = reads.sources.items()
    assert source[0] == kind and count == 1
    assert "test_host_reads.py" in source[1] and "lambda" in source[1]


def test_implicit_reads_count_at_the_user_line() -> None:
    t, i = torch.tensor(0.25), torch.tensor(1)
    with HostReads() as reads:
        if t:  # bool(t)
            pass
        f"{t:.2f}"  # Tensor.__format__ -> item
        np.asarray(t)  # Tensor.__array__ -> numpy
        ["a", "b"][i]  # __index__
    assert reads.by_kind == {"__bool__": 1, "item": 1, "numpy": 1, "__index__": 1}
    # the frames of torch/_tensor.py (__format__, __array__) are skipped: the site is this file
    assert all("test_host_reads.py" in source[1] for source in reads.sources)


def test_only_reads_count_and_values_are_unchanged() -> None:
    t = torch.arange(6.0).reshape(2, 3)
    with HostReads() as reads:
        u = (t * 2).sum(dim=0) + 1  # tensor ops stay tensors: nothing is read
        values = (u.tolist(), t[0, 1].item(), int(t[1, 2]), bool(t.any()))
    assert values == ([7.0, 11.0, 15.0], 1.0, 5, True)
    assert reads.by_kind == {"tolist": 1, "item": 1, "__int__": 1, "__bool__": 1}


def test_torch_tensor_is_restored_exactly_also_after_an_error() -> None:
    before = tensor_attributes()
    originals = {name: getattr(torch.Tensor, name) for name in READ_METHODS}
    with pytest.raises(RuntimeError, match="boom"):
        with HostReads():
            assert tensor_attributes() != before  # wrapped while active
            raise RuntimeError("boom")
    assert tensor_attributes() == before
    assert all(getattr(torch.Tensor, name) is originals[name] for name in READ_METHODS)
    with HostReads() as reads:
        pass
    torch.tensor(1.0).item()  # not active any more
    assert reads.total == 0


def test_nested_counters_each_count_and_the_last_one_restores() -> None:
    before = tensor_attributes()
    t = torch.tensor(3.0)
    with HostReads() as outer:
        t.item()
        with HostReads() as inner:
            float(t)
        t.tolist()
        assert tensor_attributes() != before  # the outer one is still active
    assert (outer.total, inner.total) == (3, 1)
    assert tensor_attributes() == before


def test_reads_at_host_only_sites_are_counted_apart() -> None:
    with HostReads(host_only=("test_host_reads.py",)) as reads:
        torch.tensor(1.0).item()
    assert (reads.total, reads.host_only_total) == (0, 1)
    # torch.optim keeps Adam's step counters on the CPU: their reads are no device sync on any device
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([param], lr=0.1)
    param.grad = torch.ones(3)
    with HostReads() as reads:
        optimizer.step()
    assert reads.total == 0 and reads.host_only_total >= 1


def test_report_names_the_call_site() -> None:
    with HostReads() as reads:
        for _ in range(3):
            torch.tensor(2.0).item()
    report = reads.report()
    assert report.startswith("3 host reads (item 3)")
    assert "test_host_reads.py" in report and "test_report_names_the_call_site" in report


# --------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_cli_fit_with_the_progress_bar_reads_no_values_on_ordinary_steps(workdir) -> None:
    """train/loss reaches callback_metrics every step (EarlyStopping can monitor it) without a read; on steps,
    reads happen only when Lightning writes the logs (the logged value and the NaN check: 2 per logging step)."""
    from lightning_lab.cli import LabCLI
    from lightning_lab.paths import CONFIG_DIR

    cli = LabCLI(args=["fit", "--config", str(CONFIG_DIR / "digits.yaml"), "--trainer.max_epochs", "3",
                       "--trainer.enable_progress_bar", "true", "--test_after_fit", "false",
                       "--early_stopping.monitor", "train/loss", "--early_stopping.mode", "min",
                       "--trainer.callbacks+=host_reads.HostReadCounter"])
    [counter] = [c for c in cli.trainer.callbacks if isinstance(c, HostReadCounter)]
    steps = counter.steps
    assert len(steps) >= 60 and cli.trainer.global_step == len(steps)
    assert cli.trainer.progress_bar_callback is not None
    on_steps = sum(s.reads for s in steps)
    report = counter.report()
    assert counter.ordinary_steps, "the progress bar refreshes every step: no step is read-free"
    assert counter.ordinary_reads == 0, report
    assert on_steps <= len(steps) / 5, report
    assert "train/loss" in cli.trainer.callback_metrics


def test_the_callback_attributes_reads_to_their_training_step(tmp_path) -> None:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 2)

        def training_step(self, batch, batch_idx):
            loss = self.layer(batch[0]).sum()
            if batch_idx % 3 == 0:
                loss.detach().item()
            return loss

        def on_train_epoch_end(self) -> None:
            float(self.layer.weight.sum())  # between steps

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    counter = HostReadCounter()
    loader = DataLoader(TensorDataset(torch.randn(14, 2)), batch_size=2)  # 7 batches
    L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, log_every_n_steps=5, callbacks=[counter],
              default_root_dir=tmp_path).fit(Module(), loader)
    assert [s.reads for s in counter.steps] == [1, 0, 0, 1, 0, 0, 1] * 2
    assert [s.global_step for s in counter.steps] == list(range(14))
    assert [s.log_step for s in counter.steps] == [(i + 1) % 5 == 0 for i in range(14)]
    assert [s.epoch_end for s in counter.steps] == [i % 7 == 6 for i in range(14)]
    assert not any(s.refresh_step for s in counter.steps)  # no progress bar
    epoch_ends = [c for source, c in counter.sources["outside"].items() if "on_train_epoch_end" in source[1]]
    assert epoch_ends == [2]  # plus Lightning's own reads while it sets up the loops
    assert counter.total == 6 + counter.outside
    assert counter.ordinary_reads == 4  # steps 0, 3 and 7, 10 (6 and 13 end an epoch)
    assert counter.per_step == counter.total / 14
    assert "test_host_reads.py" in counter.report()
    assert not counter.reads.active and "item" not in torch.Tensor.__dict__
