"""Comparisons of methods across problems: ranks (with practical ties), the Friedman test
with Iman–Davenport's F, Nemenyi's critical difference, the probability of improvement, and
the detection of methods whose runs are identical.

Pure functions of NumPy arrays and pandas frames, as :mod:`rprop_bench.analysis` (whose
conventions hold here: lower is better unless ``lower_is_better=False``, a failed run costs
``inf``, ``NaN`` counts as ``inf`` where costs are ranked).

References:
    Demšar (2006), "Statistical comparisons of classifiers over multiple data sets", JMLR 7:1-30.
    Holm (1979), "A simple sequentially rejective multiple test procedure", Scand. J.
    Statist. 6:65-70.
    Iman & Davenport (1980), "Approximations of the critical region of the Friedman
    statistic", Comm. Statist. A 9:571-595.
    Agarwal et al. (2021), NeurIPS: probability of improvement, stratified over tasks.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from rprop_bench.analysis import as_costs

__all__ = [
    "FriedmanResult",
    "PairTest",
    "Rope",
    "average_ranks",
    "cd_cliques",
    "friedman_test",
    "holm",
    "identical_methods",
    "improvement_matrix",
    "improvement_of_cells",
    "nemenyi_critical_difference",
    "pair_test",
    "practical_ties",
    "probability_of_improvement",
    "rank_matrix",
]


# --------------------------------------------------------------------------- ranks


@dataclass(frozen=True)
class Rope:
    """A region of practical equivalence: two scores within
    ``max(relative · max(|a|, |b|), absolute)`` of each other are a tie.

    Ranking raw finals ranks float noise (a loss of 0 against 1.3e-7, or 8.360973e-3 against
    8.360983e-3). Benavoli et al. (2017), "Time for a change: a tutorial for comparing
    multiple classifiers through Bayesian analysis", JMLR 18, use a ROPE the same way.
    """

    relative: float = 1e-3
    absolute: float = 0.0

    def __post_init__(self) -> None:
        if self.relative < 0 or self.absolute < 0:
            raise ValueError(f"a ROPE's widths must be >= 0, got {self}")

    def ties(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """:meth:`tied` elementwise over broadcast arrays."""
        with np.errstate(invalid="ignore"):
            width = np.maximum(self.relative * np.maximum(np.abs(a), np.abs(b)), self.absolute)
            close = np.isfinite(a) & np.isfinite(b) & (np.abs(a - b) <= width)
        return (a == b) | close

    def tied(self, a: float, b: float) -> bool:
        """Whether ``a`` and ``b`` are practically equal (equal infinities are; NaN is not)."""
        if a == b:
            return True
        if not (np.isfinite(a) and np.isfinite(b)):
            return False
        return abs(a - b) <= max(self.relative * max(abs(a), abs(b)), self.absolute)


def practical_ties(row: np.ndarray, rope: Rope) -> np.ndarray:
    """``row`` with practically equal scores made equal, for ranking.

    Sorted, the scores form groups: each group starts at its smallest score and takes every
    next score within the ROPE of that start (so a chain of small steps cannot tie two
    scores far apart). Every member becomes its group's start.
    """
    r = np.asarray(row, dtype=float)
    out = r.copy()
    order = np.argsort(r, kind="stable")
    start = np.nan
    for i in order:
        if np.isnan(r[i]):
            continue
        if np.isnan(start) or not rope.tied(start, r[i]):
            start = r[i]
        out[i] = start
    return out


def rank_matrix(
    scores: np.ndarray, *, lower_is_better: bool = True, rope: Rope | None = None
) -> np.ndarray:
    """Rank methods within each data set; ties share the average rank (Demšar 2006, §3.2.2).

    Args:
        scores: shape ``(n_datasets, n_methods)``; NaN counts as the worst score.
        lower_is_better: rank 1 goes to the lowest score (else the highest).
        rope: scores practically equal by this ROPE are ties (:func:`practical_ties`).

    Returns:
        shape ``(n_datasets, n_methods)``, ranks in ``1..n_methods``.
    """
    s = np.asarray(scores, dtype=float)
    s = np.where(np.isnan(s), np.inf if lower_is_better else -np.inf, s)
    if not lower_is_better:
        s = -s
    if rope is not None:
        s = np.array([practical_ties(row, rope) for row in s]).reshape(s.shape)
    return stats.rankdata(s, axis=1)


def average_ranks(
    scores: np.ndarray, *, lower_is_better: bool = True, rope: Rope | None = None
) -> np.ndarray:
    """Mean over data sets of :func:`rank_matrix`; shape ``(n_methods,)``."""
    return rank_matrix(scores, lower_is_better=lower_is_better, rope=rope).mean(axis=0)


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman test on ``n`` data sets and ``k`` methods (Demšar 2006, §3.2.2), with the
    Iman–Davenport F, the less conservative form Demšar recommends."""

    statistic: float
    pvalue: float
    average_ranks: np.ndarray
    n_datasets: int
    n_methods: int
    iman_davenport_f: float = np.nan
    iman_davenport_p: float = np.nan

    def rejects(self, alpha: float = 0.05) -> bool:
        """Whether the omnibus test rejects "all methods alike" at ``alpha``: a post-hoc
        test (Nemenyi) is read only then (Demšar 2006, §3.2.2).

        The gate is Friedman's χ² test; Iman–Davenport's F is reported beside it but not
        gated on: where every data set ranks the methods alike, F is infinite and its p is
        0 whatever the number of data sets (with 2 problems and 2 methods, a coin's chance).
        """
        return bool(self.pvalue < alpha)


