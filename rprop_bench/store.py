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
import time
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


#: A store up to this size gets SQLite's full ``integrity_check`` when it is opened (about
#: 10 ms per MB here); a larger one the faster ``quick_check``, which skips index contents.
FULL_CHECK_BYTES = 256 * 2**20
#: SQLite's lock bytes: its POSIX advisory locks sit at the "pending byte" (1 GiB), then the
#: reserved byte and 510 shared bytes (sqlite3.c, os_unix.c).
_SQLITE_LOCK_START, _SQLITE_LOCK_LENGTH = 0x40000000, 512


def sqlite_lock_holder(db: Path) -> int | None:
    """The pid of a process holding a SQLite lock on ``db`` (POSIX ``F_GETLK``), or ``None``
    if none does or this OS cannot say."""
    try:
        import fcntl
        import struct
    except ImportError:  # Windows
        return None
    layout = "hhqqi4x"  # struct flock on Linux and the BSDs' 64-bit off_t: type, whence, start,
    # length, pid
    try:
        with db.open("rb") as f:
            probe = struct.pack(layout, fcntl.F_WRLCK, os.SEEK_SET, _SQLITE_LOCK_START,
                                _SQLITE_LOCK_LENGTH, 0)  # fmt: skip
            answer = fcntl.fcntl(f.fileno(), fcntl.F_GETLK, probe)
    except (OSError, struct.error):
        return None
    lock_type, _, _, _, pid = struct.unpack(layout, answer)
    return int(pid) if lock_type != fcntl.F_UNLCK and pid > 0 else None


def check_mlflow_database(db: Path, wait_seconds: float = 30.0) -> None:
    """Check that an existing SQLite file is an MLflow store, and a sound one; raise
    :class:`TrackingError` if not.

    Without this, a corrupted file fails deep inside MLflow with a long traceback, a store
    that fails SQLite's integrity check is written to silently, and a database of another
    program silently gets MLflow's tables added to it. An empty file is accepted (MLflow
    initialises it). A store locked by another process (one stopped with SIGSTOP, say) is
    not damaged: it is waited for, up to ``wait_seconds``, and then reported as locked, with
    the pid of the process that holds it.
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
    check = "integrity_check" if db.stat().st_size <= FULL_CHECK_BYTES else "quick_check"
    deadline = time.monotonic() + wait_seconds
    told = False
    while True:
        try:
            with contextlib.closing(sqlite3.connect(db, timeout=1)) as conn:
                rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                tables = {str(name) for (name,) in rows.fetchall()}
                verdict = [str(row[0]) for row in conn.execute(f"PRAGMA {check}(3)")]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise TrackingError(f"{db} is a damaged SQLite database ({exc}); {advice}") from exc
            holder = sqlite_lock_holder(db)
            by = f" by process {holder}" if holder else " by another process"
            if time.monotonic() >= deadline:
                raise TrackingError(
                    f"{db} is locked{by} (it is not damaged); end or resume that process "
                    f"(kill -CONT {holder or 'PID'}), or raise tracking.retry_seconds "
                    f"(waited {wait_seconds:g} s)"
                ) from exc
            if not told:
                print(f"store: {db} is locked{by}; waiting up to {wait_seconds:g} s "
                      "(tracking.retry_seconds)", flush=True)  # fmt: skip
                told = True
            time.sleep(0.5)
        except sqlite3.DatabaseError as exc:
            raise TrackingError(f"{db} is a damaged SQLite database ({exc}); {advice}") from exc
    if verdict != ["ok"]:
        first = " ".join(verdict[0].split())[:100]
        raise TrackingError(
            f"{db} is a damaged SQLite database (PRAGMA {check}: {first}); back it "
            f"up and repair it (sqlite3 {db.name} .recover), or {advice}"
        )
    # (alembic_version alone: MLflow's first start, cut short; open_store rebuilds it)
    if tables and not MLFLOW_TABLES.issubset(tables) and "alembic_version" not in tables:
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


#: The SQL databases MLflow keeps runs in, besides SQLite, with the driver a bare scheme uses.
DATABASE_SCHEMES = {
    "postgresql": "psycopg2 (`pip install 'rprop-bench[server]'`)",
    "mysql": "mysqlclient or PyMySQL (mysql+pymysql://...)",
    "mssql": "pyodbc",
}
STORE_SCHEMES = ("sqlite", "http", "https", *DATABASE_SCHEMES)


def _check_database(uri: str, timeout: float) -> None:
    """Connect to a PostgreSQL, MySQL or SQL Server store once; a missing driver or a server
    that does not answer is one line (its password masked)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

    from rprop_bench.redaction import redact

    shown = redact(uri)
    scheme = uri.split(":", 1)[0]
    try:
        engine = create_engine(uri, connect_args=_connect_timeout(scheme, timeout))
    except (ModuleNotFoundError, ImportError, NoSuchModuleError) as exc:
        wanted = DATABASE_SCHEMES.get(scheme.split("+")[0], "its driver")
        raise TrackingError(
            f"tracking.uri={shown}: the database driver is not installed ({exc}); install {wanted}"
        ) from exc
    except (ArgumentError, ValueError) as exc:
        raise TrackingError(f"tracking.uri={shown} is not a database URL ({exc})") from exc
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (DBAPIError, SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()
        raise TrackingError(
            f"the database store at {shown} is not reachable "
            f"({redact(reason[0]) if reason else type(exc).__name__}); start it or set "
            "tracking.uri to a reachable store"
        ) from exc
    finally:
        engine.dispose()


def _connect_timeout(scheme: str, timeout: float) -> dict[str, object]:
    seconds = max(1, round(timeout))
    if scheme.startswith(("postgresql", "mysql")):
        return {"connect_timeout": seconds}
    return {"timeout": seconds} if scheme.startswith("mssql") else {}


def check_store(uri: str, timeout: float = 3.0, wait_seconds: float = 30.0) -> None:
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
    scheme = uri.split("://", 1)[0].split("+")[0] if "://" in uri else ""
    if scheme in DATABASE_SCHEMES:
        _check_database(uri, timeout)
        return
    if uri.startswith("sqlite:") and uri.split("?")[0].endswith(":memory:"):
        raise TrackingError(
            f"tracking.uri={uri}: an in-memory store keeps nothing after the command ends, and "
            "the jobs of a sweep would not share it; use sqlite:///mlflow.db (a file)"
        )
    db = sqlite_path(uri)
    if db is not None:
        if db.is_dir():
            raise TrackingError(f"cannot write the MLflow store: {db} is a directory")
        _check_writable_store_dir(db.parent, "directory")
        if db.exists() and not os.access(db, os.W_OK):
            raise TrackingError(f"cannot write the MLflow store: {db} is read-only")
        if db.exists():
            check_mlflow_database(db, wait_seconds)
        _check_writable_store_dir(db.parent / "mlruns", "artifact directory")
        return
    if uri.startswith("file:") or "://" not in uri:
        raise TrackingError(
            f"tracking URI {uri!r} is a file store, which MLflow 3 does not support; "
            f"use sqlite:///path/to/mlflow.db or an http:// server"
        )
    if scheme not in STORE_SCHEMES:
        from rprop_bench.redaction import redact

        raise TrackingError(
            f"tracking.uri={redact(uri)}: {scheme!r} is not a tracking store; valid schemes: "
            f"{', '.join(STORE_SCHEMES)}"
        )
