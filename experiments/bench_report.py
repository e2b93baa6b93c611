"""Benchmark: how long a report over ~500 runs takes, and what bulk reading saves.

Writes synthetic runs (the harness's schema: a sweep parent, nested children, per-epoch
metrics, finals, histogram and ``line`` artifacts) into a temporary SQLite store, then times:

- reading the runs (``search_runs``, paged);
- reading the per-epoch metric histories in bulk (one query per metric for many runs) and,
  as the baseline, naively (one ``get_metric_history`` request per run per metric);
- the whole report (read + analyse + draw PDF/PNG + write HTML/Markdown/tables).

Run: ``python experiments/bench_report.py [--runs 500] [--epochs 50]``. Prints a summary and
writes ``reports/bench_report/bench_report.csv`` (one row per invocation, appended).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from rprop_bench import report, results, schema

PROBLEMS = [
    "line",
    "iris",
    "wine",
    "breast_cancer",
    "digits",
    "diabetes",
    "moons",
    "circles",
    "two_spirals",
    "encoder",
]
METHODS = [
    ("irprop_plus", "irprop+"),
    ("irprop_minus", "irprop-"),
    ("rprop_plus", "rprop+"),
    ("adam", "adam"),
    ("sgd", "sgd"),
]
REGRESSION = {"line", "diabetes"}


def write_runs(uri: str, root: Path, n_runs: int, epochs: int, seed: int = 0) -> int:
    """Write ``n_runs`` synthetic runs; return the number of metric values written."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    rng = np.random.default_rng(seed)
    client = MlflowClient(uri)
    exp = client.create_experiment("bench", artifact_location=(root / "artifacts").as_uri())
    parent = client.create_run(
        exp,
        run_name="sweep",
        tags={schema.TAG_RUN_KIND: schema.RUN_KIND_SWEEP, schema.TAG_SWEEP_ID: "bench"},
    )
    pid = parent.info.run_id
    seeds = max(1, n_runs // (len(PROBLEMS) * len(METHODS)))
    art = root / "tmp"
    (art / "step_sizes").mkdir(parents=True)
    (art / "problem").mkdir(parents=True)
    hist_csv, line_csv = art / "step_sizes" / "histograms.csv", art / "problem" / "line_data.csv"
    x = rng.normal(size=100)
    pd.DataFrame({"x": x, "y": 2 * x + 3 + 0.1 * rng.normal(size=100)}).to_csv(
        line_csv, index=False
    )
    edges = np.logspace(-10, 2, 49)
    now = int(time.time() * 1000)
    n_values, count = 0, 0
    for problem in PROBLEMS:
        for optimizer, variant in METHODS:
            for s in range(seeds):
                if count >= n_runs:
                    break
                count += 1
                fail = rng.random() < 0.02
                task = (
                    schema.TASK_REGRESSION if problem in REGRESSION else schema.TASK_CLASSIFICATION
                )
                tags = {
                    schema.TAG_RUN_KIND: schema.RUN_KIND_TRAINING,
                    schema.TAG_OPTIMIZER: optimizer,
                    schema.TAG_VARIANT: variant,
                    schema.TAG_PROBLEM: problem,
                    schema.TAG_TASK: task,
                    schema.TAG_SEED: str(s),
                    schema.TAG_SWEEP_ID: "bench",
                    schema.TAG_PARENT_RUN_ID: pid,
                }
                if fail:
                    tags[schema.TAG_FAILURE_REASON] = "loss became nan"
                run = client.create_run(exp, run_name=f"{variant} s{s} · {problem}", tags=tags)
                rid = run.info.run_id
                rate = rng.uniform(0.02, 0.1)
                e = np.arange(1, epochs + 1)
                loss = np.exp(-rate * e) + 0.01 * rng.random(epochs)
                ms = []
                for i, ep in enumerate(e):
                    ep = int(ep)
                    ms += [
                        Metric(schema.TRAIN_LOSS, float(loss[i]), now, ep),
                        Metric(schema.VAL_LOSS, float(loss[i] * 1.1), now, ep),
                        Metric(schema.WALL_TIME, 0.002 * ep, now, ep),
                        Metric(schema.GRAD_NORM, float(loss[i]), now, ep),
                        Metric(schema.SIGN_FLIP_FRACTION, 0.1, now, ep),
                    ]
                    ms += [
                        Metric(k, 1e-3 * (1 + q) * 1.01**ep, now, ep)
                        for k, q in schema.STEP_QUANTILES.items()
                    ]
                if not fail:
                    reached = loss.min() < 0.1
                    ms += [
                        Metric(schema.TEST_LOSS, float(loss[-1] * 1.2), now, 0),
                        Metric(schema.FINAL_TRAIN_LOSS, float(loss[-1]), now, 0),
                        Metric(schema.REACHED_TARGET, float(reached), now, 0),
                        Metric(
                            schema.TEST_R2
                            if task == schema.TASK_REGRESSION
                            else schema.TEST_ACCURACY,
                            float(1 - loss[-1]),
                            now,
                            0,
                        ),
                    ]
                    if reached:
                        hit = int(np.argmax(loss < 0.1)) + 1
                        ms += [
                            Metric(schema.EPOCHS_TO_TARGET, hit, now, 0),
                            Metric(schema.SECONDS_TO_TARGET, 0.002 * hit, now, 0),
                        ]
                    if problem == "line":
                        ms += [
                            Metric(schema.LINE_WEIGHT, 2 + 0.01 * rng.normal(), now, 0),
                            Metric(schema.LINE_BIAS, 3 + 0.01 * rng.normal(), now, 0),
                        ]
                for i in range(0, len(ms), 1000):
                    client.log_batch(rid, metrics=ms[i : i + 1000])
                n_values += len(ms)
                rows = [
                    (ep, schema.HISTOGRAM_ALL_LAYERS, edges[b], edges[b + 1], 10)
                    for ep in range(1, epochs + 1, max(1, epochs // 20))
                    for b in (20, 21, 22)
                ]
                pd.DataFrame(rows, columns=list(schema.HISTOGRAM_COLUMNS)).to_csv(
                    hist_csv, index=False
                )
                client.log_artifact(rid, str(hist_csv), "step_sizes")
                if problem == "line":
                    client.log_artifact(rid, str(line_csv), "problem")
                client.set_terminated(rid, status="FAILED" if fail else "FINISHED")
    client.set_terminated(pid)
    return n_values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("reports/bench_report"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        t0 = time.perf_counter()
        n_values = write_runs(uri, root, args.runs, args.epochs)
        write_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        res = results.load_experiment(uri, "bench")
        runs_s = time.perf_counter() - t0
        ids = res.runs["run_id"].tolist()
        metrics = results.HISTORY_METRICS
        t0 = time.perf_counter()
        bulk = results.load_histories(uri, ids, metrics, progress=False)
        bulk_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        naive = results.load_histories(uri, ids, metrics, bulk=False, progress=False)
        naive_s = time.perf_counter() - t0
        assert bulk.equals(naive), "bulk and naive reads disagree"

        t0 = time.perf_counter()
        rep = report.build_report(
            uri,
            "bench",
            report.ReportOptions(out=root / "report", formats=("pdf", "png"), progress=False),
        )
        report_s = time.perf_counter() - t0

    row = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu",
        "runs": len(ids),
        "failed_runs": rep.n_failed,
        "epochs": args.epochs,
        "history_metrics": len(metrics),
        "history_rows": len(bulk),
        "metric_values_written": n_values,
        "write_s": round(write_s, 2),
        "read_runs_s": round(runs_s, 2),
        "read_histories_bulk_s": round(bulk_s, 2),
        "read_histories_naive_s": round(naive_s, 2),
        "naive_over_bulk": round(naive_s / bulk_s, 1),
        "report_total_s": round(report_s, 2),
        "figures": len(rep.figures),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "bench_report.csv"
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
    print(
        f"{row['runs']} runs ({row['failed_runs']} failed), {args.epochs} epochs, "
        f"{row['history_rows']} history values of {len(metrics)} metrics"
    )
    print(f"read runs (search_runs):          {runs_s:7.2f} s")
    print(f"read histories, bulk:             {bulk_s:7.2f} s")
    print(f"read histories, naive per run:    {naive_s:7.2f} s  ({naive_s / bulk_s:.1f}x bulk)")
    print(f"whole report (read+draw+write):   {report_s:7.2f} s  ({len(rep.figures)} figure files)")
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
