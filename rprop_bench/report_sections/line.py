"""The seed example y = 2x + 3 (problem ``line``): the fitted lines and the learned w, b
against the truth. Nothing when the report has no run of it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rprop_bench import plotting, results, schema
from rprop_bench.document import DocumentWriter
from rprop_bench.report_sections.common import column, fmt, representative
from rprop_bench.report_sections.context import ReportContext

__all__ = ["LINE_PROBLEM", "LINE_TRUTH", "line_example"]

LINE_PROBLEM = "line"  # the seed example problem y = 2x + 3
LINE_TRUTH = (2.0, 3.0)


def _fits(line: pd.DataFrame) -> pd.DataFrame:
    """Each run's learned w and b (NaN for a failed run)."""
    return pd.DataFrame(
        {
            "method": line["method"],
            "seed": line["seed"],
            "w": np.where(line["failed"], np.nan, column(line, schema.LINE_WEIGHT)),
            "b": np.where(line["failed"], np.nan, column(line, schema.LINE_BIAS)),
        }
    )


def _fit_numbers(fits: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer: the median w and b over seeds and their median absolute errors."""
    g = fits.groupby("method", sort=True)
    return pd.DataFrame(
        {
            "method": list(g.groups),
            "w_median": g["w"].median().to_numpy(),
            "b_median": g["b"].median().to_numpy(),
            "abs_w_error_median": g["w"]
            .apply(lambda s: (s - LINE_TRUTH[0]).abs().median())
            .to_numpy(),
            "abs_b_error_median": g["b"]
            .apply(lambda s: (s - LINE_TRUTH[1]).abs().median())
            .to_numpy(),
            "n_runs": g.size().to_numpy(),
        }
    )


def _fit_table(w: DocumentWriter, numbers: pd.DataFrame) -> None:
    """The table of learned w and b, the smallest errors in bold."""
    disp = pd.DataFrame(
        {
            "optimizer": numbers["method"],
            "w (median)": [fmt(v) for v in numbers["w_median"]],
            "b (median)": [fmt(v) for v in numbers["b_median"]],
            "|w − 2|": [fmt(v) for v in numbers["abs_w_error_median"]],
            "|b − 3|": [fmt(v) for v in numbers["abs_b_error_median"]],
            "runs": [str(n) for n in numbers["n_runs"]],
        }
    )
    bold = pd.DataFrame(False, index=disp.index, columns=disp.columns)
    for col, num in (("|w − 2|", "abs_w_error_median"), ("|b − 3|", "abs_b_error_median")):
        v = numbers[num].to_numpy(float)
        if np.isfinite(v).any():
            bold.loc[v == np.nanmin(v), col] = True
    w.table(
        "line_fit",
        "Learned w and b against the truth (2, 3), median over seeds.",
        numbers,
        disp,
        bold,
    )


def line_example(ctx: ReportContext, w: DocumentWriter) -> None:
    """The seed example's data and fitted lines (figure) and learned w, b (table)."""
    line = ctx.problem_runs(LINE_PROBLEM)
    if line.empty:
        return
    w.heading(2, "Seed example: y = 2x + 3")
    fits = _fits(line)
    rep = representative(line)
    data = results.load_line_data(ctx.tracking_uri, rep["run_id"]) if rep is not None else None
    w.figure(
        plotting.line_example(data, fits, truth=LINE_TRUTH),
        "line_seed_example",
        "The seed example: the training data"
        + ("" if data is not None else " (not logged)")
        + ", the true line and each optimizer's median fitted line (left); every run's "
        "learned w, b against the truth (2, 3) (right).",
    )
    _fit_table(w, _fit_numbers(fits))
