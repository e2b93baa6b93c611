"""Benchmark (not a test): how much of a sweep's wall time goes to MLflow logging.

Runs the default sweep (``python -m rprop_bench optimizer=rprop sweep``) on a small grid,
twice, each into a fresh SQLite store:

* ``batched``: the harness as shipped (metrics buffered, ``MlflowClient.log_batch``);
* ``naive``: ``tracking.batch_logging=false``, one synchronous ``log_metric`` per value.

For each it reports the wall time of the whole command, the training time (the runs'
``train_seconds``), the MLflow time (the runs' ``logging_seconds``: every write to MLflow,
artifacts included) and its fraction of the wall time, then the naive/batched ratios. The
store's one-time creation (schema migrations, about 3 s) is done before timing and reported
apart. Each benchmark run appends its rows to ``reports/bench_logging/results.csv``.

Usage: ``python experiments/bench_logging.py [--seeds 0,1] [--problems iris,wine,...]``
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient

from rprop_bench import schema

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "reports" / "bench_logging"
DEFAULT_PROBLEMS = "line,iris,wine,breast_cancer,digits,diabetes,moons,circles,two_spirals,encoder"
MODES = {"batched": [], "naive": ["tracking.batch_logging=false"]}


def _fresh_store(directory: Path, template: Path) -> str:
    directory.mkdir(parents=True)
    shutil.copy(template, directory / "mlflow.db")
    return f"sqlite:///{directory / 'mlflow.db'}"


def _training_runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("rprop-bench")
    runs = client.search_runs([experiment.experiment_id], max_results=10000)
    return [r for r in runs if r.data.tags.get(schema.TAG_RUN_KIND) == schema.RUN_KIND_TRAINING]


def measure(mode: str, overrides: list[str], work: Path, template: Path) -> dict[str, float]:
    """Run the sweep once in ``mode``; return its timings."""
    uri = _fresh_store(work / mode, template)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    command = [sys.executable, "-m", "rprop_bench", "optimizer=rprop", "sweep", *overrides,
               *MODES[mode], f"tracking.uri={uri}"]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, cwd=work / mode, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{mode} sweep failed:\n{done.stderr[-2000:]}")
    runs = _training_runs(uri)
    train = sum(r.data.metrics.get(schema.TRAIN_SECONDS, 0.0) for r in runs)
    logging = sum(r.data.metrics.get(schema.LOGGING_SECONDS, 0.0) for r in runs)
    return {
        "mode": mode,
        "runs": len(runs),
        "wall_s": round(wall, 3),
        "train_s": round(train, 3),
        "mlflow_s": round(logging, 3),
        "mlflow_fraction": round(logging / wall, 4),
    }


def main() -> None:
    """Run both modes and write and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=DEFAULT_PROBLEMS)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--modes", default="batched,naive", help="which of: batched, naive")
    parser.add_argument("overrides", nargs="*", help="more overrides, e.g. train.log_every=5")
    args = parser.parse_args()
    overrides = [f"problem={args.problems}", f"train.seed={args.seeds}",
                 f"train.epochs={args.epochs}", *args.overrides]  # fmt: skip

    work = Path(tempfile.mkdtemp(prefix="bench_logging_"))
    template = work / "template" / "mlflow.db"
    template.parent.mkdir()
    started = time.perf_counter()
    MlflowClient(f"sqlite:///{template}").search_experiments()
    store_creation = time.perf_counter() - started

    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise SystemExit(f"unknown modes {unknown}; valid: {', '.join(MODES)}")
    rows = [measure(mode, overrides, work, template) for mode in modes]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    results = OUT_DIR / "results.csv"
    new_file = not results.exists()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with results.open("a", newline="") as f:  # one row per mode and benchmark run
        fields = ["when", *rows[0], "grid", "store_creation_s"]
        writer = csv.DictWriter(f, fieldnames=fields)
        if new_file:
            writer.writeheader()
        for row in rows:
            writer.writerow({"when": stamp, **row, "grid": " ".join(overrides),
                             "store_creation_s": round(store_creation, 3)})  # fmt: skip
    print(f"grid: optimizer=rprop {' '.join(overrides)}  ({rows[0]['runs']} runs)")
    print(f"one-time store creation: {store_creation:.2f} s (not in the figures below)")
    print(f"{'mode':<8} {'wall s':>8} {'train s':>8} {'mlflow s':>9} {'mlflow/wall':>12}")
    for row in rows:
        print(f"{row['mode']:<8} {row['wall_s']:>8.2f} {row['train_s']:>8.2f} "
              f"{row['mlflow_s']:>9.2f} {row['mlflow_fraction']:>11.1%}")  # fmt: skip
    by_mode = {row["mode"]: row for row in rows}
    if {"batched", "naive"} <= set(by_mode):
        batched, naive = by_mode["batched"], by_mode["naive"]
        print(
            f"naive / batched: MLflow time × {naive['mlflow_s'] / batched['mlflow_s']:.1f}, "
            f"wall time × {naive['wall_s'] / batched['wall_s']:.2f}"
        )
    print(f"appended to: {results}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
