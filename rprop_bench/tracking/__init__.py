"""The one writer to MLflow: runs, their metrics and artifacts, sweep parents.

Three modules: :mod:`.options` (how runs are recorded, the retried client), :mod:`.recorder`
(one run) and :mod:`.tracker` (the store, sweep parents, dead runs, the report's upload).

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

from rprop_bench.tracking.options import TrackingOptions
from rprop_bench.tracking.recorder import RunRecorder, live_recorders
from rprop_bench.tracking.tracker import (
    MAX_PARAMS_PER_BATCH,
    PreviousRuns,
    Tracker,
    log_report_artifacts,
)

__all__ = [
    "MAX_PARAMS_PER_BATCH", "PreviousRuns", "RunRecorder", "Tracker", "TrackingOptions",
    "live_recorders",
    "log_report_artifacts",
]  # fmt: skip
