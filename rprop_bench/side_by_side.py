"""Our numbers next to the published ones: intervals, differences, and one agreement rule.

Pure NumPy/SciPy on per-trial values; nothing here reads MLflow. The rule (stated in
experiments/classics/README.md): a cell **agrees** when the published value lies inside our
95 % interval of the same quantity, and **disagrees** otherwise. The intervals:

* a mean: Student's t interval, mean ± t(0.975, n−1) · s/√n;
* a standard deviation: the χ² interval, s·√((n−1)/χ²(0.975, n−1)) … s·√((n−1)/χ²(0.025, n−1))
  (both assume roughly normal epochs; the median's interval does not);
* a median: the order-statistic interval (:func:`rprop_bench.analysis.median_interval`);
* a success rate: Clopper & Pearson's exact binomial interval (1934, Biometrika 26);
* an end of a working range: the gap between the last grid value outside the range and the
  first inside it (a grid cannot place an end more finely; which values are inside is the
  caller's rule);
* a single published run (MNIST-1D: one run, rounded to whole percent): the 95 % prediction
  interval of one new run, mean ± t(0.975, n−1) · s·√(1 + 1/n), widened by half the rounding
  unit, because one run is a draw, not a mean (Hahn & Meeker 1991, "Statistical
  Intervals", §4.7).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from rprop_bench.analysis import median_interval

__all__ = [
    "Estimate",
    "WorkingRangeEnds",
    "agreement",
    "mean_estimate",
    "median_estimate",
    "ordering_verdict",
    "prediction_estimate",
    "sd_estimate",
    "success_estimate",
    "working_range_ends",
]

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """Our value of a quantity, its interval and the number of values it rests on."""

    value: float
    low: float
    high: float
    n: int


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    return x[np.isfinite(x)]


def mean_estimate(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Estimate:
    """The mean of the finite values and its t interval (NaN interval below 2 values)."""
    x = _finite(values)
    n = int(x.size)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n)


def prediction_estimate(
    values: Sequence[float] | np.ndarray, rounding: float = 0.0, confidence: float = CONFIDENCE
) -> Estimate:
    """Our mean and the prediction interval of one new run (t, ``n − 1`` degrees of freedom),
    widened by ``rounding / 2`` on each side for a published value rounded to ``rounding``."""
    x = _finite(values)
    n = int(x.size)
    if n < 2:
        return Estimate(float(x.mean()) if n else math.nan, math.nan, math.nan, n)
    mean = float(x.mean())
    t = float(stats.t.ppf(0.5 + confidence / 2, n - 1))
    half = t * float(x.std(ddof=1)) * math.sqrt(1.0 + 1.0 / n) + rounding / 2
    return Estimate(mean, mean - half, mean + half, n)


def sd_estimate(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Estimate:
    """The sample standard deviation (ddof 1) of the finite values and its χ² interval."""
    x = _finite(values)
    n = int(x.size)
    if n < 2:
        return Estimate(math.nan, math.nan, math.nan, n)
    s = float(x.std(ddof=1))
    alpha = 1.0 - confidence
    low = s * math.sqrt((n - 1) / float(stats.chi2.ppf(1 - alpha / 2, n - 1)))
    high = s * math.sqrt((n - 1) / float(stats.chi2.ppf(alpha / 2, n - 1)))
    return Estimate(s, low, high, n)


def median_estimate(
    values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE
) -> Estimate:
    """The median of the values (``inf`` counts, as a failed trial's cost) and its
    order-statistic interval."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    interval = median_interval(x, confidence=confidence)
    return Estimate(float(np.median(x)), interval.low, interval.high, int(x.size))


def success_estimate(successes: int, trials: int, confidence: float = CONFIDENCE) -> Estimate:
    """The success rate ``successes / trials`` and its Clopper–Pearson interval."""
    if trials <= 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, {trials}], got {successes}")
    ci = stats.binomtest(successes, trials).proportion_ci(confidence, method="exact")
    return Estimate(successes / trials, float(ci.low), float(ci.high), trials)


@dataclass(frozen=True)
class WorkingRangeEnds:
    """The parameter values inside a working range, as a range, and where each end can lie:
    between the last grid value outside and the first inside.

    ``low``/``high`` are NaN when no grid value is inside; an end's outer bracket is
    ``-inf``/``inf`` when the range reaches the edge of the grid.
    """

    low: float
    high: float
    low_bracket: tuple[float, float]
    high_bracket: tuple[float, float]
    contiguous: bool


def working_range_ends(values: Sequence[float], inside: Sequence[bool]) -> WorkingRangeEnds:
    """The working range on a grid of parameter ``values``, given which are ``inside`` it
    (by a rule of the caller's: e.g. every trial met the criterion).

    ``contiguous`` is False when a value between ``low`` and ``high`` is outside, so the range
    has a hole (the ends are then the outermost values inside).
    """
    order = np.argsort(np.asarray(values, dtype=float))
    x = np.asarray(values, dtype=float)[order]
    ok = np.asarray(inside, dtype=bool)[order]
    hits = np.flatnonzero(ok)
    nan_pair = (math.nan, math.nan)
    if hits.size == 0:
        return WorkingRangeEnds(math.nan, math.nan, nan_pair, nan_pair, False)
    first, last = int(hits[0]), int(hits[-1])
    below = float(x[first - 1]) if first > 0 else -math.inf
    above = float(x[last + 1]) if last + 1 < x.size else math.inf
    return WorkingRangeEnds(
        low=float(x[first]),
        high=float(x[last]),
        low_bracket=(below, float(x[first])),
        high_bracket=(float(x[last]), above),
        contiguous=bool(ok[first : last + 1].all()),
    )


def agreement(published: float, low: float, high: float) -> str:
    """``agrees`` when ``published`` lies in ``[low, high]``, ``disagrees`` when outside,
    ``no interval`` when ours has none, ``no published value`` when the source has none."""
    if published is None or not math.isfinite(published):
        return "no published value"
    if not (math.isfinite(low) or math.isfinite(high)) or math.isnan(low) or math.isnan(high):
        return "no interval"
    return "agrees" if low <= published <= high else "disagrees"


def ordering_verdict(significant: Sequence[tuple[str, str]], improved: set[str]) -> str:
    """Igel & Hüsken's claim (the improved variants ahead of the originals) against the
    significant pairwise differences of one problem and budget, each ``(better, worse)``.

    ``agrees`` when some improved-vs-original pair differs and every such pair favours the
    improved variant; ``disagrees`` when any favours an original; ``no difference detected``
    when no improved-vs-original pair differs (pairs within a group do not count).
    """
    crossing = [(b, w) for b, w in significant if (b in improved) != (w in improved)]
    if not crossing:
        return "no difference detected"
    return "agrees" if all(b in improved for b, _ in crossing) else "disagrees"
