"""One section per problem: its runs, loss curves, step sizes and final results.

:func:`problems` writes, for each problem, a heading and then each part of :data:`PARTS` in
order; a part is a function ``(ctx, problem, w) -> None``
(:data:`~rprop_bench.report_sections.context.ProblemSection`). :func:`final_all_problems`
writes the final results of every problem as one table file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from rprop_bench import analysis, plotting, schema
from rprop_bench.document import DocumentWriter, slug
from rprop_bench.report_sections.common import fmt, representative, step_methods
from rprop_bench.report_sections.context import ProblemSection, ReportContext
from rprop_bench.text import count

__all__ = [
    "PARTS",
    "failed_runs",
    "final_all_problems",
    "final_results",
    "loss_curves",
    "overview",
    "problems",
    "step_sizes",
]

_FAN_METRICS = list(schema.STEP_QUANTILES)


def overview(ctx: ReportContext, problem: str, w: DocumentWriter) -> None:
    """How many runs, optimizers and seeds, and how many failed."""
    runs = ctx.problem_runs(problem)
    n_failed = int(runs["failed"].sum())
    w.para(
        f"{count(len(runs), 'run')}: {count(runs['method'].nunique(), 'optimizer')} × "
        f"{count(runs['seed'].nunique(), 'seed')}; {n_failed} failed or diverged."
    )


def loss_curves(ctx: ReportContext, problem: str, w: DocumentWriter) -> None:
    """Median training and validation loss over seeds against gradient evaluations (epochs
    for runs logged before evaluation counting) and wall time."""
    w.heading(3, f"{problem}: loss curves")
    data = ctx.problem_wide(problem)
    evals = schema.GRAD_EVALS if schema.GRAD_EVALS in data and data[
        schema.GRAD_EVALS].notna().all() else None  # fmt: skip
    bands = {}
    for metric, label in (
        (schema.TRAIN_LOSS, "training loss"),
        (schema.VAL_LOSS, "validation loss"),
    ):
        if metric in data and data[metric].notna().any():
            time = schema.WALL_TIME if schema.WALL_TIME in data else None
            bands[label] = analysis.seed_bands(data, ["method"], metric, time=time, evals=evals)
    if bands:
        x = "gradient evaluations (passes over the training set)" if evals else "epoch"
        w.figure(
            plotting.loss_curves(bands, title=problem),
            f"{slug(problem)}_loss_curves",
            f"{problem}: median loss across seeds with interquartile band, against {x} "
            "(left) and median wall time (right), on a log axis. Diverged values are left out "
            "of the band; a loss of exactly 0 is drawn on the dotted floor a decade below the "
            "smallest positive loss, marked on the axis.",
        )


def _step_panels(
    ctx: ReportContext, problem: str
) -> tuple[list[tuple[Any, ...]], dict[str, pd.DataFrame], list[str]]:
    """The step-size heatmaps and quantile fans of each shown method's representative run,
    and which run each is (``"method: seed N"``)."""
    runs, data = ctx.problem_runs(problem), ctx.problem_wide(problem)
    heatmaps: list[tuple[Any, ...]] = []
    fans: dict[str, pd.DataFrame] = {}
    chosen = []
    for method in step_methods(runs["method"].unique()):
        rep = representative(runs[runs["method"] == method])
        if rep is None:
            continue
        chosen.append(f"{method}: seed {rep['seed']}")
        h = ctx.histograms[ctx.histograms["run_id"] == rep["run_id"]]
        h = h[h["layer"].astype(str) == schema.HISTOGRAM_ALL_LAYERS] if len(h) else h
        if len(h):
            heatmaps.append((method, *analysis.histogram_grid(h)))
        else:
            heatmaps.append((method, np.array([]), np.array([0.0, 1.0]), np.zeros((0, 1))))
        fan_cols = [c for c in _FAN_METRICS if c in data]
        if fan_cols:
            fans[method] = data.loc[data["run_id"] == rep["run_id"], ["step", *fan_cols]]
    return heatmaps, fans, chosen


def step_sizes(ctx: ReportContext, problem: str, w: DocumentWriter) -> None:
    """The step each weight took per epoch, for the run with median test loss of each method
    (the Rprop family and one baseline); nothing when no such run logged steps."""
    heatmaps, fans, chosen = _step_panels(ctx, problem)
    if not heatmaps or not (any(np.size(c) for *_, c in heatmaps) or fans):
        return
    w.heading(3, f"{problem}: step sizes")
    w.figure(
        plotting.step_size_panels(heatmaps, fans, title=problem),
        f"{slug(problem)}_step_sizes",
        f"{problem}: distribution over all weights of the step each weight took per epoch "
        "(Δ for the Rprop family, |Δθ| for the baseline): histogram (left) and quantiles "
        f"(right), for the run with median test loss of each optimizer ({'; '.join(chosen)}).",
    )


def final_results(ctx: ReportContext, problem: str, w: DocumentWriter) -> None:
    """The table of final results over seeds (:func:`finals.final_table`)."""
    w.heading(3, f"{problem}: final results")
    table, opts = ctx.finals[problem], ctx.options
    w.table(
        f"{slug(problem)}_final",
        f"{problem}: final results over seeds: median [interquartile range] over finished "
        "runs, and a distribution-free interval of the median from two order statistics "
        f"(binomial), the narrowest whose coverage is at least {opts.confidence:.0%}, with "
        f"its exact coverage beside it. Where no interval reaches {opts.confidence:.0%} "
        "(fewer than 6 runs at 95 %), the range of the runs is shown, marked “range”, with "
        "its coverage (75 % at 3 runs, 94 % at 5). Time to target over the runs that "
        "reached the target loss. Best per column in bold, with every value practically equal "
        "to it (the report's ROPE); a time to target only where at least half the runs "
        "reached the target.",
        table.numbers,
        table.display,
        table.bold,
    )


def failed_runs(ctx: ReportContext, problem: str, w: DocumentWriter) -> None:
    """Which runs failed or diverged, and why (nothing when none did)."""
    runs = ctx.problem_runs(problem)
    failed = runs[runs["failed"]]
    if len(failed):
        w.para(
            f"Failed or diverged runs ({len(failed)}): "
            + "; ".join(
                f"{r.run_name} (seed {r.seed}, {r.status}"
                + (f": {r.failure_reason}" if r.failure_reason else "")
                + ")"
                for r in failed.itertuples()
            )
        )


#: The parts of each problem's section, in order.
PARTS: list[ProblemSection] = [overview, loss_curves, step_sizes, final_results, failed_runs]


def problems(ctx: ReportContext, w: DocumentWriter) -> None:
    """A section per problem: its heading, then each part of :data:`PARTS`."""
    for problem in ctx.problems:
        w.heading(2, f"Problem: {problem}")
        for part in PARTS:
            part(ctx, problem, w)


def final_all_problems(ctx: ReportContext, w: DocumentWriter) -> None:
    """The final results of every problem as one table (CSV and LaTeX files, not shown)."""
    combined = pd.concat([ctx.finals[p].numbers for p in ctx.problems], ignore_index=True)
    w.table(
        "final_all_problems",
        "Final results of every problem (numbers of the per-problem tables).",
        combined,
        combined.map(lambda v: fmt(v) if isinstance(v, float) else str(v)),
        show=False,  # a CSV/LaTeX file only
    )
