"""Benchmark (not a test): do sweeps lose nothing when killed, resumed and run in parallel?

Two measurements, each into a fresh SQLite store:

* ``resume``: a sweep (``problem=line,iris`` × ``--seeds``, long enough runs) is started, and
  each time a run is in the middle of training the whole command is killed, cycling through
  SIGKILL (``kill -9``), SIGTERM and SIGINT (Ctrl-C), ``--kills`` times. The same command is
  then started again, which resumes; the last one runs to the end. Recovery is the time from
  starting the resumed command until the grid point that was killed mid-run is FINISHED.
* ``parallel``: one sweep of ``--parallel-runs`` short runs through ``hydra/launcher=joblib``
  with ``--workers`` processes writing to the one store at once.

Both check the store at the end: one FINISHED run per grid point (else a run is lost, or
duplicated), every FINISHED run with its full ``train_loss`` history (else metrics are lost),
and no run left RUNNING. "retries" counts the store calls retried because SQLite was busy.
Rows are appended to ``reports/reliability/resume.csv`` and ``reports/reliability/parallel.csv``.

Usage: ``python experiments/bench_reliability.py [--kills 6] [--workers 4] [--parallel-runs 40]``
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient

from rprop_bench import schema

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "reports" / "reliability"
QUIET = ["tracking.heatmap=false", "tracking.histograms=false"]
SIGNALS = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]
RETRY_MARK = "store busy or away, retrying"


def _command(overrides: list[str], uri: str) -> list[str]:
    return [sys.executable, "-m", "rprop_bench", "sweep", "optimizer=rprop", *overrides,
            *QUIET, f"tracking.uri={uri}"]  # fmt: skip


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def _runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("rprop-bench")
    if experiment is None:
        return []
    return client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{schema.TAG_RUN_KIND}` = '{schema.RUN_KIND_TRAINING}'",
        max_results=10000,
    )


def audit(uri: str, grid_points: int, history: list[int]) -> dict[str, int]:
    """Count what a finished sweep lost or duplicated in the store."""
    client = MlflowClient(uri)
    runs = _runs(uri)
    finished: dict[str, int] = {}
    short = 0
    for run in runs:
        if run.info.status != "FINISHED":
            continue
        key = run.data.tags[schema.TAG_RUN_KEY]
        finished[key] = finished.get(key, 0) + 1
        history_now = client.get_metric_history(run.info.run_id, schema.TRAIN_LOSS)
        steps = sorted(m.step for m in history_now)
        short += steps != history
    return {
        "grid_points": grid_points,
        "finished_points": len(finished),
        "runs_lost": grid_points - len(finished),
        "duplicates": sum(n - 1 for n in finished.values()),
        "runs_missing_metrics": short,
        "left_running": sum(r.info.status == "RUNNING" for r in runs),
        "killed_or_failed_runs": sum(r.info.status in ("KILLED", "FAILED") for r in runs),
    }


def _mid_run(uri: str) -> tuple[str, str] | None:
    """A RUNNING run that has written metrics: ``(run id, run key)``."""
    client = MlflowClient(uri)
    for run in _runs(uri):
        if run.info.status != "RUNNING":
            continue
        if client.get_metric_history(run.info.run_id, schema.TRAIN_LOSS):
            return run.info.run_id, run.data.tags[schema.TAG_RUN_KEY]
    return None


def _key_finished(uri: str, key: str) -> bool:
    return any(
        r.info.status == "FINISHED" and r.data.tags[schema.TAG_RUN_KEY] == key for r in _runs(uri)
    )


def _start(command: list[str], cwd: Path, log) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=cwd, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip


def measure_resume(work: Path, template: Path, kills: int, seeds: str) -> dict[str, object]:
    """Kill the sweep mid-run ``kills`` times, resume each time, then audit the store."""
    uri = _fresh_store(work / "resume", template)
    epochs, every = 1500, 10
    overrides = ["problem=line,iris", f"train.seed={seeds}", f"train.epochs={epochs}",
                 f"train.log_every={every}", "tracking.flush_seconds=0.5"]  # fmt: skip
    command = _command(overrides, uri)
    grid_points = 2 * len(seeds.split(","))
    recoveries: list[float] = []
    sent: list[str] = []
    victim_key: str | None = None
    log_path = work / "resume" / "sweep.log"
    started = time.perf_counter()
    with log_path.open("w") as log:
        for round_number in range(kills + 1):
            restart = time.perf_counter()
            process = _start(command, work / "resume", log)
            recovered = victim_key is None
            while process.poll() is None:
                if not recovered and _key_finished(uri, victim_key):
                    recoveries.append(time.perf_counter() - restart)
                    recovered = True
                found = _mid_run(uri) if recovered and round_number < kills else None
                if found is not None and found[1] != victim_key:
                    sig = SIGNALS[len(sent) % len(SIGNALS)]
                    os.killpg(process.pid, sig)
                    process.wait()
                    sent.append(sig.name)
                    victim_key = found[1]
                    break
                time.sleep(0.2)
            else:
                if not recovered and _key_finished(uri, victim_key):
                    recoveries.append(time.perf_counter() - restart)
    wall = time.perf_counter() - started
    return {
        "kills": len(sent),
        "signals": ",".join(sent),
        "final_exit": process.returncode,
        **audit(uri, grid_points, list(range(every, epochs + 1, every))),
        "retries": log_path.read_text().count(RETRY_MARK),
        "slowest_recovery_s": round(max(recoveries, default=0.0), 2),
        "mean_recovery_s": round(sum(recoveries) / max(len(recoveries), 1), 2),
        "wall_s": round(wall, 2),
        "command": "python " + " ".join(command[1:]),
    }


def measure_parallel(work: Path, template: Path, workers: int, runs: int) -> dict[str, object]:
    """One joblib sweep of ``runs`` short runs with ``workers`` processes; audit the store."""
    uri = _fresh_store(work / "parallel", template)
    lrs = ",".join(f"{0.01 * (i + 1):.2f}" for i in range(4))
    seeds = ",".join(str(s) for s in range(max(1, runs // 4)))
    epochs = 10
    overrides = ["problem=line", f"train.seed={seeds}", f"optimizer.lr={lrs}",
                 f"train.epochs={epochs}", "train.log_every=1", "hydra/launcher=joblib",
                 f"hydra.launcher.n_jobs={workers}"]  # fmt: skip
    command = _command(overrides, uri)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=work / "parallel", env=_env(), capture_output=True,
                          text=True)  # fmt: skip
    wall = time.perf_counter() - started
    return {
        "workers": workers,
        "exit": done.returncode,
        **audit(uri, 4 * len(seeds.split(",")), list(range(1, epochs + 1))),
        "retries": (done.stdout + done.stderr).count(RETRY_MARK),
        "database_locked_errors": done.stderr.count("database is locked"),
        "wall_s": round(wall, 2),
        "command": "python " + " ".join(command[1:]),
    }


def _fresh_store(directory: Path, template: Path) -> str:
    directory.mkdir(parents=True)
    shutil.copy(template, directory / "mlflow.db")
    return f"sqlite:///{directory / 'mlflow.db'}"


def _append(name: str, row: dict[str, object]) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / name
    new_file = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["when", *row])
        if new_file:
            writer.writeheader()
        writer.writerow({"when": time.strftime("%Y-%m-%dT%H:%M:%S"), **row})
    return path


def main() -> None:
    """Run both measurements, append them to the CSVs and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--seeds", default="0,1,2,3", help="seeds of the resume sweep")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--parallel-runs", type=int, default=40)
    parser.add_argument("--only", choices=["resume", "parallel"], default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_reliability_"))
    template = work / "template" / "mlflow.db"
    template.parent.mkdir()
    MlflowClient(f"sqlite:///{template}").search_experiments()
    try:
        if args.only in (None, "resume"):
            row = measure_resume(work, template, args.kills, args.seeds)
            print(f"resume: {row}\nappended to: {_append('resume.csv', row)}")
        if args.only in (None, "parallel"):
            row = measure_parallel(work, template, args.workers, args.parallel_runs)
            print(f"parallel: {row}\nappended to: {_append('parallel.csv', row)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
