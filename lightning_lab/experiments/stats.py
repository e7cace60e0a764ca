"""The study's statistics: effects of a setting from matched runs, as paired differences with t intervals.

Two runs are *matched* for a setting when they agree in every other setting and in the seed (so they share the
data split and the initialisation stream). For two values a and b of a setting, each context (the values of the
other settings, and the seed) that holds a run with a and a run with b gives one paired difference
``metric(a) - metric(b)``. The effect is the mean of these differences with a 95% paired-t interval over the
``n`` pairs (n - 1 degrees of freedom). Its error term is the spread of the difference across seeds and across
the other settings: in a full factorial without repeats that is the interaction with the other settings, as in
a main-effects two-way ANOVA (for two values of two settings the two tests are the same). One pair gives no
interval.

Verdicts: ``better``/``worse`` when the interval excludes 0; ``no detectable difference`` when it contains 0;
``no interval`` with a single pair. Never from overlapping per-value intervals.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable, Sequence

CONFIDENCE = 0.95


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student-t critical value."""
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, df))


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """(mean, half-width of its Student-t interval); the half-width is nan below 2 values."""
    if not values:
        return math.nan, math.nan
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, t_quantile(len(values) - 1, confidence) * statistics.stdev(values) / math.sqrt(len(values))


@dataclass(frozen=True)
class Difference:
    """`value` minus `reference` over `n` matched pairs: mean and 95% half-width (nan: no interval)."""

    value: str
    reference: str
    n: int
    mean: float
    half: float
    test_mean: float = math.nan   # the same pairs' difference in the reported metric (test/acc), mean only

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half

    @property
    def verdict(self) -> str:
        if math.isnan(self.half):
            return "no interval (one pair)"
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no detectable difference"


def paired(values_a: dict[tuple, float], values_b: dict[tuple, float]) -> list[float]:
    """Differences a - b over the contexts both have."""
    return [values_a[c] - values_b[c] for c in values_a if c in values_b]


def effect(rows: Sequence[tuple[str, tuple, float, float | None]]) -> list[Difference]:
    """One setting's effect from rows (its value, the run's context, the selection metric, the reported metric):
    every other value against the reference, the value with the highest mean over the contexts that hold all
    values (else over all its runs). [] when no two values share a context."""
    by_value: dict[str, dict[tuple, float]] = {}
    reported: dict[str, dict[tuple, float]] = {}
    for value, context, score, test in rows:
        by_value.setdefault(value, {})[context] = score
        if test is not None:
            reported.setdefault(value, {})[context] = test
    if len(by_value) < 2:
        return []
    shared = set.intersection(*(set(v) for v in by_value.values()))

    def level(value: str) -> float:
        contexts = shared or set(by_value[value])
        return statistics.fmean(by_value[value][c] for c in contexts)

    reference = max(sorted(by_value), key=level)
    out = []
    for value in sorted(by_value, key=level, reverse=True):
        if value == reference:
            continue
        diffs = paired(by_value[value], by_value[reference])
        if not diffs:
            continue
        tests = paired(reported.get(value, {}), reported.get(reference, {}))
        mean, half = mean_ci(diffs)
        out.append(Difference(value, reference, len(diffs), mean, half,
                              statistics.fmean(tests) if tests else math.nan))
    return out


def effects(runs: Sequence[dict], settings: Sequence[str], value_of: Callable[[dict, str], str],
            score: Callable[[dict], float | None], reported: Callable[[dict], float | None],
            seed_of: Callable[[dict], str]) -> dict[str, list[Difference]]:
    """{setting: differences} for every setting that has matched pairs."""
    out: dict[str, list[Difference]] = {}
    for setting in settings:
        rows = []
        for run in runs:
            value = score(run)
            if value is None:
                continue
            context = tuple(value_of(run, other) for other in settings if other != setting) + (seed_of(run),)
            rows.append((value_of(run, setting) or "(unset)", context, value, reported(run)))
        found = effect(rows)
        if found:
            out[setting] = found
    return out
