"""The pure parts of fair tuning (rprop_bench.tuning): search spaces, Sobol points, Optuna's
ask-and-tell, selection on the scored objective, and the report's gain matrix.

Values are checked against hand computations; every optimizer's declared space is composed
with the real config and each sampled trial validated as the CLI validates it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from harness_helpers import compose
from lanes import fast_first

from rprop_bench import schema
from rprop_bench.cli.tune import hyperparameter_overrides
from rprop_bench.cli.validate import validate
from rprop_bench.report_sections.tuning import gain_matrix
from rprop_bench.tuning import (
    OBJECTIVES,
    OptunaSearch,
    SearchSpace,
    SpaceError,
    objective_named,
    sobol_points,
    trial_scores,
)
from rprop_bench.tuning.selection import penalised, winner

# --- search spaces -------------------------------------------------------------------------

#: (declared space, the message it must raise): every bad input names its field.
BAD_SPACES = [
    (
        {"lr": {"low": 1.0, "high": 0.1}},
        "opt.search.lr: low=1.0 >= high=0.1, the range is empty or inverted",
    ),
    ({"lr": {"low": 0.1, "high": 0.1}}, "opt.search.lr: low=0.1 >= high=0.1"),
    (
        {"lr": {"low": 0.0, "high": 1.0, "log": True}},
        "opt.search.lr.low=0.0 is out of range: must be > 0 for a log range",
    ),
    ({"lr": {"low": 0.1, "hgh": 1.0}}, "opt.search.lr.hgh is not a field; valid: path, low, high"),
    ({"lr": {"high": 1.0}}, "opt.search.lr.low=None must be a finite number"),
    ({"lr": {"low": 0.1, "high": math.inf}}, "opt.search.lr.high=inf must be a finite number"),
    ({"h": {"choices": []}}, "opt.search.h.choices is empty"),
    (
        {"b": {"low": 0.5, "high": 2.0, "complement": True}},
        "a complement's range [0.5, 2.0] must lie in [0, 1]",
    ),
    (
        {"lr": {"low": 0.1, "high": 1.0, "limits": [0.2, 5.0]}},
        "opt.search.lr.limits=[0.2, 5.0] must contain [low, high]",
    ),
    (
        {"e": {"path": "etas.x", "low": 0.1, "high": 0.9}},
        "opt.search.e.path='etas.x' must be a key or KEY.INDEX",
    ),
    (
        {"lr": {"low": 0.1, "high": 1.0, "log": "yes"}},
        "opt.search.lr.log='yes' must be true or false",
    ),
    (
        {"lr": {"low": 0.1, "high": 1.0, "enabled": False}},
        "opt.search declares no enabled hyperparameter",
    ),
    (
        {
            "a": {"path": "lr", "low": 0.1, "high": 1.0},
            "b": {"path": "lr", "low": 0.1, "high": 1.0},
        },
        "the hyperparameter 'lr' is declared twice",
    ),
]


@pytest.mark.parametrize(("declared", "message"), BAD_SPACES, ids=[m[:40] for _, m in BAD_SPACES])
def test_a_bad_search_space_is_one_line_naming_its_field(declared, message):
    with pytest.raises(SpaceError) as err:
        SearchSpace.parse(declared, "opt.search")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


#: (dimension spec, u, the value by hand).
VALUES = [
    ({"low": 1e-4, "high": 1.0, "log": True}, 0.5, 1e-2),  # the geometric middle
    ({"low": 1e-4, "high": 1.0, "log": True}, 0.25, 1e-3),
    ({"low": 0.1, "high": 0.9}, 0.25, 0.3),
    ({"low": 0.01, "high": 0.5, "log": True, "complement": True}, 0.0, 0.99),  # 1 - 0.01
    ({"low": 1e-4, "high": 0.01, "log": True, "complement": True}, 0.5, 0.999),  # 1 - 1e-3
    ({"low": 3, "high": 100, "log": True, "integer": True}, 0.5, 17),  # round(sqrt(300))
    ({"choices": [5, 10, 20]}, 0.5, 10),
    ({"choices": [5, 10, 20]}, 0.999, 20),
    ({"low": 1e-4, "high": 1.0, "log": True}, 0.123456, 0.0003118),  # 10^-3.5062, 4 digits
]


@pytest.mark.parametrize(("spec", "u", "expected"), VALUES)
def test_a_point_of_the_unit_cube_maps_to_the_hand_computed_value(spec, u, expected):
    (dim,) = SearchSpace.parse({"x": spec}, "s").dimensions
    value = dim.value(u)
    assert value == pytest.approx(expected, rel=2e-4)
    if spec.get("integer") or "choices" in spec:
        assert type(value) is int


def test_a_winner_in_the_outer_fraction_of_a_range_is_flagged_with_its_bound():
    space = SearchSpace.parse(
        {
            "lr": {"low": 1e-4, "high": 1.0, "log": True},
            "eta": {"path": "etas.0", "low": 0.1, "high": 0.9},
            "beta": {"path": "betas.0", "low": 0.01, "high": 0.5, "log": True, "complement": True},
        },
        "s",
    )
    flags = space.boundaries({"lr": 0.9, "etas.0": 0.5, "betas.0": 0.99}, fraction=0.05)
    # lr 0.9 sits 98.9 % up its log range; 1 - beta = 0.01 is the low end of its range
    assert flags == {"lr": "high (1)", "1 - betas.0": "low (0.01)"}
    assert space.boundaries({"lr": 0.01, "etas.0": 0.5, "betas.0": 0.9}, 0.05) == {}


def test_widening_moves_the_flagged_bound_by_half_the_range_within_its_limits():
    space = SearchSpace.parse(
        {
            "lr": {"low": 1e-4, "high": 1.0, "log": True, "limits": [1e-6, 50.0]},
            "eta": {"path": "etas.0", "low": 0.1, "high": 0.9, "limits": [0.01, 0.99]},
        },
        "s",
    )
    wider = space.widened({"lr": "high (1)", "etas.0": "low (0.1)"})
    lr, eta = wider.dimensions
    assert (lr.low, lr.high) == (1e-4, 50.0)  # 1 × 10^2 would pass the limit 50
    assert (eta.low, eta.high) == (0.01, 0.9)  # 0.1 - 0.4 would pass the limit 0.01
    again = wider.widened({"lr": "high (50)"})
    assert again.dimensions[0] == lr  # at its limit: the same range, nothing to search again
    low_side = space.widened({"lr": "low (0.0001)"}).dimensions[0]
    assert low_side.low == pytest.approx(1e-6)  # 1e-4 / 10^2, clamped at 1e-6


# --- Sobol ---------------------------------------------------------------------------------


def test_sobol_trials_are_reproducible_from_the_seed_and_continue_across_rounds():
    a = sobol_points(3, 8, seed=7)
    assert a.shape == (8, 3)
    assert ((a >= 0) & (a < 1)).all()
    np.testing.assert_array_equal(a, sobol_points(3, 8, seed=7))
    assert not np.allclose(a, sobol_points(3, 8, seed=8))
    # a second round continues the sequence: it repeats no point of the first
    np.testing.assert_array_equal(sobol_points(3, 4, seed=7, skip=4), a[4:])
    # balanced in each coordinate: 8 points of a base-2 net, one per eighth of [0, 1)
    for column in a.T:
        assert sorted(np.floor(column * 8).astype(int)) == list(range(8))


OPTIMIZERS_WITH_SPACES = [
    "rprop", "rprop_plus", "rprop_minus", "irprop_plus", "irprop_minus", "torch_rprop",
    "sgd", "momentum", "adam", "adamw", "rmsprop", "lbfgs",
]  # fmt: skip


@pytest.mark.parametrize("name", fast_first(OPTIMIZERS_WITH_SPACES))
def test_every_optimizer_declares_a_space_whose_trials_are_valid_configs(name):
    cfg = compose(f"optimizer={name}")
    space = SearchSpace.parse(cfg.optimizer.search, f"optimizer={name}")
    corners = np.array([[0.0] * len(space.dimensions), [0.9999] * len(space.dimensions)])
    for point in [*sobol_points(len(space.dimensions), 16, seed=0), *corners]:
        values = space.values(point)
        trial = compose(f"optimizer={name}", *hyperparameter_overrides(cfg, values))
        validate(trial)  # the pre-flight's own check: a space must not leave the legal ranges
        for path, value in values.items():
            key, _, index = path.partition(".")
            node = trial.optimizer[key]
            assert (node[int(index)] if index else node) == value


def test_the_declared_spaces_follow_the_issue():
    dims = {
        name: [d.shown for d in SearchSpace.parse(compose(f"optimizer={name}").optimizer.search,
                                                  "s").dimensions]
        for name in ("irprop_minus", "sgd", "momentum", "adam", "adamw", "rmsprop", "lbfgs")
    }  # fmt: skip
    assert dims == {
        "irprop_minus": ["lr", "etas.0", "etas.1"],  # Δ0, η-, η+ (Δmax declared, off)
        "sgd": ["lr"],
        "momentum": ["lr", "1 - momentum"],
        "adam": ["lr", "1 - betas.0", "1 - betas.1"],
        "adamw": ["lr", "1 - betas.0", "1 - betas.1", "weight_decay"],
        "rmsprop": ["lr", "1 - alpha"],
        "lbfgs": ["lr", "history_size"],
    }
    with_max = compose("optimizer=irprop_minus", "optimizer.search.delta_max.enabled=true")
    shown = [d.shown for d in SearchSpace.parse(with_max.optimizer.search, "s").dimensions]
    assert shown[-1] == "step_sizes.1"


def test_trial_overrides_change_one_list_element_and_keep_the_others():
    cfg = compose("optimizer=adam")
    assert hyperparameter_overrides(cfg, {"lr": 0.003162, "betas.1": 0.99}) == [
        "optimizer.lr=0.003162",
        "optimizer.betas=[0.9,0.99]",
    ]


# --- selection -----------------------------------------------------------------------------


def _runs(rows):
    return pd.DataFrame(rows, columns=["cell", "trial", "failed", schema.GRAD_EVALS_TO_TARGET,
                                       schema.FINAL_TRAIN_LOSS])  # fmt: skip


def test_selection_takes_the_lowest_median_over_seeds_failures_counting_as_infinity():
    runs = _runs([
        ("a", 0, False, 10.0, 0.1), ("a", 0, False, 20.0, 0.1), ("a", 0, True, 5.0, 0.1),
        ("a", 1, False, 15.0, 0.1), ("a", 1, False, 15.0, 0.1), ("a", 1, False, 16.0, 0.1),
        ("a", 2, False, np.nan, 0.2), ("a", 2, False, 1.0, 0.2), ("a", 2, False, np.nan, 0.2),
    ])  # fmt: skip
    obj = objective_named("train_evals_to_target")
    scores = trial_scores(runs, obj, ["cell", "trial"]).set_index("trial")
    # trial 0: [10, 20, ∞ (failed)] → 20; trial 1: 15; trial 2: [∞, 1, ∞] → ∞
    assert scores["score"].to_dict() == {0: 20.0, 1: 15.0, 2: math.inf}
    assert scores["n_reached"].to_dict() == {0: 2, 1: 3, 2: 1}
    assert scores["n_failed"].to_dict() == {0: 1, 1: 0, 2: 0}
    assert int(winner(scores.reset_index())["trial"]) == 1


def test_trials_that_never_reach_the_target_are_told_apart_by_their_final_loss():
    runs = _runs([("a", 0, False, np.nan, 0.5), ("a", 1, False, np.nan, 0.05),
                  ("a", 2, False, np.nan, 0.05)])  # fmt: skip
    scores = trial_scores(runs, objective_named("train_evals_to_target"), ["cell", "trial"])
    assert int(winner(scores)["trial"]) == 1  # the lower loss; of two equal, the earlier
    assert penalised(math.inf, 0.05) < penalised(math.inf, 0.5)
    assert penalised(4000.0, 0.0) < penalised(math.inf, 0.0)


def test_an_unknown_objective_lists_the_valid_ones():
    assert tuple(OBJECTIVES) == schema.TUNE_OBJECTIVES
    with pytest.raises(ValueError, match="valid objectives: train_evals_to_target, best_val_loss"):
        objective_named("val_accuracy")
    rung = objective_named("train_evals_to_target").for_target(2)
    assert rung.metric == "grad_evals_to_target_2"


# --- Optuna --------------------------------------------------------------------------------


def test_optuna_asks_again_what_a_killed_study_never_told_and_resumes_from_its_journal(tmp_path):
    space = SearchSpace.parse(
        {"lr": {"low": 1e-4, "high": 1.0, "log": True}, "h": {"choices": [5, 10]}}, "s"
    )
    journal = tmp_path / "optuna" / "study.journal"
    first = OptunaSearch(space, journal, "cell", seed=0, startup_trials=2)
    asked = first.ask(2)
    first.tell(asked[0].number, 3.0)  # the second is never told: the process "dies"
    assert journal.exists()
    resumed = OptunaSearch(space, journal, "cell", seed=0, startup_trials=2)
    assert resumed.told() == 1
    again = resumed.ask(2)
    assert again[0] == asked[1]  # the pending trial, with the same values, before a new one
    assert again[1].number == 2
    for trial in again:
        resumed.tell(trial.number, 1.0)
        assert 1e-4 <= trial.values["lr"] <= 1.0
        assert trial.values["h"] in (5, 10)
    assert [n for n, _ in resumed.completed()] == [0, 1, 2]


# --- the report's gain matrix ----------------------------------------------------------------


def test_the_gain_matrix_is_default_over_tuned_with_a_label_for_every_case():
    gain = pd.DataFrame({
        "optimizer": ["adam", "sgd", "lbfgs", "rmsprop"], "problem": ["iris"] * 4,
        "objective": ["best_val_loss"] * 4,
        "tuned_median": [0.1, 5.0, np.inf, np.inf], "default_median": [1.0, np.inf, 2.0, np.inf],
    })  # fmt: skip
    ratio, labels = gain_matrix(gain, "best_val_loss")
    assert ratio.loc["iris", "adam"] == pytest.approx(1.0)  # log10(1.0 / 0.1)
    assert np.isnan(ratio.loc["iris", ["sgd", "lbfgs", "rmsprop"]]).all()
    assert labels.loc["iris"].to_dict() == {
        "adam": "×10", "lbfgs": "only default", "rmsprop": "neither", "sgd": "only tuned",
    }  # fmt: skip
