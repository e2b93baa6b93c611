"""Runtime distributions: how much it costs to reach each target of a problem's ladder.

- the runtime ECDF per optimizer, pooled over (problem, target, run) triples against
  gradient evaluations on a log axis (COCO's ECDF; a data profile, Moré & Wild 2009);
- the expected running time with restarts (ERT) to each problem's main target, which stays
  finite where only some runs reach it.

A run's targets are its problem's ladder (``reached_target_k``, ``grad_evals_to_target_k``),
or its one target loss where the problem has no ladder. Costs are gradient evaluations
(epochs for runs logged before evaluation counting).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from rprop_bench import analysis, plotting, schema
from rprop_bench.document import DocumentWriter
from rprop_bench.report_sections.common import column, evals_to, fmt
from rprop_bench.report_sections.context import ReportContext

__all__ = ["runtime_distributions", "target_costs"]

_LADDER = re.compile(rf"^{schema.LADDER_REACHED}_(\d+)$")


def target_costs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, target): ``problem``, ``method``, ``run_id``, ``target`` (the rung
    k, or ``"target"``) and ``cost``; and ``spent``, the run's total gradient evaluations
    (its epochs before evaluation counting)."""
    rungs = sorted({int(m.group(1)) for c in runs.columns if (m := _LADDER.match(c))})
    spent = column(runs, schema.GRAD_EVALS).fillna(column(runs, schema.EPOCHS_RUN))
    frames = []
    laddered = runs[column(runs, f"{schema.LADDER_REACHED}_0").notna()] if rungs else runs[:0]
    single = runs.drop(index=laddered.index)
    keys = ["problem", "method", "run_id"]
    for k in rungs:
        reached, evals, epochs = (schema.ladder_metric(n, k) for n in (
            schema.LADDER_REACHED, schema.LADDER_GRAD_EVALS, schema.LADDER_EPOCHS))  # fmt: skip
        cost = evals_to(laddered, reached, evals, epochs)
        frames.append(laddered[keys].assign(target=str(k), cost=cost, spent=spent))
    cost = evals_to(single, schema.REACHED_TARGET, schema.GRAD_EVALS_TO_TARGET,
                    schema.EPOCHS_TO_TARGET)  # fmt: skip
    frames.append(single[keys].assign(target="target", cost=cost, spent=spent))
    return pd.concat(frames, ignore_index=True)


def _main_target(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of each problem's main target: its one target, else the middle rung."""
    out = []
    for _, g in frame.groupby("problem", sort=True):
        targets = sorted(
            set(g["target"]), key=lambda t: (t != "target", int(t) if t.isdigit() else -1)
        )
        main = "target" if "target" in targets else targets[len(targets) // 2]
        out.append(g[g["target"] == main])
    return pd.concat(out, ignore_index=True) if out else frame[:0]


def runtime_distributions(ctx: ReportContext, w: DocumentWriter) -> None:
    """The runtime ECDFs and the ERT table."""
    runs, methods = ctx.compared.runs, ctx.compared.methods
    frame = target_costs(runs)
    if frame.empty or not np.isfinite(frame["cost"]).any():
        return
    w.heading(2, "Runtime distributions")
    finite = frame["cost"][np.isfinite(frame["cost"])]
    grid = np.geomspace(max(float(finite.min()), 1e-3), float(frame["spent"].max()) * 1.01, 200)
    curves = {m: analysis.runtime_ecdf(frame.loc[frame["method"] == m, "cost"], grid)
              for m in methods}  # fmt: skip
    n_pairs = frame.groupby(["problem", "target"]).ngroups
    w.figure(
        plotting.runtime_ecdfs(grid, curves),
        "runtime_ecdf",
        f"Runtime distributions: the fraction of (problem, target, run) triples solved within "
        f"a budget of gradient evaluations, per optimizer, over {n_pairs} (problem, target) "
        "pairs (each problem's ladder of targets, or its one target). A target a run never "
        "reached counts as unsolved at every budget.",
    )
    main = _main_target(frame)
    rows = []
    for (problem, target), g in main.groupby(["problem", "target"], sort=True):
        for m in methods:
            mine = g[g["method"] == m]
            if mine.empty:
                continue
            rows.append({
                "problem": problem, "target": target, "method": m, "runs": len(mine),
                "reached": int(np.isfinite(mine["cost"]).sum()),
                "ert": analysis.expected_running_time(mine["cost"], mine["spent"]),
            })  # fmt: skip
    table = pd.DataFrame(rows)
    shown = table.pivot(index="method", columns="problem", values="ert")
    reached = table.pivot(index="method", columns="problem", values="reached")
    total = table.pivot(index="method", columns="problem", values="runs")
    disp = pd.DataFrame({"optimizer": shown.index})
    for problem in shown.columns:
        disp[problem] = [f"{fmt(e)} ({int(r)}/{int(n)})" if pd.notna(n) else "–"
                         for e, r, n in zip(shown[problem], reached[problem], total[problem],
                                            strict=True)]  # fmt: skip
    bold = pd.DataFrame(False, index=disp.index, columns=disp.columns)
    for problem in shown.columns:
        values = shown[problem].to_numpy(float)
        if np.isfinite(values).any():
            bold[problem] = values == np.nanmin(values)
    w.table(
        "expected_running_time",
        "Expected running time with restarts (ERT, in gradient evaluations) to each problem's "
        "main target (its target loss, or the middle rung of its ladder), with the runs that "
        "reached it: the evaluations of every run, successful or not, over the successes. "
        "∞: no run reached it. Lowest per problem in bold.",
        table,
        disp,
        bold,
    )
