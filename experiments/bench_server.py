"""Benchmark (not a test): what a shared tracking server can take, for docs/capacity.md.

Starts its own servers on loopback (``tests/servers.py``): an ``mlflow server`` in front of a
throw-away PostgreSQL cluster, and one in front of an SQLite file, both with proxied artifacts
and ``--workers`` uvicorn workers; the baseline is the embedded SQLite store (no server),
measured in the same run. For each store it measures, with 1, 2 and 4 concurrent writer
processes:

* ``metrics/s``: ``MlflowClient.log_batch`` calls of 1000 metrics plus the heartbeat tag, the
  shape :class:`rprop_bench.tracking.RunRecorder` sends (``tracking.max_batch`` = 1000);
* ``runs/s``: whole runs replayed as the tracker writes them (create the run with its tags,
  params in batches of 100, its metric history in batches of 1000, its artifacts, end it),
  copied from a real run of the default problems (the median run by metric count).

and how much CPU the server's processes and the database's processes used for that work
(``/proc``; CPU seconds per run and per 1000 metrics are what carry over to other machines;
on 2 cores the writers, the server and the database share the CPU, so absolute rates here are
a floor). First it times a real ``sweep`` with 1 worker over the default problems at the
default epochs, into the embedded store and into the PostgreSQL-backed server: runs/s per core
from the runs' own start/end times in the store and from the command's wall time.

Writes ``reports/bench_server/{throughput,sweep}.csv`` and ``throughput.png``; prints ratios
against the embedded store. About 3 minutes on 2 cores.

Usage: ``python experiments/bench_server.py [--seconds 3] [--writers 1,2,4] [--workers 2]
[--out DIR]``
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the loopback servers of the tests

from bench_sweep import time_sweep  # noqa: E402  (this script's directory)
from harness_helpers import new_store  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from servers import postgres_unavailable, start_tracking_server  # noqa: E402

from rprop_bench import schema  # noqa: E402
from rprop_bench.cli.compose import CONF_DIR  # noqa: E402
from rprop_bench.retry import call_with_retry  # noqa: E402
from rprop_bench.tracking import MAX_PARAMS_PER_BATCH  # noqa: E402

OUT_DIR = ROOT / "reports" / "bench_server"
BATCH = 1000  # tracking.max_batch: metrics per log_batch call
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- what a run sends -----------------------------------------------------------------------


@dataclass
class RunShape:
    """One real run's tracking traffic, to replay: its tags, params, metrics, artifacts."""

    tags: dict[str, str]
    params: dict[str, str]
    metrics: list[tuple[str, float, int]]  # (key, value, step)
    artifacts: list[tuple[Path, str | None]]  # (local file, artifact dir)


def run_shape(uri: str, run, where: Path) -> RunShape:
    """Read ``run`` (and its artifacts, into ``where``) back from the store at ``uri``."""
    client = MlflowClient(uri)
    metrics = [
        (key, m.value, m.step)
        for key in run.data.metrics
        for m in client.get_metric_history(run.info.run_id, key)
    ]
    artifacts: list[tuple[Path, str | None]] = []

    def walk(path: str | None) -> None:
        for item in client.list_artifacts(run.info.run_id, path):
            if item.is_dir:
                walk(item.path)
            else:
                local = Path(client.download_artifacts(run.info.run_id, item.path, str(where)))
                artifacts.append((local, str(Path(item.path).parent) if "/" in item.path else None))

    walk(None)
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    return RunShape(tags, dict(run.data.params), metrics, artifacts)


# --- the writers ----------------------------------------------------------------------------


def _metrics_writer(uri: str, experiment_id: str, seconds: float, start, queue) -> None:
    """Log batches of ``BATCH`` metrics into one run until ``seconds`` have passed."""
    client = MlflowClient(uri)
    run_id = call_with_retry(lambda: client.create_run(experiment_id), 60, "create_run").info.run_id
    keys = [
        schema.TRAIN_LOSS,
        schema.VAL_LOSS,
        schema.GRAD_NORM,
        schema.WALL_TIME,
        schema.STEP_MIN,
        schema.STEP_MEDIAN,
        schema.STEP_MAX,
        schema.SIGN_FLIP_FRACTION,
    ]
    start.wait()
    sent, step, deadline = 0, 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = int(time.time() * 1000)
        batch = []
        while len(batch) < BATCH:
            step += 1
            batch.extend(Metric(k, 0.5 / step, now, step) for k in keys)
        heartbeat = [RunTag(schema.TAG_HEARTBEAT, f"{time.time():.3f}")]
        call_with_retry(
            lambda b=batch[:BATCH], h=heartbeat: client.log_batch(run_id, metrics=b, tags=h),
            60,
            "log_batch",
        )
        sent += BATCH
    queue.put(sent)


