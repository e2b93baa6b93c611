"""Reading a report's runs from MLflow into a :class:`ReportContext`, with the checks that
every finished run has what the sections need (a one-line error otherwise)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from rprop_bench import results, schema
from rprop_bench.report_sections.common import representative, score_metric, step_methods
from rprop_bench.report_sections.context import ReportContext
from rprop_bench.report_sections.options import ReportOptions

__all__ = ["label_by_params", "load_context"]


def _check_final_metrics(runs: pd.DataFrame) -> None:
    """Every finished run must have the final metrics the report needs (clear error otherwise)."""
    results.require_metrics(runs, [schema.TEST_LOSS])
    for problem, g in runs.groupby("problem"):
        metric, _ = score_metric(g)
        try:
            results.require_metrics(g, [metric])
        except results.MissingMetricError as exc:
            raise results.MissingMetricError(f"problem {problem!r}: {exc}") from None


def _check_histories(runs: pd.DataFrame, histories: pd.DataFrame) -> None:
    """Every finished run must have a training-loss history (clear error otherwise)."""
    finished = runs.loc[~runs["failed"], ["run_id", "run_name"]]
    has = set(histories.loc[histories["metric"] == schema.TRAIN_LOSS, "run_id"])
    lacking = finished[~finished["run_id"].isin(has)]
    if len(lacking):
        ex = lacking.iloc[0]
        raise results.MissingMetricError(
            f"{len(lacking)} of {len(finished)} finished runs lack metric history "
            f"{schema.TRAIN_LOSS!r} (e.g. run {ex['run_id']} {ex['run_name']!r})"
        )


def label_by_params(runs: pd.DataFrame, params: Sequence[str]) -> pd.DataFrame:
    """Append ``name=value`` of each param in ``params`` to the runs' method labels."""
    if not params:
        return runs
    runs = runs.copy()
    for param in params:
        col = f"param.{param}"
        if col not in runs:
            raise results.MissingMetricError(f"no run has param {param!r} (report.label_params)")
        values = runs[col].fillna("None").astype(str).replace({"None": "full", "null": "full"})
        runs["method"] = runs["method"] + " " + param.rsplit(".", 1)[-1] + "=" + values
    return runs


def _wide(runs: pd.DataFrame, histories: pd.DataFrame) -> pd.DataFrame:
    """The metric histories one row per (run, step), a column per metric, with run columns."""
    wide = (
        histories.pivot_table(
            index=["run_id", "step"], columns="metric", values="value", aggfunc="last"
        )
        .reset_index()
        .rename_axis(columns=None)
    )
    return wide.merge(runs[["run_id", "problem", "method", "seed", "failed"]], on="run_id")


def _step_figure_runs(runs: pd.DataFrame, problems: Sequence[str]) -> list[str]:
    """The ids of the runs the step-size figures show: only their histograms are read."""
    wanted = []
    for p in problems:
        pr = runs[runs["problem"] == p]
        for m in step_methods(pr["method"].unique()):
            rep = representative(pr[pr["method"] == m])
            if rep is not None:
                wanted.append(rep["run_id"])
    return wanted


def load_context(tracking_uri: str, experiment: str, options: ReportOptions) -> ReportContext:
    """Read the experiment's runs (the sweep ``options.sweep``) and check them.

    Raises:
        results.ResultsError: the store, the experiment or a metric is missing (one-line
            message).
    """
    res = results.load_experiment(tracking_uri, experiment, sweep=options.sweep)
    runs = label_by_params(res.runs, options.label_params)
    _check_final_metrics(runs)
    histories = results.load_histories(
        tracking_uri, runs["run_id"].tolist(), progress=options.progress
    )
    _check_histories(runs, histories)
    wide = _wide(runs, histories)
    problems = sorted(runs["problem"].unique())
    histograms = results.load_step_histograms(
        tracking_uri, _step_figure_runs(runs, problems), progress=options.progress
    )
    return ReportContext(
        tracking_uri=tracking_uri,
        experiment=experiment,
        options=options,
        results=res,
        runs=runs,
        histories=histories,
        wide=wide,
        histograms=histograms,
        problems=problems,
        methods=sorted(runs["method"].unique()),
    )
