"""Benchmark (not a test): runs/s of whole sweeps through the CLI, the share MLflow takes, and
how the joblib launcher scales.

Runs real ``python -m rprop_bench ... sweep`` commands, each into a fresh SQLite store (copied
from one migrated template, so the store's one-time creation is not timed) in a fresh working
directory, one after another. The cases are interleaved and the whole list is repeated
(``--repeat``), so that on a busy machine every case sees the same mix of load; the summary
gives medians over the repeats.

Sweeps (``--sweeps``):

* ``default``: ``optimizer=rprop sweep`` (10 problems × 3 seeds = 30 runs);
* ``seeds6``: ``optimizer=rprop sweep train.seed=0,...,5`` (60 runs);
* ``iris10``: ``optimizer=rprop problem=iris train.seed=0,...,9 sweep`` (10 runs, one group).

Launchers: ``basic`` (Hydra's, in process), ``joblib1`` and ``joblib2``
(``hydra/launcher=joblib hydra.launcher.n_jobs=1|2``; with one job joblib runs in process).
The first sweep listed runs with all three, the others with ``joblib1`` and ``joblib2`` only.
``--baseline DIR`` adds, for the first sweep, the basic and 2-worker launchers run with the
code in ``DIR`` (e.g. ``git archive`` of the previous commit) first on ``PYTHONPATH``: a
before/after within one run. ``--vectorize`` adds ``train.vectorize_seeds=true`` with the basic
launcher.

``--plumbing`` asks, one piece at a time, what the sweep plumbing on Hydra's and loky's
private APIs buys, for the first sweep with the basic and 2-worker launchers (1 worker runs
with everything on, for the 2-worker ratio; written to
``reports/bench/plumbing*.csv`` and ``plumbing.png`` instead):

* ``no-cache``: ``hydra.sweeper.compose_once=false``, every job composes its config from the
  files (the preflighted sweeper still skips Hydra's second check);
* ``no-forksrv``: ``RPROP_BENCH_FORK_SERVER=0``, loky's workers start as fresh interpreters
  (2 workers only);
* ``none``: all of it off: Hydra's basic sweeper, no fork server.

Each is compared with ``after`` (everything on) in the column ``runs_per_s_vs_all``.

For each command it records (``reports/bench/sweep.csv``, one row per command):

* ``wall_s`` and ``runs_per_s`` (runs / wall time, start-up included);
* ``span_s`` and ``steady_runs_per_s``: first run's start to last run's end, from the store's
  run start and end times (the steady state: worker start-up and the sweep's end left out);
* ``startup_s``: command start to the first run's start (imports, pre-flight, workers);
* ``cpu_s``: user + system CPU time of the command and its worker processes (joblib's fork
  server included: this process adopts it when the command ends, as its reaper). It does not
  depend on how busy the machine is, so ``cpu_s`` per run tells whether a second worker adds
  work (imports, re-composition) or only runs in parallel;
* ``mlflow_fraction``: the runs' summed ``logging_seconds`` / wall time (with 2 workers it can
  exceed 1/2: runs overlap); ``train_fraction`` likewise for ``train_seconds``;
* ``load1``: the machine's 1-minute load average when the command started.

The summary (printed, and ``reports/bench/sweep_summary.csv``) has the medians per case and
the ratios: 2 workers / 1 worker (steady and wall runs/s) and after / before. The figure
(``reports/bench/sweep.png``) shows steady runs/s per case.

Usage: ``python experiments/bench_sweep.py [--sweeps default,seeds6] [--repeat 3]
[--baseline DIR] [--vectorize] [--plumbing]``
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient

from rprop_bench import schema

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "reports" / "bench"
SWEEPS = {
    "default": ["optimizer=rprop"],
    "seeds6": ["optimizer=rprop", "train.seed=" + ",".join(map(str, range(6)))],
    "iris10": ["optimizer=rprop", "problem=iris", "train.seed=" + ",".join(map(str, range(10)))],
}
LAUNCHERS = {
    "basic": [],
    "joblib1": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=1"],
    "joblib2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
}
NO_FORK_SERVER = {"RPROP_BENCH_FORK_SERVER": "0"}  # rprop_bench.cli.workers.FORK_SERVER_ENV
#: --plumbing: code label -> (extra overrides, extra environment, launchers it applies to)
PLUMBING_OFF = {
    "no-cache": (["hydra.sweeper.compose_once=false"], {}, ("basic", "joblib2")),
    "no-forksrv": ([], NO_FORK_SERVER, ("joblib2",)),
    "none": (["hydra/sweeper=basic"], NO_FORK_SERVER, ("basic", "joblib2")),
}


def _template(work: Path) -> Path:
    """An empty, migrated MLflow SQLite store to copy for every measurement."""
    path = work / "template" / "mlflow.db"
    path.parent.mkdir(parents=True)
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


#: Whether this process adopts its orphaned descendants (:func:`_adopt_descendants`).
_adopting = False


def _adopt_descendants() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux ``PR_SET_CHILD_SUBREAPER``).

    Joblib's fork server outlives the sweep command by a moment and is then nobody's child,
    so its CPU time, and that of the workers it forked, would not count in ours. Adopted, it
    is waited for here (:func:`_reap_adopted`), and counts.
    """
    global _adopting
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        _adopting = libc.prctl(36, 1, 0, 0, 0) == 0  # 36: PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        _adopting = False
    return _adopting


