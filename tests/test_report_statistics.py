"""The statistics of the report across problems, from a real temporary MLflow store: the
omnibus gate, identical methods merged, practical ties, and intervals that say their level.

Six problems on which three optimizers always finish in the same order (Friedman rejects),
and a fourth optimizer whose runs copy another's to the bit (as torch's Rprop copies our
iRprop-).
"""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow_runs import HandRun, finals

from rprop_bench import report

# Each test renders a whole report from a store of hand-made runs (about 30 s): the full lane.
pytestmark = pytest.mark.slow

PROBLEMS = [f"set{i}" for i in range(6)]
# (optimizer, variant, test loss on every problem); torch_rprop copies irprop-'s runs
METHODS = [("irprop_minus", "irprop-", 0.1), ("torch_rprop", "torch_rprop", 0.1),
           ("adam", "adam", 0.2), ("sgd", "sgd", 0.3)]  # fmt: skip


def _runs(loss_of) -> list[HandRun]:
    runs = []
    for problem in PROBLEMS:
        for optimizer, variant, loss in METHODS:
            for seed in range(3):
                value = loss_of(problem, variant, loss, seed)
                runs.append(HandRun(problem, optimizer, variant, seed,
                                    finals(value, acc=1 - value, epochs_to_target=10 * value),
                                    [1.0, 0.5, value]))  # fmt: skip
    return runs


def _build(store_factory, tmp_path, runs) -> tuple[report.Report, pd.DataFrame]:
    opts = report.ReportOptions(out=tmp_path / "out", formats=("png",), progress=False)
    built = report.build_report(store_factory(runs), "exp", opts)
    return built, pd.read_csv(built.out / "tables" / "ranks.csv")


def test_identical_methods_count_once_and_a_rejecting_omnibus_test_draws_the_cd(
    store_factory, tmp_path
):
    built, ranks = _build(store_factory, tmp_path, _runs(lambda p, v, loss, s: loss + 0.01 * s))
    test_loss = ranks[ranks["criterion"] == "final test loss"].set_index("method")
    # irprop- and torch_rprop are one method: k = 3, ranks 1, 2, 3 on every problem
    assert sorted(test_loss.index) == ["adam", "irprop- = torch_rprop", "sgd"]
    assert test_loss["average_rank"].tolist() == [2.0, 1.0, 3.0]
    # chi2 = 12 N / (k (k+1)) (sum R^2 - k (k+1)^2 / 4) = 6 (14 - 12) = 12, p = e^-6
    assert test_loss["friedman_chi2"].iloc[0] == pytest.approx(12.0)
    assert test_loss["friedman_p"].iloc[0] == pytest.approx(2.4787522e-3)
    assert test_loss["omnibus_rejects"].all()
    assert (built.out / "figures" / "cd_diagram_test_loss.png").is_file()
    text = built.markdown.read_text(encoding="utf-8")
    assert "irprop- and torch_rprop gave bit-identical results" in text


def test_no_cd_diagram_where_the_omnibus_test_does_not_reject(store_factory, tmp_path):
    # adam and sgd swap places on half the problems: no consistent order among the three
    def loss_of(problem, variant, loss, seed):
        swapped = PROBLEMS.index(problem) % 2 == 1
        order = {"irprop-": 0.3, "torch_rprop": 0.3, "adam": 0.1, "sgd": 0.2}
        return (order[variant] if swapped else loss) + 0.01 * seed

    built, ranks = _build(store_factory, tmp_path, _runs(loss_of))
    test_loss = ranks[ranks["criterion"] == "final test loss"]
    assert not test_loss["omnibus_rejects"].any()
    assert test_loss["nemenyi_cd"].isna().all()
    assert not (built.out / "figures" / "cd_diagram_test_loss.png").exists()
    assert "final test loss: no difference detected (Friedman p = " in built.markdown.read_text(
        encoding="utf-8"
    )


def test_float_noise_is_a_tie_not_a_rank(store_factory, tmp_path):
    # adam's losses differ from irprop-'s in the 7th digit only: practically equal
    def loss_of(problem, variant, loss, seed):
        if variant == "adam":
            return 0.1 * (1 + 1e-7) + 0.01 * seed
        return loss + 0.01 * seed

    built, ranks = _build(store_factory, tmp_path, _runs(loss_of))
    test_loss = ranks[ranks["criterion"] == "final test loss"].set_index("method")
    assert test_loss.loc["adam", "average_rank"] == 1.5
    assert test_loss.loc["irprop- = torch_rprop", "average_rank"] == 1.5
    # and both are the best of a problem's final table: bold, not just the lower one
    md = built.markdown.read_text(encoding="utf-8")
    table = md[md.index("### set0: final results") :].split("###")[1]
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    rows = {line.split("|")[1].strip(): line for line in lines}
    assert "**0.11 [0.105, 0.115]**" in rows["adam"]
    assert "**0.11 [0.105, 0.115]**" in rows["irprop-"]
    assert "**" not in rows["sgd"].split("|")[4]


def test_final_tables_give_the_intervals_level_and_call_a_range_a_range(store_factory, tmp_path):
    built, _ = _build(store_factory, tmp_path, _runs(lambda p, v, loss, s: loss + 0.01 * s))
    final = pd.read_csv(built.out / "tables" / "set0_final.csv").set_index("method")
    # 3 seeds: no 95 % interval exists; the range [0.1, 0.12], coverage 1 - 2/8
    assert final.loc["adam", "test_loss_ci_low"] == pytest.approx(0.2)
    assert final.loc["adam", "test_loss_ci_high"] == pytest.approx(0.22)
    assert final.loc["adam", "test_loss_ci_level"] == pytest.approx(0.75)
    assert bool(final.loc["adam", "test_loss_ci_is_range"])
    text = built.markdown.read_text(encoding="utf-8")
    assert "range (0.2, 0.22) 75 %" in text


def test_the_cost_to_target_is_ranked_in_gradient_evaluations_not_epochs(store_factory, tmp_path):
    # L-BFGS reaches the target in 2 epochs that cost 40 evaluations (its line searches);
    # iRprop- in 10 epochs of one evaluation each: ranked on evaluations, iRprop- wins
    runs = []
    for problem in PROBLEMS:
        for optimizer, epochs, evals in (("irprop_minus", 10, 10.0), ("lbfgs", 2, 40.0)):
            for seed in range(3):
                final = finals(0.1, acc=0.9, epochs_to_target=epochs)
                final["grad_evals_to_target"] = evals
                runs.append(HandRun(problem, optimizer, optimizer.replace("_minus", "-"), seed,
                                    final, [1.0, 0.5, 0.1]))  # fmt: skip
    _, ranks = _build(store_factory, tmp_path, runs)
    evals = ranks[ranks["criterion"] == "evaluations to target"].set_index("method")
    assert evals.loc["irprop-", "average_rank"] == 1.0
    assert evals.loc["lbfgs", "average_rank"] == 2.0
