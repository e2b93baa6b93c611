"""Analysis functions against tiny cases whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from rprop_bench import analysis as A
from rprop_bench import comparison as C

INF = math.inf
NAN = math.nan


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2, 3, 4, 5], (3.0, 2.0, 4.0)),
        ([1, 2, 3, 4], (2.5, 1.75, 3.25)),  # linear interpolation
        ([1, NAN, 3], (2.0, 1.5, 2.5)),  # NaN ignored
        ([4], (4.0, 4.0, 4.0)),
    ],
)
def test_median_iqr(values, expected):
    assert A.median_iqr(values) == pytest.approx(expected)


def test_median_iqr_of_nothing_is_nan():
    assert all(math.isnan(v) for v in A.median_iqr([NAN]))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([7, 7, 7], (7.0, 7.0)),
        ([5], (5.0, 5.0)),
        # Resampled medians of [1, 2] are 1 (p=1/4), 1.5 (1/2), 2 (1/4): the 2.5% and 97.5%
        # quantiles are the extremes.
        ([1, 2], (1.0, 2.0)),
    ],
)
def test_bootstrap_ci_hand_cases(values, expected):
    assert A.bootstrap_ci(values, random_state=3) == pytest.approx(expected)


def test_bootstrap_ci_repeats_with_a_seed_and_brackets_the_median():
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    first = A.bootstrap_ci(x, random_state=42)
    assert first == A.bootstrap_ci(x, random_state=42)
    assert first[0] <= np.median(x) <= first[1]
    assert first[0] >= x.min()
    assert first[1] <= x.max()
    narrow = A.bootstrap_ci(x, confidence=0.5, random_state=42)
    assert first[0] <= narrow[0] <= narrow[1] <= first[1]


def test_bootstrap_ci_mean_statistic_of_two_points():
    # means of resamples of [0, 4] are 0 (1/4), 2 (1/2), 4 (1/4)
    assert A.bootstrap_ci([0, 4], np.mean, confidence=0.4, random_state=0) == pytest.approx(
        (2.0, 2.0)
    )


def test_bootstrap_ci_rejects_bad_confidence():
    with pytest.raises(ValueError, match="confidence"):
        A.bootstrap_ci([1, 2], confidence=1.5)


def test_summarize_counts_only_finite_values():
    s = A.summarize([1, 2, 3, NAN])
    assert (s.median, s.q25, s.q75, s.n) == (2.0, 1.5, 2.5, 3)
    assert s.ci_low <= s.median <= s.ci_high


@pytest.mark.parametrize(
    ("steps", "values", "target", "expected"),
    [
        ([1, 2, 3, 4], [5, 3, 1, 0.5], 1.0, 3.0),  # reaching exactly counts
        ([1, 2, 3, 4], [5, 3, 1, 0.5], 0.1, INF),
        ([0.5, 1.0, 1.5], [2, 0.1, 5], 0.2, 1.0),  # first hit, even if it goes back up
        ([1, 2], [NAN, NAN], 1.0, INF),
    ],
)
def test_time_to_target(steps, values, target, expected):
    assert A.time_to_target(steps, values, target) == expected


def test_seed_bands_median_iqr_and_time():
    frame = pd.DataFrame(
        {
            "problem": ["p"] * 6,
            "method": ["m"] * 6,
            "run_id": ["a", "b", "c"] * 2,
            "step": [1, 1, 1, 2, 2, 2],
            "loss": [1.0, 2.0, 3.0, 1.0, INF, 3.0],
            "t": [0.1, 0.2, 0.3, 0.4, 0.5, 0.9],
        }
    )
    out = A.seed_bands(frame, ["problem", "method"], "loss", time="t")
    first, second = out.iloc[0], out.iloc[1]
    assert (first["n"], first["median"], first["q25"], first["q75"]) == (3, 2.0, 1.5, 2.5)
    assert first["time_median"] == pytest.approx(0.2)
    assert (second["n"], second["median"]) == (2, 2.0)  # the diverged run is left out
    assert second["time_median"] == pytest.approx(0.65)


# ----------------------------------------------------------------- performance profiles


def test_performance_profile_hand_case():
    costs = np.array([[1.0, 2.0], [4.0, 2.0], [3.0, INF]])
    # ratios: [[1, 2], [2, 1], [1, inf]]
    rho = A.performance_profile(costs, [1.0, 1.5, 2.0, 100.0])
    expected = np.array([[2 / 3, 1 / 3], [2 / 3, 1 / 3], [1.0, 2 / 3], [1.0, 2 / 3]])
    np.testing.assert_allclose(rho, expected)


def test_performance_profile_unsolved_problem_counts_for_nobody_and_nan_is_inf():
    costs = np.array([[INF, NAN], [1.0, 2.0]])
    rho = A.performance_profile(costs, [1.0, 2.0])
    np.testing.assert_allclose(rho, [[0.5, 0.0], [0.5, 0.5]])


def test_performance_profile_rejects_non_positive_costs():
    with pytest.raises(ValueError, match="positive"):
        A.performance_profile(np.array([[0.0, 1.0]]), [1.0])


def test_profile_taus_start_at_one_and_cover_the_largest_ratio():
    taus = A.profile_taus(np.array([[1.0, 8.0], [2.0, INF]]), n=50)
    assert taus[0] == 1.0
    assert taus[-1] >= 8.0
    assert np.all(np.diff(taus) > 0)


def test_profile_taus_stop_at_the_cap_when_the_best_cost_is_nearly_zero():
    tiny = np.finfo(float).tiny
    taus = A.profile_taus(np.array([[tiny, 1.0], [1.0, 2.0]]))
    assert taus[-1] == pytest.approx(A.MAX_PROFILE_TAU)
    rho = A.performance_profile(np.array([[tiny, 1.0], [1.0, 2.0]]), taus)
    # solver 2 is within 2 of the best on problem 2 only: off the chart on problem 1
    np.testing.assert_array_equal(rho[-1], [1.0, 0.5])


# ----------------------------------------------------------------- ranks


def test_rank_matrix_with_ties_and_nan():
    scores = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 1.0, 2.0], [NAN, 0.5, 0.7]])
    expected = np.array([[1, 2, 3], [3, 2, 1], [1.5, 1.5, 3], [3, 1, 2]])
    np.testing.assert_array_equal(C.rank_matrix(scores), expected)
    np.testing.assert_allclose(C.average_ranks(scores), [8.5 / 4, 6.5 / 4, 9 / 4])


def test_rank_matrix_higher_is_better():
    np.testing.assert_array_equal(
        C.rank_matrix(np.array([[0.9, 0.8, NAN]]), lower_is_better=False), [[1, 2, 3]]
    )


def test_friedman_hand_case():
    # Four data sets, every one ranking the methods 1, 2, 3: R = (1, 2, 3),
    # chi2 = 12*4/(3*4) * (1 + 4 + 9 - 3*16/4) = 8, and with 2 dof p = exp(-8/2).
    scores = np.array([[0.1, 0.2, 0.3], [1, 5, 9], [2, 3, 4], [0, 1, 2]], dtype=float)
    res = C.friedman_test(scores)
    assert res.statistic == pytest.approx(8.0)
    assert res.pvalue == pytest.approx(math.exp(-4.0))
    np.testing.assert_allclose(res.average_ranks, [1, 2, 3])
    assert (res.n_datasets, res.n_methods) == (4, 3)


def test_friedman_matches_scipy_with_ties():
    scores = np.array([[1, 2, 2, 4], [3, 1, 2, 2], [1, 1, 1, 2], [4, 3, 2, 1], [2, 2, 3, 1]])
    ours = C.friedman_test(scores.astype(float))
    ref = stats.friedmanchisquare(*scores.T)
    assert ours.statistic == pytest.approx(ref.statistic)
    assert ours.pvalue == pytest.approx(ref.pvalue)


def test_friedman_degenerate_cases_are_nan():
    assert math.isnan(C.friedman_test(np.array([[1.0, 2.0]])).pvalue)  # one data set
    assert math.isnan(C.friedman_test(np.array([[1.0, 1.0], [2.0, 2.0]])).pvalue)  # all ties


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [
        (4, 14, 2.569 * math.sqrt(4 * 5 / (6 * 14))),  # Demšar (2006) §3.2.2 example: 1.25
        (3, 10, 2.343 * math.sqrt(3 * 4 / (6 * 10))),
        (2, 5, 1.960 * math.sqrt(2 * 3 / (6 * 5))),
    ],
)
def test_nemenyi_critical_difference_matches_demsar_table(k, n, expected):
    assert C.nemenyi_critical_difference(k, n) == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize(
    ("ranks", "cd", "expected"),
    [
        ([1.0, 1.5, 3.0, 3.2], 1.0, [(0, 1), (2, 3)]),
        ([1.0, 1.8, 2.6], 1.0, [(0, 1), (1, 2)]),  # overlapping groups
        ([3.0, 1.0, 2.0], 5.0, [(1, 2, 0)]),  # all alike, given in rank order
        ([1.0, 2.0, 3.0], 0.5, []),  # all different
    ],
)
def test_cd_cliques(ranks, cd, expected):
    assert C.cd_cliques(ranks, cd) == expected


# ----------------------------------------------------------------- improvement


@pytest.mark.parametrize(
    ("x", "y", "lower", "expected"),
    [
        # pairs (1,2) win, (1,3) win, (2,2) tie, (2,3) win: 3.5 / 4
        ([1, 2], [2, 3], True, 0.875),
        ([2, 3], [1, 2], True, 0.125),
        ([NAN], [1.0], True, 0.0),  # a failed run loses
        ([NAN], [NAN], True, 0.5),
        ([0.9], [0.8], False, 1.0),  # accuracy: higher wins
        ([NAN], [0.1], False, 0.0),
    ],
)
def test_probability_of_improvement(x, y, lower, expected):
    assert C.probability_of_improvement(x, y, lower_is_better=lower) == pytest.approx(expected)


def test_improvement_matrix_averages_over_tasks():
    frame = pd.DataFrame(
        {
            "problem": ["t1", "t1", "t1", "t1", "t2", "t2", "t3"],
            "method": ["A", "A", "B", "B", "A", "B", "C"],
            "value": [1.0, 2.0, 2.0, 3.0, 5.0, 4.0, 1.0],
        }
    )
    m = C.improvement_matrix(frame)
    assert list(m.index) == ["A", "B", "C"]
    assert m.loc["A", "B"] == pytest.approx((0.875 + 0.0) / 2)
    assert m.loc["B", "A"] == pytest.approx((0.125 + 1.0) / 2)
    assert m.loc["A", "A"] == 0.5
    assert math.isnan(m.loc["A", "C"])  # no shared task


# ----------------------------------------------------------------- histograms


def test_histogram_grid_shared_bins():
    hist = pd.DataFrame(
        {
            "epoch": [1, 1, 2, 2],
            "bin_left": [1e-3, 1e-2, 1e-3, 1e-2],
            "bin_right": [1e-2, 1e-1, 1e-2, 1e-1],
            "count": [5, 1, 2, 4],
        }
    )
    epochs, edges, counts = A.histogram_grid(hist)
    np.testing.assert_array_equal(epochs, [1, 2])
    np.testing.assert_allclose(edges, [-3, -2, -1])
    np.testing.assert_array_equal(counts, [[5, 1], [2, 4]])


def test_histogram_grid_zero_bins_left_out_and_exact_zeros():
    # one shared grid 1e-4 .. 1e-1; the zero-count bin [1e-3, 1e-2] is omitted at epoch 1;
    # a bin [0, 1e-3] (exact zeros) is placed at [1e-4, 1e-3]
    hist = pd.DataFrame(
        {
            "epoch": [1, 1, 2, 2],
            "bin_left": [1e-4, 1e-2, 0.0, 1e-3],
            "bin_right": [1e-3, 1e-1, 1e-3, 1e-2],
            "count": [3, 7, 2, 5],
        }
    )
    epochs, edges, counts = A.histogram_grid(hist)
    np.testing.assert_array_equal(epochs, [1, 2])
    np.testing.assert_allclose(edges, [-4, -3, -2, -1])
    np.testing.assert_array_equal(counts, [[3, 0, 7], [2, 5, 0]])


def test_histogram_grid_rebins_inconsistent_bins():
    # [1e-3, 1e-1] spans the edge 1e-2 of the other bin: no shared grid, so each count goes
    # to its log10 midpoint on 2 equal bins over [-3, -1]: -2 and -1.5 both fall in [-2, -1]
    hist = pd.DataFrame(
        {"epoch": [1, 2], "bin_left": [1e-3, 1e-2], "bin_right": [1e-1, 1e-1], "count": [4, 6]}
    )
    epochs, edges, counts = A.histogram_grid(hist, n_bins=2)
    np.testing.assert_array_equal(epochs, [1, 2])
    np.testing.assert_allclose(edges, [-3, -2, -1])
    np.testing.assert_array_equal(counts, [[0, 4], [0, 6]])


# --- the order-statistic interval of the median --------------------------------------------


@pytest.mark.parametrize(
    ("n", "ranks", "level", "is_range"),
    [
        # coverage of [x_(k), x_(n+1-k)] is 1 - 2 P(B <= k-1), B ~ Bin(n, 1/2), by hand
        (3, (1, 3), 1 - 2 / 8, True),  # 0.75: no 95 % interval, the range
        (5, (1, 5), 1 - 2 / 32, True),  # 0.9375
        (6, (1, 6), 1 - 2 / 64, False),  # 0.96875: the first n with a 95 % interval
        (10, (2, 9), 1 - 2 * 11 / 1024, False),  # k = 2: 0.978515625 (k = 3 gives 0.890625)
        (20, (6, 15), 1 - 2 * 21700 / 2**20, False),  # P(B <= 5) = 21700 / 2^20
    ],
)
def test_median_interval_takes_the_order_statistics_of_the_binomial_table(
    n, ranks, level, is_range
):
    x = np.arange(1.0, n + 1)[::-1]  # order does not matter
    got = A.median_interval(x)
    assert (got.low, got.high) == ranks
    assert got.level == pytest.approx(level)
    assert got.is_range is is_range
    assert got.n == n


@pytest.mark.slow
def test_median_interval_covers_the_median_as_often_as_its_level_says():
    rng = np.random.default_rng(0)
    for n in (3, 5, 10):
        level = A.median_interval(np.arange(n)).level
        samples = rng.exponential(size=(20000, n))  # skewed: median ln 2
        intervals = [A.median_interval(sample) for sample in samples]
        lows = np.array([i.low for i in intervals])
        highs = np.array([i.high for i in intervals])
        covered = np.mean((lows <= np.log(2)) & (np.log(2) <= highs))
        assert covered == pytest.approx(level, abs=0.01), n


def test_median_interval_ignores_nan_and_keeps_infinite_costs():
    got = A.median_interval([NAN, 1.0, INF, 2.0, 3.0, 4.0, 5.0, INF])
    assert got.n == 7
    assert (got.low, got.high) == (1.0, INF)
    assert math.isnan(A.median_interval([NAN]).low)


# --- Iman–Davenport, practical ties, identical methods -------------------------------------


def test_iman_davenport_f_on_a_hand_case():
    # two methods, three data sets, the first better on two:
    scores = np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0]])  # ranks (1,2),(1,2),(2,1)
    fr = C.friedman_test(scores)
    # avg ranks (4/3, 5/3): chi2 = 12*3/(2*3) * (16/9 + 25/9 - 2*9/4) = 1/3
    assert fr.statistic == pytest.approx(1 / 3)
    expected_f = (3 - 1) * (1 / 3) / (3 * 1 - 1 / 3)
    assert fr.iman_davenport_f == pytest.approx(expected_f)
    assert fr.iman_davenport_p == pytest.approx(stats.f.sf(expected_f, 1, 2))


def test_the_omnibus_gate_is_friedmans_chi2_not_an_infinite_f():
    agree = np.array([[1.0, 2.0], [1.0, 2.0]])  # two problems agree: F = inf, p = 0
    fr = C.friedman_test(agree)
    assert math.isinf(fr.iman_davenport_f)
    assert fr.iman_davenport_p == 0.0
    assert fr.pvalue == pytest.approx(0.157299, abs=1e-5)
    assert not fr.rejects(0.05)
    six = np.tile([1.0, 2.0, 3.0], (6, 1))  # six problems agree on three methods
    assert C.friedman_test(six).pvalue == pytest.approx(stats.chi2.sf(12.0, 2))
    assert C.friedman_test(six).rejects(0.05)


@pytest.mark.parametrize(
    ("row", "rope", "ranks"),
    [
        # the reviewer's cases: 8.360973e-3 vs 8.360983e-3 (relative 1.2e-6) is a tie
        ([8.360973e-3, 8.360983e-3, 9e-3], C.Rope(1e-3, 0.0), [1.5, 1.5, 3.0]),
        ([0.0, 1.3e-7, 0.5], C.Rope(1e-3, 1e-5), [1.5, 1.5, 3.0]),  # 0 vs 1.3e-7: abs floor
        ([0.0, 1.3e-7, 0.5], C.Rope(1e-3, 0.0), [1.0, 2.0, 3.0]),  # no floor: not a tie
        # a chain: 1.0, 1.0009, 1.0018 -- each next within 1e-3 of its neighbour, but the
        # third is not within 1e-3 of the group's start, so it starts its own group
        ([1.0, 1.0009, 1.0018], C.Rope(1e-3, 0.0), [1.5, 1.5, 3.0]),
        ([INF, INF, 1.0], C.Rope(1e-3, 0.0), [2.5, 2.5, 1.0]),  # failures tie with each other
        ([NAN, 1.0, 2.0], C.Rope(1e-3, 0.0), [3.0, 1.0, 2.0]),  # NaN is the worst
    ],
)
def test_practical_ties_before_ranking(row, rope, ranks):
    assert C.rank_matrix(np.array([row]), rope=rope)[0].tolist() == ranks


def test_a_rope_refuses_negative_widths():
    with pytest.raises(ValueError, match="must be >= 0"):
        C.Rope(-1e-3, 0.0)


def test_identical_methods_are_those_equal_on_every_problem_and_seed():
    rows = []
    for problem in ("iris", "wine"):
        for seed in (0, 1):
            loss = 0.1 * seed + (0.5 if problem == "wine" else 0.0)
            rows += [
                {"problem": problem, "seed": seed, "method": "irprop-", "loss": loss},
                {"problem": problem, "seed": seed, "method": "torch_rprop", "loss": loss},
                {"problem": problem, "seed": seed, "method": "adam", "loss": loss + 1e-12},
                {"problem": problem, "seed": seed, "method": "sgd", "loss": NAN},
                {"problem": problem, "seed": seed, "method": "sgd_copy", "loss": NAN},
            ]
    frame = pd.DataFrame(rows)
    assert C.identical_methods(frame, ["loss"]) == [("irprop-", "torch_rprop"), ("sgd", "sgd_copy")]
    # one differing run, or one missing run, and they are not identical
    changed = frame.copy()
    changed.loc[1, "loss"] = 0.7  # torch_rprop, iris, seed 0
    assert ("irprop-", "torch_rprop") not in C.identical_methods(changed, ["loss"])
    fewer = frame.drop(index=1)
    assert ("irprop-", "torch_rprop") not in C.identical_methods(fewer, ["loss"])


def test_profile_score_is_the_exact_area_under_the_capped_profile():
    costs = np.array([[1.0, 2.0, INF], [3.0, 3.0, 12.0]])
    # ratios (1, 2, inf) and (1, 1, 4); each problem adds (4 - r) / 3 where r <= 4
    expected = [(1 + 1) / 2, (2 / 3 + 1) / 2, (0 + 0) / 2]
    np.testing.assert_allclose(A.profile_score(costs), expected)
    # the same area by integrating the profile numerically on a fine grid
    taus = np.linspace(1, 4, 300_001)
    area = integrate.trapezoid(A.performance_profile(costs, taus), taus, axis=0) / 3
    np.testing.assert_allclose(A.profile_score(costs), area, atol=1e-4)
    with pytest.raises(ValueError, match="tau_max must be > 1"):
        A.profile_score(costs, tau_max=1.0)


# --- pairwise tests and Holm's correction --------------------------------------------------


@pytest.mark.parametrize(
    ("p", "adjusted"),
    [
        # sorted 0.005, 0.01, 0.03, 0.04 scaled by 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running
        # maximum 0.02, 0.03, 0.06, 0.06, put back in the input's order
        ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
        ([0.5, 0.6], [1.0, 1.0]),  # capped at 1
        ([0.01, NAN, 0.02], [0.02, NAN, 0.02]),  # NaN is not a test: m = 2
        ([], []),
    ],
)
def test_holm_against_a_hand_table(p, adjusted):
    np.testing.assert_allclose(C.holm(p), adjusted)


def test_pair_test_pairs_by_seed_where_it_can_and_matches_scipy():
    a = pd.Series([0.10, 0.20, 0.15, 0.30, 0.25, 0.12], index=range(6))
    b = pd.Series([0.20, 0.25, 0.30, 0.31, 0.40, 0.11], index=range(6))
    got = C.pair_test(a, b)
    ref = stats.wilcoxon(a - b, zero_method="zsplit")
    assert (got.test, got.n) == ("wilcoxon", 6)
    assert got.pvalue == pytest.approx(ref.pvalue)
    unpaired = C.pair_test(a, b.set_axis(range(10, 16)))  # other seeds: not paired
    ref = stats.mannwhitneyu(a, b, alternative="two-sided")
    assert (unpaired.test, unpaired.n) == ("mann-whitney", 12)
    assert unpaired.pvalue == pytest.approx(ref.pvalue)


def test_pair_test_ranks_a_failed_run_below_every_finished_one():
    a = pd.Series([1.0, 2.0, 3.0], index=[0, 1, 2])
    b = pd.Series([5.0, 6.0, INF], index=[3, 4, 5])
    worse = pd.Series([5.0, 6.0, 7.0], index=[3, 4, 5])  # the same ranks, finite
    assert C.pair_test(a, b).pvalue == pytest.approx(C.pair_test(a, worse).pvalue)
    same = C.pair_test(a, a.copy())
    assert (same.test, same.pvalue) == ("wilcoxon", 1.0)


def test_values_at_budget_are_the_last_logged_loss_within_it():
    from rprop_bench.report_sections.budgets import values_at_budget

    wide = pd.DataFrame({
        "run_id": ["r1"] * 3 + ["r2"] * 3 + ["r3"],
        "step": [5, 10, 15, 5, 10, 15, 5],
        "grad_evals": [5.0, 10.0, 15.0, 50.0, 100.0, 150.0, NAN],  # r2: L-BFGS, 10 a step
        "train_loss": [0.5, 0.3, 0.2, 0.4, 0.1, 0.05, 9.0],
        "method": ["a"] * 3 + ["b"] * 3 + ["c"],
        "seed": [0] * 7,
        "failed": [False] * 6 + [True],
    })  # fmt: skip
    at = values_at_budget(wide, 12.0).set_index("run_id")["value"]
    assert at["r1"] == 0.3  # logged at 10 evaluations, not at 15
    assert math.isnan(at["r2"])  # nothing logged within 12 evaluations
    assert at["r3"] == INF  # failed


def test_seed_bands_give_the_median_cost_at_each_step():
    frame = pd.DataFrame({
        "method": ["lbfgs"] * 4, "step": [1, 2, 1, 2],
        "loss": [0.5, 0.25, 0.7, 0.35], "grad_evals": [2.0, 4.0, 3.0, 7.0],
    })  # fmt: skip
    band = A.seed_bands(frame, ["method"], "loss", evals="grad_evals")
    assert band["evals_median"].tolist() == [2.5, 5.5]
    assert band["median"].tolist() == [0.6, 0.3]
    assert "time_median" not in band


def test_expected_running_time_counts_what_failures_spent():
    # two successes at 10 and 30, one failure that spent 100: (10 + 30 + 100) / 2
    assert A.expected_running_time([10.0, INF, 30.0], [50.0, 100.0, 60.0]) == 70.0
    assert A.expected_running_time([NAN, INF], [5.0, 5.0]) == INF
    assert A.expected_running_time([4.0], [9.0]) == 4.0
    with pytest.raises(ValueError, match="differ in shape"):
        A.expected_running_time([1.0], [1.0, 2.0])


def test_runtime_ecdf_counts_unreached_in_the_total():
    costs = [1.0, 10.0, INF, 100.0]
    np.testing.assert_allclose(A.runtime_ecdf(costs, [0.5, 1.0, 50.0, 1e9]), [0, 0.25, 0.5, 0.75])
    assert np.isnan(A.runtime_ecdf([], [1.0])).all()


def test_target_costs_take_each_rung_of_a_ladder_or_the_one_target():
    from rprop_bench.report_sections.runtimes import target_costs

    runs = pd.DataFrame({
        "problem": ["enc", "enc", "iris"], "method": ["a", "b", "a"], "run_id": ["1", "2", "3"],
        "reached_target_0": [1.0, 1.0, NAN], "grad_evals_to_target_0": [5.0, 7.0, NAN],
        "reached_target_1": [1.0, 0.0, NAN], "grad_evals_to_target_1": [20.0, NAN, NAN],
        "reached_target": [1.0, 1.0, 1.0], "grad_evals_to_target": [9.0, 9.0, 12.0],
        "grad_evals": [50.0, 50.0, 30.0], "epochs_run": [50.0, 50.0, 30.0],
    })  # fmt: skip
    frame = target_costs(runs).set_index(["run_id", "target"])
    assert frame.loc[("1", "0"), "cost"] == 5.0
    assert frame.loc[("1", "1"), "cost"] == 20.0
    assert frame.loc[("2", "1"), "cost"] == INF  # a rung never reached
    assert frame.loc[("3", "target"), "cost"] == 12.0  # no ladder: the one target
    assert ("1", "target") not in frame.index  # a laddered run counts its rungs only
    assert frame.loc[("2", "0"), "spent"] == 50.0


def test_the_stratified_bootstrap_resamples_runs_within_each_cell_only():
    # problem 0: every run 0; problem 1: every run 1: a resample that mixed problems would
    # move the mean of the cells' means off 0.5; within cells, it never moves
    values = np.stack([np.zeros((2, 4)), np.ones((2, 4))])
    values[1, 1, 3] = NAN  # a cell with one run fewer
    low, high = A.stratified_bootstrap(values, lambda s: np.nanmean(s, axis=2).mean(axis=0),
                                       n_resamples=200)  # fmt: skip
    np.testing.assert_array_equal(low, [0.5, 0.5])
    np.testing.assert_array_equal(high, [0.5, 0.5])


def test_the_stratified_bootstrap_interval_repeats_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(5, 3, 10)) + np.array([0.0, 1.0, 2.0])[None, :, None]

    def mean_of_medians(s):
        return np.median(s, axis=2).mean(axis=0)

    first = A.stratified_bootstrap(values, mean_of_medians, random_state=3)
    again = A.stratified_bootstrap(values, mean_of_medians, random_state=3)
    np.testing.assert_array_equal(first[0], again[0])
    estimate = mean_of_medians(values)
    assert np.all(first[0] <= estimate)
    assert np.all(estimate <= first[1])
    assert np.all(first[1] - first[0] < 1.0)


def test_pair_test_counts_practically_equal_runs_as_ties():
    # a last-bit difference on every seed: the raw signed-rank test calls it significant
    a = pd.Series([9.105579e-3 + 1e-4 * k for k in range(10)], index=range(10))
    b = a * (1 + 1e-6)
    assert C.pair_test(a, b).pvalue < 0.01
    tied = C.pair_test(a, b, C.Rope(1e-3, 1e-5))
    assert tied.pvalue == 1.0
    unpaired = C.pair_test(a, b.set_axis(range(10, 20)), C.Rope(1e-3, 1e-5))
    assert unpaired.pvalue == pytest.approx(1.0)


def test_probability_of_improvement_counts_practical_ties_as_half():
    x, y = [1.0, 2.0], [1.0 + 1e-9, 3.0]
    # raw: 1 < 1+1e-9 wins; with the ROPE it is a tie: (0.5 + 1 + 0 + 1) / 4
    assert C.probability_of_improvement(x, y) == pytest.approx(3 / 4)
    assert C.probability_of_improvement(x, y, rope=C.Rope(1e-3, 0.0)) == pytest.approx(2.5 / 4)
    assert C.probability_of_improvement([INF], [INF], rope=C.Rope(1e-3, 0.0)) == 0.5


@pytest.mark.parametrize(
    ("methods", "chosen", "control"),
    [
        (["adam", "irprop- = torch_rprop", "sgd"], None, "irprop- = torch_rprop"),
        (["adam", "irprop- = torch_rprop"], "torch_rprop", "irprop- = torch_rprop"),
        (["adam", "irprop+", "sgd"], None, "irprop+"),
        (["adam", "sgd"], None, "adam"),
        (["adam", "sgd"], "sgd", "sgd"),
    ],
)
def test_the_control_of_the_budget_tests(methods, chosen, control):
    from rprop_bench.report_sections.budgets import control_method

    assert control_method(methods, chosen) == control


def test_an_unknown_control_lists_the_methods():
    from rprop_bench.report_sections.budgets import control_method
    from rprop_bench.results import ResultsError

    with pytest.raises(ResultsError, match=r"report\.control='lbfgs' is not a method .* adam, sgd"):
        control_method(["adam", "sgd"], "lbfgs")