def _reap_adopted(timeout: float = 30.0) -> None:
    """Wait for the adopted descendants of a finished command (its fork server) to end.

    Only where this process adopts them, and so has no other children (not in
    ``bench_server.py``, whose servers are children too).
    """
    if not _adopting:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # none left
        if pid == 0:
            time.sleep(0.05)


def time_sweep(
    args: list[str],
    uri: str,
    work: Path,
    code: str | None = None,
    experiment: str = "rprop-bench",
    extra_env: dict[str, str] | None = None,
    timeout: float = 900,
) -> tuple[dict[str, float], list]:
    """Run ``python -m rprop_bench sweep *args tracking.uri=uri`` in ``work``.

    Returns its times and the runs' sums (the columns described above, plus ``run_s``: the
    runs' summed own durations), and its FINISHED training runs, read from ``experiment``.
    ``code`` goes first on ``PYTHONPATH`` (the "before" of a before/after). Also used by
    ``bench_server.py`` for its sweeps into a tracking server. ``extra_env`` is added to the
    command's environment; it may take ``timeout`` seconds.
    """
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(extra_env or {})
    if code:
        env["PYTHONPATH"] = code
    command = [sys.executable, "-m", "rprop_bench", "sweep", *args, f"tracking.uri={uri}"]
    load1 = os.getloadavg()[0]
    cpu_before = _children_cpu()
    started_at = time.time()
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=work, env=env, capture_output=True, text=True, timeout=timeout
    )
    wall = time.perf_counter() - started
    _reap_adopted()
    cpu = _children_cpu() - cpu_before  # the command, its workers and their fork server
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{schema.TAG_RUN_KIND}` = '{schema.RUN_KIND_TRAINING}'",
        max_results=10000,
    )
    finished = [r for r in runs if r.info.status == "FINISHED"]
    first = min(r.info.start_time for r in finished) / 1000
    last = max(r.info.end_time for r in finished) / 1000
    return {
        "runs": len(finished),
        "wall_s": wall,
        "span_s": last - first,
        "startup_s": first - started_at,
        "cpu_s": cpu,
        "run_s": sum((r.info.end_time - r.info.start_time) / 1000 for r in finished),
        "logging_s": sum(r.data.metrics.get(schema.LOGGING_SECONDS, 0.0) for r in finished),
        "train_s": sum(r.data.metrics.get(schema.TRAIN_SECONDS, 0.0) for r in finished),
        "load1": load1,
    }, finished


def measure(
    args: list[str], work: Path, template: Path, code: str | None, env: dict[str, str]
) -> dict[str, float]:
    """Run one sweep command into a fresh store (a copy of ``template``): :func:`time_sweep`."""
    work.mkdir(parents=True)
    shutil.copy(template, work / "mlflow.db")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    return time_sweep(args, uri, work, code, extra_env=env)[0]


def _derived(row: dict) -> None:
    row["runs_per_s"] = row["runs"] / row["wall_s"]
    row["steady_runs_per_s"] = row["runs"] / row["span_s"]
    row["cpu_s_per_run"] = row["cpu_s"] / row["runs"]
    row["mlflow_fraction"] = row["logging_s"] / row["wall_s"]
    row["train_fraction"] = row["train_s"] / row["wall_s"]


MEDIANS = ("wall_s", "runs_per_s", "steady_runs_per_s", "startup_s", "cpu_s_per_run",
           "mlflow_fraction", "train_fraction", "load1")  # fmt: skip


def summarise(rows: list[dict]) -> list[dict]:
    """Medians over the repeats of each (sweep, launcher, code), and the ratios between cases."""
    keys = list(dict.fromkeys((r["sweep"], r["launcher"], r["code"]) for r in rows))
    summary = []
    for sweep, launcher, code in keys:
        mine = [
            r for r in rows if (r["sweep"], r["launcher"], r["code"]) == (sweep, launcher, code)
        ]
        entry = {"sweep": sweep, "launcher": launcher, "code": code, "repeats": len(mine),
                 "runs": mine[0]["runs"]}  # fmt: skip
        entry.update({k: statistics.median(r[k] for r in mine) for k in MEDIANS})
        summary.append(entry)

    def find(*key: str) -> dict | None:
        return next((s for s in summary if (s["sweep"], s["launcher"], s["code"]) == key), None)

    for entry in summary:
        one = find(entry["sweep"], "joblib1", entry["code"])
        if entry["launcher"] == "joblib2" and one:
            entry["steady_vs_1_worker"] = entry["steady_runs_per_s"] / one["steady_runs_per_s"]
            entry["wall_vs_1_worker"] = entry["runs_per_s"] / one["runs_per_s"]
            entry["cpu_per_run_vs_1_worker"] = entry["cpu_s_per_run"] / one["cpu_s_per_run"]
        before = find(entry["sweep"], entry["launcher"], "before")
        if entry["code"] == "after" and before:
            entry["runs_per_s_vs_before"] = entry["runs_per_s"] / before["runs_per_s"]
        everything = find(entry["sweep"], entry["launcher"], "after")
        if entry["code"] in PLUMBING_OFF and everything:
            entry["runs_per_s_vs_all"] = entry["runs_per_s"] / everything["runs_per_s"]
            entry["cpu_per_run_vs_all"] = entry["cpu_s_per_run"] / everything["cpu_s_per_run"]
    return summary


def _figure(summary: list[dict], rows: list[dict], figure: Path) -> None:
    """Median steady and wall runs/s per case as bars; every repeat as a dot (the spread)."""
    from matplotlib.figure import Figure

    labels = [f"{s['sweep']}\n{s['launcher']}\n{s['code']}" for s in summary]
    fig = Figure(figsize=(max(6.0, 0.9 * len(summary)), 3.8), layout="constrained")
    ax = fig.add_subplot()
    x = range(len(summary))
    ax.bar([i - 0.2 for i in x], [s["steady_runs_per_s"] for s in summary], 0.4,
           label="steady state (first run start → last run end)")  # fmt: skip
    ax.bar([i + 0.2 for i in x], [s["runs_per_s"] for s in summary], 0.4,
           label="wall (start-up included)")  # fmt: skip
    for i, entry in enumerate(summary):
        case = (entry["sweep"], entry["launcher"], entry["code"])
        mine = [r for r in rows if (r["sweep"], r["launcher"], r["code"]) == case]
        ax.plot([i - 0.2] * len(mine), [r["steady_runs_per_s"] for r in mine], "k.", ms=4)
        ax.plot([i + 0.2] * len(mine), [r["runs_per_s"] for r in mine], "k.", ms=4)
    ax.set_xticks(list(x), labels, fontsize=7)
    ax.set_ylabel("runs / s (bars: median; dots: repeats)")
    ax.set_title("rprop-bench sweeps: throughput per launcher (2 shared cores)", fontsize=9)
    ax.legend(fontsize=7)
    fig.savefig(figure, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", default="default,seeds6")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="code directory of the 'before'")
    parser.add_argument("--vectorize", action="store_true", help="add vectorize_seeds=true")
    parser.add_argument("--plumbing", action="store_true", help="each piece of plumbing off")
    options = parser.parse_args()
    stem = "plumbing" if options.plumbing else "sweep"
    out, figure = BENCH / f"{stem}.csv", BENCH / f"{stem}.png"
    summary_csv = BENCH / f"{stem}_summary.csv"
    # (sweep, launcher, code label, extra overrides, code directory, extra environment)
    cases: list[tuple[str, str, str, list[str], str | None, dict[str, str]]] = []
    for i, sweep in enumerate(options.sweeps.split(",")):
        # the first sweep gets every case; the others only what the joblib ratio needs
        launchers = list(LAUNCHERS) if i == 0 else ["joblib1", "joblib2"]
        if options.plumbing:  # joblib1 for the 2-worker ratio
            launchers = ["basic", "joblib1", "joblib2"] if i == 0 else []
        if options.baseline and i == 0:
            for launcher in ("basic", "joblib2"):
                cases.append((sweep, launcher, "before", LAUNCHERS[launcher], options.baseline, {}))
        for launcher in launchers:
            cases.append((sweep, launcher, "after", LAUNCHERS[launcher], None, {}))
            for label, (args, env, applies) in PLUMBING_OFF.items():
                if options.plumbing and launcher in applies:
                    cases.append((sweep, launcher, label, [*LAUNCHERS[launcher], *args], None, env))
        if options.vectorize:
            cases.append((sweep, "basic", "vectorized", ["train.vectorize_seeds=true"], None, {}))
    if not _adopt_descendants():
        print("warning: cpu_s leaves out joblib's fork server and its workers (no subreaper)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        template = _template(Path(tmp))
        for repeat in range(options.repeat):
            for sweep, launcher, code, args, path, env in cases:
                work = Path(tmp) / str(len(rows))
                result = measure([*SWEEPS[sweep], *args], work, template, path, env)
                row = {"repeat": repeat, "sweep": sweep, "launcher": launcher, "code": code,
                       **result}  # fmt: skip
                _derived(row)
                rows.append(row)
                shutil.rmtree(work, ignore_errors=True)
                print(f"[{repeat}] {sweep:7s} {launcher:7s} {code:10s} {row['runs']:3d} runs "
                      f"{row['wall_s']:6.1f} s {row['runs_per_s']:5.2f} runs/s "
                      f"steady {row['steady_runs_per_s']:5.2f} runs/s "
                      f"start-up {row['startup_s']:5.1f} s CPU {row['cpu_s_per_run']:5.2f} s/run "
                      f"MLflow {row['mlflow_fraction']:5.1%} train {row['train_fraction']:5.1%} "
                      f"load {row['load1']:4.1f}", flush=True)  # fmt: skip
    BENCH.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = summarise(rows)
    fields = list(dict.fromkeys(k for s in summary for k in s))
    with summary_csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(summary)
    print("\nmedians over repeats:")
    for s in summary:
        ratios = " ".join(
            f"{k} {s[k]:.2f}" for k in s if k.endswith(("_worker", "_before", "_all"))
        )
        print(f"{s['sweep']:7s} {s['launcher']:7s} {s['code']:10s} {s['runs_per_s']:5.2f} runs/s "
              f"steady {s['steady_runs_per_s']:5.2f} CPU {s['cpu_s_per_run']:5.2f} s/run "
              f"MLflow {s['mlflow_fraction']:5.1%} {ratios}")  # fmt: skip
    _figure(summary, rows, figure)
    print(f"wrote {out}, {summary_csv}, {figure}")


if __name__ == "__main__":
    main()