def replay_run(client: MlflowClient, experiment_id: str, shape: RunShape) -> None:
    """Write one run as the tracker does (``Tracker.start_run``, ``RunRecorder``)."""

    def retry(call, what: str):
        return call_with_retry(call, 60, what)

    tags = {**shape.tags, schema.TAG_HEARTBEAT: f"{time.time():.3f}"}
    run_id = retry(lambda: client.create_run(experiment_id, tags=tags), "create_run").info.run_id
    params = [Param(k, v) for k, v in shape.params.items()]
    for i in range(0, len(params), MAX_PARAMS_PER_BATCH):
        chunk = params[i : i + MAX_PARAMS_PER_BATCH]
        retry(lambda c=chunk: client.log_batch(run_id, params=c), "log_batch params")
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, s) for k, v, s in shape.metrics]
    for i in range(0, len(metrics), BATCH):
        chunk, beat = metrics[i : i + BATCH], [RunTag(schema.TAG_HEARTBEAT, f"{time.time():.3f}")]
        retry(lambda c=chunk, b=beat: client.log_batch(run_id, metrics=c, tags=b), "log_batch")
    for local, directory in shape.artifacts:
        retry(lambda p=local, d=directory: client.log_artifact(run_id, str(p), d), "artifact")
    retry(lambda: client.set_terminated(run_id, "FINISHED"), "set_terminated")


