"""The working range of an optimizer's hyperparameters, from a grid of runs.

Riedmiller & Braun (1993) argue for Rprop by its robustness: the epochs to the goal change
little over a wide range of its initial step Δ0 (and of η+), where backpropagation's
learning rate must be hit closely. For each problem and method whose runs vary the learning
rate (Δ0 for the Rprop family) and one more scalar hyperparameter (η+ first, then β1,
momentum, ...; a ``train.vectorize=grid`` sweep, say), :func:`working_ranges` draws that map:
the median over the cell's runs of the gradient evaluations to the problem's target, a failed
run costing ∞ (:func:`rprop_bench.analysis.working_range`). A third varying hyperparameter
(η- in a Δ0 × η+ × η- grid) gets one panel per value, up to :data:`MAX_PANELS`; beyond that,
or with a fourth, the other values are pooled into the cells, and the text says so.
"""

from __future__ import annotations

import ast

import numpy as np
import pandas as pd

from rprop_bench import analysis, plotting, schema
from rprop_bench.document import DocumentWriter, slug
from rprop_bench.report_sections.common import evals_to, fmt
from rprop_bench.report_sections.context import ReportContext
from rprop_bench.text import count

__all__ = ["MAX_PANELS", "hyperparameters", "map_axes", "working_ranges"]

#: The most panels of one map (values of a third varying hyperparameter).
MAX_PANELS = 12
_PARAM = "param.optimizer."
#: A list-valued optimizer argument's elements, as the papers name them.
_ELEMENTS = {"etas": ("η-", "η+"), "betas": ("β1", "β2"), "step_sizes": ("Δmin", "Δmax")}
#: The map's y axis: the first of these that varies (the x axis is the learning rate).
_Y_PREFERENCE = ("η+", "β1", "momentum", "alpha", "η-", "β2", "weight_decay", "Δmax", "Δmin")
_LR = "lr"
_TARGET = "param.problem.target_loss"


def _number(text: object) -> object:
    """A param's value as Python reads it (``"[0.5, 1.2]"`` → a list), else None."""
    try:
        return ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        return None


