"""Benchmark (not a test): do sweeps lose nothing when killed, resumed and run in parallel?

Two measurements, each into a fresh SQLite store:

* ``resume``: a sweep (``problem=line,iris`` × ``--seeds``, long enough runs) is started, and
  each time a run is in the middle of training the whole command is killed, cycling through
  SIGKILL (``kill -9``), SIGTERM and SIGINT (Ctrl-C), ``--kills`` times. The same command is
  then started again, which resumes; the last one runs to the end. Recovery is the time from
  starting the resumed command until the grid point that was killed mid-run is FINISHED.
* ``parallel``: one sweep of ``--parallel-runs`` short runs through ``hydra/launcher=joblib``
  with ``--workers`` processes writing to the one store at once.

* ``concurrency`` (``--only concurrency``; ``--code DIR`` runs the code in ``DIR`` instead,
  e.g. a ``git archive`` of an older commit, for a before/after), three cases of ``--trials``
  trials each, the counts over all trials in ``reports/reliability/concurrency.csv``:

  - ``identical_fresh``: two identical sweeps started at the same moment on a store that does
    not exist yet (its first start shared);
  - ``overlapping``: ``problem=iris,line`` and ``problem=iris,wine`` on the same seeds (the
    shared points first in both), started together on one store (2 shared grid points per
    trial);
  - ``killed_first_start``: a single run on a new store, killed with SIGKILL at a random
    moment of its first start, then the same command again ("broken": it fails).

  For each: commands that crashed, grid points lost and duplicated, and the wall time of the
  slower sweep of a pair against one sweep alone (what a sweep that waits or skips loses).

The first two check the store at the end: one FINISHED run per grid point (else a run is lost, or
duplicated), every FINISHED run with its full ``train_loss`` history (else metrics are lost),
and no run left RUNNING. "retries" counts the store calls retried because SQLite was busy.
Rows are appended to ``reports/reliability/resume.csv`` and ``reports/reliability/parallel.csv``.

Usage: ``python experiments/bench_reliability.py [--kills 6] [--workers 4] [--parallel-runs 40]
[--only resume|parallel|concurrency] [--trials 4] [--code DIR]``
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


#: ``--code DIR``: the code that the benchmark's commands run (first on PYTHONPATH).
CODE: list[str] = []


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if CODE:
        env["PYTHONPATH"] = CODE[0]
    return env


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


SHARED_GRID = ["train.seed=0,1", "train.epochs=3", "train.log_every=1"]


def _finished_keys(uri: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in _runs(uri):
        if run.info.status == "FINISHED":
            key = run.data.tags[schema.TAG_RUN_KEY]
            counts[key] = counts.get(key, 0) + 1
    return counts


def _together(commands: list[list[str]], cwd: Path) -> tuple[list[int], float]:
    """Start ``commands`` at once; their exit codes and the slowest one's wall time."""
    started = time.perf_counter()
    with open(cwd / "log.txt", "a") as log:
        procs = [_start(command, cwd, log) for command in commands]
        codes = [proc.wait(timeout=600) for proc in procs]
    return codes, time.perf_counter() - started


def _pair_case(work: Path, template: Path | None, grids: list[list[str]], points: int,
               trials: int) -> dict[str, object]:  # fmt: skip
    """``trials`` times: the sweeps of ``grids`` started together on one store (a fresh file
    when ``template`` is None); count crashes, lost and duplicated points."""
    crashed = lost = duplicated = 0
    walls, alone = [], []
    for trial in range(trials):
        directory = work / f"trial{trial}"
        if template is None:
            directory.mkdir(parents=True)
            uri = f"sqlite:///{directory / 'mlflow.db'}"
        else:
            uri = _fresh_store(directory, template)
        codes, wall = _together([_command(g, uri) for g in grids], directory)
        crashed += sum(code != 0 for code in codes)
        finished = _finished_keys(uri) if (directory / "mlflow.db").exists() else {}
        lost += points - len(finished)
        duplicated += sum(n - 1 for n in finished.values())
        walls.append(wall)
        if template is not None:  # one sweep alone on a store of its own, for the time lost
            solo = _fresh_store(directory / "alone", template)
            alone.append(_together([_command(grids[0], solo)], directory)[1])
    row: dict[str, object] = {"trials": trials, "commands": trials * len(grids),
                              "crashed": crashed, "points": trials * points, "lost": lost,
                              "duplicated": duplicated,
                              "pair_wall_s": round(sorted(walls)[len(walls) // 2], 1)}  # fmt: skip
    if alone:
        row["alone_wall_s"] = round(sorted(alone)[len(alone) // 2], 1)
    return row


def _killed_first_start(work: Path, trials: int) -> dict[str, object]:
    """A single run on a new store, SIGKILLed at a random moment of its first start, then the
    same command again: how often the store is broken for good (the second command fails)."""
    import random

    rng = random.Random(21)
    broken = killed_mid_start = 0
    for trial in range(trials):
        directory = work / f"trial{trial}"
        directory.mkdir(parents=True)
        uri = f"sqlite:///{directory / 'mlflow.db'}"
        command = [sys.executable, "-m", "rprop_bench", "train.epochs=2", *QUIET,
                   f"tracking.uri={uri}"]  # fmt: skip
        with open(directory / "log.txt", "a") as log:
            proc = _start(command, directory, log)
            # the store appears a few seconds in (imports, the pre-flight), then is migrated
            deadline = time.monotonic() + 60
            while not (directory / "mlflow.db").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 1.5))
            killed_mid_start += proc.poll() is None
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            again = subprocess.run(command, cwd=directory, env=_env(), stdout=log,
                                   stderr=subprocess.STDOUT, timeout=300)  # fmt: skip
        broken += again.returncode != 0
    return {"trials": trials, "killed_while_running": killed_mid_start, "broken": broken}


def measure_concurrency(work: Path, template: Path, trials: int) -> list[dict[str, object]]:
    """The three concurrency cases of the module docstring, one row each."""
    code = CODE[0] if CODE else "this checkout"
    rows = []
    for case, row in (
        ("identical_fresh", _pair_case(work / "identical", None,
                                       [["problem=line,iris", *SHARED_GRID]] * 2, 4, trials)),
        ("overlapping", _pair_case(work / "overlap", template,
                                   [["problem=iris,line", *SHARED_GRID],
                                    ["problem=iris,wine", *SHARED_GRID]], 6, trials)),
        ("killed_first_start", _killed_first_start(work / "killed", 2 * trials)),
    ):  # fmt: skip
        columns = ("trials", "commands", "crashed", "points", "lost", "duplicated",
                   "killed_while_running", "broken", "pair_wall_s", "alone_wall_s")  # fmt: skip
        rows.append({"case": case, "code": code, **{c: row.get(c, "") for c in columns}})
        print(f"{case}: {row}", flush=True)
    return rows


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
    parser.add_argument("--only", choices=["resume", "parallel", "concurrency"], default=None)
    parser.add_argument("--trials", type=int, default=4, help="trials per concurrency case")
    parser.add_argument("--code", default=None, help="code directory the commands run")
    args = parser.parse_args()
    if args.code:
        CODE.append(str(Path(args.code).resolve()))

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
        if args.only in (None, "concurrency"):
            for row in measure_concurrency(work / "concurrency", template, args.trials):
                path = _append("concurrency.csv", row)
            print(f"appended to: {path}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
