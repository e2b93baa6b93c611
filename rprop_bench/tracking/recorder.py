"""One training run's recorder: buffered metrics, artifacts, and the run's end (see the package)."""

from __future__ import annotations

import contextlib
import csv
import os
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException

from rprop_bench import schema
from rprop_bench.params import MAX_PARAM_VALUE
from rprop_bench.redaction import redact
from rprop_bench.tracking.options import TrackingOptions

if TYPE_CHECKING:  # diagnostics imports torch: 1.4 s that a sweep's main process never needs
    from matplotlib.figure import Figure

    from rprop_bench.diagnostics import HistogramRow

    #: Draws the step-size heatmap of a run from its histogram rows, titled with the run name.
    HeatmapDrawer = Callable[[Sequence[HistogramRow], str], Figure]

#: zlib level 1 instead of 6 for the heatmap PNG: ~20 ms less a figure (of ~90), ~13 % bigger.
_FAST_PNG = {"pil_kwargs": {"compress_level": 1}}


#: The runs this process has started and not yet ended, by run id: what an interrupt that
#: comes outside training (while a run is created, or writes its final artifacts) marks KILLED.
_LIVE: dict[str, RunRecorder] = {}


class DatasetInputs:
    """MLflow dataset inputs made once, for every run that trains on the same data."""

    def __init__(self, inputs: list[Any]) -> None:
        self.inputs = inputs


def dataset_inputs(datasets: Sequence[tuple[str, str, Any, Any]]) -> DatasetInputs:
    """The MLflow dataset inputs of ``(name, context, features, targets)`` splits (their
    digests and schemas: the costly part of :meth:`RunRecorder.log_datasets`)."""
    from mlflow.data.numpy_dataset import from_numpy
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for name, context, features, targets in datasets:
        described = from_numpy(features, targets=targets, name=name)
        inputs.append(
            DatasetInput(
                Dataset(**described.to_dict()),
                tags=[InputTag(schema.DATASET_CONTEXT_TAG, context)],
            )
        )
    return DatasetInputs(inputs)


def live_recorders() -> list[RunRecorder]:
    """The recorders of this process's runs that have not ended."""
    return list(_LIVE.values())


