"""The retry policy for calls to the tracking store: what is transient, how long to wait.

Why: several worker processes share one SQLite file, and SQLite answers a writer that would
deadlock with "database is locked" at once, whatever its busy timeout; a tracking server may
restart. Both pass, so waiting (jittered exponential backoff, bounded by ``retry_seconds``)
loses nothing. The policy itself is :mod:`tenacity`'s; this module only says when it applies.
"""

from __future__ import annotations

import errno
import functools
import logging
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_before_delay,
    wait_exponential,
)

from rprop_bench import schema
from rprop_bench.signals import interrupts_held
from rprop_bench.store import TrackingError

__all__ = [
    "STORE_FAULT_MARKERS",
    "TRANSIENT_MARKERS",
    "RetryingClient",
    "StoreFault",
    "StoreUnavailable",
    "call_with_retry",
    "is_store_fault",
    "is_transient",
]

#: Words in an error (or its causes) that mark it as passing: the store is busy or away.
TRANSIENT_MARKERS = (
    "database is locked", "database table is locked", "Max retries exceeded",
    "Connection refused", "Connection aborted", "Connection reset", "RemoteDisconnected",
    "timed out", "failed with error code 50", "ConnectionError",
)  # fmt: skip
#: Words that mark an error of the store's own disk or file: it will not pass by waiting.
STORE_FAULT_MARKERS = (
    "database or disk is full", "No space left on device", "disk I/O error",
    "readonly database", "Read-only file system", "database disk image is malformed",
    "file is not a database", "unable to open database file", "Disk quota exceeded",
)  # fmt: skip
#: The same, as the errno of an OSError (an artifact written beside the database).
_FAULT_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO})
FIRST_DELAY = 0.05  # seconds before the first retry; doubled each time ...
MAX_DELAY = 2.0  # ... up to this; every wait is then scaled by a random factor in [0.5, 1.5]
T = TypeVar("T")
log = logging.getLogger(__name__)


class StoreUnavailable(TrackingError):
    """The store stayed busy or unreachable for the whole retry budget."""


class StoreFault(StoreUnavailable):
    """The store's disk or file failed (full, read-only, damaged): no retry can help. Handled
    as an unavailable store: the run is marked FAILED locally and the sweep stops."""


def is_store_fault(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a fault of the store's disk or
    database file (:data:`STORE_FAULT_MARKERS`)."""
    return _fault_line(exc) is not None


def _fault_line(exc: BaseException) -> str | None:
    """The line of ``exc`` (or of its causes) that names a fault of the store, if one does."""
    for seen in _chain(exc):
        if isinstance(seen, OSError) and seen.errno in _FAULT_ERRNOS:
            return f"{seen.strerror} ({seen.filename or 'artifact'})"[:200]
        for line in str(seen).splitlines():
            if any(marker in line for marker in STORE_FAULT_MARKERS):
                return line.strip()[:200]
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from; bounded in case of a cycle."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the store is busy or away."""
    return any(
        any(marker in f"{type(seen).__name__}: {seen}" for marker in TRANSIENT_MARKERS)
        for seen in _chain(exc)
    )


def _retried(exc: BaseException) -> bool:
    """Retry transient errors only; KeyboardInterrupt and the like are never retried."""
    return isinstance(exc, Exception) and is_transient(exc)


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


class _JitteredExponential(wait_exponential):
    """tenacity's exponential backoff, each wait scaled by a random factor in [0.5, 1.5]."""

    def __call__(self, retry_state: RetryCallState) -> float:
        return float(super().__call__(retry_state)) * random.uniform(0.5, 1.5)


def call_with_retry(call: Callable[[], T], retry_seconds: float, what: str) -> T:
    """``call()``, retried while the store is busy or away; other errors are raised at once.

    Each attempt holds Ctrl-C and SIGTERM back until it returns (:func:`interrupts_held`); the
    waits between attempts stay interruptible. No wait ends past ``retry_seconds``.

    Raises:
        StoreUnavailable: still failing after ``retry_seconds`` (``what`` names the call).
    """

    def attempt() -> T:
        with interrupts_held():
            try:
                return call()
            except Exception as exc:
                fault = _fault_line(exc)
                if fault is not None and not is_transient(exc):
                    raise StoreFault(f"the MLflow store failed ({what}: {fault})") from exc
                raise

    def give_up(state: RetryCallState) -> T:
        exc = state.outcome.exception() if state.outcome else None
        raise StoreUnavailable(
            f"the MLflow store stayed unavailable for {retry_seconds:g} s "
            f"({what}: {_first_line(exc)})"
        ) from exc

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.info("store busy or away, retrying %s: %s", what, _first_line(exc))

    retrying = Retrying(
        retry=retry_if_exception(_retried),
        wait=_JitteredExponential(multiplier=FIRST_DELAY, max=MAX_DELAY),
        stop=stop_before_delay(retry_seconds),
        before_sleep=before_sleep,
        retry_error_callback=give_up,
    )
    return retrying(attempt)


class RetryingClient:
    """A client (an ``MlflowClient``) whose every method goes through :func:`call_with_retry`.

    ``retry_seconds`` may be changed; the next call uses the new budget.
    """

    def __init__(self, client: Any, retry_seconds: float) -> None:
        self._client = client
        self.retry_seconds = retry_seconds

    def create_run(
        self, experiment_id: str, *, run_name: str | None = None, tags: dict[str, str] | None = None
    ) -> Any:
        """``create_run``, made idempotent: a request that reached the store but lost its reply
        (over HTTP) has created the run, so every retry first looks for it by a random
        :data:`~rprop_bench.schema.TAG_CREATE_ATTEMPT` tag, and creates only if it is not
        there. A plain retry would make a second run."""
        attempt = uuid.uuid4().hex
        all_tags = {**(tags or {}), schema.TAG_CREATE_ATTEMPT: attempt}
        tried = False

        def once() -> Any:
            nonlocal tried
            if tried:
                found = self._client.search_runs(
                    [experiment_id],
                    filter_string=f"tags.`{schema.TAG_CREATE_ATTEMPT}` = '{attempt}'",
                    max_results=1,
                )
                if found:
                    return found[0]
            tried = True
            return self._client.create_run(experiment_id, run_name=run_name, tags=all_tags)

        return call_with_retry(once, self.retry_seconds, "MlflowClient.create_run")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # e.g. pickle's probes before ``_client`` exists
            raise AttributeError(name)
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            return call_with_retry(
                lambda: attribute(*args, **kwargs), self.retry_seconds, f"MlflowClient.{name}"
            )

        return call