def friedman_test(
    scores: np.ndarray, *, lower_is_better: bool = True, rope: Rope | None = None
) -> FriedmanResult:
    """Friedman's rank test that all methods perform alike, and Iman–Davenport's F.

    ``chi2_F = 12 N / (k (k+1)) * (sum_j R_j^2 - k (k+1)^2 / 4)`` with ``R_j`` the average
    ranks, divided by the tie correction ``1 - sum(t^3 - t) / (N k (k^2 - 1))`` as in
    ``scipy.stats.friedmanchisquare``; ``p = P(chi2_{k-1} >= chi2_F)``. Then
    ``F_F = (N - 1) chi2_F / (N (k - 1) - chi2_F)``, F-distributed with ``k - 1`` and
    ``(k - 1)(N - 1)`` degrees of freedom (Iman & Davenport 1980).

    Args:
        scores: shape ``(n_datasets, n_methods)``; NaN counts as the worst score.
        lower_is_better: see :func:`rank_matrix`.
        rope: practical ties before ranking (:func:`practical_ties`).

    Returns:
        :class:`FriedmanResult`; statistics and p-values are NaN with fewer than 2 methods or
        data sets, or when every data set is a complete tie.
    """
    ranks = rank_matrix(scores, lower_is_better=lower_is_better, rope=rope)
    n, k = ranks.shape
    avg = ranks.mean(axis=0)
    if n < 2 or k < 2:
        return FriedmanResult(np.nan, np.nan, avg, n, k)
    chi2 = 12.0 * n / (k * (k + 1)) * (np.sum(avg**2) - k * (k + 1) ** 2 / 4.0)
    ties = 0.0
    for row in ranks:
        _, counts = np.unique(row, return_counts=True)
        ties += float(np.sum(counts**3 - counts))
    correction = 1.0 - ties / (n * k * (k * k - 1))
    if correction <= 0:
        return FriedmanResult(np.nan, np.nan, avg, n, k)
    chi2 /= correction
    p = float(stats.chi2.sf(chi2, k - 1))
    denominator = n * (k - 1) - chi2
    if denominator > 0:
        f = (n - 1) * chi2 / denominator
        p_f = float(stats.f.sf(f, k - 1, (k - 1) * (n - 1)))
    else:  # every data set ranks the methods alike: F is infinite
        f, p_f = np.inf, 0.0
    return FriedmanResult(float(chi2), p, avg, n, k, float(f), p_f)


def nemenyi_critical_difference(n_methods: int, n_datasets: int, alpha: float = 0.05) -> float:
    """Critical difference of average ranks for the Nemenyi test (Demšar 2006, §3.2.2).

    ``CD = q_alpha * sqrt(k (k+1) / (6 N))`` with ``q_alpha`` the studentized range quantile
    ``q(1 - alpha; k, inf) / sqrt(2)`` (2.343 for k=3, 2.569 for k=4 at alpha=0.05).
    """
    if n_methods < 2 or n_datasets < 1:
        raise ValueError("need at least 2 methods and 1 data set")
    q = stats.studentized_range.ppf(1.0 - alpha, n_methods, np.inf) / np.sqrt(2.0)
    return float(q * np.sqrt(n_methods * (n_methods + 1) / (6.0 * n_datasets)))


