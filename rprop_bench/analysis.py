"""Pure functions that turn run results into the numbers a report shows.

Summaries within a problem: medians with their order-statistic intervals, seed bands, time
to target, performance profiles and step-size histograms. Rank tests and comparisons across problems
are :mod:`rprop_bench.comparison`.

Everything here takes NumPy arrays or pandas frames and returns new ones: no torch, no MLflow,
no matplotlib, no files. Shapes are stated in each docstring, in the style of rliable
(Agarwal et al., 2021, "Deep Reinforcement Learning at the Edge of the Statistical Precipice").

Conventions:

- **Lower is better** for every cost (loss, epochs or seconds to target) unless a function
  takes ``lower_is_better``.
- A run that failed or never reached the target has cost ``inf``; ``NaN`` costs are treated as
  ``inf`` where a function ranks or compares costs.
- Random resampling takes a ``random_state`` so that results repeat.

References:
    Dolan & Moré (2002), "Benchmarking optimization software with performance profiles",
    Math. Programming 91:201-213.
    Efron & Tibshirani (1993), "An Introduction to the Bootstrap", ch. 13 (percentile interval).
    Conover (1999), "Practical Nonparametric Statistics", 3rd ed., §3.2 (the order-statistic
    interval of a quantile).
    Dahl et al. (2023), "Benchmarking Neural Network Training Algorithms" (AlgoPerf):
    time-to-target and performance profiles.
    Moré & Wild (2009), "Benchmarking derivative-free optimization algorithms", SIAM J.
    Optim. 20:172-191 (data profiles).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "MedianInterval",
    "Summary",
    "as_costs",
    "bootstrap_ci",
    "expected_running_time",
    "histogram_grid",
    "median_interval",
    "median_iqr",
    "performance_profile",
    "profile_score",
    "profile_taus",
    "runtime_ecdf",
    "seed_bands",
    "stratified_bootstrap",
    "summarize",
    "time_to_target",
    "working_range",
]


# --------------------------------------------------------------------------- aggregates


def as_costs(values: np.ndarray | Sequence[float]) -> np.ndarray:
    """Float copy of ``values`` with NaN replaced by ``inf`` (a failed run costs ``inf``)."""
    arr = np.array(values, dtype=float)
    arr[np.isnan(arr)] = np.inf
    return arr


def median_iqr(values: np.ndarray | Sequence[float]) -> tuple[float, float, float]:
    """Median and interquartile range of a 1-D sample.

    Args:
        values: shape ``(n_runs,)``; NaN entries are ignored.

    Returns:
        ``(median, q25, q75)`` with linear interpolation (NumPy's default); all NaN when no
        value is left.
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return (np.nan, np.nan, np.nan)
    q25, med, q75 = np.quantile(x, [0.25, 0.5, 0.75])
    return (float(med), float(q25), float(q75))


def bootstrap_ci(
    values: np.ndarray | Sequence[float],
    statistic: Callable[..., np.ndarray] = np.median,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    random_state: int | np.random.Generator | None = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a statistic (Efron & Tibshirani 1993).

    Args:
        values: shape ``(n_runs,)``; NaN entries are ignored.
        statistic: reduces along ``axis=1`` of a ``(n_resamples, n_runs)`` array, e.g.
            ``np.median`` or ``np.mean``.
        confidence: coverage of the interval, in (0, 1).
        n_resamples: number of bootstrap resamples.
        random_state: seed or generator; the same seed gives the same interval.

    Returns:
        ``(low, high)``: the ``(1-confidence)/2`` and ``(1+confidence)/2`` quantiles of the
        statistic over resamples. ``(x, x)`` for a single value, NaN for none.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return (np.nan, np.nan)
    rng = np.random.default_rng(random_state)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    resampled = np.asarray(statistic(x[idx], axis=1), dtype=float)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(resampled, [alpha, 1.0 - alpha])
    return (float(low), float(high))


def stratified_bootstrap(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    random_state: int | np.random.Generator | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A percentile interval of an aggregate across problems, by the stratified bootstrap
    (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the Statistical
    Precipice", NeurIPS; rliable's ``StratifiedBootstrap``): each resample draws, within each
    (problem, method) cell, its runs with replacement, and the problems stay as they are.

    Args:
        values: shape ``(n_problems, n_methods, n_runs)``; NaN marks a missing run (cells may
            hold fewer runs), ``inf`` a failed one (it is a value).
        statistic: maps a resampled array of that shape to the aggregate, shape ``(n_methods,)``
            or any fixed shape (e.g. mean ranks of the cells' medians).
        confidence: the interval's coverage.
        n_resamples: the number of resamples.
        random_state: seed or generator; the same seed gives the same interval.

    Returns:
        ``(low, high)``, each of the statistic's shape.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(random_state)
    present = ~np.isnan(v)
    counts = present.sum(axis=2)  # runs per cell
    # each cell's runs first, so that index i < count draws a real run
    order = np.argsort(~present, axis=2, kind="stable")
    packed = np.take_along_axis(v, order, axis=2)
    draws = []
    for _ in range(n_resamples):
        pick = np.floor(rng.random(v.shape) * np.maximum(counts, 1)[..., None]).astype(int)
        sample = np.take_along_axis(packed, pick, axis=2)
        sample[counts == 0] = np.nan
        draws.append(np.asarray(statistic(sample), dtype=float))
    stacked = np.stack(draws)
    alpha = (1.0 - confidence) / 2.0
    return np.quantile(stacked, alpha, axis=0), np.quantile(stacked, 1.0 - alpha, axis=0)


@dataclass(frozen=True)
class MedianInterval:
    """A distribution-free interval of the median from two order statistics.

    ``[x_(k), x_(n+1-k)]`` covers the population median with probability
    ``1 - 2 P(B <= k - 1)``, ``B ~ Binomial(n, 1/2)``, whatever the distribution (for a
    continuous one; ties only widen it). :attr:`level` is that coverage, the smallest one
    that is at least the asked confidence, so it is printed with the interval.
    :attr:`is_range` marks ``k = 1`` below the asked confidence: with ``n < 6`` no interval
    reaches 95 %, and the sample range (level ``1 - 2^(1-n)``) is all there is.
    """

    low: float
    high: float
    level: float
    is_range: bool
    n: int


def median_interval(
    values: np.ndarray | Sequence[float], *, confidence: float = 0.95
) -> MedianInterval:
    """The order-statistic interval of the median of a ``(n_runs,)`` sample (NaN ignored;
    ``inf`` costs count as values). Conover (1999), "Practical Nonparametric Statistics",
    §3.2; Hahn & Meeker (1991), "Statistical Intervals", §5.2.

    Returns:
        The narrowest ``[x_(k), x_(n+1-k)]`` whose coverage is at least ``confidence``, or
        the range with its own coverage (``is_range``) when none is. All NaN for no value.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = np.sort(np.asarray(values, dtype=float)[~np.isnan(np.asarray(values, dtype=float))])
    n = int(x.size)
    if n == 0:
        return MedianInterval(np.nan, np.nan, np.nan, True, 0)
    ks = np.arange(1, (n + 1) // 2 + 1)  # x_(k) <= x_(n+1-k)
    coverage = 1.0 - 2.0 * stats.binom.cdf(ks - 1, n, 0.5)
    ok = np.flatnonzero(coverage >= confidence - 1e-12)
    k = int(ks[ok[-1]]) if ok.size else 1
    level = float(coverage[k - 1])
    return MedianInterval(float(x[k - 1]), float(x[n - k]), level, not ok.size, n)


@dataclass(frozen=True)
class Summary:
    """Median [IQR] and the order-statistic interval of the median (:func:`median_interval`),
    over the ``n`` non-NaN values."""

    median: float
    q25: float
    q75: float
    interval: MedianInterval
    n: int

    @property
    def ci_low(self) -> float:
        return self.interval.low

    @property
    def ci_high(self) -> float:
        return self.interval.high


def summarize(values: np.ndarray | Sequence[float], *, confidence: float = 0.95) -> Summary:
    """:func:`median_iqr` and :func:`median_interval` of a ``(n_runs,)`` sample.

    Not a bootstrap: with the 3–5 seeds of a typical study, each extreme carries so much of
    the bootstrap's mass that its "95 %" interval of the median is the sample range, whose
    real coverage is 75 % at n = 3 and 94 % at n = 5. The order-statistic interval says its
    level instead.
    """
    x = np.asarray(values, dtype=float)
    med, q25, q75 = median_iqr(x)
    interval = median_interval(x, confidence=confidence)
    return Summary(med, q25, q75, interval, int(np.count_nonzero(~np.isnan(x))))


def seed_bands(
    frame: pd.DataFrame,
    by: Sequence[str],
    value: str,
    *,
    step: str = "step",
    time: str | None = None,
    evals: str | None = None,
) -> pd.DataFrame:
    """Median and interquartile band of a per-epoch value across seeds.

    Args:
        frame: one row per (run, step): the ``by`` columns, ``step``, ``value`` and, if given,
            ``time`` (e.g. wall-clock seconds at that step).
        by: columns that name a curve, e.g. ``["problem", "method"]``; runs sharing them are
            the seeds aggregated.
        value: the column to aggregate, e.g. ``"train_loss"``.
        step: the x column shared by all runs (the epoch).
        time: when given, also the median of this column at each step, so that a curve can be
            drawn against wall time (AlgoPerf style: median time vs median value).
        evals: likewise a cost column (gradient evaluations), its median as ``evals_median``:
            the x of a curve against cost (L-BFGS spends several evaluations an epoch).

    Returns:
        One row per (``by``..., ``step``) with columns ``n`` (runs with a finite value there),
        ``median``, ``q25``, ``q75`` and, with ``time`` and ``evals``, ``time_median`` and
        ``evals_median``. Non-finite values
        (a diverged run) are left out of the band; a report counts those runs as failed.
    """
    extra = [c for c in (time, evals) if c]
    cols = [*by, step, value, *extra]
    f = frame[cols].copy()
    f = f[np.isfinite(f[value].astype(float))]
    grouped = f.groupby([*by, step], sort=True)[value]
    out = pd.DataFrame(
        {
            "n": grouped.size(),
            "median": grouped.median(),
            "q25": grouped.quantile(0.25),
            "q75": grouped.quantile(0.75),
        }
    )
    for column, name in ((time, "time_median"), (evals, "evals_median")):
        if column:
            out[name] = f.groupby([*by, step], sort=True)[column].median()
    return out.reset_index()


def time_to_target(
    steps: np.ndarray | Sequence[float],
    values: np.ndarray | Sequence[float],
    target: float,
) -> float:
    """First step at which a curve reaches ``value <= target`` (AlgoPerf's time-to-result).

    Args:
        steps: shape ``(n_points,)``, increasing (epochs or seconds).
        values: shape ``(n_points,)``, e.g. training loss at those steps.
        target: the value to reach.

    Returns:
        The step, or ``inf`` when the curve never reaches the target (NaN never does).
    """
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    hit = np.flatnonzero(v <= target)
    return float(s[hit[0]]) if hit.size else float(np.inf)


# --------------------------------------------------------------------------- profiles


def performance_profile(costs: np.ndarray, taus: np.ndarray | Sequence[float]) -> np.ndarray:
    """Dolan–Moré performance profiles.

    With ``t[p, s]`` the cost of solver ``s`` on problem ``p``, the performance ratio is
    ``r[p, s] = t[p, s] / min_s t[p, s]`` and the profile is
    ``rho_s(tau) = |{p : r[p, s] <= tau}| / n_problems`` (Dolan & Moré 2002, eq. 1-2).
    A failed or never-reaching run has cost ``inf`` (NaN counts as ``inf``) and never counts;
    a problem no solver solves counts for nobody.

    Args:
        costs: shape ``(n_problems, n_solvers)``, positive, lower is better.
        taus: shape ``(n_taus,)``, ratios at which to evaluate, each ``>= 1``.

    Returns:
        shape ``(n_taus, n_solvers)``: the fraction of problems solved within ``tau`` of the best.

    Raises:
        ValueError: a cost is ``<= 0`` or ``costs`` is not 2-D.
    """
    t = as_costs(costs)
    if t.ndim != 2:
        raise ValueError(f"costs must be 2-D (n_problems, n_solvers), got shape {t.shape}")
    if np.any(t <= 0):
        raise ValueError("performance profiles need positive costs")
    best = t.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        ratios = np.where(np.isfinite(best), t / best, np.inf)
    tau = np.asarray(taus, dtype=float)
    return (ratios[None, :, :] <= tau[:, None, None]).mean(axis=1)


#: Largest ratio a profile's grid reaches. A best cost of (nearly) zero, e.g. a loss that
#: reached 0 exactly, makes every other ratio astronomically large (up to 1e308); past 2^30
#: the profile is flat anyway, and a wider axis only overflows the plot.
def expected_running_time(
    costs: np.ndarray | Sequence[float], spent: np.ndarray | Sequence[float]
) -> float:
    """The expected running time with restarts (ERT; Hansen et al. 2021, "COCO: a platform
    for comparing continuous optimizers in a black-box setting", Optim. Methods Softw. 36).

    ``ERT = (sum over successful runs of their cost to the target + sum over the others of
    what they spent) / number of successful runs``: the cost of independent restarts until one
    succeeds. ``inf`` when no run succeeds.

    Args:
        costs: shape ``(n_runs,)``, each run's cost to the target, ``inf``/NaN if never.
        spent: shape ``(n_runs,)``, each run's total cost (counted for the unsuccessful).
    """
    c = as_costs(costs)
    total = np.asarray(spent, dtype=float)
    if c.shape != total.shape:
        raise ValueError(f"costs and spent differ in shape: {c.shape} and {total.shape}")
    reached = np.isfinite(c)
    if not reached.any():
        return float("inf")
    return float((c[reached].sum() + np.nansum(total[~reached])) / reached.sum())


def runtime_ecdf(
    costs: np.ndarray | Sequence[float], grid: np.ndarray | Sequence[float]
) -> np.ndarray:
    """The empirical distribution of runtimes (COCO's ECDF; a data profile, Moré & Wild
    2009): at each budget of ``grid``, the fraction of (problem, target, run) triples whose
    cost to the target is within it; unreached triples (``inf``/NaN) count in the total and
    never as solved.

    Args:
        costs: shape ``(n_triples,)``.
        grid: shape ``(n_points,)``, budgets, increasing.

    Returns:
        shape ``(n_points,)``, fractions in [0, 1].
    """
    c = np.sort(as_costs(costs))
    if c.size == 0:
        return np.full(len(np.asarray(grid)), np.nan)
    return np.searchsorted(c, np.asarray(grid, dtype=float), side="right") / c.size


#: AlgoPerf's cap of the performance ratio (Dahl et al. 2023, §4.5): a solver more than 4×
#: slower than the best on a problem counts as not solving it.
ALGOPERF_TAU_MAX = 4.0


def profile_score(costs: np.ndarray, tau_max: float = ALGOPERF_TAU_MAX) -> np.ndarray:
    """The area under each solver's performance profile on ``[1, tau_max]``, over
    ``tau_max - 1``: AlgoPerf's benchmark score (Dahl et al. 2023), in [0, 1].

    The profile is a step function, so the area is exact: a problem with ratio ``r <= tau_max``
    adds ``(tau_max - r) / (tau_max - 1)`` (1 for the best solver), one with ``r > tau_max``
    or unsolved adds 0; the score is their mean over problems.

    Args:
        costs: shape ``(n_problems, n_solvers)``, positive, lower is better (``inf``: unsolved).
        tau_max: the cap, > 1.

    Returns:
        shape ``(n_solvers,)``.
    """
    if not tau_max > 1:
        raise ValueError(f"tau_max must be > 1, got {tau_max}")
    c = as_costs(costs)
    if np.any(c <= 0):
        raise ValueError("performance-profile costs must be positive")
    best = c.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(np.isfinite(best), c / best, np.inf)
    share = np.where(ratio <= tau_max, (tau_max - ratio) / (tau_max - 1.0), 0.0)
    return share.mean(axis=0)


MAX_PROFILE_TAU = 2.0**30


def profile_taus(costs: np.ndarray, n: int = 200) -> np.ndarray:
    """A log-spaced grid of ratios from 1 to a bit past the largest finite performance ratio.

    The grid stops at :data:`MAX_PROFILE_TAU`.

    Args:
        costs: shape ``(n_problems, n_solvers)``, as for :func:`performance_profile`.
        n: number of points.

    Returns:
        shape ``(n,)``, starting at exactly 1.
    """
    t = as_costs(costs)
    best = t.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = t / best
    finite = r[np.isfinite(r)]
    top = max(2.0, 1.1 * float(finite.max())) if finite.size else 2.0
    return np.geomspace(1.0, min(top, MAX_PROFILE_TAU), n)


# --------------------------------------------------------------------------- step sizes


def histogram_grid(
    hist: pd.DataFrame, *, n_bins: int = 60
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step-size histograms of one run as an (epoch × log10 step) count matrix.

    Args:
        hist: rows of one run and one layer with columns ``epoch``, ``bin_left``,
            ``bin_right``, ``count`` (the schema's ``HISTOGRAM_COLUMNS``). Bins with a zero
            count may be left out. A bin with a left edge ``<= 0`` (exact zeros) is placed one
            decade below its right edge.
        n_bins: number of log10 bins of the common grid used when the rows' bins do not come
            from one shared set of edges.

    Returns:
        ``(epochs, log10_edges, counts)`` with shapes ``(n_epochs,)``, ``(n_edges,)`` and
        ``(n_epochs, n_edges - 1)``. When every bin is a pair of neighbouring edges in the
        union of all edges (one shared grid, zero bins omitted), that union is the grid and
        counts are exact; otherwise each count is placed at its bin's log10 midpoint on
        ``n_bins`` equal bins spanning the data.
    """
    h = hist[hist["count"].notna()]
    right = h["bin_right"].to_numpy(float)
    left = h["bin_left"].to_numpy(float)
    left = np.where(left > 0, left, right / 10.0)
    ok = (right > 0) & np.isfinite(left) & np.isfinite(right)
    h = h[ok]
    lo = np.round(np.log10(left[ok]), 9)
    hi = np.round(np.log10(right[ok]), 9)
    epochs = np.unique(h["epoch"].to_numpy())
    if h.empty:
        return epochs, np.array([0.0, 1.0]), np.zeros((len(epochs), 1))
    e_index = np.searchsorted(epochs, h["epoch"].to_numpy())
    weights = h["count"].to_numpy(float)
    edges = np.unique(np.concatenate([lo, hi]))
    b_index = np.searchsorted(edges, lo)
    shared = bool(np.all(b_index + 1 < len(edges))) and bool(
        np.all(edges[np.minimum(b_index + 1, len(edges) - 1)] == hi)
    )
    if not shared:
        mid = (lo + hi) / 2.0
        edges = np.linspace(lo.min(), hi.max(), n_bins + 1)
        b_index = np.clip(np.searchsorted(edges, mid, side="right") - 1, 0, n_bins - 1)
    counts = np.zeros((len(epochs), len(edges) - 1))
    np.add.at(counts, (e_index, b_index), weights)
    return epochs, edges, counts


@dataclass(frozen=True)
class WorkingRange:
    """A cost over a grid of two hyperparameters (:func:`working_range`): frames with one row
    per value of ``y`` and one column per value of ``x``, both ascending."""

    median: pd.DataFrame  # the median cost of the cell's runs (inf: half or more failed)
    reached: pd.DataFrame  # how many of its runs reached the goal (finite cost)
    runs: pd.DataFrame  # how many runs it has


def working_range(costs: pd.DataFrame, x: str, y: str, cost: str = "cost") -> WorkingRange:
    """The "working range" of two hyperparameters: the median cost over each cell's runs.

    Riedmiller & Braun (1993) judge Rprop by how wide a range of its parameters (Δ0, η+)
    trains to the goal, and how fast; a map of the median cost over the grid shows both. A run
    that never reached the goal costs ``inf`` (NaN is read so too, :func:`as_costs`), so a
    cell's median is ``inf`` exactly when half of its runs or more failed: a failure is never
    averaged away, nor does it drop out and flatter the cell.

    Args:
        costs: one row per run, with columns ``x``, ``y`` (hyperparameter values) and
            ``cost`` (e.g. gradient evaluations to the target).
        x, y: the two hyperparameters' columns.
        cost: the cost column.
    """
    frame = costs[[x, y]].assign(_cost=as_costs(costs[cost]))
    cells = frame.groupby([y, x])["_cost"]
    median = cells.agg(lambda v: float(np.median(v.to_numpy())))
    reached = cells.agg(lambda v: int(np.isfinite(v.to_numpy()).sum()))
    runs = cells.size()

    def table(series: pd.Series) -> pd.DataFrame:
        return series.unstack(x).sort_index().sort_index(axis=1)

    return WorkingRange(table(median), table(reached), table(runs))
