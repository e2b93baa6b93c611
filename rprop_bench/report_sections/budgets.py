"""Per-problem tests at fixed budgets: each method's training loss after a share of the
problem's gradient evaluations, compared pairwise with Wilcoxon's signed-rank test (runs
paired by seed) or Mann–Whitney's U, Holm-corrected within each problem.

A ranking of final losses says nothing of when a method got there; the Rprop papers compare
error at fixed costs (Igel & Hüsken 2003, error against evaluations). These tables say, per
problem and budget, which differences survive a correction for the number of tests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rprop_bench import comparison, schema
from rprop_bench.document import DocumentWriter
from rprop_bench.report_sections.common import fmt
from rprop_bench.report_sections.context import ReportContext

__all__ = ["budget_tests", "control_method", "values_at_budget"]

#: The control a study's methods are compared with, in order of preference.
_CONTROL_PREFERENCE = ("irprop-", "irprop+", "rprop+")


def control_method(methods: list[str], chosen: str | None) -> str:
    """The reference method: ``report.control`` if given, else our default Rprop (iRprop-)
    where present, else the first method. A name matches a merged label of identical
    methods (``irprop- = torch_rprop``) by any of its parts."""

    def labelled(name: str) -> str | None:
        return next((m for m in methods if name in m.split(" = ")), None)

    if chosen:
        found = labelled(chosen)
        if found is None:
            from rprop_bench.results import ResultsError

            raise ResultsError(
                f"report.control={chosen!r} is not a method of these runs; valid: "
                f"{', '.join(methods)}"
            )
        return found
    return next((m for m in map(labelled, _CONTROL_PREFERENCE) if m), methods[0])


def _cost(wide: pd.DataFrame) -> pd.Series:
    """Each history row's cost: gradient evaluations, or the epoch for runs logged before
    evaluation counting (one evaluation per epoch in full batch)."""
    step = wide["step"].astype(float)
    if schema.GRAD_EVALS not in wide:
        return step
    return wide[schema.GRAD_EVALS].astype(float).fillna(step)


def values_at_budget(wide: pd.DataFrame, budget: float) -> pd.DataFrame:
    """Per run, the training loss at the last logged point whose cost is within ``budget``
    (NaN where a run logged nothing by then; ``inf`` for a failed run), with its ``method``
    and ``seed``. A run that spent less than the budget in all gives its final loss."""
    w = wide.assign(_cost=_cost(wide))
    runs = w.drop_duplicates("run_id")[["run_id", "method", "seed", "failed"]]
    within = w[w["_cost"] <= budget + 1e-9].sort_values(["run_id", "_cost"])
    last = within.groupby("run_id")[schema.TRAIN_LOSS].last()
    out = runs.assign(value=runs["run_id"].map(last).astype(float))
    out.loc[out["failed"].astype(bool), "value"] = np.inf
    return out


def _problem_tests(ctx: ReportContext, problem: str, control: str) -> list[dict]:
    """Every pairwise test of one problem at each budget, Holm-corrected per family (the
    control's comparisons; all pairs)."""
    wide = ctx.compared_wide(problem)
    if wide.empty:
        return []
    full = float(_cost(wide).max())
    rope = comparison.Rope(ctx.options.rope_relative, ctx.options.rope_absolute)
    rows = []
    methods = sorted(wide["method"].unique())
    for share in ctx.options.budgets:
        budget = share * full
        at = values_at_budget(wide, budget)
        # a run with nothing logged within the budget is not measured there: left out
        values = {m: g.set_index("seed")["value"].dropna() for m, g in at.groupby("method")}
        for i, a in enumerate(methods):
            for b in methods[i + 1 :]:
                if values.get(a, pd.Series()).empty or values.get(b, pd.Series()).empty:
                    continue  # a method with no run measured by this budget
                t = comparison.pair_test(values[a], values[b], rope)
                rows.append({
                    "problem": problem, "budget_share": share, "budget_grad_evals": budget,
                    "method": a, "versus": b, "test": t.test, "n": t.n,
                    "statistic": t.statistic, "p": t.pvalue,
                    "median": float(np.median(values[a])), "median_versus": float(
                        np.median(values[b])),
                    "with_control": control in (a, b),
                })  # fmt: skip
    frame = pd.DataFrame(rows)
    if frame.empty:
        return []
    control_family = frame["with_control"].to_numpy(bool)
    frame["p_holm_control"] = np.nan
    frame.loc[control_family, "p_holm_control"] = comparison.holm(frame["p"][control_family])
    frame["p_holm_all_pairs"] = comparison.holm(frame["p"])
    return frame.to_dict("records")


def _power_note(frame: pd.DataFrame) -> str:
    """Where the seeds are too few for any test to reach p < 0.05, say so: the smallest
    two-sided p of the signed-rank test on n pairs is 2 / 2^n (0.25 at n = 3)."""
    paired = frame[frame["test"] == "wilcoxon"]
    if paired.empty:
        return ""
    n = int(paired["n"].max())
    floor = 2.0 / 2**n
    if floor < 0.05:
        return ""
    return (
        f" With {n} seeds the signed-rank test cannot give p below {floor:g}: no difference "
        "here can be significant, and none is claimed; more seeds are needed."
    )


def budget_tests(ctx: ReportContext, w: DocumentWriter) -> None:
    """The section of tests at fixed budgets: against the control, and all pairs (CSV);
    nothing with a single method."""
    methods = ctx.compared.methods
    control = control_method(methods, ctx.options.control)  # a bad name is an error even so
    if len(methods) < 2:
        return
    alpha = ctx.options.alpha
    rows = [r for p in ctx.problems for r in _problem_tests(ctx, p, control)]
    w.heading(2, "Tests at fixed budgets")
    if not rows:
        w.para("No run logged a training loss to test at a budget.")
        return
    frame = pd.DataFrame(rows)
    shares = ", ".join(f"{s:g}" for s in ctx.options.budgets)
    w.para(
        f"Per problem, each method's training loss after {shares} of the problem's largest "
        "number of gradient evaluations (the last logged point within the budget), tested "
        "two-sided against the control "
        f"{control}: Wilcoxon's signed-rank test where the runs pair by seed, Mann–Whitney's "
        "U otherwise, practically equal losses (the report's ROPE) counting as ties; p-values "
        "Holm-corrected within each problem over all budgets (control comparisons as one "
        "family; all pairs as another, in the CSV)." + _power_note(frame)
    )
    mine = frame[frame["with_control"]].copy()
    other = np.where(mine["method"] == control, mine["versus"], mine["method"])
    flip = mine["method"] == control
    shown = pd.DataFrame({
        "problem": mine["problem"],
        "budget": [f"{s:g} ({fmt(b)} evals)" for s, b in zip(mine["budget_share"],
                                                            mine["budget_grad_evals"],
                                                            strict=True)],
        "method": other,
        "median": [fmt(v) for v in np.where(flip, mine["median_versus"], mine["median"])],
        f"{control} median": [fmt(v) for v in np.where(flip, mine["median"],
                                                      mine["median_versus"])],
        "test (n)": [f"{t} ({n})" for t, n in zip(mine["test"], mine["n"], strict=True)],
        "p": [fmt(v) for v in mine["p"]],
        "Holm p": [fmt(v) for v in mine["p_holm_control"]],
    })  # fmt: skip
    bold = pd.DataFrame(False, index=shown.index, columns=shown.columns)
    bold["Holm p"] = (mine["p_holm_control"] < alpha).to_numpy()
    w.table(
        "budget_tests",
        f"Training loss at fixed budgets against {control}; Holm p below α = {alpha:g} in "
        "bold. Every pair's test, both corrections: tables/budget_tests.csv.",
        frame,
        shown.reset_index(drop=True),
        bold.reset_index(drop=True),
    )
