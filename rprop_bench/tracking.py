"""The one module that writes to MLflow: runs, their metrics and artifacts, sweep parents.

Why one: every write then follows the same rules, the names of :mod:`rprop_bench.schema` and
the retry policy of :mod:`rprop_bench.retry` (every call goes through it), and the reader
(:mod:`rprop_bench.results`) has one writer to agree with.

* :class:`Tracker` opens the store and the experiment, creates runs, finds or creates the
  parent run of a sweep (race-free across processes, :mod:`rprop_bench.locks`), and marks
  RUNNING runs whose writer died KILLED (:mod:`rprop_bench.liveness` judges them).
* :class:`RunRecorder` records one training run: per-epoch metrics buffered and written with
  ``log_batch`` (at most ``max_batch`` per call, every ``flush_seconds`` and at the end), and
  its artifacts; the step-size heatmap is drawn by a callable its caller passes.
* :func:`log_report_artifacts` logs a rendered report under the sweep's parent run.
"""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException

from rprop_bench import schema
from rprop_bench.liveness import process_tags, run_is_alive
from rprop_bench.locks import file_lock
from rprop_bench.params import MAX_PARAM_VALUE
from rprop_bench.retry import RetryingClient
from rprop_bench.store import TrackingError, artifact_root

if TYPE_CHECKING:  # diagnostics imports torch: 1.4 s that a sweep's main process never needs
    from matplotlib.figure import Figure

    from rprop_bench.diagnostics import HistogramRow

    #: Draws the step-size heatmap of a run from its histogram rows, titled with the run name.
    HeatmapDrawer = Callable[[Sequence[HistogramRow], str], Figure]

MAX_PARAMS_PER_BATCH = 100  # MLflow's limit for params in one log_batch call
_PARENT_LOCK = ".rprop_bench_parent.lock"
#: zlib level 1 instead of 6 for the heatmap PNG: ~20 ms less a figure (of ~90), ~13 % bigger.
_FAST_PNG = {"pil_kwargs": {"compress_level": 1}}
#: MLflow's HTTP client retries for minutes by default; ours is bounded by retry_seconds.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    # Against a server, ending a run otherwise costs one more request (MLflow fetches the run
    # to print its "View run ..." link), and the link clutters every job's output.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
__all__ = [
    "MAX_PARAMS_PER_BATCH", "PreviousRuns", "RunRecorder", "Tracker", "TrackingOptions",
    "log_report_artifacts",
]  # fmt: skip


@dataclass(frozen=True)
class TrackingOptions:
    """How runs are recorded (the ``tracking`` config group, minus the URI checks).

    Attributes:
        uri: the MLflow tracking URI (absolute, see :func:`rprop_bench.store.resolve_uri`).
        experiment: the MLflow experiment name.
        batch_logging: buffer metrics and write them with ``log_batch``; ``False`` writes one
            synchronous ``log_metric`` per value (the naive baseline of the logging benchmark).
        flush_seconds: write buffered metrics at least this often.
        max_batch: metrics per ``log_batch`` call (MLflow allows at most 1000).
        histograms: write the step-size histogram CSV.
        heatmap: write the step-size heatmap figure (if the run has a heatmap drawer).
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
    ``draw_heatmap``, if given, draws the step-size heatmap at the end of the run (drawing is
    the caller's: this module only logs the figure).
    """

    def __init__(
        self,
        client: Any,
        run_id: str,
        options: TrackingOptions,
        draw_heatmap: HeatmapDrawer | None = None,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.options = options
        self.seconds = 0.0
        self._draw_heatmap = draw_heatmap if options.heatmap else None
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
            if self.options.histograms or self._draw_heatmap is not None:
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
        if self._draw_heatmap is not None:
            with self._timed():
                self.client.log_figure(
                    self.run_id,
                    self._draw_heatmap(self._histograms, title),
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
        try:
            self.client: Any = _client(options.uri, options.retry_seconds)
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
        draw_heatmap: HeatmapDrawer | None = None,
    ) -> RunRecorder:
        """Create a run (nested under ``parent_run_id`` if given) with its tags and params.

        ``draw_heatmap`` draws the run's step-size heatmap at its end (see :class:`RunRecorder`).
        """
        started = time.perf_counter()
        all_tags = {**tags, **process_tags()}
        if parent_run_id:
            all_tags[schema.TAG_PARENT_RUN_ID] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        run_id = run.info.run_id
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])
        recorder = RunRecorder(self.client, run_id, self.options, draw_heatmap)
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


def _client(uri: str, retry_seconds: float) -> RetryingClient:
    """An ``MlflowClient`` for ``uri`` whose calls are retried; MLflow's own HTTP retries off."""
    if uri.startswith(("http://", "https://")):
        for name, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
    return RetryingClient(MlflowClient(tracking_uri=uri), retry_seconds)


def log_report_artifacts(
    tracking_uri: str, run_id: str, folder: Path, retry_seconds: float = 30.0
) -> None:
    """Log a report folder as artifacts of run ``run_id``, under ``schema.ARTIFACT_REPORT_DIR``.

    The sweep's parent run then shows its report in the MLflow UI.
    """
    client = _client(tracking_uri, retry_seconds)
    client.log_artifacts(run_id, str(folder), schema.ARTIFACT_REPORT_DIR)
