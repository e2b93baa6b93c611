"""Part 3's generalisation track read every epoch: how much the study's 10-epoch grid costs.

The tuning study ``experiment=classics_mnist1d`` logs every 10th epoch (``log_every: 10``), so
a run's best validation loss, and the test accuracy at it, are read on that grid. iRprop±
reach their best validation loss at epochs 40–60, the baselines at 100–600, so the grid is
coarsest relative to iRprop±'s runs. This reruns each optimizer's generalisation winner on
the same fresh seeds with ``train.log_every=1`` and reads both grids off the same runs:

* ``tables/mnist1d_every_epoch.{csv,tex}``: per optimizer, the median best validation loss
  read every epoch and every 10th epoch (the same runs' histories), the shift, the best
  epoch, and the test accuracy at the every-epoch best;
* ``tables/mnist1d_every_epoch_tests.{csv,tex}``: the tests of ``tables.py``
  (:func:`tables.mnist1d_tests`: Wilcoxon paired by seed, Holm over the 11 pairs) on the
  every-epoch values.

The winners' hyperparameters come from ``tables/mnist1d_tuned.csv`` as it prints them (4 to
7 significant digits), so a baseline's rerun can differ slightly from the study's.

Usage: ``python experiments/classics/every_epoch.py [--tracking-uri URI] [--dry-run]``
(7 sweeps of 10 stacked runs, about 15 min on 2 busy cores; a rerun skips finished runs).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pandas as pd
import tables  # this folder's table builder (run as a script, its folder is on sys.path)

from rprop_bench import schema, side_by_side
from rprop_bench.results import NoRunsError, StoreNotFoundError, load_experiment, load_histories

EXPERIMENT = "classics_mnist1d_every_epoch"
MODEL = "mnist1d_mlp"
TUNED = tables.OUT / "tables" / "mnist1d_tuned.csv"
STUDY_LOG_EVERY = 10  # conf/experiment/classics_mnist1d.yaml, train.log_every
FRESH_SEEDS = "range(0,10)"  # conf/tune/default.yaml, tune.rerun_seeds
#: The method names of the tuned table, by their optimizer configs (conf/optimizer/).
OPTIMIZER_CONFIG = {
    "irprop-": "irprop_minus",
    "irprop+": "irprop_plus",
    "sgd": "sgd",
    "momentum": "momentum",
    "adam": "adam",
    "adamw": "adamw",
    "rmsprop": "rmsprop",
}


def chosen_overrides(chosen: str) -> list[str]:
    """The Hydra overrides that set a winner's hyperparameters as the tuned table prints them
    (``"lr=0.001993, etas.0=0.5291, etas.1=1.1"``): a list's elements become one list, which
    must be given whole (elements 0 … n−1)."""
    scalars, lists = [], {}
    for item in filter(None, (part.strip() for part in chosen.split(","))):
        path, sep, value = item.partition("=")
        if not sep or not value:
            raise ValueError(f"not a hyperparameter setting: {item!r} (in {chosen!r})")
        key, _, index = path.partition(".")
        if index:
            lists.setdefault(key, {})[int(index)] = value
        else:
            scalars.append(f"optimizer.{key}={value}")
    for key, items in lists.items():
        if sorted(items) != list(range(len(items))):
            raise ValueError(f"{key}: elements {sorted(items)} given; give all of 0 … n−1")
        scalars.append(f"optimizer.{key}=[{','.join(items[i] for i in range(len(items)))}]")
    return scalars


def winners(tuned: pd.DataFrame, model: str = MODEL) -> dict[str, list[str]]:
    """Each optimizer's generalisation winner on ``model``: its overrides, by method."""
    rows = tuned[(tuned["model"] == model) & (tuned["track"] == "generalisation")]
    if rows.empty:
        raise ValueError(f"no generalisation rows for {model} in the tuned table")
    return {row.method: chosen_overrides(row.chosen) for row in rows.itertuples()}


def sweep_command(method: str, overrides: list[str], tracking_uri: str) -> list[str]:
    """One sweep: the winner on the fresh seeds, stacked, logged every epoch. Histograms are
    off: they do not change the training and this readout does not use them."""
    return [
        sys.executable,
        "-m",
        "rprop_bench",
        "experiment=classics_mnist1d",
        f"model={MODEL}",
        f"optimizer={OPTIMIZER_CONFIG[method]}",
        *overrides,
        "train.log_every=1",
        f"train.seed={FRESH_SEEDS}",
        f"tracking.uri={tracking_uri}",
        f"tracking.experiment={EXPERIMENT}",
        "tracking.histograms=false",
        "sweep",
    ]


