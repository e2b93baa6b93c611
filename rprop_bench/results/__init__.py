"""Read what the harness wrote to MLflow back into tidy pandas frames.

This package is the one reader of runs for reports (:mod:`rprop_bench.tracking` is the one
writer), in two parts: :mod:`.runs` (runs, params, tags, final metrics) and :mod:`.histories`
(metric histories and artifacts). Both follow the names in :mod:`rprop_bench.schema`.
Nothing here trains or plots: the frames it returns are the input of the pure functions in
:mod:`rprop_bench.analysis`.

Reading is built for many runs:

- run metadata, params, tags and final metrics come from paged ``search_runs`` calls;
- metric histories are read **in bulk**, one query per metric for hundreds of runs at once
  (``get_metric_history_bulk`` on SQL stores, ``get_metric_history_bulk_interval`` on a
  tracking server), falling back to one request per run only where no bulk read exists;
- artifacts (step-size histograms, the ``line`` data) are downloaded only for the runs a
  report needs.

Every problem with the input raises a :class:`ResultsError` subclass whose message is one line,
so that the command line can print it as is.
"""

from rprop_bench.results.histories import load_histories, load_line_data, load_step_histograms
from rprop_bench.results.runs import (
    HISTORY_METRICS,
    ExperimentResults,
    MissingMetricError,
    NoRunsError,
    ResultsError,
    StoreNotFoundError,
    connect,
    load_experiment,
    method_label,
    require_metrics,
    runs_with_keys,
)
from rprop_bench.results.tuning import TuningResults, load_tuning, tuning_studies

__all__ = [
    "HISTORY_METRICS",
    "ExperimentResults",
    "MissingMetricError",
    "NoRunsError",
    "ResultsError",
    "StoreNotFoundError",
    "TuningResults",
    "connect",
    "load_experiment",
    "load_histories",
    "load_line_data",
    "load_step_histograms",
    "load_tuning",
    "method_label",
    "require_metrics",
    "runs_with_keys",
    "tuning_studies",
]
