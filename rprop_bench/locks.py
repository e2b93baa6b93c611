"""Exclusive locks between the processes of one sweep, as files in a directory they share.

Why: the processes of a sweep (joblib workers, or jobs of another launcher on one machine) must
not both create the sweep's parent run, or both train one seed group. :mod:`filelock` locks
with ``flock`` on POSIX and ``msvcrt`` on Windows (and falls back where neither works).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock

__all__ = ["file_lock"]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created, with its directory, if needed) for the
    ``with`` block; wait as long as another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path):
        yield