def cd_cliques(avg_ranks: np.ndarray | Sequence[float], cd: float) -> list[tuple[int, ...]]:
    """Groups of methods whose average ranks lie within ``cd`` of each other.

    These are the bars of a critical-difference diagram: maximal runs of methods, in rank
    order, whose best and worst average rank differ by less than ``cd`` (Demšar 2006, Fig. 1).
    Single methods are not returned.

    Args:
        avg_ranks: shape ``(n_methods,)``.
        cd: the critical difference.

    Returns:
        Tuples of method indices (into ``avg_ranks``), each sorted by rank.
    """
    r = np.asarray(avg_ranks, dtype=float)
    order = np.argsort(r, kind="stable")
    cliques: list[tuple[int, ...]] = []
    last_end = -1
    for i in range(len(order)):
        j = i
        while j + 1 < len(order) and r[order[j + 1]] - r[order[i]] < cd:
            j += 1
        if j > i and j > last_end:
            cliques.append(tuple(int(m) for m in order[i : j + 1]))
            last_end = j
    return cliques


# --------------------------------------------------------------------------- improvement


def probability_of_improvement(
    x: np.ndarray | Sequence[float],
    y: np.ndarray | Sequence[float],
    *,
    lower_is_better: bool = True,
    rope: Rope | None = None,
) -> float:
    """P(X beats Y): the chance a random run of X is better than a random run of Y.

    ``P = mean over pairs (i, j) of [x_i better than y_j] + 0.5 [x_i == y_j]``, the
    Mann–Whitney U statistic over ``n_x * n_y`` (Agarwal et al. 2021). NaN counts as the worst
    value, so a failed run loses to every finished one and ties with another failed one.

    Args:
        x: shape ``(n_x,)``.
        y: shape ``(n_y,)``.
        lower_is_better: "better" means lower.
        rope: practically equal values tie (count 0.5), as :class:`Rope` says.

    Returns:
        A probability in [0, 1]; NaN if either sample is empty.
    """
    sign = 1.0 if lower_is_better else -1.0
    a = as_costs(sign * np.asarray(x, dtype=float))  # as costs: lower is better, NaN -> inf
    b = as_costs(sign * np.asarray(y, dtype=float))
    if a.size == 0 or b.size == 0:
        return float("nan")
    equal = rope.ties(a[:, None], b[None, :]) if rope is not None else a[:, None] == b[None, :]
    better = (a[:, None] < b[None, :]) & ~equal
    return float(np.mean(better + 0.5 * equal))


def improvement_of_cells(cells: np.ndarray, rope: Rope | None = None) -> np.ndarray:
    """P(row beats column) from an array of runs: the one computation behind
    :func:`improvement_matrix` and the report's bootstrap of it.

    Args:
        cells: shape ``(n_tasks, n_methods, n_runs)`` of costs (lower is better, a failed run
            ``inf``), NaN-padded where a cell holds fewer runs.
        rope: practically equal values tie (count ½).

    Returns:
        shape ``(n_methods, n_methods)``: per task, the share of run pairs ``(a_i, b_j)`` where
        ``a_i`` is better, ties counting ½, averaged over the tasks where both ran (NaN where
        none; the diagonal is ½).
    """
    a, b = cells[:, :, None, :, None], cells[:, None, :, None, :]
    valid = ~np.isnan(a) & ~np.isnan(b)
    tie = rope.ties(a, b) if rope is not None else a == b
    wins = np.where(valid, ((a < b) & ~tie) + 0.5 * tie, 0.0).sum(axis=(3, 4))
    pairs = valid.sum(axis=(3, 4))
    per_task = np.where(pairs > 0, wins / np.maximum(pairs, 1), np.nan)
    with warnings.catch_warnings():  # two methods that share no task: NaN, as documented
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(per_task, axis=0)


def improvement_matrix(
    frame: pd.DataFrame,
    *,
    method: str = "method",
    value: str = "value",
    task: str = "problem",
    lower_is_better: bool = True,
    methods: Sequence[str] | None = None,
    rope: Rope | None = None,
) -> pd.DataFrame:
    """P(row method beats column method), averaged over tasks (Agarwal et al. 2021, §4.3):
    :func:`probability_of_improvement` per task, through :func:`improvement_of_cells`.

    Args:
        frame: one row per run, with the ``method``, ``task`` and ``value`` columns.
        method, value, task: column names.
        lower_is_better: see :func:`probability_of_improvement`.
        methods: row/column order (default: sorted method names).
        rope: practical ties (:func:`probability_of_improvement`).

    Returns:
        Square frame ``(n_methods, n_methods)``; entry ``[a, b]`` is the mean over tasks where
        both ran of ``P(a beats b)``; the diagonal is 0.5; NaN if they share no task.
    """
    names = list(methods) if methods is not None else sorted(frame[method].unique())
    tasks = list(frame[task].unique())
    sign = 1.0 if lower_is_better else -1.0
    groups = {  # as costs: lower is better, NaN (a failed run) -> inf
        key: as_costs(sign * g[value].to_numpy(float))
        for key, g in frame.groupby([task, method], sort=False)
    }
    width = max((len(g) for g in groups.values()), default=1)
    cells = np.full((len(tasks), len(names), width), np.nan)
    for i, t in enumerate(tasks):
        for j, m in enumerate(names):
            if (t, m) in groups:
                cells[i, j, : len(groups[(t, m)])] = groups[(t, m)]
    return pd.DataFrame(improvement_of_cells(cells, rope), index=names, columns=names)


