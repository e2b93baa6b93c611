"""Benchmark (not a test): what MLflow's SQLite store costs per run and per metric value, alone.

The floor under any harness that records each training run as its own MLflow run (as
``train.vectorize=grid`` records each member): in a fresh store, ``--runs`` runs are

* created with 10 tags, then given 40 params and 30 final metrics in one ``log_batch``, then
  ended (``create + params + finals + end``: the least a run can be), and
* given 1,000 more metric values each in one ``log_batch`` (25 curves × 40 steps, about what a
  grid member logs at ``log_every=5``): the cost of one value.

Printed and written (``reports/bench_grid/mlflow_floor.csv``): milliseconds a run and
microseconds a value, and, as ratios in the same run, the share of the per-run time of the
5,120-run grid in ``reports/bench_grid/grid.csv`` (its wall / runs) that this floor alone
takes for a run with ``--values`` metric values.

Usage: ``python experiments/bench_mlflow_floor.py [--runs 200] [--values 460]``
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "reports" / "bench_grid"


def measure(runs: int, work: Path) -> dict[str, float]:
    """Milliseconds a run for create + params + finals + end, microseconds a metric value."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.create_experiment("floor")
    now = int(time.time() * 1000)
    started = time.perf_counter()
    ids = []
    for _ in range(runs):
        run_id = client.create_run(experiment, tags={f"tag{j}": "v" for j in range(10)}).info.run_id
        client.log_batch(run_id, metrics=[Metric(f"final{j}", 1.0, now, 0) for j in range(30)],
                         params=[Param(f"param{j}", str(j)) for j in range(40)])  # fmt: skip
        ids.append(run_id)
    created = time.perf_counter()
    for run_id in ids:
        curves = [Metric(f"curve{j}", float(s), now, s) for j in range(25) for s in range(40)]
        client.log_batch(run_id, metrics=curves)
    logged = time.perf_counter()
    for run_id in ids:
        client.set_terminated(run_id)
    ended = time.perf_counter()
    return {
        "runs": runs,
        "run_ms": 1000 * ((created - started) + (ended - logged)) / runs,
        "value_us": 1e6 * (logged - created) / (runs * 1000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--values", type=int, default=460, help="metric values a run writes")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_mlflow_floor_") as tmp:
        row = measure(args.runs, Path(tmp))
    row["floor_ms"] = row["run_ms"] + args.values * row["value_us"] / 1000
    grid_csv = args.out / "grid.csv"
    if grid_csv.exists():
        with grid_csv.open() as f:
            grids = [r for r in csv.DictReader(f) if r["way"] == "grid" and r["case"] == "rprop"]
        if grids:
            per_run_ms = 1000 * float(grids[0]["wall_s"]) / float(grids[0]["runs"])
            row["grid_run_ms"] = per_run_ms
            row["floor_share_of_grid_run"] = row["floor_ms"] / per_run_ms
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "mlflow_floor.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    print(f"a run (create, 10 tags, 40 params, 30 finals, end): {row['run_ms']:.1f} ms; "
          f"a metric value: {row['value_us']:.0f} us; a run with {args.values} values: "
          f"{row['floor_ms']:.0f} ms")  # fmt: skip
    if "grid_run_ms" in row:
        print(f"the 5,120-run grid took {row['grid_run_ms']:.0f} ms a run: this floor alone is "
              f"{row['floor_share_of_grid_run']:.0%} of it")  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
