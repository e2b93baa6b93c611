"""Sweeps that lose nothing: resume, interruptions, parallel workers, a tracking server.

Real parts only: real SQLite stores, a real ``mlflow server`` on 127.0.0.1, real Hydra
composition and real ``python -m rprop_bench`` subprocesses. The end-to-end tests are marked
slow; the unit tests above them run in well under a second each.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness_helpers import (
    communicate_or_explain,
    compose,
    free_port,
    mlflow_server,
    new_store,
    processes_in,
    run_cli,
    runs_of_kind,
    start_cli,
    stop_group,
    wait_for,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lanes import fast_first
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from rprop_bench import schema
from rprop_bench.cli.build import build
from rprop_bench.cli.compose import preflight
from rprop_bench.cli.identity import run_key
from rprop_bench.cli.validate import ConfigError
from rprop_bench.liveness import process_start, run_is_alive
from rprop_bench.retry import StoreUnavailable, call_with_retry
from rprop_bench.tracking import Tracker, TrackingOptions

#: Less to write per run: no step-size histogram CSV or heatmap.
QUIET = ("tracking.heatmap=false", "tracking.histograms=false")


def _steps(uri: str, run_id: str, key: str = schema.TRAIN_LOSS) -> list[int]:
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, key))


def _finished_per_key(runs: list) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in runs:
        if run.info.status == "FINISHED":
            key = run.data.tags[schema.TAG_RUN_KEY]
            counts[key] = counts.get(key, 0) + 1
    return counts


# --- the run key ----------------------------------------------------------------------------

KEY_CASES = [
    # (overrides of one run, of another, whether they are the same run)
    ((), ("tracking.uri=sqlite:////elsewhere/mlflow.db", "tracking.experiment=other"), True),
    ((), ("tracking.flush_seconds=1", "tracking.retry_seconds=2"), True),
    ((), ("sweep.skip_finished=false",), True),
    ((), ("hydra/launcher=joblib", "hydra.run.dir=/tmp/elsewhere"), True),
    (("optimizer.lr=0.02", "train.seed=1"), ("train.seed=1", "optimizer.lr=0.02"), True),
    ((), ("optimizer.lr=0.02",), False),
    ((), ("train.seed=1",), False),
    ((), ("problem.data.split_seed=1",), False),
    ((), ("optimizer=adam",), False),
]


@pytest.mark.parametrize(("first", "second", "same"), fast_first(KEY_CASES, keep=2, every=3))
def test_run_key_depends_only_on_what_the_run_computes(first, second, same):
    assert (run_key(compose(*first)) == run_key(compose(*second))) is same


# --- liveness of RUNNING runs ---------------------------------------------------------------


@pytest.fixture
def tracker(store_uri: str) -> Tracker:
    return Tracker(TrackingOptions(uri=store_uri, retry_seconds=5, stale_seconds=300))


def _run_with_tags(tracker: Tracker, tags: dict[str, str], status: str = "RUNNING"):
    run = tracker.client.create_run(tracker.experiment_id, tags=tags)
    if status != "RUNNING":
        tracker.client.set_terminated(run.info.run_id, status=status)
    return tracker.client.get_run(run.info.run_id)


@pytest.fixture(scope="module")
def processes():
    """A live process and the pid of one that has exited (and been reaped)."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    yield live.pid, gone.pid
    live.kill()
    live.wait()


HOST = socket.gethostname()


def _liveness_cases(live: int, gone: int) -> list[tuple[str, dict[str, str], bool]]:
    def here(pid: int, start: str | None) -> dict[str, str]:
        return {schema.TAG_HOST: HOST, schema.TAG_PID: str(pid), schema.TAG_PROCESS_START: start}

    now = time.time()
    return [
        ("its process is alive", here(live, process_start(live)), True),
        ("its pid now belongs to another process", here(live, "1"), False),
        ("its process exited (kill -9)", here(gone, ""), False),
        ("it is this very process's", here(os.getpid(), process_start(os.getpid())), False),
        ("another host, fresh heartbeat", {schema.TAG_HOST: "elsewhere",
                                           schema.TAG_PID: "1",
                                           schema.TAG_HEARTBEAT: str(now)}, True),
        ("another host, stale heartbeat", {schema.TAG_HOST: "elsewhere",
                                           schema.TAG_PID: "1",
                                           schema.TAG_HEARTBEAT: str(now - 1000)}, False),
        ("no writer tags, just started", {}, True),
    ]  # fmt: skip