def _runs_writer(uri: str, experiment_id: str, seconds: float, shape, start, queue) -> None:
    """Replay ``shape`` as new runs until ``seconds`` have passed."""
    # set_terminated on an http store also fetches the run and prints its URL, as in the
    # harness's runs: keep the request (it is part of the load), drop the print
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (the writer process's whole life)
    client = MlflowClient(uri)
    client.get_experiment(experiment_id)  # connect before the clock starts
    start.wait()
    done, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        replay_run(client, experiment_id, shape)
        done += 1
    queue.put(done)


# --- CPU of the server and the database -----------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def group_cpu(leader: int | None, by: str) -> float:
    """CPU seconds used so far by ``leader`` and its processes: ``by="pgid"`` (the mlflow
    server leads its process group) or ``"ppid"`` (PostgreSQL's backends are children of the
    postmaster; ended ones count through its ``cutime``)."""
    if leader is None:
        return 0.0
    ticks = 0
    field = 2 if by == "pgid" else 1  # after the ")": state ppid pgrp ...
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None:
            continue
        pid = int(entry.name)
        if pid == leader or int(fields[field]) == leader:
            ticks += sum(int(x) for x in fields[11:13])  # utime, stime
            if pid == leader:
                ticks += sum(int(x) for x in fields[13:15])  # cutime, cstime of reaped children
    return ticks / CLK_TCK


@dataclass
class Store:
    """A store to measure: its URI, and the process ids whose CPU is counted."""

    name: str
    uri: str
    server_pid: int | None = None
    database_pid: int | None = None


def measure(store: Store, what: str, writers: int, seconds: float, shape: RunShape) -> dict:
    """Run ``writers`` writer processes for ``seconds``; return the rate and the CPU used."""
    client = MlflowClient(store.uri)
    name = f"bench-{what}-{writers}-{time.monotonic_ns()}"
    experiment_id = client.create_experiment(name)
    # forkserver: children start from a clean process that has imported MLflow once (fast),
    # and inherit no store connection of ours (a forked SQLite connection is unsafe)
    ctx = mp.get_context("forkserver")
    start, queue = ctx.Event(), ctx.Queue()
    if what == "metrics":
        target, args = _metrics_writer, (store.uri, experiment_id, seconds, start, queue)
    else:
        target, args = _runs_writer, (store.uri, experiment_id, seconds, shape, start, queue)
    procs = [ctx.Process(target=target, args=args) for _ in range(writers)]
    for p in procs:
        p.start()
    time.sleep(1.5)  # let them connect and create their runs
    server_cpu = group_cpu(store.server_pid, "pgid")
    database_cpu = group_cpu(store.database_pid, "ppid")
    started = time.perf_counter()
    start.set()
    counts = [queue.get(timeout=seconds + 300) for _ in procs]
    elapsed = time.perf_counter() - started
    server_cpu = group_cpu(store.server_pid, "pgid") - server_cpu
    database_cpu = group_cpu(store.database_pid, "ppid") - database_cpu
    for p in procs:
        p.join()
    done = sum(counts)
    unit = 1000 if what == "metrics" else 1  # CPU per 1000 metrics, or per run
    return {
        "store": store.name, "what": what, "writers": writers, "count": done,
        "seconds": round(elapsed, 3), "rate_per_s": round(done / elapsed, 2),
        "server_cpu_s_per_unit": round(server_cpu / done * unit, 5) if done else "",
        "database_cpu_s_per_unit": round(database_cpu / done * unit, 5) if done else "",
    }  # fmt: skip


# --- a real sweep: runs/s per core ----------------------------------------------------------


def default_problems() -> str:
    """The problems of the default sweep grid (``conf/sweep/default.yaml``)."""
    grid = OmegaConf.load(CONF_DIR / "sweep" / "default.yaml")
    return str(grid.hydra.sweeper.params.problem)


def timed_sweep(uri: str, work: Path, label: str) -> tuple[dict, list]:
    """``sweep optimizer=rprop problem=<defaults> train.seed=0`` (1 worker, default epochs)
    into ``uri`` (the store called ``label``), timed by ``bench_sweep.time_sweep``."""
    work.mkdir(parents=True, exist_ok=True)
    args = ["optimizer=rprop", f"problem={default_problems()}", "train.seed=0",
            "tracking.experiment=sweep"]  # fmt: skip
    try:
        result, runs = time_sweep(args, uri, work, experiment="sweep")
    except SystemExit as exc:
        raise SystemExit(f"the sweep into {label} failed: {exc}") from exc
    # first run's start to last run's end: every job's own overhead (skip check, output
    # directory, loading data) included, the command's start-up (imports, Hydra) not
    n, span, wall, in_runs = result["runs"], result["span_s"], result["wall_s"], result["run_s"]
    row = {
        "store": label, "runs": n, "wall_s": round(wall, 2),
        "run_seconds_sum": round(in_runs, 2), "logging_seconds_sum": round(result["logging_s"], 2),
        "client_cpu_s": round(result["cpu_s"], 2),
        "span_s": round(span, 2),
        "runs_per_s_per_core_in_runs": round(n / in_runs, 3),
        "runs_per_s_per_core_span": round(n / span, 3),
        "runs_per_s_per_core_wall": round(n / wall, 3),
    }  # fmt: skip
    return row, runs


# --- output ---------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    for ax, what, label in zip(axes, ("metrics", "runs"), ("metrics/s", "runs/s"), strict=True):
        for store in dict.fromkeys(r["store"] for r in rows):
            mine = [r for r in rows if r["store"] == store and r["what"] == what]
            ax.plot(
                [r["writers"] for r in mine], [r["rate_per_s"] for r in mine], "o-", label=store
            )
        ax.set_xlabel("concurrent writer processes")
        ax.set_ylabel(label)
        ax.set_xticks(sorted({r["writers"] for r in rows}))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].set_title(f"log_batch of {BATCH} metrics")
    axes[1].set_title("whole runs replayed (default problems)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"tracking stores on loopback, {os.cpu_count()} cores shared", fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def enter_all(stack: ExitStack, contexts: list) -> list:
    """Enter ``contexts`` at once, in threads (each server's first start migrates its
    database for most of a minute); every one that started is exited by ``stack``."""
    with ThreadPoolExecutor(len(contexts)) as pool:
        futures = [pool.submit(context.__enter__) for context in contexts]
        wait(futures)
    for context, future in zip(contexts, futures, strict=True):
        if future.exception() is None:
            stack.push(context.__exit__)
    return [future.result() for future in futures]  # raises the first failure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--writers", default="1,2,4", help="concurrent writer processes")
    parser.add_argument("--workers", type=int, default=2, help="mlflow server --workers")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where the CSVs go")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mp.set_forkserver_preload(["mlflow", "mlflow.entities", "rprop_bench.tracking"])
    writer_counts = [int(w) for w in args.writers.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench_server_"))
    began = time.perf_counter()
    try:
        with ExitStack() as stack:
            embedded = Store("embedded sqlite", new_store(work / "embedded"))
            stores = [embedded]
            skipped = postgres_unavailable()
            kinds = ["sqlite"] if skipped else ["postgresql", "sqlite"]
            contexts = [
                start_tracking_server(work / f"server-{kind}", kind, workers=args.workers)
                for kind in kinds
            ]
            for server in enter_all(stack, contexts):
                label = f"server + {server.backend}"
                stores.append(Store(label, server.uri, server.pid, server.backend_pid))
            if skipped:
                print(f"no PostgreSQL-backed server: {skipped}")
            print(f"servers up after {time.perf_counter() - began:.0f} s: "
                  + ", ".join(s.name for s in stores[1:]))  # fmt: skip

            sweeps = []
            row, runs = timed_sweep(embedded.uri, work / "sweep-embedded", embedded.name)
            sweeps.append(row)
            remote = stores[1]
            sweeps.append(timed_sweep(remote.uri, work / "sweep-server", remote.name)[0])
            sizes = sorted(runs, key=lambda r: len(r.data.metrics))
            typical = sizes[len(sizes) // 2]
            shape = run_shape(embedded.uri, typical, work / "shape")
            n_bytes = sum(p.stat().st_size for p, _ in shape.artifacts)
            print(
                f"replayed run: {typical.data.tags[schema.TAG_PROBLEM]}, "
                f"{len(shape.metrics)} metric values, {len(shape.params)} params, "
                f"{len(shape.tags)} tags, {len(shape.artifacts)} artifacts ({n_bytes} bytes)"
            )

            rows = []
            for store in stores:
                for what in ("metrics", "runs"):
                    for writers in writer_counts:
                        rows.append(measure(store, what, writers, args.seconds, shape))
                        r = rows[-1]
                        print(f"  {r['store']:<32} {what:<7} {writers} writers: "
                              f"{r['rate_per_s']:>9.1f}/s", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)

    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "throughput.csv", rows)
    write_csv(args.out / "sweep.csv", sweeps)
    plot(rows, args.out / "throughput.png")
    base = {(r["what"], r["writers"]): r["rate_per_s"] for r in rows if r["store"] == embedded.name}

    print(
        f"\n{os.cpu_count()} cores; {args.seconds:g} s per measurement; mlflow server "
        f"--workers {args.workers}; ratios against the embedded SQLite store, same run"
    )
    print(
        f"{'store':<32} {'what':<7} {'writers':>7} {'rate/s':>9} {'× embedded':>10} "
        f"{'server CPU':>11} {'db CPU':>9}   (CPU s per 1000 metrics or per run)"
    )
    for r in rows:
        ratio = r["rate_per_s"] / base[(r["what"], r["writers"])]
        print(f"{r['store']:<32} {r['what']:<7} {r['writers']:>7} {r['rate_per_s']:>9.1f} "
              f"{ratio:>10.2f} {r['server_cpu_s_per_unit']!s:>11} "
              f"{r['database_cpu_s_per_unit']!s:>9}")  # fmt: skip
    print("\nsweep, 1 worker, default problems × seed 0, default epochs:")
    for s in sweeps:
        print(
            f"  {s['store']:<32} {s['runs']} runs, wall {s['wall_s']} s, in runs "
            f"(logging {s['logging_seconds_sum']} s of them) "
            f"{s['run_seconds_sum']} s, first start to last end {s['span_s']} s; "
            f"client CPU {s['client_cpu_s']} s"
        )
        print(f"    runs/s per core: {s['runs_per_s_per_core_in_runs']} in runs, "
              f"{s['runs_per_s_per_core_span']} with per-job overhead, "
              f"{s['runs_per_s_per_core_wall']} with start-up")  # fmt: skip
    ratio = sweeps[1]["run_seconds_sum"] / sweeps[0]["run_seconds_sum"]
    print(f"  run time into the server / embedded: {ratio:.2f}")
    print(
        f"total {time.perf_counter() - began:.0f} s; wrote {args.out}/throughput.csv, "
        f"sweep.csv, throughput.png"
    )


if __name__ == "__main__":
    main()
