"""The harness's SIGINT and SIGTERM: one exception for both, and holding them back while a
store call runs, so that no write is left half done.

Why: MLflow's SQL store rolls a session back on ``Exception`` only. A KeyboardInterrupt raised
inside its commit leaves that session's transaction open, holding SQLite's write lock, and the
KILLED mark that follows then waits on it until it gives up: an interrupted run stayed RUNNING
and the command hung (seen in CI under load).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = [
    "Interrupted",
    "die_with_parent",
    "end_by_signal_from_now",
    "forget_caught_interrupt",
    "install_sigterm_handler",
    "interrupt_reason",
    "interrupts_held",
    "orphaned",
]  # fmt: skip

#: Linux's prctl option that sends the calling process a signal when its parent exits.
_PR_SET_PDEATHSIG = 1


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the ``with`` block; deliver them when it ends.

    A second signal while held is acted on at once, so a call that hangs can still be stopped.
    A signal that is ignored (``nohup``, ``&``) stays ignored. Only the main thread receives
    signals; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous: dict[int, Any] = {}

    def hold(signum: int, frame: Any) -> None:
        if held:  # the second one: stop now
            _deliver(signum, previous[signum], frame)
        held.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if held:
            _deliver(held[0], previous[held[0]], None)


def _deliver(signum: int, handler: Any, frame: Any) -> None:
    """Act on signal ``signum`` as ``handler`` (the one held back) would have."""
    if callable(handler):
        handler(signum, frame)  # Python's KeyboardInterrupt, or the CLI's own for SIGTERM
    elif handler == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signum`` says which (the exit status is 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupt_reason(exc: KeyboardInterrupt) -> str:
    """The failure reason a run KILLED by ``exc`` records: ``interrupted (SIGTERM)``."""
    return f"interrupted ({exc})" if isinstance(exc, Interrupted) else "interrupted (SIGINT)"


def forget_caught_interrupt() -> None:
    """Let a process that caught a Ctrl-C end with the exit status it chose (130, say).

    Why: since 3.8 (bpo-1054041), ``python -m`` ends a process by SIGINT itself when a
    KeyboardInterrupt went unhandled, and it judges that per ``exec`` of a string, not per
    process: a Ctrl-C that lands inside code run that way (dataclasses, named tuples and Hydra's
    structured configs make their methods with ``exec``) marks the interrupt unhandled though
    the CLI catches it later. The CLI then printed its one line and still died by SIGINT, its
    exit status lost (seen in CI under load). Every ``exec`` of a string clears that mark
    before it runs, so one that cannot fail leaves none.
    """
    exec("pass", {})


def end_by_signal_from_now() -> None:
    """From here the process only exits: SIGINT and SIGTERM end it at once, by the signal
    (exit status −signum), instead of raising inside the interpreter's exit callbacks.

    Why: an exception raised in an ``atexit`` callback is printed with its traceback
    ("Exception ignored in atexit callback"): a Ctrl-C that landed in torch's
    ``dump_compile_times`` at exit did that (seen in CI under load). By then every run is
    recorded, so there is nothing left to flush. A signal that is ignored (``nohup``, ``&``)
    stays ignored. Only the main thread may set handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def install_sigterm_handler() -> None:
    """Make SIGTERM interrupt like Ctrl-C, so that a killed run flushes and is marked KILLED.

    Python's default for SIGTERM is to die at once, leaving the run RUNNING with its buffered
    metrics lost. Only the main thread may install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupted)


def die_with_parent(signum: int, parent_pid: int | None = None) -> bool:
    """Have the kernel send this process ``signum`` when its parent exits (Linux's
    ``PR_SET_PDEATHSIG``); if the parent ``parent_pid`` is already gone, exit now.

    Why: a sweep's joblib workers, and the fork server they come from, outlived a main
    process killed with ``kill -9`` and went on training queued jobs into the store. Returns
    whether the kernel took the request (elsewhere than Linux it cannot: nothing is done).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    global _parent
    _parent = parent_pid
    if parent_pid is not None and os.getppid() != parent_pid:  # died before the request
        os._exit(128 + signum)
    return True


_parent: int | None = None  # the parent that die_with_parent watches


def orphaned() -> bool:
    """Whether the parent given to :func:`die_with_parent` has exited (a worker whose sweep
    was killed: it ends once its run is recorded, instead of waiting for more jobs)."""
    return _parent is not None and os.getppid() != _parent
