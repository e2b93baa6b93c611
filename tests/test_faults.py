"""Faults, end to end: signals at any moment, a killed sweep's processes, a store's disk or
file failing, a locked store, and secrets in the tracking URI.

Real ``python -m rprop_bench`` processes, real SQLite stores (on a small tmpfs for the full
disk: root only), a real PostgreSQL with a password for the secrets.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness_helpers import (
    communicate_or_explain,
    new_store,
    processes_in,
    run_cli,
    runs_of_kind,
    start_cli,
    stop_group,
    wait_for,
)
from mlflow import MlflowClient
from servers import postgres_server, postgres_unavailable

from rprop_bench import schema

pytestmark = pytest.mark.slow

QUIET = ("tracking.heatmap=true",)


def _statuses(uri: str) -> list[tuple[str, str]]:
    """(status, failure reason) of every training run."""
    return [
        (r.info.status, r.data.tags.get(schema.TAG_FAILURE_REASON, ""))
        for r in runs_of_kind(uri, "training")
    ]


def _running_with_metrics(uri: str) -> str | None:
    for run in runs_of_kind(uri, "training"):
        if run.info.status == "RUNNING" and run.data.metrics:
            return run.info.run_id
    return None


def test_a_signal_at_any_moment_of_a_single_run_ends_it_with_a_true_status(tmp_path):
    """SIGTERM or SIGINT at random moments, from start-up to the final artifact writes: the
    run is FINISHED (the signal came after), or KILLED with a reason; never RUNNING."""
    uri = new_store(tmp_path)
    args = ("problem=iris", "train.epochs=60", "train.histogram_every=5", *QUIET,
            f"tracking.uri={uri}")  # fmt: skip
    started = time.monotonic()
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    lasts = time.monotonic() - started
    rng = random.Random(2026)
    seen: dict[str, int] = {}
    for trial in range(20):
        sig = rng.choice([signal.SIGTERM, signal.SIGINT])
        process = start_cli(*args, f"train.seed={trial + 1}", cwd=tmp_path)
        time.sleep(rng.uniform(0.3, 1.1) * lasts)
        process.send_signal(sig)
        _, stderr = communicate_or_explain(process, 120)
        assert "Traceback" not in stderr, stderr
        # -sig: the signal came as the interpreter was exiting (Python has restored the
        # default handlers by then), once everything was recorded
        assert process.returncode in (0, 128 + sig, -sig), (trial, process.returncode, stderr)
        mine = [r for r in runs_of_kind(uri, "training")
                if r.data.tags.get(schema.TAG_SEED) == str(trial + 1)]  # fmt: skip
        if process.returncode == -sig:
            assert [r.info.status for r in mine] == ["FINISHED"], (trial, stderr)
        for run in mine:
            status = run.info.status
            seen[status] = seen.get(status, 0) + 1
            assert status in ("FINISHED", "KILLED"), (trial, status, stderr)
            if status == "KILLED":
                assert run.data.tags[schema.TAG_FAILURE_REASON].startswith(
                    f"interrupted ({sig.name})"
                )
                assert process.returncode == 128 + sig
    assert seen.get("KILLED", 0) >= 1, seen  # some moments landed inside a run (start-up varies)


def test_kill_9_of_a_joblib_sweeps_main_process_leaves_no_process(tmp_path):
    """The fork server dies with the main process, its workers with it; their runs are
    marked KILLED on the way out."""
    uri = new_store(tmp_path)
    process = start_cli(
        "sweep", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optimizer=rprop,adam",
        "problem=line", "train.seed=0,1,2", "train.epochs=10000000",
        "tracking.flush_seconds=0.5", f"tracking.uri={uri}", cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_for(lambda: _running_with_metrics(uri), 240, "a running run")
        assert len(processes_in(tmp_path)) >= 3  # main, fork server, workers
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
        time.sleep(10)
        assert processes_in(tmp_path) == []
    finally:
        stop_group(process)
    statuses = _statuses(uri)
    assert statuses
    assert all(s == "KILLED" for s, _ in statuses), statuses


@contextlib.contextmanager
def _tmpfs(path: Path, size: str):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a disk that fills up) needs root")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_fails_the_run_locally_stops_the_sweep_and_a_rerun_records_it(tmp_path):
    with _tmpfs(tmp_path / "disk", "3m") as disk:
        uri = f"sqlite:///{disk}/mlflow.db"
        args = ("sweep", "optimizer=rprop", "problem=iris,moons", "train.seed=0,1,2",
                "train.epochs=400", f"tracking.uri={uri}")  # fmt: skip
        out = run_cli(*args, cwd=tmp_path, timeout=900)
        assert out.returncode == 2, out.stderr[-2000:]
        errors = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(errors) == 1, out.stderr[-3000:]
        assert errors[0].startswith("error: the MLflow store failed (")
        assert "database or disk is full" in errors[0]
        record = json.loads(Path(errors[0].rsplit(" in ", 1)[1]).read_text())
        assert record["status"] == "FAILED"
        assert "· moons" not in out.stdout  # the sweep stopped at the first failure: no run
        subprocess.run(["mount", "-o", "remount,size=200m", str(disk)], check=True)
        again = run_cli(*args, cwd=tmp_path, timeout=900)  # the same sweep, resumed
        assert again.returncode == 0, again.stderr[-2000:]
        failed = [r for r in runs_of_kind(uri, "training") if r.info.status == "FAILED"]
        assert [r.info.run_id for r in failed] == [record["run_id"]]
        assert failed[0].data.tags[schema.TAG_FAILURE_KIND] == schema.FAILURE_STORE
        assert "database or disk is full" in failed[0].data.tags[schema.TAG_FAILURE_REASON]
        assert "RUNNING" not in {r.info.status for r in runs_of_kind(uri, None)}


def test_a_read_only_store_is_one_line_before_training(tmp_path):
    with _tmpfs(tmp_path / "disk", "20m") as disk:
        uri = new_store(disk)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        out = run_cli("problem=line", "train.epochs=5", f"tracking.uri={uri}", cwd=tmp_path)
        assert out.returncode == 2
        assert out.stderr.strip().startswith("error: cannot write the MLflow store")
        assert "Read-only file system" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_store_truncated_mid_run_fails_locally_then_is_refused_as_damaged(tmp_path):
    uri = new_store(tmp_path)
    db = tmp_path / "mlflow.db"
    process = start_cli("problem=iris", "train.epochs=10000000", "tracking.flush_seconds=0.2",
                        f"tracking.uri={uri}", cwd=tmp_path)  # fmt: skip
    try:
        wait_for(lambda: _running_with_metrics(uri), 180, "a running run")
        os.truncate(db, db.stat().st_size // 2)
        _, stderr = communicate_or_explain(process, 120)
    finally:
        stop_group(process)
    assert process.returncode == 2, stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith("error: the MLflow store failed (")
    assert "marked FAILED locally in " in line
    again = run_cli("problem=iris", "train.epochs=5", f"tracking.uri={uri}", cwd=tmp_path)
    assert again.returncode == 2
    (refused,) = again.stderr.strip().splitlines()
    assert " is a damaged SQLite database (" in refused


def test_a_corrupted_store_is_refused_by_run_sweep_and_report(tmp_path):
    """16 KB of random bytes in the middle of a store that holds runs: it fails SQLite's
    integrity check, and every command says so in one line instead of using it."""
    uri = new_store(tmp_path)
    assert (
        run_cli("problem=line", "train.epochs=5", f"tracking.uri={uri}", cwd=tmp_path).returncode
        == 0
    )
    db = tmp_path / "mlflow.db"
    with db.open("r+b") as f:
        f.seek(db.stat().st_size // 3)
        f.write(random.Random(0).randbytes(16384))
    for args in (("problem=line", "train.epochs=5"), ("sweep", "problem=line", "train.epochs=5"),
                 ("report",)):  # fmt: skip
        out = run_cli(*args, f"tracking.uri={uri}", cwd=tmp_path)
        assert out.returncode == 2, (args, out.stderr[-2000:])
        (line,) = out.stderr.strip().splitlines()
        assert "is a damaged SQLite database" in line or "is not a SQLite database" in line


_HOLD_LOCK = """
import os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
conn.execute("COMMIT")
"""


def test_a_store_locked_by_a_stopped_process_is_called_locked_and_waited_for(tmp_path):
    uri = new_store(tmp_path)
    db = tmp_path / "mlflow.db"
    args = ("problem=line", "train.epochs=5", f"tracking.uri={uri}")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        out = run_cli(*args, "tracking.retry_seconds=2", cwd=tmp_path)
        assert out.returncode == 2
        (line,) = out.stderr.strip().splitlines()
        assert f"mlflow.db is locked by process {holder.pid} (it is not damaged)" in line
        assert "damaged SQLite" not in line
        waiting = start_cli(*args, "tracking.retry_seconds=60", cwd=tmp_path)
        assert waiting.stdout is not None
        said = waiting.stdout.readline()  # the CLI's first line: it found the store locked
        assert f"is locked by process {holder.pid}; waiting up to 60 s" in said, said
        os.kill(holder.pid, signal.SIGCONT)  # the lock goes within the retry window
        _, stderr = communicate_or_explain(waiting, 120)
        assert waiting.returncode == 0, stderr
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(holder.pid, signal.SIGCONT)
        holder.wait(30)
    assert [s for s, _ in _statuses(uri)] == ["FINISHED"]


@pytest.mark.skipif(postgres_unavailable() is not None, reason=str(postgres_unavailable()))
def test_a_password_in_the_tracking_uri_is_nowhere_but_the_connection(tmp_path):
    """A PostgreSQL store given with its password: not in params, tags, artifacts, Hydra's
    files, the console or the report; and files made are not world-readable."""
    with postgres_server(durable=False) as pg:
        secret = pg.uri.split(":", 2)[2].split("@", 1)[0]
        assert len(secret) >= 8
        outs = [
            run_cli("problem=line", "train.epochs=5", f"tracking.uri={pg.uri}", cwd=tmp_path),
            run_cli(
                "sweep",
                "problem=line",
                "optimizer=rprop,adam",
                "train.epochs=5",
                f"tracking.uri={pg.uri}",
                cwd=tmp_path,
            ),
            run_cli("report", f"tracking.uri={pg.uri}", cwd=tmp_path),
            run_cli(
                "problem=line", "train.epochs=5", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": pg.uri}
            ),
        ]
        for out in outs:
            assert out.returncode == 0, out.stderr[-2000:]
            assert secret not in out.stdout + out.stderr
        assert "***@127.0.0.1" in outs[0].stdout
        client = MlflowClient(pg.uri)
        runs = runs_of_kind(pg.uri, None)
        assert len(runs) >= 5
        for run in runs:
            assert "tracking.uri" not in run.data.params
            texts = [*run.data.params.values(), *run.data.tags.values(), run.info.run_name or ""]
            assert not [t for t in texts if secret in t]
            if run.data.tags.get(schema.TAG_RUN_KIND) == "training":
                local = client.download_artifacts(run.info.run_id, "", str(tmp_path / "a"))
                for path in Path(local).rglob("*"):
                    if path.is_file():
                        assert secret.encode() not in path.read_bytes(), path
    for path in tmp_path.rglob("*"):
        if path.is_file() and "a" not in path.relative_to(tmp_path).parts[:1]:
            assert secret.encode() not in path.read_bytes(), path
            if ".hydra" in path.parts or path.suffix == ".db":
                assert path.stat().st_mode & 0o077 == 0, path  # Hydra's record: owner only
            assert path.stat().st_mode & 0o007 == 0, path  # never world-readable
