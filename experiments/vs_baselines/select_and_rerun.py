"""Study ``vs_baselines``, between its two phases: pick each baseline's learning rate.

Reads the tuning sweep (MLflow experiment ``vs_baselines_tuning``, see
``conf/experiment/vs_baselines_tuning.yaml``) through :mod:`rprop_bench.results`, and for every
(problem, baseline) picks the ``optimizer.lr`` of the grid with the lowest median final
validation loss over the tuning seeds (a failed run counts as ∞). Every baseline had the same
grid, so the same budget. Writes the choice to ``<out>/tuned_learning_rates.csv`` and prints
(or, with ``--run``, runs) one sweep per (baseline, learning rate) over the problems where that
rate won, on the fresh seeds of ``conf/experiment/vs_baselines.yaml``, into the MLflow
experiment ``vs_baselines``.

    python experiments/vs_baselines/select_and_rerun.py [--tracking-uri URI] [--run] [OVERRIDES]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rprop_bench import results, schema


def select(runs: pd.DataFrame) -> pd.DataFrame:
    """The winning learning rate per (problem, optimizer).

    Args:
        runs: the tuning runs (``results.load_experiment(...).runs``), with ``param.optimizer.lr``
            and the final validation loss (column ``val_loss``, its last logged value).

    Returns:
        Columns problem, optimizer, lr, median_val_loss, n_runs, n_failed; one row per
        (problem, optimizer); ties go to the smaller learning rate.
    """
    f = runs[["problem", "optimizer", "failed"]].copy()
    f["lr"] = pd.to_numeric(runs["param.optimizer.lr"], errors="coerce")
    loss = pd.to_numeric(runs.get(schema.VAL_LOSS), errors="coerce")
    f["val_loss"] = np.where(runs["failed"] | loss.isna(), np.inf, loss)
    per_lr = (
        f.groupby(["problem", "optimizer", "lr"])
        .agg(
            median_val_loss=("val_loss", "median"),
            n_runs=("val_loss", "size"),
            n_failed=("failed", "sum"),
        )
        .reset_index()
        .sort_values(["problem", "optimizer", "median_val_loss", "lr"])
    )
    return per_lr.groupby(["problem", "optimizer"], as_index=False).first()


def commands(best: pd.DataFrame, tracking_uri: str, extra: Sequence[str] = ()) -> list[list[str]]:
    """One ``python -m rprop_bench`` sweep per (optimizer, lr) over the problems it won.

    ``extra`` overrides go to every sweep (e.g. ``hydra/launcher=joblib``).
    """
    out = []
    for (optimizer, lr), g in best.groupby(["optimizer", "lr"], sort=True):
        out.append(
            [
                sys.executable,
                "-m",
                "rprop_bench",
                "experiment=vs_baselines",
                "sweep",
                f"optimizer={optimizer}",
                f"optimizer.lr={lr:g}",
                f"problem={','.join(sorted(g['problem']))}",
                f"tracking.uri={tracking_uri}",
                *extra,
            ]
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
    )
    parser.add_argument("--experiment", default="vs_baselines_tuning")
    parser.add_argument("--out", type=Path, default=Path("reports/vs_baselines"))
    parser.add_argument("--run", action="store_true", help="run the sweeps, not just print them")
    parser.add_argument(
        "overrides", nargs="*", help="overrides for every sweep, e.g. hydra/launcher=joblib"
    )
    args = parser.parse_args()
    try:
        res = results.load_experiment(args.tracking_uri, args.experiment, sweep="all")
        results.require_metrics(res.runs, [schema.VAL_LOSS])
    except results.ResultsError as exc:
        print(f"select_and_rerun: error: {exc}", file=sys.stderr)
        return 2
    best = select(res.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    best.to_csv(args.out / "tuned_learning_rates.csv", index=False)
    print(best.to_string(index=False))
    incomplete = []
    for cmd in commands(best, args.tracking_uri, args.overrides):
        print(shlex.join(cmd))
        # A sweep exits non-zero when some of its runs diverged (they are recorded FAILED);
        # that is a result, so go on with the other baselines and say so at the end.
        if args.run and subprocess.run(cmd, check=False).returncode != 0:
            incomplete.append(shlex.join(cmd[3:]))
    for cmd in incomplete:
        print(f"select_and_rerun: some runs failed in: {cmd}", file=sys.stderr)
    return 1 if incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
