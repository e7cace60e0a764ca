"""The study's statistics on constructed data: matched pairs, paired-t intervals, verdicts."""
from __future__ import annotations

import math
import random

import pytest

from lightning_lab.experiments import stats


def test_mean_ci_is_the_student_t_interval():
    mean, half = stats.mean_ci([0.90, 0.92, 0.94])
    assert mean == pytest.approx(0.92)
    assert half == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-5)  # t(0.975, 2) * sd / sqrt(n)
    assert math.isnan(stats.mean_ci([0.9])[1])


def _runs(values: dict[tuple[str, int], float]) -> list[dict]:
    return [{"setting": s, "seed": str(seed), "acc": acc} for (s, seed), acc in values.items()]


def _effects(runs: list[dict], settings=("setting",)) -> dict[str, list[stats.Difference]]:
    return stats.effects(runs, list(settings), lambda run, key: run[key], lambda run: run["acc"],
                         lambda run: run.get("test"), lambda run: run["seed"])


def test_a_small_steady_advantage_under_large_seed_noise_is_a_difference():
    rng = random.Random(0)
    values = {}
    for seed in range(6):
        level = 0.85 + rng.uniform(-0.05, 0.05)  # seed-to-seed spread ±0.05, shared by both values of a seed
        values[("relu", seed)] = level + 0.02 + rng.uniform(-0.003, 0.003)
        values[("tanh", seed)] = level
    [diff] = _effects(_runs(values))["setting"]
    assert (diff.value, diff.reference, diff.n) == ("tanh", "relu", 6)
    assert diff.mean == pytest.approx(-0.02, abs=0.003)
    assert diff.high < 0 and diff.verdict == "worse"
    # the test the report must not use: each value's own interval over seeds overlaps the other's
    relu = stats.mean_ci([values[("relu", s)] for s in range(6)])
    tanh = stats.mean_ci([values[("tanh", s)] for s in range(6)])
    assert abs(relu[0] - tanh[0]) < relu[1] + tanh[1]


def test_pure_noise_is_no_detectable_difference():
    values = {}
    for seed, (a, b) in enumerate([(0.91, 0.90), (0.88, 0.895), (0.90, 0.90), (0.87, 0.865), (0.92, 0.93)]):
        values[("adam", seed)], values[("sgd", seed)] = a, b
    [diff] = _effects(_runs(values))["setting"]
    assert diff.n == 5 and diff.low < 0 < diff.high
    assert diff.verdict == "no detectable difference"


def test_two_by_two_without_repeats_does_not_drown_the_optimizer_in_the_activation_effect():
    # activation moves accuracy by 0.2; SGD beats Adam by 0.02 under both activations (a small interaction)
    runs = [{"act": "relu", "opt": "SGD", "seed": "42", "acc": 0.921},
            {"act": "relu", "opt": "Adam", "seed": "42", "acc": 0.900},
            {"act": "tanh", "opt": "SGD", "seed": "42", "acc": 0.719},
            {"act": "tanh", "opt": "Adam", "seed": "42", "acc": 0.700}]
    found = _effects(runs, settings=("act", "opt"))
    [opt] = found["opt"]
    assert (opt.value, opt.reference, opt.n) == ("Adam", "SGD", 2)
    assert opt.verdict == "worse" and opt.high < 0  # interval from the interaction: 1 degree of freedom
    [act] = found["act"]
    assert act.verdict == "worse" and act.mean == pytest.approx(-0.201)
    # pooling over the activation would have made SGD (0.820) and Adam (0.800) look like noise
    assert stats.mean_ci([0.921, 0.719])[1] > 0.02


def test_one_pair_has_no_interval_and_unmatched_runs_are_not_compared():
    [diff] = _effects(_runs({("a", 1): 0.9, ("b", 1): 0.8, ("b", 2): 0.1}))["setting"]
    assert diff.n == 1 and math.isnan(diff.half) and diff.verdict.startswith("no interval")
    assert _effects(_runs({("a", 1): 0.9, ("b", 2): 0.8})) == {}  # different seeds: not matched
