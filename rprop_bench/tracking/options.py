"""How runs are recorded, and the retried MLflow client every write goes through."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from mlflow import MlflowClient

from rprop_bench.retry import RetryingClient

#: MLflow's HTTP client retries for minutes by default; ours is bounded by retry_seconds.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    # Against a server, ending a run otherwise costs one more request (MLflow fetches the run
    # to print its "View run ..." link), and the link clutters every job's output.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


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


def open_client(uri: str, retry_seconds: float) -> RetryingClient:
    """An ``MlflowClient`` for ``uri`` whose calls are retried; MLflow's own HTTP retries off."""
    if uri.startswith(("http://", "https://")):
        for name, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
    # MLflow's SQL store logs every database error, traceback and all, before it raises it;
    # the harness retries it or reports it in one line (rprop_bench.retry)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    return RetryingClient(MlflowClient(tracking_uri=uri), retry_seconds)