def test_liveness_rule_of_running_runs(tracker, processes):
    for case, tags, alive in _liveness_cases(*processes):
        run = _run_with_tags(tracker, tags)
        assert run_is_alive(run, stale_seconds=300) is alive, case


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="older tags came from /proc")
def test_runs_tagged_by_older_versions_are_judged_by_their_clock_ticks(tracker, processes):
    """Versions before psutil tagged the start in Linux clock ticks since boot (no dot)."""
    live, _ = processes
    ticks = Path(f"/proc/{live}/stat").read_text().rsplit(")", 1)[1].split()[19]
    later = str(int(ticks) + 5 * os.sysconf("SC_CLK_TCK"))  # a process started 5 s later
    for start, alive in ((ticks, True), (later, False)):
        tags = {schema.TAG_HOST: HOST, schema.TAG_PID: str(live), schema.TAG_PROCESS_START: start}
        assert run_is_alive(_run_with_tags(tracker, tags), stale_seconds=300) is alive, start


@pytest.mark.parametrize("looked_up", ["per key", "per stack"])
def test_previous_runs_finds_the_finished_run_and_marks_dead_ones_killed(
    tracker, processes, looked_up
):
    """Alone, or from the one search of a grid's stack (Tracker.runs_by_key): the same."""
    live, gone = processes
    dead_tags = {schema.TAG_HOST: HOST, schema.TAG_PID: str(gone)}
    live_tags = {schema.TAG_HOST: HOST, schema.TAG_PID: str(live)}
    names = {key: f"{looked_up}: {key}" for key in ("done", "busy", "crashed", "new")}

    def keyed(key: str, tags: dict[str, str], status: str = "RUNNING"):
        kind = {schema.TAG_RUN_KEY: names[key], schema.TAG_RUN_KIND: schema.RUN_KIND_TRAINING,
                schema.TAG_PROBLEM: "iris"}  # fmt: skip
        return _run_with_tags(tracker, {**tags, **kind}, status).info.run_id

    def previous(key: str):
        if looked_up == "per key":
            return tracker.previous_runs(names[key])
        known = tracker.runs_by_key(list(names.values()), {schema.TAG_PROBLEM: "iris"})
        assert known is not None
        return tracker.previous_runs(names[key], known=known[names[key]])

    done = keyed("done", {}, "FINISHED")
    dead = keyed("done", dead_tags)
    failed = keyed("done", {}, "FAILED")
    running = keyed("busy", live_tags)
    crashed = keyed("crashed", dead_tags)

    found = previous("done")
    assert (found.finished, found.running, found.reaped) == (done, None, [dead])
    found = previous("busy")
    assert (found.finished, found.running, found.reaped) == (None, running, [])
    found = previous("crashed")
    assert (found.finished, found.running, found.reaped) == (None, None, [crashed])
    assert previous("new") == tracker.previous_runs(names["new"])  # none yet
    for run_id in (dead, crashed):
        run = tracker.client.get_run(run_id)
        assert run.info.status == "KILLED"
        assert "process died" in run.data.tags[schema.TAG_FAILURE_REASON]
    assert previous("crashed").reaped == []  # marked once, then left alone
    known = tracker.runs_by_key([names["done"]], {schema.TAG_PROBLEM: "iris"})
    assert sorted(r.info.run_id for r in known[names["done"]]) == sorted([done, dead, failed])
    assert tracker.runs_by_key([names["done"]], {schema.TAG_PROBLEM: "wine"}) == {
        names["done"]: []
    }  # the tags narrow the search


