"""The one module that writes to MLflow.

* :func:`~rprop_bench.store.check_store` (re-exported here) tells, before any training,
  whether the tracking URI can be used; it lives in :mod:`rprop_bench.store`, which does not
  import MLflow, so bad input is reported fast.
* :class:`Tracker` opens the store and the experiment, creates runs, and finds or creates the
  parent run of a sweep, race-free across processes (a file lock in the sweep directory).
* :class:`RunRecorder` records one training run. It buffers per-epoch metrics and writes them
  with ``MlflowClient.log_batch`` (at most ``max_batch`` per call), flushing every
  ``flush_seconds`` and at the end, and it writes the artifacts: the step-size histogram CSV
  and heatmap, the composed config, and the data of problem ``line``.

Reliability (see the README, "Reliability"):

* Every call to the store goes through :func:`call_with_retry`: a busy SQLite store
  ("database is locked", several worker processes writing at once) or an unreachable server is
  retried with jittered exponential backoff for at most ``retry_seconds``; then
  :class:`StoreUnavailable` is raised. MLflow's own HTTP retries are turned off (unless the
  environment sets them), so that bound is the real one.
* Every training run carries its writer's identity (host, pid, process start time) and a
  heartbeat, updated at each flush. :func:`run_is_alive` decides from them whether a RUNNING
  run is still being written; :meth:`Tracker.previous_runs` marks dead ones KILLED, so a run
  is never left RUNNING and counted as done.

Names of metrics, tags and artifacts come from :mod:`rprop_bench.schema`.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import logging
import os
import random
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException

from rprop_bench import schema
from rprop_bench.store import (
    SQLITE_PREFIX,
    TrackingError,
    artifact_root,
    check_store,
    resolve_uri,
    sqlite_path,
)

if TYPE_CHECKING:  # diagnostics imports torch: 1.4 s that a sweep's main process never needs
    from rprop_bench.diagnostics import HistogramRow

try:  # POSIX file locks make sweep-parent creation race-free across worker processes.
    import fcntl
except ImportError:  # pragma: no cover - Windows: best effort without a lock
    fcntl = None  # type: ignore[assignment]

MAX_PARAMS_PER_BATCH = 100  # MLflow's limit for params in one log_batch call
MAX_PARAM_VALUE = 6000  # MLflow's limit for the length of a param value
_PARENT_LOCK = ".rprop_bench_parent.lock"
#: zlib level 1 instead of 6 for the heatmap PNG: ~20 ms less a figure (of ~90), ~13 % bigger.
_FAST_PNG = {"pil_kwargs": {"compress_level": 1}}
#: Words in an error (or its causes) that mark it as passing: the store is busy or away.
TRANSIENT_MARKERS = (
    "database is locked", "database table is locked", "Max retries exceeded",
    "Connection refused", "Connection aborted", "Connection reset", "RemoteDisconnected",
    "timed out", "failed with error code 50", "ConnectionError",
)  # fmt: skip
#: MLflow's HTTP client retries for minutes by default; ours is bounded by retry_seconds.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    # Against a server, ending a run otherwise costs one more request (MLflow fetches the run
    # to print its "View run ..." link), and the link clutters every job's output.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
__all__ = [
    "SQLITE_PREFIX", "PreviousRuns", "RunRecorder", "StoreUnavailable", "Tracker",
    "TrackingError", "TrackingOptions", "artifact_root", "call_with_retry", "check_store",
    "file_lock", "flatten", "process_start", "process_tags", "resolve_uri", "run_is_alive",
    "sqlite_path",
]  # fmt: skip
T = TypeVar("T")
log = logging.getLogger(__name__)


# --- retrying a busy or absent store --------------------------------------------------------


class StoreUnavailable(TrackingError):
    """The store stayed busy or unreachable for the whole retry budget."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the store is busy or away."""
    seen: BaseException | None = exc
    for _ in range(8):  # the cause chain; bounded in case of a cycle
        if seen is None:
            return False
        text = f"{type(seen).__name__}: {seen}"
        if any(marker in text for marker in TRANSIENT_MARKERS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while a store call runs; deliver them when it returns.

    Why: MLflow's SQL store rolls a session back on ``Exception`` only. A KeyboardInterrupt
    raised inside its commit leaves that session's transaction open, holding SQLite's write
    lock, and the KILLED mark that follows then waits on it until it gives up: an
    interrupted run stayed RUNNING and the command hung (seen in CI under load). A second
    signal while held is raised at once, so a call that hangs can still be stopped. Only
    the main thread receives signals; elsewhere this does nothing.
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
        if signal.getsignal(sig) is not signal.SIG_IGN:  # ignored stays ignored (nohup, &)
            previous[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held:
            _deliver(held[0], previous[held[0]], None)


def _deliver(signum: int, handler: Any, frame: Any) -> None:
    """Act on signal ``signum`` as ``handler`` (the one held back) would have."""
    if callable(handler):
        handler(signum, frame)  # Python's KeyboardInterrupt, or the CLI's own for SIGTERM
    elif handler == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


def call_with_retry(call: Callable[[], T], retry_seconds: float, what: str) -> T:
    """``call()``, retried with jittered exponential backoff while the store is busy or away.

    Why: several worker processes share one SQLite file, and SQLite answers a writer that
    would deadlock with "database is locked" at once, whatever the busy timeout; a tracking
    server may restart. Both pass, so waiting loses nothing. Other errors are raised at once.

    Raises:
        StoreUnavailable: still failing after ``retry_seconds``.
    """
    deadline = time.monotonic() + retry_seconds
    delay = 0.05
    while True:
        try:
            with interrupts_held():  # each attempt; the waits between them stay interruptible
                return call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise StoreUnavailable(
                    f"the MLflow store stayed unavailable for {retry_seconds:g} s "
                    f"({what}: {_first_line(exc)})"
                ) from exc
            log.info("store busy or away, retrying %s: %s", what, _first_line(exc))
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)


class _RetryingClient:
    """An :class:`MlflowClient` whose every method goes through :func:`call_with_retry`."""

    def __init__(self, client: MlflowClient, retry_seconds: float) -> None:
        self._client = client
        self.retry_seconds = retry_seconds

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


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive POSIX lock on ``path`` (created if needed) for the ``with`` block.

    Why: processes of one sweep (joblib workers) must not both create a sweep's parent run, or
    both train one seed group; the lock lives in the sweep's output directory, which they share.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)


# --- liveness of RUNNING runs ---------------------------------------------------------------


def process_start(pid: int) -> str | None:
    """Process ``pid``'s start time in clock ticks since boot (Linux), ``None`` if it is gone
    or a zombie; ``""`` where there is no ``/proc`` to ask."""
    if not Path("/proc/self/stat").exists():
        return ""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def process_tags() -> dict[str, str]:
    """Tags naming the process that writes a run, and its first heartbeat (schema names)."""
    return {
        schema.TAG_HOST: socket.gethostname(),
        schema.TAG_PID: str(os.getpid()),
        schema.TAG_PROCESS_START: process_start(os.getpid()) or "",
        schema.TAG_HEARTBEAT: f"{time.time():.3f}",
    }


def _pid_alive(pid: int, start: str) -> bool:
    if Path("/proc/self/stat").exists():
        now = process_start(pid)
        return now is not None and (not start or now == start)  # same start: not a reused pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


# --- params ---------------------------------------------------------------------------------


def flatten(config: Mapping[str, object], prefix: str = "") -> dict[str, str]:
    """Flatten nested mappings into ``{"a.b.c": "value"}`` strings, as MLflow params.

    >>> flatten({"optimizer": {"lr": 0.01, "etas": [0.5, 1.2]}})
    {'optimizer.lr': '0.01', 'optimizer.etas': '[0.5, 1.2]'}
    """
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:MAX_PARAM_VALUE]
    return flat