def best_on_grid(val_loss: pd.DataFrame, every: int) -> pd.DataFrame:
    """Each run's best validation loss and its epoch, read only at the epochs a run with
    ``log_every=every`` logs (every ``every``-th and the last; ``training.reports``).
    ``val_loss``: columns ``run_id``, ``step`` (1-based epoch), ``value``."""
    last = val_loss.groupby("run_id")["step"].transform("max")
    read = val_loss[(val_loss["step"] % every == 0) | (val_loss["step"] == last)]
    best = read.loc[read.groupby("run_id")["value"].idxmin()]
    return best.set_index("run_id")[["value", "step"]].rename(
        columns={"value": "best", "step": "epoch"}
    )


def grid_table(runs: pd.DataFrame, val_loss: pd.DataFrame, every: int) -> pd.DataFrame:
    """Per method: the best validation loss on both grids (medians over the runs), the
    per-run shift (coarse − fine, never negative), the median best epoch on both, and the
    test accuracy at the every-epoch best (mean, t interval)."""
    fine, coarse = best_on_grid(val_loss, 1), best_on_grid(val_loss, every)
    rows = []
    for method, group in runs.groupby("method", sort=True):
        ids = group["run_id"]
        shift = coarse.loc[ids, "best"].to_numpy() - fine.loc[ids, "best"].to_numpy()
        accuracy = side_by_side.mean_estimate(
            pd.to_numeric(group[schema.TEST_ACCURACY_AT_BEST_VAL], errors="coerce")
        )
        rows.append(
            {
                "method": method,
                "n": len(group),
                "best val loss, every epoch": float(fine.loc[ids, "best"].median()),
                f"best val loss, every {every}th": float(coarse.loc[ids, "best"].median()),
                "median shift": float(np.median(shift)),
                "max shift": float(np.max(shift)),
                "best epoch, every epoch": float(fine.loc[ids, "epoch"].median()),
                f"best epoch, every {every}th": float(coarse.loc[ids, "epoch"].median()),
                "test accuracy at best val": accuracy.value,
                "accuracy ci_low": accuracy.low,
                "accuracy ci_high": accuracy.high,
            }
        )
    return pd.DataFrame(rows)


def every_epoch_tests(runs: pd.DataFrame) -> pd.DataFrame:
    """The study's generalisation tests (:func:`tables.mnist1d_tests`) on these runs."""
    framed = tables.with_test_error(runs.assign(model=MODEL, track="generalisation"))
    return tables.mnist1d_tests(framed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default=tables.DEFAULT_URI)
    parser.add_argument("--dry-run", action="store_true", help="print the sweeps only")
    parser.add_argument("--tables-only", action="store_true", help="read the store; train nothing")
    args = parser.parse_args(argv)
    chosen = winners(pd.read_csv(TUNED))
    if not args.tables_only:
        for method, overrides in chosen.items():
            command = sweep_command(method, overrides, args.tracking_uri)
            print(" ".join(command[1:]), flush=True)
            if not args.dry_run and subprocess.run(command, check=False).returncode != 0:
                print(f"every_epoch: the sweep of {method} failed; see above", file=sys.stderr)
                return 1
    if args.dry_run:
        return 0
    try:
        runs = load_experiment(args.tracking_uri, EXPERIMENT, "all").runs
    except (StoreNotFoundError, NoRunsError) as error:
        print(f"every_epoch: {error}", file=sys.stderr)
        return 1
    runs = runs[runs["method"].isin(chosen)]
    finished = runs[~runs["failed"]]  # the grids' table; the tests count a failed run as ∞
    val_loss = load_histories(args.tracking_uri, finished["run_id"].tolist(), [schema.VAL_LOSS])
    grid = grid_table(finished, val_loss, STUDY_LOG_EVERY)
    tables.write_table(
        grid,
        "mnist1d_every_epoch",
        "MNIST-1D MLP, generalisation winners on the fresh seeds: the best validation loss "
        f"read every epoch and every {STUDY_LOG_EVERY}th (the same runs)",
        list(grid.columns),
    )
    tests = every_epoch_tests(runs)
    tables.write_table(
        tests,
        "mnist1d_every_epoch_tests",
        "MNIST-1D MLP, generalisation winners read every epoch: Wilcoxon paired by seed, Holm",
        tables.TESTS,
    )
    print(grid.to_string(index=False))
    print(tables.test_counts(tests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
