"""The final results of one problem: per optimizer, the test loss, the task's score and the
time to target over seeds (median, interquartile range, the order-statistic interval of the
median with its level)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from rprop_bench import analysis, schema
from rprop_bench.comparison import Rope
from rprop_bench.report_sections.common import column, fmt_ci, fmt_miqr, score_metric
from rprop_bench.report_sections.options import ReportOptions

__all__ = ["FinalTable", "final_table"]


@dataclass(frozen=True)
class FinalTable:
    """One problem's final results.

    Attributes:
        numbers: one row per optimizer, the numbers (the table's CSV).
        display: the same rows as shown (strings).
        bold: the best cell of each compared column (bools, the shape of ``display``).
        score: the score metric beside the loss (:func:`common.score_metric`) and its label.
    """

    numbers: pd.DataFrame
    display: pd.DataFrame
    bold: pd.DataFrame
    score: tuple[str, str]


def _summaries(
    ok: pd.DataFrame, reached: pd.DataFrame, score: str, opts: ReportOptions
) -> dict[str, analysis.Summary]:
    """One optimizer's summaries: over its finished runs, and over those that reached the
    target (times to target, shown without an interval)."""
    summary = partial(analysis.summarize, confidence=opts.confidence)
    return {
        "test_loss": summary(column(ok, schema.TEST_LOSS)),
        score: summary(column(ok, score)),
        "epochs_to_target": summary(column(reached, schema.EPOCHS_TO_TARGET)),
        "seconds_to_target": summary(column(reached, schema.SECONDS_TO_TARGET)),
    }


def _stats(prefix: str, s: analysis.Summary, *, ci: bool) -> dict[str, float]:
    """``<prefix>_median``, ``_q25``, ``_q75`` (and ``_ci_low``, ``_ci_high``) of a summary."""
    out = {f"{prefix}_median": s.median, f"{prefix}_q25": s.q25, f"{prefix}_q75": s.q75}
    if ci:
        out |= {
            f"{prefix}_ci_low": s.ci_low,
            f"{prefix}_ci_high": s.ci_high,
            f"{prefix}_ci_level": s.interval.level,
            f"{prefix}_ci_is_range": s.interval.is_range,
        }
    return out


def _number_row(
    problem: str,
    method: str,
    g: pd.DataFrame,
    n_reached: int,
    s: dict[str, analysis.Summary],
    score: str,
) -> dict[str, Any]:
    """The numbers of one optimizer, from its runs ``g`` and their summaries ``s``."""
    return {
        "problem": problem,
        "method": method,
        "n_runs": len(g),
        "n_failed": int(g["failed"].sum()),
        **_stats("test_loss", s["test_loss"], ci=True),
        **_stats(score, s[score], ci=True),
        "n_reached_target": n_reached,
        **_stats("epochs_to_target", s["epochs_to_target"], ci=False),
        **_stats("seconds_to_target", s["seconds_to_target"], ci=False),
    }


def _display_row(
    method: str,
    g: pd.DataFrame,
    n_reached: int,
    s: dict[str, analysis.Summary],
    score: tuple[str, str],
) -> dict[str, str]:
    """One optimizer's row as shown."""
    metric, label = score
    return {
        "optimizer": method,
        "runs": str(len(g)),
        "failed": str(int(g["failed"].sum())),
        "test loss median [IQR]": fmt_miqr(s["test_loss"]),
        "test loss median CI": fmt_ci(s["test_loss"]),
        f"{label} median [IQR]": fmt_miqr(s[metric]),
        f"{label} median CI": fmt_ci(s[metric]),
        "reached target": f"{n_reached}/{len(g)}",
        "epochs to target": fmt_miqr(s["epochs_to_target"]),
        "seconds to target": fmt_miqr(s["seconds_to_target"]),
    }


def _bold_best(
    numbers: pd.DataFrame, display: pd.DataFrame, score: str, label: str, rope: Rope
) -> pd.DataFrame:
    """Bold the best value of the loss, the score and the times to target, and every value
    practically equal to it (``rope``): a last-digit difference is no win.

    A time to target is the median over the runs that reached it; it can win only where at
    least half the runs did (so the median over all runs, a miss costing ∞, is finite): a
    time from 1 of 10 runs is no best."""
    bold = pd.DataFrame(False, index=display.index, columns=display.columns)
    most_reached = 2 * numbers["n_reached_target"].to_numpy(int) >= numbers["n_runs"].to_numpy(int)
    for col, num, best in (
        ("test loss median [IQR]", "test_loss_median", "min"),
        (f"{label} median [IQR]", f"{score}_median", "max"),
        ("epochs to target", "epochs_to_target_median", "min"),
        ("seconds to target", "seconds_to_target_median", "min"),
    ):
        vals = numbers[num].to_numpy(float)
        if col.endswith("to target"):
            vals = np.where(most_reached, vals, np.nan)
        if np.isfinite(vals).any():
            target = np.nanmin(vals) if best == "min" else np.nanmax(vals)
            bold.loc[[rope.tied(float(v), float(target)) for v in vals], col] = True
    return bold


def final_table(problem: str, runs: pd.DataFrame, opts: ReportOptions) -> FinalTable:
    """The final results of ``runs``, the runs of one problem, one row per optimizer."""
    score, label = score_metric(runs)
    rows, display = [], []
    for method, g in runs.groupby("method", sort=True):
        ok = g[~g["failed"]]
        reached = ok[column(ok, schema.REACHED_TARGET) == 1.0]
        s = _summaries(ok, reached, score, opts)
        rows.append(_number_row(problem, method, g, len(reached), s, score))
        display.append(_display_row(method, g, len(reached), s, (score, label)))
    numbers, shown = pd.DataFrame(rows), pd.DataFrame(display)
    rope = Rope(opts.rope_relative, opts.rope_absolute)
    bold = _bold_best(numbers, shown, score, label, rope)
    return FinalTable(numbers, shown, bold, (score, label))
