"""The tuning behind a report on a phase of a tuning study (``python -m rprop_bench tune``):
the protocol, what was chosen and whether it sits on a bound of its range, the budget each
optimizer spent, and what tuning gained over the defaults on the same fresh seeds.

Shown only where the report's sweep is a phase of a study; the tables are the study's
artifacts (:func:`rprop_bench.results.load_tuning`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rprop_bench import plotting, results
from rprop_bench.document import DocumentWriter
from rprop_bench.report_sections.common import fmt
from rprop_bench.report_sections.context import ReportContext

__all__ = ["gain_matrix", "tuning_section"]


def _phase_text(tuning: results.TuningResults) -> str:
    objective = tuning.objective
    if objective is not None:
        return (
            f"the reruns of the configurations that won on **{objective}** (the median over "
            "the tuning seeds), on fresh seeds that tuning never saw: tuned against tuned"
        )
    if tuning.phase == "defaults":
        return "every optimizer at its default configuration on the same fresh seeds: " \
            "defaults against defaults"  # fmt: skip
    return f"phase {tuning.phase}"


def _times(ratio: float) -> str:
    """A ratio short enough for a heatmap cell: ``×1.19``, ``×58``, ``×1e3``."""
    if ratio >= 1000:
        return f"×1e{int(np.floor(np.log10(ratio)))}"
    if ratio >= 10:
        return f"×{ratio:.0f}"
    return f"×{ratio:.2f}"


def gain_matrix(gain: pd.DataFrame, objective: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Problems × optimizers: log10(default median / tuned median) of ``objective`` on the
    fresh seeds, and each cell's label (``×3.20``; ``only tuned`` where the default never
    reached a finite value, ``neither`` where neither did; ``a 0`` where one median is 0).

    Both medians are costs (lower is better), so > 0 means tuning helped.
    """
    rows = gain[gain["objective"] == objective]
    problems = sorted(rows["problem"].unique())
    optimizers = sorted(rows["optimizer"].unique())
    ratio = pd.DataFrame(np.nan, index=problems, columns=optimizers)
    labels = pd.DataFrame("", index=problems, columns=optimizers)
    for r in rows.itertuples():
        tuned, default = float(r.tuned_median), float(r.default_median)
        if np.isfinite(tuned) and np.isfinite(default) and tuned > 0 and default > 0:
            ratio.loc[r.problem, r.optimizer] = np.log10(default / tuned)
            labels.loc[r.problem, r.optimizer] = _times(default / tuned)
        elif np.isfinite(tuned) and np.isfinite(default):
            labels.loc[r.problem, r.optimizer] = "both 0" if tuned == default else "a 0"
        elif np.isfinite(tuned):
            labels.loc[r.problem, r.optimizer] = "only tuned"
        elif np.isfinite(default):
            labels.loc[r.problem, r.optimizer] = "only default"
        else:
            labels.loc[r.problem, r.optimizer] = "neither"
    return ratio, labels


def tuning_section(ctx: ReportContext, w: DocumentWriter) -> None:
    """The tuning study this report's runs come from (nothing if they come from none)."""
    tuning = results.load_tuning(ctx.tracking_uri, ctx.results.parent_run_id)
    if tuning is None:
        return
    w.heading(2, "Tuning")
    budget = tuning.budget
    trials = budget["trials"] if len(budget) else pd.Series([0])
    base = int(trials.min())
    widened = int((trials > base).sum())
    more = (
        f" ({int(trials.max())} in the {widened} cells whose winner sat on a bound and whose "
        "range was widened and searched again)"
        if widened
        else ""
    )
    w.para(
        f"These runs are {_phase_text(tuning)}. Study `{tuning.study_id}`: every optimizer had "
        f"{base} trials per problem in its declared search space{more}, each trial on every "
        "tuning seed; only the reruns on fresh seeds are scored in this report. Command: "
        f"`{tuning.command}`."
    )
    objectives = (
        [tuning.objective] if tuning.objective else sorted(tuning.selection["objective"].unique())
    )
    sel = tuning.selection[tuning.selection["objective"].isin(objectives)]
    sel = sel.sort_values(["objective", "problem", "optimizer"])
    flagged = sel["on_boundary"].fillna("").astype(str) != ""
    first = sel["on_boundary_first"].fillna("").astype(str) != ""
    w.para(
        f"{int(first.sum())} of {len(sel)} winners sat on a bound of their declared range "
        f"(the outer 5 % in the sampling scale); after widening, {int(flagged.sum())} do."
    )
    display = pd.DataFrame({
        "objective": sel["objective"], "problem": sel["problem"], "optimizer": sel["optimizer"],
        "chosen": sel["chosen"], "default": sel["default"],
        "tuning score": [fmt(float(v)) for v in sel["tuning_score"]],
        "reached": sel["tuning_reached"],
        "on a bound (declared range)": sel["on_boundary_first"].fillna(""),
        "on a bound (final range)": sel["on_boundary"].fillna(""),
    })  # fmt: skip
    w.table(
        "tuning_selection",
        "The chosen configuration of every optimizer and problem, its median score over the "
        "tuning seeds, and the bounds it sits on.",
        sel,
        display,
    )
    per_opt = budget.groupby("optimizer", as_index=False).agg(
        problems=("problem", "nunique"), trials=("trials", "sum"), runs=("runs", "sum"),
        grad_evals=("grad_evals", "sum"),
    )  # fmt: skip
    w.table(
        "tuning_budget", "The tuning budget each optimizer spent, over all problems: trials, "
        "training runs, and gradient evaluations (summed over the trials' runs).",
        per_opt, per_opt.assign(grad_evals=[fmt(float(v)) for v in per_opt["grad_evals"]]),
    )  # fmt: skip
    # the study's whole tables, for recomputing any number above without the store
    for name, frame, caption in (
        ("tuning_trials", tuning.trials, "Every trial of the study, per objective."),
        ("tuning_gain", tuning.gain, "Tuned against default medians on the fresh seeds."),
        ("tuning_budget_cells", budget, "The tuning budget per optimizer and problem."),
    ):
        w.table(name, caption, frame, frame, show=False)
    for objective in objectives:
        if "default_median" not in tuning.gain or "tuned_median" not in tuning.gain:
            break
        ratio, labels = gain_matrix(tuning.gain, objective)
        if ratio.empty:
            continue
        fig = plotting.tuning_gain_heatmap(ratio, labels, title=f"default / tuned: {objective}")
        w.figure(
            fig, f"tuning_gain_{objective}",
            f"The median {objective} over the fresh seeds at the default configuration "
            "divided by that at the tuned one (> 1: tuning lowered it). Grey: a ratio cannot "
            "be formed (a median is ∞: the target was not reached by half the seeds; or 0). "
            "A loss tuned to near 0 gives a large ratio for a small difference in loss.",
        )  # fmt: skip