def hyperparameters(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs' scalar optimizer hyperparameters, one float column each: ``lr``, and list
    arguments split into their elements (``etas`` → ``η-``, ``η+``). Flags, names and
    nested settings are left out."""
    out: dict[str, pd.Series] = {}
    for column in runs.columns:
        name = column.removeprefix(_PARAM)
        if not column.startswith(_PARAM) or name.startswith("_") or "." in name:
            continue
        values = runs[column].map(_number)
        elements = _ELEMENTS.get(name)
        if elements is not None:
            for i, element in enumerate(elements):
                out[element] = values.map(
                    lambda v, i=i: float(v[i]) if isinstance(v, list | tuple) and len(v) > i
                    else np.nan
                )  # fmt: skip
        elif values.map(lambda v: isinstance(v, int | float) and not isinstance(v, bool)).all():
            out[name] = values.astype(float)
    return pd.DataFrame(out, index=runs.index)


def map_axes(hypers: pd.DataFrame) -> tuple[str, str, str | None, list[str]] | None:
    """The map's ``(x, y, panel, pooled)`` hyperparameters for runs with these
    (:func:`hyperparameters`), or None where they do not form a grid over the learning rate
    and one more: ``panel`` has a panel per value, ``pooled`` are pooled into the cells."""
    varying = [c for c in hypers if hypers[c].nunique(dropna=True) > 1]
    if _LR not in varying:
        return None
    others = [c for c in _Y_PREFERENCE if c in varying]
    others += [c for c in varying if c not in others and c != _LR]
    if not others:
        return None
    y, rest = others[0], others[1:]
    panel = rest[0] if len(rest) == 1 and hypers[rest[0]].nunique() <= MAX_PANELS else None
    pooled = [c for c in rest if c != panel]
    return _LR, y, panel, pooled


def working_ranges(ctx: ReportContext, w: DocumentWriter) -> None:
    """A working-range map per problem and method whose runs form a grid (nothing if none)."""
    wrote_heading = False
    for problem in ctx.problems:
        runs = ctx.problem_runs(problem)
        for method in sorted(runs["method"].unique()):
            mine = runs[runs["method"] == method]
            hypers = hyperparameters(mine)
            axes = map_axes(hypers)
            if axes is None:
                continue
            if not wrote_heading:
                w.heading(2, "Working ranges")
                w.para(
                    "Over a grid of hyperparameters, the median of the gradient evaluations "
                    "to the problem's target over each cell's runs (seeds, and any "
                    "hyperparameter pooled), on a log colour scale, as Riedmiller & Braun "
                    "(1993) judged Rprop's robustness to Δ0. A run that missed the target or "
                    "failed costs ∞, so a cell whose median is ∞ (half its runs or more "
                    "missed) is grey with ×; k/n marks a cell where only k of its n runs "
                    "reached it."
                )
                wrote_heading = True
            _one_map(ctx, problem, method, mine, hypers, axes, w)


def _one_map(
    ctx: ReportContext,
    problem: str,
    method: str,
    runs: pd.DataFrame,
    hypers: pd.DataFrame,
    axes: tuple[str, str, str | None, list[str]],
    w: DocumentWriter,
) -> None:
    x, y, panel, pooled = axes
    x_label = "Δ0" if plotting.is_rprop(method) else x
    cost = evals_to(runs, schema.REACHED_TARGET, schema.GRAD_EVALS_TO_TARGET,
                    schema.EPOCHS_TO_TARGET)  # fmt: skip
    frame = hypers.assign(cost=cost.to_numpy())
    panels: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    rows = []
    groups = frame.groupby(panel) if panel is not None else [(None, frame)]
    for value, part in groups:
        found = analysis.working_range(part, x, y)
        labels = found.reached.astype(int).astype(str) + "/" + found.runs.astype(int).astype(str)
        labels = labels.where(found.reached < found.runs, "")  # only where some runs missed
        name = f"{panel} = {value:.3g}" if panel is not None else ""
        panels[name] = (found.median, labels)
        cells = pd.concat(
            {"median_cost": found.median.stack(), "reached": found.reached.stack(),
             "runs": found.runs.stack()}, axis=1,
        ).reset_index()  # fmt: skip
        rows.append(cells.assign(**({panel: value} if panel is not None else {})))
    table = pd.concat(rows, ignore_index=True)
    ok = np.isfinite(table["median_cost"].to_numpy(float))
    targets = runs.get(_TARGET, pd.Series(dtype=object)).dropna().unique()
    target = f"training-loss target {', '.join(map(str, targets))}" if len(targets) else "target"
    best = table.loc[ok].nsmallest(1, "median_cost")
    where = (
        f"; the lowest median, {fmt(float(best['median_cost'].iloc[0]))} evaluations, at "
        + ", ".join(f"{shown} = {best[c].iloc[0]:.3g}" for c, shown in
                    ((x, x_label), (y, y), *([(panel, panel)] if panel else [])))
        if len(best) else ""
    )  # fmt: skip
    name = f"working_range_{slug(problem)}_{slug(method)}"
    w.heading(3, f"{problem}: working range of {method}")
    w.para(
        f"{count(len(runs), 'run')}, {count(len(table), 'cell')}: {int(ok.sum())} reach the "
        f"{target} in at least half their runs{where}."
        + (f" Pooled into the cells: {', '.join(pooled)}." if pooled else "")
    )
    fig = plotting.working_range_map(
        panels, x_label=x_label, y_label=y, cost_label="evaluations to target",
        title=f"{problem}: {method}",
    )  # fmt: skip
    w.figure(
        fig, name,
        f"Median gradient evaluations to the target over each cell's runs, {x_label} × {y}"
        + (f", one panel per {panel}" if panel else "")
        + "; grey ×: half the runs or more missed it; k/n: k of the cell's n runs reached it, "
        "where some missed.",
    )  # fmt: skip
    w.table(name, f"The cells of {problem}'s working range of {method}.", table,
            table.assign(median_cost=[fmt(float(v)) for v in table["median_cost"]]),
            show=False)  # fmt: skip
