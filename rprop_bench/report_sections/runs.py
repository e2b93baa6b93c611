"""The table of every run read from MLflow, failed ones marked (collapsed in HTML); its CSV
holds every column read: the resolved config (``param.*``), run key, commit and every final
metric."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rprop_bench import schema
from rprop_bench.document import DocumentWriter
from rprop_bench.report_sections.common import column, fmt
from rprop_bench.report_sections.context import ReportContext

__all__ = ["all_runs"]


def all_runs(ctx: ReportContext, w: DocumentWriter) -> None:
    """Every run: its name, problem, optimizer, seed, status (and why it failed), test loss."""
    runs = ctx.runs
    w.heading(2, "All runs")
    numbers = runs  # the CSV: every column, so a headline number recomputes without the store
    disp = pd.DataFrame(
        {
            "run": runs["run_name"],
            "problem": runs["problem"],
            "optimizer": runs["method"],
            "seed": runs["seed"].astype(str),
            "status": np.where(runs["failed"], "FAILED", runs["status"]),
            "reason": runs["failure_reason"],
            "test loss": [fmt(v) for v in column(runs, schema.TEST_LOSS)],
        }
    )
    w.table(
        "runs",
        f"All {len(runs)} runs read from MLflow (failed ones marked).",
        numbers,
        disp,
        details=True,
    )
