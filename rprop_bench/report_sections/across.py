"""Comparisons across problems: performance profiles, ranks with the Friedman test and
critical-difference diagrams, and the probability of improvement.

:func:`across_problems` writes the heading and then each part of :data:`PARTS` in order (a
part is a section, ``(ctx, w) -> None``), or says why there is nothing to compare (fewer
than two problems or two optimizers).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rprop_bench import analysis, comparison, plotting, schema
from rprop_bench.document import DocumentWriter
from rprop_bench.report_sections import common
from rprop_bench.report_sections.common import column, fmt
from rprop_bench.report_sections.context import ReportContext, Section
from rprop_bench.text import count

__all__ = [
    "PARTS",
    "across_problems",
    "criteria",
    "improvement",
    "median_costs",
    "performance_profiles",
    "ranks",
]


def cell_values(
    runs: pd.DataFrame, value: pd.Series, problems: list[str], methods: list[str]
) -> np.ndarray:
    """(n_problems, n_methods, n_runs) of each cell's run values (failed: inf), NaN-padded
    where a cell has fewer runs: what the stratified bootstrap resamples."""
    f = runs[["problem", "method"]].copy()
    f["cost"] = np.where(runs["failed"], np.inf, value.fillna(np.inf))
    groups = {key: g["cost"].to_numpy(float) for key, g in f.groupby(["problem", "method"])}
    width = max((len(g) for g in groups.values()), default=1)
    out = np.full((len(problems), len(methods), width), np.nan)
    for i, p in enumerate(problems):
        for j, m in enumerate(methods):
            cell = groups.get((p, m))
            if cell is not None:
                out[i, j, : len(cell)] = cell
    return out


def median_of_cells(cells: np.ndarray) -> np.ndarray:
    """The (n_problems, n_methods) medians of :func:`cell_values` (an empty cell, a method
    that did not run on a problem, costs inf)."""
    filled = np.where(np.isnan(cells).all(axis=2, keepdims=True), np.inf, cells)
    with np.errstate(invalid="ignore"):
        return np.nanmedian(filled, axis=2)


def median_costs(
    runs: pd.DataFrame, value: pd.Series, problems: list[str], methods: list[str]
) -> np.ndarray:
    """(n_problems, n_methods) median cost over seeds; failed/missing runs cost inf."""
    return median_of_cells(cell_values(runs, value, problems, methods))


def _to_target(runs: pd.DataFrame, metric: str) -> pd.Series:
    """A time-to-target metric of the runs, ∞ where a run did not reach the target."""
    reached = column(runs, schema.REACHED_TARGET) == 1.0
    return pd.Series(np.where(reached, column(runs, metric), np.inf), index=runs.index)


def criteria(runs: pd.DataFrame) -> list[tuple[str, str, pd.Series]]:
    """What the optimizers are ranked on: (label, file-name key, value per run). The cost to
    the target is in gradient evaluations, not epochs: an L-BFGS epoch is up to 20
    iterations and their line searches. The generalisation track (the best validation loss,
    and the test loss of the model at that epoch) where the runs logged it."""
    out = [
        ("final training loss", "final_train_loss", column(runs, schema.FINAL_TRAIN_LOSS)),
        ("final test loss", "test_loss", column(runs, schema.TEST_LOSS)),
        ("evaluations to target", "grad_evals_to_target", _evals_to_target(runs)[0]),
    ]
    for label, metric in (
        ("best validation loss", schema.BEST_VAL_LOSS),
        ("test loss at best validation", schema.TEST_LOSS_AT_BEST_VAL),
    ):
        if metric in runs and runs[metric].notna().any():
            out.append((label, metric, column(runs, metric)))
    return out


def _evals_to_target(runs: pd.DataFrame) -> tuple[pd.Series, bool]:
    """Gradient evaluations to the target per run (:func:`common.evals_to`), and whether
    some reached runs predate evaluation counting and count their epochs."""
    evals = common.evals_to(runs, schema.REACHED_TARGET, schema.GRAD_EVALS_TO_TARGET,
                            schema.EPOCHS_TO_TARGET)  # fmt: skip
    fell_back = np.isfinite(evals) & column(runs, schema.GRAD_EVALS_TO_TARGET).isna()
    return evals, bool(fell_back.any())


def performance_profiles(ctx: ReportContext, w: DocumentWriter) -> None:
    """Performance profiles of costs to the target (gradient evaluations and seconds), capped
    at AlgoPerf's τ_max = 4, with the integrated area as a score. A loss is not a cost: a
    best loss near 0 makes every ratio explode, so losses get no profile."""
    runs, problems, methods = ctx.compared.runs, ctx.compared.problems, ctx.compared.methods
    tiny = np.finfo(float).tiny
    tau_max = analysis.ALGOPERF_TAU_MAX
    evals, fell_back = _evals_to_target(runs)
    profiles, scores = {}, []
    for name, value in (
        ("gradient evaluations to target", evals),
        ("seconds to target", _to_target(runs, schema.SECONDS_TO_TARGET)),
    ):
        c = np.clip(median_costs(runs, value, problems, methods), tiny, None)
        taus = np.linspace(1.0, tau_max, 301)
        profiles[name] = (taus, analysis.performance_profile(c, taus))
        scores += [
            {"cost": name, "method": m, "profile_score": v}
            for m, v in zip(methods, analysis.profile_score(c, tau_max), strict=True)
        ]
    w.heading(3, "Performance profiles")
    w.figure(
        plotting.performance_profiles(profiles, methods),
        "performance_profiles",
        "Performance profiles over problems (Dolan & Moré 2002, capped as in AlgoPerf at "
        f"τ_max = {tau_max:g}): the fraction of problems on which an optimizer's median cost to "
        "the target loss is within a factor τ of the best, in gradient evaluations (passes "
        "over the training set; independent of the machine's load) and in seconds. Failed or "
        "never-reaching runs count as ∞."
        + (" Runs from before evaluation counting count their epochs." if fell_back else ""),
    )
    table = pd.DataFrame(scores)
    shown = table.pivot(index="method", columns="cost", values="profile_score").reset_index()
    numbers = shown.copy()
    for col in shown.columns[1:]:
        shown[col] = [fmt(v) for v in numbers[col]]
    w.table(
        "profile_scores",
        f"Profile scores: the area under each profile on [1, {tau_max:g}] over {tau_max - 1:g}, "
        "AlgoPerf's score (1: the fastest on every problem; 0: never within 4× of it).",
        table,
        shown.rename(columns={"method": "optimizer"}),
    )


def _cd_figure(
    w: DocumentWriter,
    fr: comparison.FriedmanResult,
    methods: list[str],
    cd: float,
    criterion: tuple[str, str],
) -> None:
    """The critical-difference diagram of one criterion (its label and file-name key)."""
    label, key = criterion
    w.figure(
        plotting.cd_diagram(
            fr.average_ranks,
            methods,
            cd,
            comparison.cd_cliques(fr.average_ranks, cd),
            title=f"average rank: {label}",
        ),
        f"cd_diagram_{key}",
        f"Critical-difference diagram on {label}: optimizers joined by a bar are not "
        f"significantly different (Nemenyi), drawn because the omnibus test rejected: "
        f"Friedman χ² = {fmt(fr.statistic)}, p = {fmt(fr.pvalue)} (Iman–Davenport "
        f"F = {fmt(fr.iman_davenport_f)}, p = {fmt(fr.iman_davenport_p)}).",
    )


def _merged_note(ctx: ReportContext) -> str:
    """The sentence that says which methods were merged as identical, or nothing."""
    merged = ctx.compared.merged
    if not merged:
        return ""
    groups = "; ".join(" and ".join(g) for g in merged)
    return (
        f" Identical runs: {groups} gave bit-identical results on every problem and seed, so "
        "each group counts once in these statistics (labelled a = b)."
    )


def ranks(ctx: ReportContext, w: DocumentWriter) -> None:
    """Average ranks per criterion (practical ties first), the omnibus test, and the
    Nemenyi critical difference only where the omnibus test rejects."""
    runs, problems, methods = ctx.compared.runs, ctx.compared.problems, ctx.compared.methods
    opts = ctx.options
    rope = comparison.Rope(opts.rope_relative, opts.rope_absolute)
    w.heading(3, "Ranks, Friedman test and critical difference")
    cd = comparison.nemenyi_critical_difference(len(methods), len(problems), opts.alpha)
    w.para(
        f"Average ranks over {len(problems)} problems (1 = best) of each optimizer's median over "
        f"seeds, for {len(criteria(runs))} criteria; a failed or never-reaching run counts as "
        "∞. Medians within "
        f"{opts.rope_relative:g} of each other (relative, with an absolute floor of "
        f"{opts.rope_absolute:g}) are ties before ranking, so float noise is not ranked. The "
        "omnibus test (Friedman's χ², Iman–Davenport's F beside it) asks whether the optimizers "
        f"differ at all; only where it rejects at α = {opts.alpha:g} is the post-hoc Nemenyi test "
        "read "
        f"(critical difference {cd:.3f} for {len(methods)} optimizers and {len(problems)} "
        "problems)." + _merged_note(ctx)
    )
    rank_rows, tests = [], []
    disp = pd.DataFrame({"optimizer": methods})
    bold = pd.DataFrame(False, index=disp.index, columns=[])
    for label, key, values in criteria(runs):
        if values.isna().all():
            continue
        cells = cell_values(runs, values, problems, methods)
        fr = comparison.friedman_test(median_of_cells(cells), rope=rope)
        rejects = fr.rejects(opts.alpha)
        low, high = analysis.stratified_bootstrap(
            cells,
            lambda sample: comparison.average_ranks(median_of_cells(sample), rope=rope),
            confidence=opts.confidence, n_resamples=opts.n_resamples, random_state=opts.seed,
        )  # fmt: skip
        tests.append(
            f"{label}: Friedman χ² = {fmt(fr.statistic)}, p = {fmt(fr.pvalue)}; Iman–Davenport "
            f"F = {fmt(fr.iman_davenport_f)}, p = {fmt(fr.iman_davenport_p)}"
            + ("" if rejects else ": no difference detected")
        )
        rank_rows += [
            {
                "criterion": label,
                "method": m,
                "average_rank": r,
                "average_rank_ci_low": lo,
                "average_rank_ci_high": hi,
                "friedman_chi2": fr.statistic,
                "friedman_p": fr.pvalue,
                "iman_davenport_f": fr.iman_davenport_f,
                "iman_davenport_p": fr.iman_davenport_p,
                "omnibus_rejects": rejects,
                "nemenyi_cd": cd if rejects else np.nan,
            }
            for m, r, lo, hi in zip(methods, fr.average_ranks, low, high, strict=True)
        ]
        disp[label] = [f"{r:.2f} [{lo:.2f}, {hi:.2f}]"
                       for r, lo, hi in zip(fr.average_ranks, low, high, strict=True)]  # fmt: skip
        bold[label] = (fr.average_ranks == fr.average_ranks.min()) & rejects
        if rejects:
            _cd_figure(w, fr, methods, cd, (label, key))
        else:
            w.para(
                f"{label}: no difference detected (Friedman p = {fmt(fr.pvalue)} ≥ "
                f"α = {opts.alpha:g}), so no post-hoc test and no critical-difference diagram: "
                "its cliques would read structure into noise."
            )
    bold.insert(0, "optimizer", False)
    w.table(
        "ranks",
        f"Average ranks per criterion [{opts.confidence:.0%} stratified-bootstrap interval: "
        f"runs resampled within each problem and optimizer, {opts.n_resamples} resamples, "
        f"seed {opts.seed}] (the best in bold where the omnibus test rejects). "
        + "; ".join(tests)
        + ".",
        pd.DataFrame(rank_rows),
        disp,
        bold[disp.columns],
    )


def improvement(ctx: ReportContext, w: DocumentWriter) -> None:
    """P(X beats Y) on the final test loss and the evaluations to target, with stratified-bootstrap
    intervals: figure and table."""
    runs, problems, methods = ctx.compared.runs, ctx.compared.problems, ctx.compared.methods
    opts = ctx.options
    rope = comparison.Rope(opts.rope_relative, opts.rope_absolute)
    w.heading(3, "Probability of improvement")
    for label, key, values in criteria(runs)[1:]:
        cells = cell_values(runs, values, problems, methods)
        matrix = pd.DataFrame(
            comparison.improvement_of_cells(cells, rope), index=methods, columns=methods
        )
        low, high = analysis.stratified_bootstrap(
            cells,
            lambda sample: comparison.improvement_of_cells(sample, rope),
            confidence=opts.confidence, n_resamples=opts.n_resamples, random_state=opts.seed,
        )  # fmt: skip
        suffix = "" if key == "test_loss" else f"_{key}"
        w.figure(
            plotting.improvement_heatmap(matrix, title=label),
            f"probability_of_improvement{suffix}",
            f"P(X beats Y) on {label}: the probability that a run of X does better (lower) than "
            "a run of Y on the same problem, averaged over problems (a failed run loses; "
            "practically equal runs, by the report's ROPE, tie and count ½).",
        )
        num = pd.DataFrame([
            {"method": a, "versus": b, "p_improvement": matrix.loc[a, b],
             "ci_low": low[i, j], "ci_high": high[i, j]}
            for i, a in enumerate(methods) for j, b in enumerate(methods)
        ])  # fmt: skip
        shown = matrix.reset_index(names="X \\ Y")
        for j, b in enumerate(methods):
            shown[b] = [f"{fmt(matrix.loc[a, b])} [{fmt(low[i, j])}, {fmt(high[i, j])}]"
                        for i, a in enumerate(methods)]  # fmt: skip
        w.table(
            f"probability_of_improvement{suffix}",
            f"P(row beats column) on {label} [{opts.confidence:.0%} stratified-bootstrap "
            f"interval, {opts.n_resamples} resamples, seed {opts.seed}].",
            num,
            shown,
        )


#: The parts of the across-problems section, in order.
PARTS: list[Section] = [performance_profiles, ranks, improvement]


def across_problems(ctx: ReportContext, w: DocumentWriter) -> None:
    """The heading, then each part of :data:`PARTS` (with two problems and two optimizers)."""
    w.heading(2, "Across problems")
    compared = ctx.compared
    if compared.dropped:
        w.para(
            "Left out of the comparisons across problems, because not every optimizer ran on "
            "them (a method cannot be ranked on a problem it did not run): "
            + "; ".join(
                f"{p} (not run by {', '.join(missing)})" for p, missing in compared.dropped.items()
            )
            + "."
        )
    if len(compared.problems) < 2 or len(compared.methods) < 2:
        w.para(
            "Comparisons across problems need at least two problems that every optimizer ran "
            f"on, and two optimizers; this report has {count(len(compared.problems), 'problem')}"
            f" and {count(len(compared.methods), 'optimizer')}."
        )
        return
    for part in PARTS:
        part(ctx, w)
