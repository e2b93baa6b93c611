"""A SQLite store's first start, made safe: created whole or not at all, opened one process at
a time, and finished or rebuilt where an older start was cut short.

Why: MLflow creates a new store's tables with a chain of migrations the first time a process
opens it. Two processes opening one new store at once both migrate it (alembic's "table
_alembic_tmp_params already exists"), and a kill during the migrations leaves a store that
every later command fails on ("table datasets already exists"). So:

- :func:`open_store` holds a file lock beside the database (``mlflow.db.lock``,
  :mod:`rprop_bench.locks`) while MLflow opens it, so creation and migration are serialised;
- a store that does not exist yet is built in a temporary file beside it and renamed into
  place (:func:`os.replace` is atomic), so an interruption leaves no store or a whole one;
- with ``check_schema``, a store whose schema is not the installed MLflow's (cut short by an
  older start, or from an older MLflow) is rebuilt if it holds no runs, else upgraded with
  MLflow's own ``mlflow db upgrade``; either way the returned line says what was done.

A tracking server serialises its own store, so other URIs pass through untouched.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rprop_bench.locks import file_lock
from rprop_bench.retry import call_with_retry
from rprop_bench.store import TrackingError, check_mlflow_database, sqlite_path

__all__ = ["open_store", "schema_head"]

_ADVICE = "move it away or set tracking.uri to another store"


def _lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


def _touch_mlflow(uri: str) -> None:
    """Let MLflow open ``uri`` (creating and migrating an empty store), as every command does."""
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=uri).search_experiments(max_results=1)


#: Loggers that narrate a store's creation at INFO level, naming the temporary file.
_CREATION_LOGGERS = ("mlflow.store.db.utils", "alembic.runtime.migration")


@contextlib.contextmanager
def _quiet_creation() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _CREATION_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _create_whole(db: Path) -> None:
    """Build a new store in a temporary file beside ``db``, then rename it into place."""
    temporary = db.with_name(f".{db.name}.creating-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    try:
        with _quiet_creation():
            _touch_mlflow(f"sqlite:///{temporary}")
        os.replace(temporary, db)
    finally:
        temporary.unlink(missing_ok=True)


def _cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rprop_bench" / "mlflow_schema_heads.json"


def schema_head() -> str:
    """The schema revision the installed MLflow creates and expects (its alembic head).

    Read from MLflow's migration scripts with alembic's public API (about 0.4 s), then kept
    per MLflow version in the user's cache (``~/.cache/rprop_bench``).
    """
    import mlflow

    cache = _cache_file()
    with contextlib.suppress(OSError, ValueError):
        heads = json.loads(cache.read_text())
        if mlflow.__version__ in heads:
            return str(heads[mlflow.__version__])
    from alembic.script import ScriptDirectory

    scripts = importlib.resources.files("mlflow.store.db_migrations")
    head = ScriptDirectory(str(scripts)).get_current_head()
    if head is None:
        raise TrackingError(f"MLflow {mlflow.__version__} lists no schema migrations")
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({mlflow.__version__: head}))
    return head


def _state(db: Path) -> tuple[str | None, int]:
    """The store's schema revision (``None`` if it has none) and its number of runs."""
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        revision = None
        if "alembic_version" in tables:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
        runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if "runs" in tables else 0
    return revision, int(runs)


def _rebuild(db: Path, why: str) -> str:
    """Move a store without runs aside and create it again; return the line that says so."""
    aside = db.with_name(f"{db.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(db, aside)
    _create_whole(db)
    return f"{db}: {why}, and it held no runs; created it again (the old file is {aside.name})"


def _upgrade(db: Path, uri: str, revision: str | None, head: str) -> str:
    """Run MLflow's own migrations on a store that holds runs; return the line that says so."""
    done = subprocess.run(
        [sys.executable, "-m", "mlflow", "db", "upgrade", uri],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise TrackingError(
            f"{db} has MLflow schema {revision} (this MLflow expects {head}) and its upgrade "
            f"failed ({last}); back it up and run `mlflow db upgrade {uri}`, or {_ADVICE}"
        )
    return f"{db}: upgraded its MLflow schema from {revision} to {head} (`mlflow db upgrade`)"


def _finish(db: Path, uri: str) -> str | None:
    """Make an existing store's schema the installed MLflow's; a line if anything was done."""
    head = schema_head()
    revision, runs = _state(db)
    if revision == head:
        return None
    if runs == 0:
        why = "its first start was cut short" if revision is None else f"its schema is {revision}"
        return _rebuild(db, why)
    return _upgrade(db, uri, revision, head)


def open_store(
    uri: str, *, check_schema: bool = False, check_integrity: bool = False,
    retry_seconds: float = 30.0,
) -> str | None:  # fmt: skip
    """Open the store at ``uri`` with MLflow, safely for a SQLite store (see the module).

    Returns a line saying what was repaired or upgraded, or ``None``. ``check_schema`` also
    compares the schema with the installed MLflow's, and checks an existing store's
    integrity (:func:`~rprop_bench.store.check_mlflow_database`); ``check_integrity`` only
    the latter. The CLI does so once per command; jobs open a store the CLI has checked.
    A busy store is retried for ``retry_seconds``.

    Raises:
        TrackingError: a store that cannot be made usable (one line).
    """
    db = sqlite_path(uri)
    if db is None:
        return None

    def touch() -> None:
        call_with_retry(lambda: _touch_mlflow(uri), retry_seconds, f"opening {db}")

    if db.is_file() and not os.access(db.parent, os.W_OK):
        # A store in a folder this user may not write (shared results): no lock file can go
        # there, nothing can be created or repaired, and MLflow only reads a whole store.
        touch()
        return None
    with file_lock(_lock_path(db)):
        for stale in db.parent.glob(f".{db.name}.creating-*"):  # a creator killed mid-way
            stale.unlink(missing_ok=True)
        if not db.exists() or db.stat().st_size == 0:
            db.unlink(missing_ok=True)
            _create_whole(db)
            return None
        if check_schema or check_integrity:  # a damaged or foreign file: one line
            check_mlflow_database(db, retry_seconds)
        try:
            note = _finish(db, uri) if check_schema else None
            touch()
        except sqlite3.DatabaseError as exc:
            raise TrackingError(f"{db} cannot be read ({exc}); {_ADVICE}") from exc
        except TrackingError:
            raise
        except Exception as exc:  # MLflow failed to open or migrate it: an older, cut-short start
            _, runs = _state(db)
            if runs:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise TrackingError(f"MLflow cannot open {db} ({first}); {_ADVICE}") from exc
            note = _rebuild(db, "MLflow could not open it (a first start cut short)")
            touch()
        return note
