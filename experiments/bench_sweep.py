"""Benchmark (not a test): runs/s of whole sweeps through the CLI, and the share MLflow takes.

Runs real ``python -m rprop_bench ... sweep`` commands, each into a fresh SQLite store (copied
from one migrated template, so the store's one-time creation is not timed), in one process of
this script and one after another, so that ratios compare like with like on a busy machine:

* ``default``: ``optimizer=rprop sweep`` (10 problems × 3 seeds = 30 runs);
* ``iris10``: ``optimizer=rprop problem=iris train.seed=0,...,9 sweep`` (10 runs, one group);

each with the basic launcher (1 worker) and with ``hydra/launcher=joblib
hydra.launcher.n_jobs=2``, and with ``train.vectorize_seeds`` false and true. ``--baseline
DIR`` adds the same commands (vectorisation off) run with the code in ``DIR`` (e.g. a copy of
the previous commit) first on ``PYTHONPATH``: a before/after within one run.

For each command it prints and writes (``reports/bench/sweep.csv``) the wall time, runs/s, the
MLflow fraction (sum of the runs' ``logging_seconds`` / wall time), the training fraction
(sum of ``train_seconds`` / wall time), and the ratios to the basic launcher without
vectorisation. With 2 workers the fractions can exceed 1/2 each: runs overlap.

Usage: ``python experiments/bench_sweep.py [--sweeps default,iris10] [--baseline DIR]``
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
OUT = ROOT / "reports" / "bench" / "sweep.csv"
SWEEPS = {
    "default": ["optimizer=rprop"],
    "iris10": ["optimizer=rprop", "problem=iris", "train.seed=" + ",".join(map(str, range(10)))],
}
LAUNCHERS = {"1 worker": [], "2 workers": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]}


def _template(work: Path) -> Path:
    """An empty, migrated MLflow SQLite store to copy for every measurement."""
    path = work / "template" / "mlflow.db"
    path.parent.mkdir(parents=True)
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def measure(args: list[str], work: Path, template: Path, code: str | None) -> dict[str, float]:
    """Run one sweep command into a fresh store; its wall time and the runs' sums."""
    work.mkdir(parents=True)
    shutil.copy(template, work / "mlflow.db")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if code:
        env["PYTHONPATH"] = code
    command = [sys.executable, "-m", "rprop_bench", "sweep", *args, f"tracking.uri={uri}"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("rprop-bench")
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{schema.TAG_RUN_KIND}` = '{schema.RUN_KIND_TRAINING}'",
        max_results=10000,
    )
    finished = [r for r in runs if r.info.status == "FINISHED"]
    logging = sum(r.data.metrics.get(schema.LOGGING_SECONDS, 0.0) for r in finished)
    training = sum(r.data.metrics.get(schema.TRAIN_SECONDS, 0.0) for r in finished)
    return {"runs": len(finished), "wall_s": wall, "logging_s": logging, "train_s": training}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", default="default,iris10")
    parser.add_argument("--baseline", default=None, help="code directory of the 'before'")
    options = parser.parse_args()
    cases = []
    for sweep in options.sweeps.split(","):
        for launcher, launcher_args in LAUNCHERS.items():
            if options.baseline:
                cases.append((sweep, launcher, "before", [], options.baseline))
            for vectorize in ("false", "true"):
                args = [*launcher_args, f"train.vectorize_seeds={vectorize}"]
                cases.append((sweep, launcher, f"vectorize={vectorize}", args, None))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        template = _template(Path(tmp))
        for i, (sweep, launcher, code, args, path) in enumerate(cases):
            result = measure([*SWEEPS[sweep], *args], Path(tmp) / str(i), template, path)
            rows.append({"sweep": sweep, "launcher": launcher, "code": code, **result})
            base = next(r for r in rows if r["sweep"] == sweep)  # its first case
            row = rows[-1]
            row["runs_per_s"] = row["runs"] / row["wall_s"]
            row["mlflow_fraction"] = row["logging_s"] / row["wall_s"]
            row["train_fraction"] = row["train_s"] / row["wall_s"]
            row["speedup_vs_first"] = base["wall_s"] / row["wall_s"]
            print(f"{sweep:8s} {launcher:9s} {code:16s} {row['runs']:3d} runs "
                  f"{row['wall_s']:6.1f} s {row['runs_per_s']:5.2f} runs/s "
                  f"MLflow {row['mlflow_fraction']:5.1%} train {row['train_fraction']:5.1%} "
                  f"{row['speedup_vs_first']:4.2f}× vs first", flush=True)  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