# --- retrying a busy store ------------------------------------------------------------------

LOCKED = MlflowException("(sqlite3.OperationalError) database is locked")
AWAY = MlflowException(
    "API request to http://127.0.0.1:1/api/2.0/mlflow/runs/log-batch failed with exception "
    "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded (Connection refused)"
)


class _FailsFirst:
    """A call that raises ``error`` the first ``times`` calls, then returns ``"ok"``."""

    def __init__(self, error: Exception, times: int) -> None:
        self.error, self.times, self.calls = error, times, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error
        return "ok"


@pytest.mark.parametrize("error", [LOCKED, AWAY], ids=["sqlite-locked", "server-away"])
def test_a_passing_store_error_is_retried_until_it_succeeds(error):
    call = _FailsFirst(error, times=3)
    assert call_with_retry(call, retry_seconds=30, what="log_batch") == "ok"
    assert call.calls == 4


def test_other_errors_are_not_retried():
    call = _FailsFirst(MlflowException("RESOURCE_DOES_NOT_EXIST: run xyz not found"), times=9)
    with pytest.raises(MlflowException, match="not found"):
        call_with_retry(call, retry_seconds=30, what="get_run")
    assert call.calls == 1


def test_retrying_gives_up_after_its_budget_with_the_cause():
    call = _FailsFirst(AWAY, times=10**9)
    with pytest.raises(StoreUnavailable, match=r"unavailable for 0.3 s \(log_batch: API request"):
        call_with_retry(call, retry_seconds=0.3, what="log_batch")
    assert call.calls > 1


class _Stop(Exception):
    """Raised by the test's own SIGINT handler (not KeyboardInterrupt: pytest's session)."""


def _signalled_call(signals: int, steps: list[str]) -> str:
    """A store call that receives ``signals`` SIGINTs while it runs, then finishes."""
    for _ in range(signals):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler has run by now (between two bytecodes)
        steps.append("signalled")
    steps.append("committed")
    return "ok"


#: (SIGINTs during the call, the call's steps done when the signal is acted on)
HELD_INTERRUPTS = [
    (1, ["signalled", "committed"]),  # held until the call returns: no half-done write
    (2, ["signalled"]),  # a second one stops a call that hangs at once
]


@pytest.mark.parametrize(("signals", "done"), HELD_INTERRUPTS, ids=["one", "two"])
def test_a_store_call_finishes_before_ctrl_c_acts(signals, done):
    def stop(signum, frame):
        raise _Stop(signum)

    own = signal.signal(signal.SIGINT, stop)
    try:
        steps: list[str] = []
        with pytest.raises(_Stop):
            call_with_retry(lambda: _signalled_call(signals, steps), 5, "set_tag")
        assert steps == done
        assert signal.getsignal(signal.SIGINT) is stop  # the handler is back
    finally:
        signal.signal(signal.SIGINT, own)


#: A module run with ``python -m`` that catches a Ctrl-C landing inside ``exec`` of a string
#: (as one during Hydra's dataclasses would), then ends as ``{ending}`` says; the CLI's
#: command has run once before, so its imports (which ``exec`` too) are done.
CAUGHT_IN_EXEC = """
import sys
from rprop_bench.cli import main
from rprop_bench.signals import forget_caught_interrupt
try:
    main(["report", "--help"])  # its imports now: later ones would clear the mark themselves
except SystemExit:
    pass
try:
    exec("import os, signal\\nos.kill(os.getpid(), signal.SIGINT)\\nfor _ in range(10**7): pass")
except KeyboardInterrupt:
    pass
{ending}
"""

#: (how the module ends, its exit status)
ENDINGS_AFTER_A_CAUGHT_CTRL_C = [
    ("main(['report', '--help'])", 0),  # the CLI's exit status stands
    ("sys.exit(130)", -signal.SIGINT),  # CPython's own judgement: dies by SIGINT after all
    ("forget_caught_interrupt(); sys.exit(130)", 130),
]