class RunRecorder:
    """Records one training run; :meth:`on_epoch` is the training loop's callback.

    ``seconds`` accumulates the time spent writing to MLflow (and making the artifacts).
    ``draw_heatmap``, if given, draws the step-size heatmap at the end of the run (drawing is
    the caller's: this module only logs the figure). ``flush_seconds`` (default: the
    options') is how often buffered metrics are written at the least. ``curves``, if given,
    are the per-epoch metrics logged as histories; every other metric keeps only its last
    value (written, at its epoch, when the run ends): a grid's thousands of members would
    otherwise write ~1,500 values each, which is most of their MLflow time.
    """

    def __init__(
        self,
        client: Any,
        run_id: str,
        options: TrackingOptions,
        draw_heatmap: HeatmapDrawer | None = None,
        flush_seconds: float | None = None,
        curves: Collection[str] | None = None,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.options = options
        self.flush_seconds = options.flush_seconds if flush_seconds is None else flush_seconds
        self.seconds = 0.0
        self._draw_heatmap = draw_heatmap if options.heatmap else None
        self._buffer: list[Metric] = []
        self._curves = None if curves is None else frozenset(curves)
        self._latest: dict[str, Metric] = {}  # the last value of each metric not in curves
        self._last_flush = time.monotonic()
        self._histograms: list[HistogramRow] = []
        self._ended = False
        _LIVE[run_id] = self

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
            values = [Metric(k, float(v), now, epoch) for k, v in metrics.items()]
            if self._curves is not None:
                self._latest.update((m.key, m) for m in values if m.key not in self._curves)
                values = [m for m in values if m.key in self._curves]
            if not self.options.batch_logging:
                for m in values:
                    self.client.log_metric(self.run_id, m.key, m.value, m.timestamp, m.step)
                return
            self._buffer.extend(values)
            if (
                len(self._buffer) >= self.options.max_batch
                or time.monotonic() - self._last_flush >= self.flush_seconds
            ):
                self._flush()

    def _take_latest(self) -> None:
        """Move the last values of the metrics not kept as histories into the buffer."""
        self._buffer.extend(self._latest.values())
        self._latest.clear()

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
            self.client.log_text(self.run_id, redact(text), artifact_file)

    def log_datasets(self, datasets: Sequence[tuple[str, str, Any, Any]] | DatasetInputs) -> None:
        """Log the run's data as MLflow dataset inputs, so that the UI's Dataset column and
        filter show it: ``(name, context, features, targets)`` per split, NumPy arrays, e.g.
        ``("iris/train", "train", x, y)``. MLflow keeps a digest, schema and shape, not the
        data. The runs of one stack share one :func:`dataset_inputs` (digests made once)."""
        with self._timed():
            inputs = (
                datasets.inputs
                if isinstance(datasets, DatasetInputs)
                else dataset_inputs(datasets).inputs
            )
            # Two runs that log the same new dataset at once (parallel workers, a seed group
            # on a server store) race in MLflow's SQL store: both insert it, one gets an
            # IntegrityError. Again, the dataset exists and is only linked; the inputs describe
            # the run for the UI, so a run never fails for them.
            for attempt in range(3):
                try:
                    self.client.log_inputs(self.run_id, datasets=inputs)
                    return
                except MlflowException as exc:
                    if attempt == 2:
                        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                        print(f"warning: run {self.run_id}: its dataset inputs were not logged "
                              f"({first[:200]})", file=sys.stderr, flush=True)  # fmt: skip
                        return
                    time.sleep(0.05 * (attempt + 1))

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
            self._take_latest()
            self._buffer.extend(Metric(k, float(v), now, 0) for k, v in finals.items())
            self._flush()
            self.client.set_terminated(self.run_id, status=status)
        self._mark_ended()

    def reaped(self) -> bool:
        """Whether another process has declared this run dead (KILLED) meanwhile: its writer
        was paused longer than ``stale_seconds``, and a later sweep has redone the run."""
        return bool(self.client.get_run(self.run_id).info.status == "KILLED")

    def finish(self, final_metrics: Mapping[str, float], title: str = "") -> bool:
        """Write the final metrics (step 0) and the artifacts; mark the run FINISHED.

        Returns ``False``, and changes nothing, if the run was reaped meanwhile
        (:meth:`reaped`): a run declared dead stays dead, so the redo is its key's one result.
        """
        with self._timed():
            if self.reaped():
                self._buffer.clear()
                self._mark_ended()
                return False
        self._end("FINISHED", final_metrics, title)
        return True

    def fail(
        self, reason: str, title: str = "", status: str = "FAILED", kind: str | None = None
    ) -> None:
        """Mark the run ``status`` (FAILED or KILLED) with ``reason`` (and ``kind``, e.g.
        :data:`~rprop_bench.schema.FAILURE_DIVERGED`) as tags; keep its data."""
        reason = redact(reason)[:MAX_PARAM_VALUE]
        self.client.set_tag(self.run_id, schema.TAG_FAILURE_REASON, reason)
        if kind is not None:
            self.client.set_tag(self.run_id, schema.TAG_FAILURE_KIND, kind)
        self._end(status, {}, title)

    def _mark_ended(self) -> None:
        self._ended = True
        _LIVE.pop(self.run_id, None)

    def kill(self, reason: str) -> None:
        """Mark the run KILLED at once, with ``reason`` and its buffered metrics, but no
        artifacts (an interrupt should end the process soon). A run the store already shows
        ended (the signal came as it was being marked) is left as it is."""
        if self._ended:
            return
        if self.client.get_run(self.run_id).info.status in ("FINISHED", "FAILED", "KILLED"):
            self._mark_ended()
            return
        self.client.set_tag(self.run_id, schema.TAG_FAILURE_REASON, redact(reason))
        self._take_latest()
        self._flush()
        self.client.set_terminated(self.run_id, status="KILLED")
        self._mark_ended()

    @property
    def ended(self) -> bool:
        """Whether :meth:`finish` or :meth:`fail` has run."""
        return self._ended

    def unsent_metrics(self) -> list[tuple[str, float, int]]:
        """The buffered metrics not yet written, as ``(key, value, step)``."""
        return [(m.key, m.value, m.step) for m in [*self._buffer, *self._latest.values()]]
