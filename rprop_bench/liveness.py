"""Whether a RUNNING run is still being written: the writer's identity tags, and the rule.

Why: a run whose process died (``kill -9``, a crashed worker) stays RUNNING in the store; a
resumed sweep must tell it from one that a live process is writing, without a lease server.
Process facts come from :mod:`psutil`, which reads them on every OS (Linux, macOS, Windows).
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING

import psutil

from rprop_bench import schema

if TYPE_CHECKING:
    from mlflow.entities import Run

__all__ = ["process_start", "process_tags", "run_is_alive"]

#: Two start times closer than this are the same process's: a pid is not reused within a
#: second of its last owner's start, and the boot time they are measured from may move that
#: much (it is wall-clock based: a clock step shifts it; Windows computes it afresh each call).
START_TOLERANCE_SECONDS = 1.0
_DEAD = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, in seconds since boot (``"%.3f"``); the value of the tag
    ``schema.TAG_PROCESS_START``.

    Returns:
        ``None`` if the process is gone or a zombie; ``""`` if it exists but may not be read.
    """
    if pid <= 0:
        return None
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            if process.status() in _DEAD:
                return None
            started = process.create_time()
    except psutil.NoSuchProcess:  # ZombieProcess included
        return None
    except psutil.AccessDenied:
        return ""
    return f"{started - psutil.boot_time():.3f}"


def process_tags() -> dict[str, str]:
    """Tags naming the process that writes a run, and its first heartbeat (schema names)."""
    return {
        schema.TAG_HOST: socket.gethostname(),
        schema.TAG_PID: str(os.getpid()),
        schema.TAG_PROCESS_START: process_start(os.getpid()) or "",
        schema.TAG_HEARTBEAT: f"{time.time():.3f}",
    }


def _seconds_since_boot(tag: str) -> float | None:
    """A start-time tag in seconds since boot: this version's (``"1234.560"``) or, from runs
    tagged by versions that read ``/proc``, Linux clock ticks since boot (``"123456"``)."""
    try:
        if tag.isdigit():
            return int(tag) / os.sysconf("SC_CLK_TCK")
        return float(tag)
    except (ValueError, OSError, AttributeError):  # no sysconf: not a Linux tag's host
        return None


def _same_start(tagged: str, now: str) -> bool:
    """Whether start-time tags ``tagged`` (the run's) and ``now`` (the live pid's) match.

    An empty one (its start could not be read) matches: then the pid alone decides.
    """
    if not tagged or not now:
        return True
    then, current = _seconds_since_boot(tagged), _seconds_since_boot(now)
    if then is None or current is None:
        return False
    return abs(then - current) < START_TOLERANCE_SECONDS


def _pid_alive(pid: int, start: str) -> bool:
    """Whether process ``pid`` exists, is not a zombie, and started at ``start`` (if known)."""
    now = process_start(pid)
    return now is not None and _same_start(start, now)  # same start: not a reused pid


def run_is_alive(run: Run, stale_seconds: float, now: float | None = None) -> bool:
    """Whether a RUNNING run may still be written by a live process.

    The rule: on the host that wrote it, the run is alive while its process (same pid, same
    start time, not a zombie) exists, except that this very process never counts (it is
    about to start its own run). From another host, it is alive while its heartbeat (or, for
    runs without one, its start) is younger than ``stale_seconds``. ``kill -9`` leaves a
    RUNNING run whose process is gone, so the next sweep sees it dead at once on the same host.
    """
    tags = run.data.tags
    pid = tags.get(schema.TAG_PID, "")
    if tags.get(schema.TAG_HOST) == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return False
        return _pid_alive(int(pid), tags.get(schema.TAG_PROCESS_START, ""))
    try:
        last = float(tags[schema.TAG_HEARTBEAT])
    except (KeyError, ValueError):
        last = (run.info.start_time or 0) / 1000
    return (time.time() if now is None else now) - last < stale_seconds