@pytest.mark.parametrize(("ending", "status"), fast_first(ENDINGS_AFTER_A_CAUGHT_CTRL_C))
def test_a_caught_ctrl_c_leaves_the_exit_status_to_the_cli(tmp_path, ending, status):
    (tmp_path / "caught_in_exec.py").write_text(CAUGHT_IN_EXEC.format(ending=ending))
    done = subprocess.run(
        [sys.executable, "-m", "caught_in_exec"], cwd=tmp_path, capture_output=True,
        text=True, timeout=120, preexec_fn=_take_ctrl_c,
    )  # fmt: skip
    assert done.returncode == status, done.stderr


def _take_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Python installs its KeyboardInterrupt


#: ``python -m rprop_bench --help`` with an exit callback that lasts (as torch's
#: ``dump_compile_times`` can, under load), registered first so that it runs last.
SLOW_EXIT = """
import atexit, runpy, sys, time
atexit.register(time.sleep, 60)
sys.argv = ["rprop_bench", "--help"]
runpy.run_module("rprop_bench", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_process_exits_ends_it_by_the_signal_without_a_traceback(sig):
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_EXIT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=_take_ctrl_c,
    )  # fmt: skip
    assert process.stdout.readline().startswith("usage:")  # the command is done: flushed
    time.sleep(0.5)  # into the exit callbacks
    process.send_signal(sig)
    _, stderr = communicate_or_explain(process, 30)
    assert process.returncode == -sig, stderr
    assert "Traceback" not in stderr


# --- fuzzing the config layer ---------------------------------------------------------------

FUZZ_KEYS = (
    "optimizer.lr", "optimizer.etas", "optimizer.step_sizes", "train.epochs",
    "train.batch_size", "train.seed", "train.target_loss", "problem.data.val_fraction",
    "tracking.max_batch", "tracking.flush_seconds", "sweep.skip_finished", "model.hidden",
)  # fmt: skip
FUZZ_VALUES = (
    "0", "1", "2", "-1", "0.5", "1e-3", "abc", "null", "true", "[0.5,1.2]", "[]", "[4]",
    "nan", "inf", "1e400", "'7'", "${oc.env:RPROP_BENCH_NOT_SET}", "[1,", "{a: 1}", "'x y'",
)  # fmt: skip
GROUP_CHOICES = ("optimizer=rprop", "optimizer=adam", "optimizer=lbfgs", "optimizer=adamm",
                 "problem=line", "problem=iris", "model=mlp", "model=linear")  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups=st.lists(st.sampled_from(GROUP_CHOICES), max_size=2),
    values=st.lists(st.tuples(st.sampled_from(FUZZ_KEYS), st.sampled_from(FUZZ_VALUES)),
                    max_size=4),
)  # fmt: skip
@pytest.mark.slow
def test_fuzzed_overrides_build_or_fail_in_one_clear_line(groups, values):
    overrides = [*groups, *(f"{key}={value}" for key, value in values)]
    try:
        _, configs = preflight(overrides, sweep=False)
    except ConfigError as exc:
        message = str(exc)
        assert message, overrides
        assert "\n" not in message, overrides
        assert "Traceback" not in message, overrides
        return
    (cfg,) = configs
    assert re.fullmatch(r"[0-9a-f]{16}", run_key(cfg))
    built = build(cfg)  # what passed the checks must build: data, model, optimizer, settings
    assert built.settings.epochs == cfg.train.epochs


# --- bad input: one line, no traceback, the store untouched ---------------------------------


def _corrupted(directory: Path) -> list[str]:
    (directory / "mlflow.db").write_bytes(os.urandom(4096))
    return ["train.epochs=2"]


def _foreign(directory: Path) -> list[str]:
    with sqlite3.connect(directory / "mlflow.db") as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    conn.close()
    return ["train.epochs=2"]


def _wrong_type(directory: Path) -> list[str]:
    return ["optimizer.lr=fast"]


BAD_INPUT = [
    (_corrupted, "mlflow.db is not a SQLite database (corrupted, or another kind of file)"),
    (_foreign, "mlflow.db is not an MLflow store: it is another program's database"),
    (_wrong_type, "optimizer.lr='fast' has the wrong type: must be a number > 0"),
]


def _assert_one_error_line(out: subprocess.CompletedProcess[str], message: str) -> None:
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in out.stderr + out.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("make", "message"), BAD_INPUT, ids=lambda v: getattr(v, "__name__", ""))
def test_bad_input_is_one_line_and_leaves_the_store_alone(tmp_path, make, message):
    args = make(tmp_path)
    db = tmp_path / "mlflow.db"
    before = db.read_bytes() if db.exists() else None
    out = run_cli(*args, cwd=tmp_path, timeout=60)
    _assert_one_error_line(out, message)
    assert (db.read_bytes() if db.exists() else None) == before  # not migrated, not written
    assert not (tmp_path / "outputs").exists()  # no training started


@pytest.fixture
def unwritable_dir(tmp_path):
    """A directory nobody can write to: read-only bits, and for root (whom they do not stop)
    the immutable attribute as well."""
    directory = tmp_path / "read_only"
    directory.mkdir()
    directory.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(directory)], check=False).returncode:
        pytest.skip("cannot make a directory unwritable for root here (chattr +i refused)")
    yield directory
    if immutable:
        subprocess.run(["chattr", "-i", str(directory)], check=True)
    directory.chmod(0o755)


@pytest.mark.slow
def test_an_unwritable_working_directory_is_one_line(unwritable_dir):
    out = run_cli("train.epochs=2", cwd=unwritable_dir)
    _assert_one_error_line(
        out, f"cannot write Hydra's outputs: the working directory {unwritable_dir} is not writable"
    )
    assert list(unwritable_dir.iterdir()) == []


# --- end to end: parallel workers, kill -9 and resume, interruptions, a server ---------------


@pytest.mark.slow
def test_four_parallel_workers_lose_no_run_and_no_metric(tmp_path, store_uri):
    out = run_cli(
        "sweep", "optimizer=rprop", "problem=line", "train.seed=0,1,2,3,4,5,6,7,8,9",
        "optimizer.lr=0.01,0.02,0.03,0.04", "train.epochs=10", "train.log_every=1", *QUIET,
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", f"tracking.uri={store_uri}",
        cwd=tmp_path, timeout=500,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "sweep done: 40 trained, 0 reused; runs: 40 FINISHED;" in out.stdout
    runs = runs_of_kind(store_uri)
    assert len(runs) == 40
    assert _finished_per_key(runs) == {r.data.tags[schema.TAG_RUN_KEY]: 1 for r in runs}
    for run in runs:
        assert _steps(store_uri, run.info.run_id) == list(range(1, 11))
        assert schema.TEST_LOSS in run.data.metrics
    (parent,) = runs_of_kind(store_uri, schema.RUN_KIND_SWEEP)
    assert {r.data.tags[schema.TAG_PARENT_RUN_ID] for r in runs} == {parent.info.run_id}


#: A two-job sweep whose jobs take a few seconds: long enough to be killed in the middle.
RESUMABLE = (
    "sweep", "optimizer=rprop", "problem=line", "train.seed=0,1", "train.epochs=1500",
    "train.log_every=10", "tracking.flush_seconds=0.2", *QUIET,
)  # fmt: skip


def _running_with_metrics(uri: str, seed: str) -> str | None:
    for run in runs_of_kind(uri):
        if run.info.status == "RUNNING" and run.data.tags[schema.TAG_SEED] == seed:
            return run.info.run_id if _steps(uri, run.info.run_id) else None
    return None


@pytest.mark.slow
def test_kill_9_mid_sweep_then_the_same_command_resumes(tmp_path, store_uri):
    args = (*RESUMABLE, f"tracking.uri={store_uri}")
    sweep = start_cli(*args, cwd=tmp_path)
    try:
        victim = wait_for(lambda: _running_with_metrics(store_uri, "1"), 180, "the second run")
    finally:
        stop_group(sweep, signal.SIGKILL)
    (parent,) = runs_of_kind(store_uri, schema.RUN_KIND_SWEEP)

    resumed = run_cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"run {victim} of irprop- s1 · line was left RUNNING" in resumed.stdout
    assert "SKIPPED irprop- s0 · line: already FINISHED" in resumed.stdout
    assert f"resuming parent run {parent.info.run_id}" in resumed.stdout
    runs = runs_of_kind(store_uri)
    statuses = sorted(r.info.status for r in runs)
    assert statuses == ["FINISHED", "FINISHED", "KILLED"]  # nothing left RUNNING
    assert set(_finished_per_key(runs).values()) == {1}  # one result per grid point
    for run in runs:
        if run.info.status == "FINISHED":
            assert _steps(store_uri, run.info.run_id) == list(range(10, 1501, 10))
    (again,) = runs_of_kind(store_uri, schema.RUN_KIND_SWEEP)
    assert again.info.run_id == parent.info.run_id
    assert again.info.status == "FINISHED"

    forced = run_cli(*args, "sweep.skip_finished=false", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert "SKIPPED" not in forced.stdout
    assert set(_finished_per_key(runs_of_kind(store_uri)).values()) == {2}
    assert [p.info.run_id for p in runs_of_kind(store_uri, schema.RUN_KIND_SWEEP)] == [
        parent.info.run_id
    ]


INTERRUPTS = [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)]


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "whole_group", "status"), INTERRUPTS, ids=["ctrl-c", "sigterm"])
def test_an_interrupted_run_is_flushed_marked_killed_and_exits_non_zero(
    tmp_path, store_uri, sig, whole_group, status
):
    process = start_cli(
        "problem=line", "train.epochs=10000000", "tracking.flush_seconds=1000", *QUIET,
        f"tracking.uri={store_uri}", cwd=tmp_path,
    )  # fmt: skip
    try:
        run_id = wait_for(lambda: _running_with_metrics(store_uri, "0"), 180, "a running run")
        if whole_group:
            os.killpg(process.pid, sig)  # what Ctrl-C in a terminal does
        else:
            os.kill(process.pid, sig)
        _, stderr = communicate_or_explain(process, 120)
    finally:
        stop_group(process)
    assert process.returncode == status
    assert f"run {run_id} KILLED" in stderr
    assert f"error: interrupted by {sig.name}" in stderr
    assert "Traceback" not in stderr
    run = MlflowClient(store_uri).get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags[schema.TAG_FAILURE_REASON] == f"interrupted ({sig.name})"
    assert schema.LOGGING_SECONDS in run.data.metrics  # the final flush ran
    steps = _steps(store_uri, run_id)
    assert steps == list(range(1, len(steps) + 1))  # every epoch up to the interrupt
    assert _steps(store_uri, run_id, schema.WALL_TIME) == steps


def _running_seeds(uri: str) -> set[str] | None:
    seeds = {s for s in ("0", "1") if _running_with_metrics(uri, s)}
    return seeds if len(seeds) == 2 else None


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "whole_group", "status"), INTERRUPTS, ids=["ctrl-c", "sigterm"])
def test_an_interrupted_joblib_sweep_leaves_no_run_running(
    tmp_path, store_uri, sig, whole_group, status
):
    process = start_cli(
        "sweep", "optimizer=rprop", "problem=line", "train.seed=0,1,2", "train.epochs=10000000",
        "train.log_every=10", "tracking.flush_seconds=0.5", *QUIET, "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2", f"tracking.uri={store_uri}", cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_for(lambda: _running_seeds(store_uri), 180, "two running runs")
        if whole_group:
            os.killpg(process.pid, sig)  # Ctrl-C: the main process and both workers
        else:
            os.kill(process.pid, sig)  # the main process only
        _, stderr = process.communicate(timeout=120)
    finally:
        stop_group(process)
    assert process.returncode == status
    assert "Traceback" not in stderr
    assert f"error: interrupted by {sig.name}; runs in progress are marked KILLED" in stderr
    runs = runs_of_kind(store_uri)
    assert sorted(r.data.tags[schema.TAG_SEED] for r in runs) == ["0", "1"]  # 2 never started
    for run in runs:
        assert run.info.status == "KILLED"
        assert run.data.tags[schema.TAG_FAILURE_REASON].startswith(f"interrupted ({sig.name})")
        steps = _steps(store_uri, run.info.run_id)
        assert steps == list(range(10, 10 * len(steps) + 1, 10))  # flushed ones, no gap
    (parent,) = runs_of_kind(store_uri, schema.RUN_KIND_SWEEP)
    assert parent.info.status == "KILLED"
    # the workers and the fork server they were forked from are gone too
    wait_for(lambda: not processes_in(tmp_path) or None, 30, "the sweep's processes to end")


@pytest.mark.slow
def test_a_tracking_server_records_runs_and_its_loss_is_reported(tmp_path):
    with mlflow_server(tmp_path / "server") as (uri, server):
        out = run_cli("problem=line", "train.epochs=5", *QUIET, f"tracking.uri={uri}", cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        (run,) = runs_of_kind(uri)
        assert run.info.status == "FINISHED"
        assert _steps(uri, run.info.run_id) == [1, 2, 3, 4, 5]
        config = MlflowClient(uri).download_artifacts(
            run.info.run_id, schema.ARTIFACT_CONFIG, str(tmp_path)
        )
        assert "epochs: 5" in Path(config).read_text()

        process = start_cli(
            "problem=line", "train.seed=1", "train.epochs=10000000", "tracking.flush_seconds=0.2",
            "tracking.retry_seconds=3", *QUIET, f"tracking.uri={uri}", cwd=tmp_path,
        )  # fmt: skip
        try:
            run_id = wait_for(lambda: _running_with_metrics(uri, "1"), 180, "a running run")
            stop_group(server)  # the server goes away mid-run
            _, stderr = process.communicate(timeout=180)
        finally:
            stop_group(process)
    assert process.returncode == 2
    assert "Traceback" not in stderr
    line = next(li for li in stderr.splitlines() if "marked FAILED locally" in li)
    assert line.startswith("error: the MLflow store stayed unavailable for 3 s")
    assert f"run {run_id} (irprop- s1 · line) marked FAILED locally in " in line
    record = json.loads(Path(line.rsplit(" in ", 1)[1]).read_text())
    assert (record["status"], record["run_id"], record["uri"]) == ("FAILED", run_id, uri)


@pytest.mark.parametrize(
    ("overrides", "host"), [((), "127.0.0.1"), (("tracking.ui_host=0.0.0.0",), "0.0.0.0")]
)
def test_ui_binds_to_loopback_unless_told_otherwise(tmp_path, overrides, host):
    from rprop_bench.cli.ui import ui_command

    cfg = compose(*overrides)
    command = ui_command(new_store(tmp_path), int(cfg.tracking.ui_port), str(cfg.tracking.ui_host))
    assert command[command.index("--host") + 1] == host


@pytest.mark.slow
def test_ui_prints_its_address_only_once_the_server_answers(tmp_path):
    """The address line comes when ``/health`` answers: a browser opened on it connects."""
    import urllib.request

    new_store(tmp_path)  # tmp_path/mlflow.db, the default store of that directory
    port = free_port()
    process = start_cli("ui", f"tracking.ui_port={port}", cwd=tmp_path)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("starting the MLflow UI for sqlite:///"), first
        lines = iter(process.stdout.readline, "")  # MLflow's own lines come in between
        ready = next(line for line in lines if line.startswith("MLflow UI:"))
        # the experiment's runs, in the model-training view (MLflow 3.17 opens GenAI otherwise)
        assert ready.startswith(
            f"MLflow UI: http://127.0.0.1:{port}/#/?workflowType=machine_learning"
        ), ready  # the store has no experiment yet: the home page
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            assert answer.status == 200  # at once: no "connection refused" window
    finally:
        stop_group(process, signal.SIGTERM)
        process.communicate(timeout=60)