# --- writing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackingOptions:
    """How runs are recorded (the ``tracking`` config group, minus the URI checks).

    Attributes:
        uri: the MLflow tracking URI (absolute, see :func:`resolve_uri`).
        experiment: the MLflow experiment name.
        batch_logging: buffer metrics and write them with ``log_batch``; ``False`` writes one
            synchronous ``log_metric`` per value (the naive baseline of the logging benchmark).
        flush_seconds: write buffered metrics at least this often.
        max_batch: metrics per ``log_batch`` call (MLflow allows at most 1000).
        histograms: write the step-size histogram CSV.
        heatmap: write the step-size heatmap figure.
        retry_seconds: how long a busy or unreachable store is retried before giving up.
        stale_seconds: a RUNNING run from another host without a heartbeat for this long is
            dead (runs from this host are judged by their process instead).
    """

    uri: str
    experiment: str = "rprop-bench"
    batch_logging: bool = True
    flush_seconds: float = 5.0
    max_batch: int = 1000
    histograms: bool = True
    heatmap: bool = True
    retry_seconds: float = 30.0
    stale_seconds: float = 300.0


class RunRecorder:
    """Records one training run; :meth:`on_epoch` is the training loop's callback.

    ``seconds`` accumulates the time spent writing to MLflow (and making the artifacts).
    """

    def __init__(self, client: Any, run_id: str, options: TrackingOptions) -> None:
        self.client = client
        self.run_id = run_id
        self.options = options
        self.seconds = 0.0
        self._buffer: list[Metric] = []
        self._last_flush = time.monotonic()
        self._histograms: list[HistogramRow] = []
        self._ended = False

    @contextlib.contextmanager
    def _timed(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - started

    def on_epoch(
        self, epoch: int, metrics: Mapping[str, float], histograms: Sequence[HistogramRow]
    ) -> None:
        """Record one logged epoch (MLflow step = epoch)."""
        with self._timed():
            now = int(time.time() * 1000)
            if self.options.histograms or self.options.heatmap:
                self._histograms.extend(histograms)
            if not self.options.batch_logging:
                for key, value in metrics.items():
                    self.client.log_metric(self.run_id, key, float(value), now, epoch)
                return
            self._buffer.extend(Metric(k, float(v), now, epoch) for k, v in metrics.items())
            if (
                len(self._buffer) >= self.options.max_batch
                or time.monotonic() - self._last_flush >= self.options.flush_seconds
            ):
                self._flush()

    def _flush(self) -> None:
        size = max(1, min(self.options.max_batch, 1000))
        while self._buffer:
            chunk = self._buffer[:size]
            heartbeat = [RunTag(schema.TAG_HEARTBEAT, f"{time.time():.3f}")]
            self.client.log_batch(self.run_id, metrics=chunk, tags=heartbeat)
            del self._buffer[: len(chunk)]  # only once written: a failed write keeps them
        self._last_flush = time.monotonic()

    def flush(self) -> None:
        """Write every buffered metric now."""
        with self._timed():
            self._flush()

    def log_text(self, text: str, artifact_file: str) -> None:
        """Write ``text`` as the artifact ``artifact_file`` (e.g. ``schema.ARTIFACT_CONFIG``)."""
        with self._timed():
            self.client.log_text(self.run_id, text, artifact_file)

    def log_table(
        self, columns: Sequence[str], rows: Sequence[Sequence[object]], artifact_file: str
    ) -> None:
        """Write a CSV artifact with a header row ``columns``."""
        with self._timed(), tempfile.TemporaryDirectory() as tmp:
            directory, name = os.path.split(artifact_file)
            local = Path(tmp) / name
            with local.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(columns)
                writer.writerows(rows)
            self.client.log_artifact(self.run_id, str(local), directory or None)

    def _log_step_sizes(self, title: str) -> None:
        if not self._histograms:
            return
        if self.options.histograms:
            self.log_table(
                schema.HISTOGRAM_COLUMNS,
                [(r.epoch, r.layer, r.bin_left, r.bin_right, r.count) for r in self._histograms],
                schema.ARTIFACT_STEP_HISTOGRAMS,
            )
        if self.options.heatmap:
            from rprop_bench.step_figure import step_heatmap  # matplotlib: only when needed

            with self._timed():
                self.client.log_figure(
                    self.run_id,
                    step_heatmap(self._histograms, title),
                    schema.ARTIFACT_STEP_HEATMAP,
                    save_kwargs=_FAST_PNG,
                )

    def _end(self, status: str, final_metrics: Mapping[str, float], title: str) -> None:
        self._log_step_sizes(title)
        with self._timed():
            now = int(time.time() * 1000)
            finals = {**final_metrics, schema.LOGGING_SECONDS: self.seconds}
            self._buffer.extend(Metric(k, float(v), now, 0) for k, v in finals.items())
            self._flush()
            self.client.set_terminated(self.run_id, status=status)
        self._ended = True

    def finish(self, final_metrics: Mapping[str, float], title: str = "") -> None:
        """Write the final metrics (step 0) and the artifacts; mark the run FINISHED."""
        self._end("FINISHED", final_metrics, title)

    def fail(self, reason: str, title: str = "", status: str = "FAILED") -> None:
        """Mark the run ``status`` (FAILED or KILLED) with ``reason`` as a tag; keep its data."""
        self.client.set_tag(self.run_id, schema.TAG_FAILURE_REASON, reason[:MAX_PARAM_VALUE])
        self._end(status, {}, title)

    @property
    def ended(self) -> bool:
        """Whether :meth:`finish` or :meth:`fail` has run."""
        return self._ended

    def unsent_metrics(self) -> list[tuple[str, float, int]]:
        """The buffered metrics not yet written, as ``(key, value, step)``."""
        return [(m.key, m.value, m.step) for m in self._buffer]


@dataclass(frozen=True)
class PreviousRuns:
    """What the store already holds for one run key (see :meth:`Tracker.previous_runs`)."""

    finished: str | None = None  # the id of a FINISHED run, if any
    running: str | None = None  # the id of a RUNNING run whose process is alive, if any
    reaped: list[str] = field(default_factory=list)  # dead RUNNING runs, now marked KILLED
    since: str | None = None  # the id of a run started at or after ``since``, not reaped


class Tracker:
    """An open MLflow store and experiment: creates runs and sweep parents.

    Use :meth:`open` to reuse one tracker per store and experiment within a process (a sweep's
    jobs then share the client and skip the experiment lookup).

    Raises:
        TrackingError: the store or the experiment cannot be opened.
    """

    _open: ClassVar[dict[tuple[str, str], Tracker]] = {}

    @classmethod
    def open(cls, options: TrackingOptions) -> Tracker:
        """The tracker for ``options.uri`` and ``options.experiment``, created on first use."""
        key = (options.uri, options.experiment)
        tracker = cls._open.get(key)
        if tracker is None:
            tracker = cls._open[key] = cls(options)
        else:
            tracker.options = options
            tracker.client.retry_seconds = options.retry_seconds
        return tracker

    def __init__(self, options: TrackingOptions) -> None:
        self.options = options
        self._parents: dict[str, str] = {}
        if options.uri.startswith(("http://", "https://")):
            for name, value in _HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)
        try:
            self.client: Any = _RetryingClient(
                MlflowClient(tracking_uri=options.uri), options.retry_seconds
            )
            self.experiment_id = self._experiment_id()
        except MlflowException as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TrackingError(f"cannot open MLflow store {options.uri}: {first}") from exc

    def _experiment_id(self) -> str:
        name = self.options.experiment
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        try:
            return self.client.create_experiment(
                name, artifact_location=artifact_root(self.options.uri)
            )
        except MlflowException:  # another process created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def start_run(
        self,
        run_name: str,
        tags: Mapping[str, str],
        params: Mapping[str, str],
        parent_run_id: str | None = None,
    ) -> RunRecorder:
        """Create a run (nested under ``parent_run_id`` if given) with its tags and params."""
        started = time.perf_counter()
        all_tags = {**tags, **process_tags()}
        if parent_run_id:
            all_tags[schema.TAG_PARENT_RUN_ID] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        run_id = run.info.run_id
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])
        recorder = RunRecorder(self.client, run_id, self.options)
        recorder.seconds += time.perf_counter() - started
        return recorder

    def previous_runs(self, run_key: str, since: float | None = None) -> PreviousRuns:
        """Look up the training runs with ``run_key``; mark the dead RUNNING ones KILLED.

        A resumed sweep skips a key with a FINISHED run (or a live RUNNING one elsewhere) and
        redoes every other. Marking the dead ones KILLED, with the reason, means no run stays
        RUNNING forever and none can be mistaken for a result. ``since`` (Unix time) also
        finds a run started since then, whatever its status: a seed group trained it in this
        sweep (a diverged seed FAILED there must not be redone alone by its own job).
        """
        runs = self._runs_tagged(schema.TAG_RUN_KEY, run_key, schema.RUN_KIND_TRAINING, 1000)
        finished = running = recent = None
        reaped: list[str] = []
        for run in runs:
            status, run_id = run.info.status, run.info.run_id
            dead = status == "RUNNING" and not run_is_alive(run, self.options.stale_seconds)
            if since is not None and not dead and (run.info.start_time or 0) >= since * 1000:
                recent = recent or run_id
            if status == "FINISHED":
                finished = finished or run_id
            elif status == "RUNNING" and not dead:
                running = running or run_id
            elif dead:
                self._mark_dead(run)
                reaped.append(run_id)
        return PreviousRuns(finished, running, reaped, recent)

    def _mark_dead(self, run: Run) -> None:
        tags = run.data.tags
        writer = f"{tags.get(schema.TAG_HOST, '?')} pid {tags.get(schema.TAG_PID, '?')}"
        self._mark_killed(run.info.run_id, f"its process died ({writer}); marked KILLED by a "
                          "later sweep")  # fmt: skip

    def _mark_killed(self, run_id: str, reason: str) -> None:
        self.client.set_tag(run_id, schema.TAG_FAILURE_REASON, reason)
        self.client.set_terminated(run_id, status="KILLED")

    def _children(self, parent_run_id: str, *, running: bool = False) -> list[Run]:
        """The runs nested under ``parent_run_id`` (only the RUNNING ones if ``running``)."""
        where = f"tags.`{schema.TAG_PARENT_RUN_ID}` = '{parent_run_id}'"
        if running:
            where += " and attributes.status = 'RUNNING'"
        return self.client.search_runs([self.experiment_id], where, max_results=50000)

    def find_sweep_parent(self, sweep_id: str) -> str | None:
        """The run id of the parent of sweep ``sweep_id``, if it exists."""
        runs = self._runs_tagged(schema.TAG_SWEEP_ID, sweep_id, schema.RUN_KIND_SWEEP, 1)
        return runs[0].info.run_id if runs else None

    def _runs_tagged(self, tag: str, value: str, kind: str, max_results: int) -> list[Run]:
        """The runs of kind ``kind`` whose ``tag`` is ``value``, oldest first."""
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=(f"tags.`{tag}` = '{value}' and tags.`{schema.TAG_RUN_KIND}` = '{kind}'"),
            max_results=max_results,
            order_by=["attributes.start_time ASC"],
        )

    def ensure_sweep_parent(
        self,
        sweep_id: str,
        lock_dir: Path,
        run_name: str,
        tags: Mapping[str, str],
        *,
        reopen: bool = False,
    ) -> str:
        """Find or create the parent run of sweep ``sweep_id``; return its run id.

        Processes of one sweep (e.g. joblib workers) serialise on a lock file in ``lock_dir``
        (the sweep's output directory), so exactly one parent is created. A resumed sweep
        (same id) finds its old parent; ``reopen`` marks it RUNNING again.
        """
        if sweep_id in self._parents:
            return self._parents[sweep_id]
        with file_lock(lock_dir / _PARENT_LOCK):
            found = self.find_sweep_parent(sweep_id)
            if found:
                if reopen:
                    self.client.update_run(found, status="RUNNING")
                self._parents[sweep_id] = found
                return found
            all_tags = {
                **tags,
                schema.TAG_SWEEP_ID: sweep_id,
                schema.TAG_RUN_KIND: schema.RUN_KIND_SWEEP,
            }
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
            self._parents[sweep_id] = run.info.run_id
            return run.info.run_id

    def end_interrupted_sweep(self, sweep_id: str, reason: str, wait_seconds: float) -> int:
        """After Ctrl-C or SIGTERM stopped sweep ``sweep_id``: mark its runs left RUNNING by
        dead processes KILLED (with ``reason``), and its parent run KILLED.

        A job in the main process marks its own run KILLED when the signal reaches it. A
        joblib worker gets the signal too, but joblib kills its workers (SIGKILL) as soon as
        the main process is interrupted, mostly before they have written that. Runs whose
        writer is still alive are waited for up to ``wait_seconds``; those alive after that
        (a process that outlives the sweep) are left for the next sweep to judge.

        Returns:
            How many runs were marked KILLED here.
        """
        parent = self.find_sweep_parent(sweep_id)
        if parent is None:
            return 0
        deadline = time.monotonic() + wait_seconds
        while True:
            running = self._children(parent, running=True)
            dead = [r for r in running if not run_is_alive(r, self.options.stale_seconds)]
            if len(dead) == len(running) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for run in dead:
            self._mark_killed(run.info.run_id, reason)
        self.client.set_terminated(parent, status="KILLED")
        return len(dead)

    def end_sweep_parent(self, run_id: str, status: str = "FINISHED") -> dict[str, int]:
        """End the parent run of a sweep and count its children by status.

        Returns:
            ``{status: count}`` over the children (e.g. ``{"FINISHED": 28, "FAILED": 2}``).
        """
        counts: dict[str, int] = {}
        for child in self._children(run_id):
            counts[child.info.status] = counts.get(child.info.status, 0) + 1
        self.client.set_terminated(run_id, status=status)
        return counts
