"""The study `classics`'s every-epoch readout (experiments/classics/every_epoch.py): the
winners' overrides as Hydra composes them, and the best validation loss read on two grids."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "experiments" / "classics"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def every_epoch():
    # the script imports its folder's ``tables`` as a script would find it
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "tables", _load("tables", FOLDER / "tables.py"))
        yield _load("classics_every_epoch", FOLDER / "every_epoch.py")


@pytest.mark.parametrize(
    ("chosen", "overrides"),
    [
        ("lr=0.2463", ["optimizer.lr=0.2463"]),
        (
            "lr=0.001993, etas.0=0.5291, etas.1=1.1",
            ["optimizer.lr=0.001993", "optimizer.etas=[0.5291,1.1]"],
        ),
        (
            "lr=0.0003337, betas.0=0.93665, betas.1=0.992734, weight_decay=0.001412",
            [
                "optimizer.lr=0.0003337",
                "optimizer.weight_decay=0.001412",
                "optimizer.betas=[0.93665,0.992734]",
            ],
        ),
        ("betas.1=0.999, betas.0=0.9", ["optimizer.betas=[0.9,0.999]"]),  # in index order
    ],
)
def test_a_winners_printed_hyperparameters_become_overrides(every_epoch, chosen, overrides):
    assert every_epoch.chosen_overrides(chosen) == overrides


@pytest.mark.parametrize(
    ("chosen", "message"),
    [
        ("betas.1=0.999", "give all of 0"),  # the other element is unknown here
        ("lr", "not a hyperparameter setting"),
        ("lr=", "not a hyperparameter setting"),
    ],
)
def test_a_setting_that_cannot_be_rerun_is_an_error(every_epoch, chosen, message):
    with pytest.raises(ValueError, match=message):
        every_epoch.chosen_overrides(chosen)


def test_the_committed_winners_compose_to_their_hyperparameters(every_epoch, compose_cfg):
    tuned = pd.read_csv(every_epoch.TUNED)
    chosen = every_epoch.winners(tuned)
    assert sorted(chosen) == sorted(every_epoch.OPTIMIZER_CONFIG)
    adamw = compose_cfg(
        "experiment=classics_mnist1d", "optimizer=adamw", "model=mnist1d_mlp", *chosen["adamw"]
    )
    assert adamw.optimizer.lr == pytest.approx(0.0003337)
    assert list(adamw.optimizer.betas) == pytest.approx([0.93665, 0.992734])
    assert adamw.optimizer.weight_decay == pytest.approx(0.001412)
    for method, overrides in chosen.items():  # every one is a valid override of its config
        cfg = compose_cfg(
            f"optimizer={every_epoch.OPTIMIZER_CONFIG[method]}", "model=mnist1d_mlp", *overrides
        )
        assert cfg.optimizer.lr == pytest.approx(float(overrides[0].split("=")[1]))


def test_the_study_settings_it_copies_are_the_studys(every_epoch, compose_cfg):
    study = compose_cfg("experiment=classics_mnist1d", shrink=False)
    assert study.train.log_every == every_epoch.STUDY_LOG_EVERY
    assert every_epoch.FRESH_SEEDS == "range(0,10)"
    assert list(study.tune.rerun_seeds) == list(range(10))


def test_the_sweeps_log_every_epoch_on_the_fresh_seeds(every_epoch, capsys):
    assert every_epoch.main(["--dry-run", "--tracking-uri", "sqlite:///x.db"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7
    for line in lines:
        words = line.split()
        assert words[:3] == ["-m", "rprop_bench", "experiment=classics_mnist1d"]
        assert words[3] == "model=mnist1d_mlp"
        assert {"train.log_every=1", "train.seed=range(0,10)", "sweep"} <= set(words)
        assert "tracking.experiment=classics_mnist1d_every_epoch" in words


def _history(run_id: str, values: list[float]) -> pd.DataFrame:
    steps = np.arange(1, len(values) + 1)
    return pd.DataFrame({"run_id": run_id, "step": steps, "value": values})


def test_the_coarse_grid_reads_every_tenth_epoch_and_the_last(every_epoch):
    # a: lowest at epoch 7, which the 10-epoch grid misses (it sees 10, 20, 25);
    # b: lowest at its last epoch, 25, which a 10-epoch run logs too
    a = [1.0] * 25
    a[6], a[19] = 0.2, 0.5
    b = [1.0 - 0.01 * k for k in range(25)]
    val = pd.concat([_history("a", a), _history("b", b)], ignore_index=True)
    fine, coarse = every_epoch.best_on_grid(val, 1), every_epoch.best_on_grid(val, 10)
    assert fine.loc["a"].tolist() == [0.2, 7]
    assert coarse.loc["a"].tolist() == [0.5, 20]
    assert coarse.loc["b"].tolist() == pytest.approx([0.76, 25])
    assert fine.loc["b"].tolist() == pytest.approx([0.76, 25])


def test_the_grid_table_gives_both_grids_and_the_shift(every_epoch):
    a = [1.0] * 25
    a[6], a[19] = 0.2, 0.5  # fine 0.2 at 7, coarse 0.5 at 20: shift 0.3
    c = [1.0] * 25
    c[9] = 0.4  # on the grid: shift 0
    val = pd.concat([_history("a", a), _history("c", c)], ignore_index=True)
    runs = pd.DataFrame({
        "run_id": ["a", "c"], "method": ["irprop-", "irprop-"],
        "test_accuracy_at_best_val": [0.5, 0.6],
    })  # fmt: skip
    row = every_epoch.grid_table(runs, val, 10).iloc[0]
    assert row["best val loss, every epoch"] == pytest.approx(0.3)  # median of 0.2, 0.4
    assert row["best val loss, every 10th"] == pytest.approx(0.45)  # of 0.5, 0.4
    assert row["median shift"] == pytest.approx(0.15)
    assert row["max shift"] == pytest.approx(0.3)
    assert row["best epoch, every epoch"] == 8.5  # of 7, 10
    assert row["best epoch, every 10th"] == 15.0  # of 20, 10
    assert row["test accuracy at best val"] == pytest.approx(0.55)


def test_a_store_that_does_not_exist_is_a_one_line_error(every_epoch, tmp_path, capsys):
    table = every_epoch.tables.OUT / "tables" / "mnist1d_every_epoch.csv"
    before = table.read_bytes() if table.exists() else None
    uri = f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}"
    assert every_epoch.main(["--tables-only", "--tracking-uri", uri]) == 1
    err = capsys.readouterr().err
    assert err.startswith("every_epoch: ")
    assert "not found" in err
    assert len(err.strip().splitlines()) == 1
    assert (table.read_bytes() if table.exists() else None) == before
