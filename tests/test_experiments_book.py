"""The study's bookkeeping of Tune's trials (experiments/book.py) without Ray running: the ASHA scheduler's
decisions, fed results as Tune would."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from lightning_lab.experiments.book import recording_asha

pytestmark = pytest.mark.slow  # importing Ray Tune takes 10-15 s here: kept out of the quick tier


def trial(run_id: str, max_epochs: int) -> SimpleNamespace:
    return SimpleNamespace(trial_id=run_id, config={"run": {"run_id": run_id, "max_epochs": max_epochs}})


def test_asha_stops_a_weak_run_at_a_rung_but_never_one_that_trained_its_budget():
    from ray.tune.schedulers import TrialScheduler

    asha = recording_asha(4)
    strong, weak, last = trial("strong", 4), trial("weak", 4), trial("last", 4)
    for t in (strong, weak, last):
        asha.on_trial_add(None, t)

    def decide(t: SimpleNamespace, epoch: int, acc: float) -> str:
        return asha.on_trial_result(None, t, {"epoch": epoch, "val/acc": acc})

    assert [decide(strong, e, 0.9) for e in (1, 2, 3, 4)] == [TrialScheduler.CONTINUE] * 4
    assert decide(weak, 1, 0.9) == TrialScheduler.CONTINUE
    assert decide(weak, 2, 0.1) == TrialScheduler.STOP  # below the rung at epoch 2: stopped early
    # a rung at the last epoch (4): the run is worse than the others there, but its 4 epochs are trained
    assert [decide(last, e, 0.9) for e in (1, 2, 3)] == [TrialScheduler.CONTINUE] * 3
    assert decide(last, 4, 0.1) == TrialScheduler.CONTINUE
    assert asha.stopped == {"weak"}
