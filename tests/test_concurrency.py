"""Concurrent commands on one store, and a store's first start (``rprop_bench/first_start.py``,
the run-key claim of ``rprop_bench/tracking/tracker.py``, idempotent ``create_run``).

Real processes on real SQLite stores, and a real ``mlflow server`` behind a proxy that loses
one reply. The many-trial cases are in the slow lane.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from harness_helpers import new_store, run_cli, start_cli
from mlflow import MlflowClient

from rprop_bench import schema
from rprop_bench.first_start import open_store, schema_head
from rprop_bench.liveness import process_start
from rprop_bench.store import TrackingError
from rprop_bench.tracking import Tracker, TrackingOptions

FORK = multiprocessing.get_context("fork")


def _revision_and_runs(db: Path) -> tuple[str | None, int]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        revision = None
        if "alembic_version" in tables:
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if "runs" in tables else 0
    return revision, runs


def _assert_whole(db: Path) -> None:
    """A complete store at this MLflow's schema, that MLflow reads and writes."""
    assert _revision_and_runs(db)[0] == schema_head()
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.create_experiment(f"check-{time.monotonic_ns()}")
    client.create_run(experiment)


def _open_at_barrier(uri: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait(timeout=60)
    open_store(uri)
    Tracker(TrackingOptions(uri=uri, experiment="together"))
    os._exit(0)


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 4])
def test_processes_opening_one_fresh_store_at_once_all_succeed(tmp_path, processes):
    """Ten times: N processes open a store that does not exist yet at the same instant."""
    for trial in range(10):
        db = tmp_path / f"trial{trial}" / "mlflow.db"
        db.parent.mkdir()
        uri = f"sqlite:///{db}"
        barrier = FORK.Barrier(processes)
        children = [
            FORK.Process(target=_open_at_barrier, args=(uri, barrier)) for _ in range(processes)
        ]
        for child in children:
            child.start()
        for child in children:
            child.join(timeout=120)
        assert [child.exitcode for child in children] == [0] * processes, trial
        _assert_whole(db)
        assert not list(db.parent.glob(".mlflow.db.creating-*"))


def _first_start(uri: str, protected: bool) -> None:
    if protected:
        open_store(uri)
    else:  # what MLflow alone does (and rprop-bench did before): migrate in place
        MlflowClient(uri).search_experiments()
    os._exit(0)


@pytest.mark.slow
@pytest.mark.parametrize("protected", [True, False], ids=["rprop-bench", "plain MLflow"])
def test_a_first_start_killed_at_any_moment_leaves_a_store_the_next_command_opens(
    tmp_path, protected
):
    """kill -9 at a random moment of a store's first start, 20 times: the next open always
    succeeds. Killed during rprop-bench's start there is no store or a whole one; killed
    during a plain MLflow start (a store left half-made) the next open rebuilds it."""
    rng = random.Random(21)
    outcomes: Counter[str] = Counter()
    for trial in range(20):
        db = tmp_path / f"trial{trial}" / "mlflow.db"
        db.parent.mkdir()
        uri = f"sqlite:///{db}"
        child = FORK.Process(target=_first_start, args=(uri, protected))
        child.start()
        time.sleep(rng.uniform(0.0, 1.5))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        if protected:
            assert not db.exists() or _revision_and_runs(db)[0] == schema_head(), trial
        outcomes["no store" if not db.exists() else "a store"] += 1
        note = open_store(uri, check_schema=True)
        if note is not None:
            outcomes["rebuilt"] += 1
            assert "held no runs" in note
        _assert_whole(db)
    assert outcomes["no store"] + outcomes["a store"] == 20
    if protected:
        assert outcomes["rebuilt"] == 0  # never half-made, so never rebuilt


@pytest.mark.slow
def test_a_store_with_runs_and_an_old_schema_is_upgraded_with_one_line(tmp_path):
    """A store that holds runs is never rebuilt: MLflow's own upgrade finishes its schema."""
    uri = new_store(tmp_path)
    db = tmp_path / "mlflow.db"
    client = MlflowClient(uri)
    client.create_run(client.create_experiment("old"))
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = 'not-the-head'")
    with pytest.raises(TrackingError, match="not-the-head"):  # no upgrade from nowhere
        open_store(uri, check_schema=True)
    assert _revision_and_runs(db) == ("not-the-head", 1)  # left as it was


def test_a_half_made_store_without_runs_is_rebuilt_and_moved_aside(tmp_path):
    db = tmp_path / "mlflow.db"
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:  # tables of a cut-short start
        conn.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        conn.execute("INSERT INTO alembic_version VALUES ('451aebb31d03')")
    note = open_store(f"sqlite:///{db}", check_schema=True)
    assert note is not None
    assert "held no runs" in note
    _assert_whole(db)
    assert len(list(tmp_path.glob("mlflow.db.broken-*"))) == 1


