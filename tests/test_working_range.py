"""The working-range map: its cells computed by hand, the hyperparameters it reads from the
runs' params, the axes it picks, and the section in a report of a real store."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from mlflow_runs import HandRun, finals, write_store

from rprop_bench import analysis, plotting, report
from rprop_bench.report_sections.working_range import MAX_PANELS, hyperparameters, map_axes

INF = math.inf

#: (Δ0, η+, the run's cost) of a 2 × 2 grid; NaN is a run with no cost recorded (a failure)
GRID_RUNS = [
    (0.1, 1.2, 10.0), (0.1, 1.2, 20.0), (0.1, 1.2, 30.0),  # median 20, all 3 reached
    (1.0, 1.2, 10.0), (1.0, 1.2, INF), (1.0, 1.2, INF),  # 2 of 3 missed: ∞
    (0.1, 1.5, 5.0), (0.1, 1.5, math.nan), (0.1, 1.5, 40.0),  # [5, 40, ∞]: 40
    (1.0, 1.5, 7.0), (1.0, 1.5, INF),  # half missed: ∞ (an even count does not average)
]  # fmt: skip


def test_a_cells_median_counts_a_missed_target_as_infinite_cost():
    costs = pd.DataFrame(GRID_RUNS, columns=["lr", "eta_plus", "cost"])
    found = analysis.working_range(costs, "lr", "eta_plus")
    assert list(found.median.index) == [1.2, 1.5]  # rows: y ascending
    assert list(found.median.columns) == [0.1, 1.0]
    assert found.median.to_numpy().tolist() == [[20.0, INF], [40.0, INF]]
    assert found.reached.to_numpy().tolist() == [[3, 1], [2, 1]]
    assert found.runs.to_numpy().tolist() == [[3, 3], [3, 2]]


def test_hyperparameters_are_the_scalar_arguments_with_lists_split_as_the_papers_name_them():
    runs = pd.DataFrame({
        "param.optimizer.lr": ["0.01", "0.1"],
        "param.optimizer.etas": ["[0.5, 1.2]", "[0.3, 1.5]"],
        "param.optimizer.step_sizes": ["[1e-06, 50.0]", "[1e-06, 50.0]"],
        "param.optimizer.variant": ["irprop-", "irprop-"],
        "param.optimizer.nesterov": ["False", "False"],
        "param.optimizer._target_": ["rprop_bench.optim.Rprop"] * 2,
        "param.train.seed": ["0", "1"],
    })  # fmt: skip
    found = hyperparameters(runs)
    assert list(found.columns) == ["lr", "η-", "η+", "Δmin", "Δmax"]
    assert found.to_numpy().tolist() == [[0.01, 0.5, 1.2, 1e-6, 50.0], [0.1, 0.3, 1.5, 1e-6, 50.0]]


#: (the hyperparameters that vary and their number of values, the map's axes or None)
AXES_CASES = [
    ({"lr": 4, "η+": 3}, ("lr", "η+", None, [])),
    ({"lr": 4, "η+": 3, "η-": 8}, ("lr", "η+", "η-", [])),  # a panel per η-
    ({"lr": 4, "η-": 3, "η+": 2}, ("lr", "η+", "η-", [])),  # η+ first, whatever the order
    ({"lr": 8, "β1": 8}, ("lr", "β1", None, [])),
    ({"lr": 2, "η+": 2, "η-": MAX_PANELS + 1}, ("lr", "η+", None, ["η-"])),  # too many panels
    ({"lr": 2, "η+": 2, "η-": 2, "Δmax": 2}, ("lr", "η+", None, ["η-", "Δmax"])),
    ({"lr": 4}, None),  # one axis is no map
    ({"η+": 3, "η-": 3}, None),  # no learning rate
]


@pytest.mark.parametrize(("varying", "axes"), AXES_CASES)
def test_the_map_is_over_the_learning_rate_and_the_first_other_hyperparameter(varying, axes):
    rows = int(np.prod(list(varying.values())))
    grids = np.meshgrid(*[np.arange(1.0, n + 1) for n in varying.values()], indexing="ij")
    hypers = pd.DataFrame({k: g.ravel() for k, g in zip(varying, grids, strict=True)})
    hypers["β2"] = 0.999  # fixed: never an axis
    assert len(hypers) == rows
    assert map_axes(hypers) == axes


def test_the_map_draws_a_panel_per_value_and_a_cross_where_the_median_is_infinite():
    costs = pd.DataFrame(GRID_RUNS, columns=["lr", "eta_plus", "cost"])
    found = analysis.working_range(costs, "lr", "eta_plus")
    labels = found.reached.astype(str)
    fig = plotting.working_range_map({"η- = 0.3": (found.median, labels),
                                      "η- = 0.5": (found.median, labels)},
                                     x_label="Δ0", y_label="η+", cost_label="evals")  # fmt: skip
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["η- = 0.3", "η- = 0.5"]
    texts = sorted(t.get_text() for t in panels[0].texts)
    assert texts == ["2", "3", "×", "×"]  # the two ∞ cells crossed, the others their counts


@pytest.mark.slow  # builds a whole report (seconds)
def test_a_report_of_a_grid_has_its_working_range_map_and_cells(tmp_path):
    runs = []
    for lr in ("0.01", "0.1", "1.0"):
        for eta_plus in ("1.2", "1.5"):
            for seed in range(2):
                missed = lr == "1.0" and (eta_plus == "1.5" or seed == 0)
                runs.append(HandRun(
                    "iris", "irprop_minus", "irprop-", seed,
                    finals(0.1, acc=0.9, epochs_to_target=None if missed else 10 * float(lr)
                           + float(eta_plus) + seed),
                    [1.0, 0.5, 0.1],
                    run_key=f"k-{lr}-{eta_plus}-{seed}",
                    params={"optimizer.lr": lr, "optimizer.etas": f"[0.5, {eta_plus}]",
                            "problem.target_loss": "0.05"},
                ))  # fmt: skip
    uri = write_store(tmp_path, "exp", runs)
    options = report.ReportOptions(out=tmp_path / "r", formats=("png",), progress=False,
                                   log_to_mlflow=False)  # fmt: skip
    built = report.build_report(uri, "exp", options)
    md = built.markdown.read_text(encoding="utf-8")
    assert "### iris: working range of irprop-" in md
    assert "12 runs, 6 cells: 4 reach the training-loss target 0.05 in at least half" in md
    assert "the lowest median, 1.8 evaluations, at Δ0 = 0.01, η+ = 1.2." in md
    assert (tmp_path / "r" / "figures" / "working_range_iris_irprop.png").exists()
    cells = pd.read_csv(tmp_path / "r" / "tables" / "working_range_iris_irprop.csv")
    by = {(r["lr"], r["η+"]): r for _, r in cells.iterrows()}
    assert len(by) == 6
    assert by[(0.01, 1.2)]["median_cost"] == pytest.approx((1.3 + 2.3) / 2)  # epochs 1.3, 2.3
    assert (by[(1.0, 1.2)]["reached"], by[(1.0, 1.2)]["runs"]) == (1, 2)
    assert math.isinf(by[(1.0, 1.2)]["median_cost"])  # half missed
    assert by[(1.0, 1.5)]["reached"] == 0
