"""The tracking store's address: resolving it and checking it before any training.

:func:`check_store` probes an HTTP tracking server, or checks that a SQLite store's directory
is writable and that an existing database file is an MLflow store (not a corrupted file or
another program's database), and raises :class:`TrackingError` with a one-line message
otherwise. This module does not import MLflow, so bad input is reported within a second.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

SQLITE_PREFIX = "sqlite:///"
SQLITE_HEADER = b"SQLite format 3\x00"
#: Tables every MLflow SQLite store has; a database without them belongs to something else.
MLFLOW_TABLES = frozenset({"experiments", "runs", "metrics", "tags"})


class TrackingError(RuntimeError):
    """The tracking store cannot be used; the message is one line for the user."""


# --- the store: URIs and reachability -------------------------------------------------------


def resolve_uri(uri: str, base_dir: Path) -> str:
    """Make a relative SQLite path absolute against ``base_dir``; other URIs pass unchanged.

    >>> resolve_uri("sqlite:///mlflow.db", Path("/home/me"))
    'sqlite:////home/me/mlflow.db'
    """
    if uri.startswith(SQLITE_PREFIX):
        path = uri[len(SQLITE_PREFIX) :]
        if path and path != ":memory:" and not os.path.isabs(path):
            return SQLITE_PREFIX + str((base_dir / path).resolve())
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:`` URI as SQLAlchemy (MLflow's database layer) reads
    it, percent-escapes decoded; ``None`` for an in-memory database or another scheme.

    >>> sqlite_path("sqlite:////data/my%20runs.db?timeout=5")
    PosixPath('/data/my runs.db')
    """
    if not uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url  # MLflow's dependency; imported only for SQLite
    from sqlalchemy.exc import ArgumentError

    try:
        database = make_url(uri).database
    except (ArgumentError, ValueError):  # not a URL SQLAlchemy reads: nor could MLflow
        return None
    return Path(database) if database and database != ":memory:" else None


def artifact_root(uri: str) -> str | None:
    """Where new experiments of a SQLite store keep artifacts: ``mlruns`` beside the database."""
    db = sqlite_path(uri)
    return (db.parent / "mlruns").resolve().as_uri() if db else None


def check_writable_dir(directory: Path, what: str) -> None:
    """Create ``directory`` if needed and write a probe file in it; else :class:`TrackingError`.

    Probing beats ``os.access``: it also catches read-only mounts and full disks, and it works
    for root, whom permission bits do not stop.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".rprop_bench_probe_"):
            pass
    except OSError as exc:
        raise TrackingError(
            f"{what} {directory} is not writable ({exc.strerror or type(exc).__name__})"
        ) from exc


def _check_writable_store_dir(directory: Path, what: str) -> None:
    try:
        check_writable_dir(directory, what)
    except TrackingError as exc:
        raise TrackingError(f"cannot write the MLflow store: {exc}") from exc


def check_mlflow_database(db: Path) -> None:
    """Check that an existing SQLite file is an MLflow store; raise :class:`TrackingError` if not.

    Without this, a corrupted file fails deep inside MLflow with a long traceback, and a
    database of another program silently gets MLflow's tables added to it. An empty file is
    accepted (MLflow initialises it).
    """
    if db.stat().st_size == 0:
        return
    with db.open("rb") as f:
        header = f.read(len(SQLITE_HEADER))
    advice = "move it away or set tracking.uri to another store"
    if header != SQLITE_HEADER:
        raise TrackingError(
            f"{db} is not a SQLite database (corrupted, or another kind of file); {advice}"
        )
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=20)) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.DatabaseError as exc:
        raise TrackingError(f"{db} is a damaged SQLite database ({exc}); {advice}") from exc
    tables = {str(name) for (name,) in rows}
    if tables and not MLFLOW_TABLES.issubset(tables):
        shown = ", ".join(sorted(tables)[:5])
        raise TrackingError(
            f"{db} is not an MLflow store: it is another program's database (tables: {shown}); "
            f"{advice}"
        )


def _probe_http(uri: str, timeout: float) -> None:
    base = uri.rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        pass  # something answered; ask the tracking API itself
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"MLflow tracking server not reachable at {uri} ({reason}); start it or set "
            f"tracking.uri (or MLFLOW_TRACKING_URI) to a reachable server or a sqlite:/// path"
        ) from exc
    try:
        with urllib.request.urlopen(
            f"{base}/api/2.0/mlflow/experiments/search?max_results=1", timeout=timeout
        ):
            return
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return  # a server that wants credentials: MLflow reads them from the environment
        raise TrackingError(
            f"{uri} answered HTTP {exc.code}; it does not look like an MLflow tracking server"
        ) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise TrackingError(f"MLflow tracking server not reachable at {uri} ({exc})") from exc


def check_store(uri: str, timeout: float = 3.0) -> None:
    """Check that runs can be written to ``uri``; raise :class:`TrackingError` if not.

    * ``http(s)://``: the server must answer within ``timeout`` seconds.
    * ``sqlite:///``: the database's directory (and the artifact directory beside it) must be
      writable, and an existing database file too; it must be an MLflow store
      (:func:`check_mlflow_database`).
    * file-store URIs and plain paths are refused (MLflow 3 no longer supports them).
    """
    if uri.startswith(("http://", "https://")):
        _probe_http(uri, timeout)
        return
    db = sqlite_path(uri)
    if db is not None:
        if db.is_dir():
            raise TrackingError(f"cannot write the MLflow store: {db} is a directory")
        _check_writable_store_dir(db.parent, "directory")
        if db.exists() and not os.access(db, os.W_OK):
            raise TrackingError(f"cannot write the MLflow store: {db} is read-only")
        if db.exists():
            check_mlflow_database(db)
        _check_writable_store_dir(db.parent / "mlruns", "artifact directory")
        return
    if uri.startswith("file:") or "://" not in uri:
        raise TrackingError(
            f"tracking URI {uri!r} is a file store, which MLflow 3 does not support; "
            f"use sqlite:///path/to/mlflow.db or an http:// server"
        )