# --------------------------------------------------------------------------- duplicates


def identical_methods(
    frame: pd.DataFrame,
    values: Sequence[str],
    *,
    method: str = "method",
    keys: Sequence[str] = ("problem", "seed"),
) -> list[tuple[str, ...]]:
    """Groups of methods whose runs are bit-identical: the same ``keys`` (problem, seed), and
    on each the same ``values`` (NaN equal to NaN).

    torch's Rprop and our iRprop- take the same steps, to the bit; counted as two methods,
    one method would enter a rank test twice. Compare results, never timings.

    Returns:
        Groups of two or more method names, each sorted; methods alone are not listed.
    """
    signatures: dict[str, bytes] = {}
    for name, g in frame.groupby(method, sort=True):
        ordered = g.sort_values(list(keys))
        table = ordered[list(keys)].astype(str).to_numpy().tolist()
        numbers = ordered[list(values)].apply(pd.to_numeric, errors="coerce").to_numpy(float)
        missing = np.isnan(numbers)
        signatures[str(name)] = (
            repr(table).encode() + missing.tobytes() + np.where(missing, 0.0, numbers).tobytes()
        )
    groups: dict[bytes, list[str]] = {}
    for name, signature in signatures.items():
        groups.setdefault(signature, []).append(name)
    return [tuple(sorted(g)) for g in groups.values() if len(g) > 1]


# --------------------------------------------------------------------------- pairwise tests


def holm(pvalues: np.ndarray | Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), in the input's order.

    With the m p-values sorted, ``p_adj(i) = max_{j <= i} min(1, (m - j + 1) p(j))``; a test
    rejects at family-wise level α when its adjusted p is below α. NaN stays NaN and does not
    count in m.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


@dataclass(frozen=True)
class PairTest:
    """One two-sided test of two methods on one problem: which test, on how many runs (pairs
    for Wilcoxon), its statistic and p-value."""

    test: str
    n: int
    statistic: float
    pvalue: float


def pair_test(a: pd.Series, b: pd.Series, rope: Rope | None = None) -> PairTest:
    """Wilcoxon's signed-rank test where ``a`` and ``b`` (values indexed by seed) hold the
    same seeds, so runs pair by seed; Mann–Whitney's U test otherwise. Two-sided.

    Failed runs (``inf``, NaN) rank worse than every finished one and tie with each other:
    they become one value above every finite value, which these rank tests need (Demšar
    2006, §3.1.3: the signed-rank test compares ranks of the differences). With ``rope``,
    practically equal values are ties first (a pair's difference 0; pooled values snapped
    as :func:`practical_ties` does), so a last-bit difference in every pair is no result.
    """
    both = pd.concat([a, b]).to_numpy(float)
    finite = both[np.isfinite(both)]
    worst = (np.max(np.abs(finite)) + 1.0) * 10.0 if finite.size else 1.0

    def ranked(s: pd.Series) -> pd.Series:
        return s.astype(float).where(np.isfinite(s.astype(float)), worst)

    a, b = ranked(a), ranked(b)
    if len(a) and set(a.index) == set(b.index) and a.index.is_unique and b.index.is_unique:
        b = b.loc[a.index]
        diff = (a - b).to_numpy(float, copy=True)
        if rope is not None:
            tied = [
                rope.tied(x, y) for x, y in zip(a.to_numpy(float), b.to_numpy(float), strict=True)
            ]
            diff[np.asarray(tied, dtype=bool)] = 0.0
        if not np.any(diff != 0):  # identical on every seed: nothing to test
            return PairTest("wilcoxon", len(diff), 0.0, 1.0)
        res = stats.wilcoxon(diff, zero_method="zsplit", alternative="two-sided")
        return PairTest("wilcoxon", len(diff), float(res.statistic), float(res.pvalue))
    if not len(a) or not len(b):
        return PairTest("mann-whitney", 0, np.nan, np.nan)
    pooled = np.concatenate([a.to_numpy(float), b.to_numpy(float)])
    if rope is not None:
        pooled = practical_ties(pooled, rope)
    res = stats.mannwhitneyu(pooled[: len(a)], pooled[len(a) :], alternative="two-sided")
    return PairTest("mann-whitney", len(a) + len(b), float(res.statistic), float(res.pvalue))