# --- two sweeps that share grid points ---------------------------------------------------------

SHARED = ["optimizer=rprop", "train.seed=0,1", "train.epochs=3", "train.log_every=1"]


def _finished_per_key(uri: str) -> Counter[str]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("rprop-bench")
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{schema.TAG_RUN_KIND}` = '{schema.RUN_KIND_TRAINING}'",
        max_results=1000,
    )
    return Counter(r.data.tags[schema.TAG_RUN_KEY] for r in runs if r.info.status == "FINISHED")


@pytest.mark.slow
def test_two_overlapping_sweeps_started_together_train_each_point_once(tmp_path):
    """5 trials: problem=iris,line and problem=iris,wine on the same seeds, started together
    on one store: 6 grid points, each FINISHED exactly once."""
    for trial in range(5):
        work = tmp_path / f"trial{trial}"
        work.mkdir()
        uri = f"sqlite:///{work / 'mlflow.db'}"  # a fresh store: its first start is shared too
        sweeps = [
            start_cli("sweep", *SHARED, f"problem={problems}", f"tracking.uri={uri}", cwd=work)
            for problems in ("iris,line", "iris,wine")
        ]
        outputs = [sweep.communicate(timeout=300) for sweep in sweeps]
        for sweep, (_, err) in zip(sweeps, outputs, strict=True):
            assert sweep.returncode == 0, err
        finished = _finished_per_key(uri)
        assert len(finished) == 6, trial
        assert set(finished.values()) == {1}, (trial, finished)
        said = "".join(out for out, _ in outputs)
        assert said.count("SKIPPED") >= 2, said  # the shared points: trained by one, skipped


# --- the claim, a reaped run, and the shared parent -------------------------------------------


def _tracker(uri: str, experiment: str = "claims") -> Tracker:
    return Tracker(TrackingOptions(uri=uri, experiment=experiment))


@pytest.fixture
def other_process():
    """The identity tags of another live process on this host (a sleeping child)."""
    child = subprocess.Popen(["sleep", "120"])
    yield {
        schema.TAG_HOST: socket.gethostname(),
        schema.TAG_PID: str(child.pid),
        schema.TAG_PROCESS_START: process_start(child.pid) or "",
    }
    child.kill()
    child.wait()


def _rival(uri: str, tracker: Tracker, key: str, other: dict[str, str], **extra: str) -> str:
    """A RUNNING run of ``key`` written by another live process (another sweep's claim)."""
    tags = {schema.TAG_RUN_KEY: key, schema.TAG_RUN_KIND: schema.RUN_KIND_TRAINING, **other}
    return MlflowClient(uri).create_run(tracker.experiment_id, tags={**tags, **extra}).info.run_id


CLAIM_TAGS = {schema.TAG_RUN_KEY: "k1", schema.TAG_RUN_KIND: schema.RUN_KIND_TRAINING}


def test_a_claim_made_after_a_live_rivals_loses_and_leaves_no_run(tmp_path, other_process):
    uri = new_store(tmp_path)
    tracker = _tracker(uri)
    rival = _rival(uri, tracker, "k1", other_process)
    ours = tracker.start_run("ours", CLAIM_TAGS, {})
    assert tracker.lost_claim(ours.run_id, "k1", finished_counts=True) == rival
    assert MlflowClient(uri).get_run(ours.run_id).info.lifecycle_stage == "deleted"


def test_a_claim_made_before_a_rivals_wins(tmp_path, other_process):
    uri = new_store(tmp_path)
    tracker = _tracker(uri)
    ours = tracker.start_run("ours", CLAIM_TAGS, {})
    time.sleep(0.01)  # a later start time
    _rival(uri, tracker, "k1", other_process)
    assert tracker.lost_claim(ours.run_id, "k1", finished_counts=True) is None


def test_a_finished_run_wins_the_claim_unless_finished_runs_are_redone(tmp_path, other_process):
    uri = new_store(tmp_path)
    tracker = _tracker(uri)
    done = _rival(uri, tracker, "k1", other_process)
    MlflowClient(uri).set_terminated(done, status="FINISHED")
    ours = tracker.start_run("ours", CLAIM_TAGS, {})
    assert tracker.lost_claim(ours.run_id, "k1", finished_counts=True) == done
    again = tracker.start_run("again", CLAIM_TAGS, {})  # sweep.skip_finished=false
    assert tracker.lost_claim(again.run_id, "k1", finished_counts=False) is None


def test_a_dead_rivals_claim_does_not_count(tmp_path):
    uri = new_store(tmp_path)
    tracker = _tracker(uri)
    dead = {schema.TAG_HOST: socket.gethostname(), schema.TAG_PID: "999999999"}
    _rival(uri, tracker, "k1", dead)
    ours = tracker.start_run("ours", CLAIM_TAGS, {})
    assert tracker.lost_claim(ours.run_id, "k1", finished_counts=True) is None


def test_a_run_declared_dead_is_not_brought_back_to_life(tmp_path):
    """A paused process whose run another sweep marked KILLED does not mark it FINISHED."""
    uri = new_store(tmp_path)
    tracker = _tracker(uri)
    recorder = tracker.start_run("paused", {schema.TAG_RUN_KEY: "k"}, {})
    MlflowClient(uri).set_terminated(recorder.run_id, status="KILLED")  # what a reaper does
    assert recorder.finish({"final_train_loss": 0.5}) is False
    run = MlflowClient(uri).get_run(recorder.run_id)
    assert run.info.status == "KILLED"
    assert "final_train_loss" not in run.data.metrics


def test_a_shared_parent_stays_running_while_another_sweep_runs_into_it(tmp_path, other_process):
    uri = new_store(tmp_path)
    tracker = _tracker(uri)
    parent = tracker.ensure_sweep_parent("sweep_x", tmp_path, "sweep x", {})
    other = _rival(uri, tracker, "k", other_process, **{schema.TAG_PARENT_RUN_ID: parent})
    ended = tracker.end_sweep_parent(parent)
    assert (ended.counts, ended.still_running) == ({"RUNNING": 1}, 1)  # another sweep's run
    assert MlflowClient(uri).get_run(parent).info.status == "RUNNING"
    MlflowClient(uri).set_terminated(other, status="FINISHED")
    assert tracker.end_sweep_parent(parent) == ({"FINISHED": 1}, 0, 0, 0, 0, 0)  # none reused
    assert MlflowClient(uri).get_run(parent).info.status == "FINISHED"


# --- a create_run whose reply is lost ----------------------------------------------------------


class LosingProxy:
    """A TCP proxy to an HTTP server that, once, forwards a request whose first line contains
    ``marker`` and then drops the connection instead of passing the reply back."""

    def __init__(self, upstream: tuple[str, int], marker: bytes) -> None:
        self.upstream, self.marker, self.dropped = upstream, marker, 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream)
        drop = threading.Event()

        def forward_requests() -> None:
            with contextlib.suppress(OSError):
                while data := client.recv(1 << 16):
                    if not self.dropped and self.marker in data.split(b"\r\n", 1)[0]:
                        self.dropped += 1
                        drop.set()
                    upstream.sendall(data)

        threading.Thread(target=forward_requests, daemon=True).start()
        with client, upstream, contextlib.suppress(OSError):
            while data := upstream.recv(1 << 16):
                if drop.is_set():  # the server has created the run; its answer never arrives
                    break
                client.sendall(data)
            client.shutdown(socket.SHUT_RDWR)  # the client sees the connection close now


@pytest.mark.slow
def test_a_create_run_whose_reply_is_lost_makes_one_run(tracking_server, monkeypatch):
    host, port = tracking_server.uri.removeprefix("http://").split(":")
    proxy = LosingProxy((host, int(port)), b"/runs/create")
    uri = f"http://127.0.0.1:{proxy.port}"
    tracker = Tracker(TrackingOptions(uri=uri, experiment="lost-reply", retry_seconds=20))
    recorder = tracker.start_run("once", {schema.TAG_RUN_KEY: "lost"}, {})
    assert proxy.dropped == 1
    client = MlflowClient(tracking_server.uri)
    experiment = client.get_experiment_by_name("lost-reply")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [recorder.run_id]


@pytest.mark.slow
def test_cli_sweeps_into_one_store_share_its_first_start(tmp_path):
    """The quick case of the slow lane's: two sweeps of one point each, on a new store."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    procs = [
        start_cli(
            "sweep",
            "optimizer=rprop",
            "problem=line",
            f"train.seed={seed}",
            "train.epochs=2",
            f"tracking.uri={uri}",
            cwd=tmp_path,
        )
        for seed in (0, 1)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    assert sum(_finished_per_key(uri).values()) == 2
    out = run_cli("report", f"tracking.uri={uri}", "report.sweep=all", "report.formats=[png]",
                  "report.progress=false", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any folder")
def test_a_store_in_a_folder_one_may_not_write_is_opened_to_read(tmp_path):
    """A report on shared results: no lock file can be made there, and none is needed."""
    uri = new_store(tmp_path / "shared")
    (tmp_path / "shared").chmod(0o555)
    try:
        assert open_store(uri, check_schema=True) is None
        assert not (tmp_path / "shared" / "mlflow.db.lock").exists()
    finally:
        (tmp_path / "shared").chmod(0o755)
