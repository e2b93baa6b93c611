"""The side-by-side statistics (rprop_bench.side_by_side) against hand-computed values, and
the published rows (rprop_bench.published) for what every row must carry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rprop_bench import published, side_by_side

INF = math.inf
# t(0.975, 2) = 4.302653 (tables; with 2 degrees of freedom, t = √(2/(4p(1−p)) − 2) at p = 0.975)
T2 = math.sqrt(2 / (4 * 0.975 * 0.025) - 2)
MEAN_123 = (2.0, 2 - T2 / math.sqrt(3), 2 + T2 / math.sqrt(3), 3)  # [1, 2, 3]: s = 1
NEW_RUN_123 = (2.0, 2 - T2 * math.sqrt(4 / 3), 2 + T2 * math.sqrt(4 / 3), 3)
# with 2 degrees of freedom χ²(p) = −2 ln(1 − p) in closed form
SD_123 = (1.0, (-math.log(0.025)) ** -0.5, (-math.log(0.975)) ** -0.5, 3)


@pytest.mark.parametrize(
    ("estimator", "values", "expected"),
    [
        # mean ± t·s/√n: [1, 2, 3] has s = 1
        (side_by_side.mean_estimate, [1, 2, 3], MEAN_123),
        # a miss (inf) is left out of the mean, as the papers average successful trials
        (side_by_side.mean_estimate, [1, 2, 3, INF], MEAN_123),
        (side_by_side.mean_estimate, [5], (5.0, math.nan, math.nan, 1)),
        (side_by_side.sd_estimate, [1, 2, 3], SD_123),  # s·√((n−1)/χ²)
        # one new run: mean ± t·s·√(1 + 1/n)
        (side_by_side.prediction_estimate, [1, 2, 3], NEW_RUN_123),
        # n = 3 has no order-statistic interval of 95 %: the range, a miss at ∞ included
        (side_by_side.median_estimate, [1, 2, INF], (2.0, 1.0, INF, 3)),
        # n = 9: ranks 2 and 8 cover 1 − 2·P(B(9, ½) ≤ 1) = 96.1 %
        (side_by_side.median_estimate, list(range(1, 10)), (5.0, 2.0, 8.0, 9)),
    ],
)  # fmt: skip
def test_estimates_equal_the_hand_computed_intervals(estimator, values, expected):
    e = estimator(values)
    assert (e.value, e.low, e.high, e.n) == pytest.approx(expected, rel=1e-5, nan_ok=True)


def test_the_prediction_interval_widens_by_half_the_rounding_unit():
    plain = side_by_side.prediction_estimate([1, 2, 3])
    rounded = side_by_side.prediction_estimate([1, 2, 3], rounding=1.0)
    assert rounded.low == pytest.approx(plain.low - 0.5)
    assert rounded.high == pytest.approx(plain.high + 0.5)


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        (0, 10, 0.0, 1 - 0.025 ** (1 / 10)),  # Clopper–Pearson at 0: 1 − (α/2)^(1/n)
        (10, 10, 0.025 ** (1 / 10), 1.0),
        (5, 10, 0.187086, 0.812914),  # Beta(0.025; 5, 6), Beta(0.975; 6, 5)
    ],
)
def test_success_rate_has_the_clopper_pearson_interval(successes, trials, low, high):
    e = side_by_side.success_estimate(successes, trials)
    assert (e.value, e.low, e.high) == pytest.approx((successes / trials, low, high), rel=1e-5)


def test_a_success_count_outside_the_trials_is_an_error():
    with pytest.raises(ValueError, match=r"successes must be in \[0, 10\]"):
        side_by_side.success_estimate(11, 10)


@pytest.mark.parametrize(
    ("inside", "low", "high", "low_bracket", "high_bracket", "contiguous"),
    [
        ([0, 1, 1, 0], 0.1, 1.0, (0.01, 0.1), (1.0, 10.0), True),
        ([1, 0, 1, 1], 0.01, 10.0, (-INF, 0.01), (10.0, INF), False),  # a hole
        ([1, 1, 1, 1], 0.01, 10.0, (-INF, 0.01), (10.0, INF), True),  # the whole grid
    ],
)
def test_working_range_ends_lie_between_grid_values(
    inside, low, high, low_bracket, high_bracket, contiguous
):
    # given out of order: the grid is sorted first
    order = [2, 0, 3, 1]
    grid = np.array([0.01, 0.1, 1.0, 10.0])
    ends = side_by_side.working_range_ends(grid[order], np.asarray(inside, bool)[order])
    assert (ends.low, ends.high) == (low, high)
    assert (ends.low_bracket, ends.high_bracket) == (low_bracket, high_bracket)
    assert ends.contiguous is contiguous


def test_no_working_range_when_no_value_is_inside():
    ends = side_by_side.working_range_ends([0.1, 1.0], [False, False])
    assert math.isnan(ends.low)
    assert math.isnan(ends.high)
    assert not ends.contiguous


@pytest.mark.parametrize(
    ("value", "low", "high", "verdict"),
    [
        (2.0, 1.0, 3.0, "agrees"),
        (3.0, 1.0, 3.0, "agrees"),  # the interval is closed
        (4.0, 1.0, 3.0, "disagrees"),
        (0.05, -INF, 0.05, "agrees"),  # a working range reaching the grid's edge
        (math.nan, 1.0, 3.0, "no published value"),
        (2.0, math.nan, math.nan, "no interval"),
    ],
)
def test_agreement_is_the_published_value_inside_our_interval(value, low, high, verdict):
    assert side_by_side.agreement(value, low, high) == verdict


IMPROVED = {"irprop+", "irprop-"}


@pytest.mark.parametrize(
    ("significant", "verdict"),
    [
        ([("irprop+", "rprop+")], "agrees"),
        ([("irprop+", "rprop+"), ("irprop-", "rprop-")], "agrees"),
        ([("irprop+", "rprop+"), ("rprop-", "irprop-")], "disagrees"),
        ([("rprop+", "irprop-")], "disagrees"),
        # pairs within a group say nothing about improved against original
        ([("irprop+", "irprop-"), ("rprop+", "rprop-")], "no difference detected"),
        ([], "no difference detected"),
    ],
)  # fmt: skip
def test_the_ordering_verdict_counts_only_improved_against_original(significant, verdict):
    assert side_by_side.ordering_verdict(significant, IMPROVED) == verdict


def test_every_published_row_names_its_source_place_and_whether_it_was_checked():
    keys = set()
    for row in published.PUBLISHED:
        assert row.source
        assert row.location
        assert isinstance(row.verified, bool)
        if not row.verified:  # an unchecked number says so where it is shown
            assert row.note
        key = (row.part, row.problem, row.method, row.quantity)
        assert key not in keys, f"two published values for {key}"
        keys.add(key)


def test_published_for_finds_a_cell_or_says_none():
    cnn = published.published_for("mnist1d", "mnist1d", "mnist1d_cnn", "test_accuracy")
    assert cnn is not None
    assert (cnn.value, cnn.verified) == (0.94, True)
    assert published.published_for("rb1993", "encoder_10_5_10", "backprop", "success_rate") is None
