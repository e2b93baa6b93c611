"""What several sections use: number formatting, a run column as floats, the score metric of
a task, the representative run of a method and the methods the step-size figures show."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from rprop_bench import analysis, plotting, schema

__all__ = [
    "column",
    "evals_to",
    "fmt",
    "fmt_ci",
    "fmt_miqr",
    "representative",
    "score_metric",
    "step_methods",
]

_BASELINE_PREFERENCE = ("adam", "sgd", "momentum", "rmsprop", "adamw", "lbfgs")


def fmt(x: float | None) -> str:
    """A number as the report shows it: 4 significant digits, ``–`` for missing, ``∞``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.4g}"


def fmt_miqr(s: analysis.Summary) -> str:
    """``median [q25, q75]`` of a summary (``–`` when empty)."""
    if s.n == 0:
        return "–"
    return f"{fmt(s.median)} [{fmt(s.q25)}, {fmt(s.q75)}]"


def fmt_ci(s: analysis.Summary) -> str:
    """``(low, high) 96.9 %``: the order-statistic interval of a summary's median with its
    level, or ``range (low, high) 75 %`` where no interval reaches the asked confidence
    (``–`` when empty)."""
    if s.n == 0:
        return "–"
    i = s.interval
    text = f"({fmt(i.low)}, {fmt(i.high)}) {100 * i.level:.3g} %"
    return f"range {text}" if i.is_range else text


def score_metric(runs: pd.DataFrame) -> tuple[str, str]:
    """The test metric beside the loss, and its label, from the runs' task."""
    tasks = set(runs["task"]) - {""}
    if tasks == {schema.TASK_REGRESSION}:
        return schema.TEST_R2, "test R²"
    if tasks == {schema.TASK_CLASSIFICATION}:
        return schema.TEST_ACCURACY, "test accuracy"
    if schema.TEST_ACCURACY in runs and runs[schema.TEST_ACCURACY].notna().any():
        return schema.TEST_ACCURACY, "test accuracy"
    return schema.TEST_R2, "test R²"


def column(runs: pd.DataFrame, name: str) -> pd.Series:
    """The runs' column ``name`` as floats (all NaN where no run has it)."""
    if name in runs:
        return pd.to_numeric(runs[name], errors="coerce").astype(float)
    return pd.Series(np.nan, index=runs.index, dtype=float)


def evals_to(runs: pd.DataFrame, reached: str, evals: str, epochs: str) -> pd.Series:
    """Per run, the gradient evaluations to one goal (``inf`` where ``reached`` is not 1),
    its epochs for a run logged before evaluation counting (one evaluation an epoch in full
    batch; an undercount for L-BFGS)."""
    hit = column(runs, reached) == 1.0
    cost = column(runs, evals).fillna(column(runs, epochs))
    return pd.Series(np.where(hit, cost, np.inf), index=runs.index)


def representative(runs: pd.DataFrame) -> pd.Series | None:
    """The finished run whose test loss is closest to the median (lowest seed on ties)."""
    ok = runs[~runs["failed"]].copy()
    if ok.empty:
        return None
    loss = column(ok, schema.TEST_LOSS)
    ok["_dist"] = (loss - loss.median()).abs().fillna(np.inf)
    return ok.sort_values(["_dist", "seed", "run_id"]).iloc[0]


def step_methods(methods: Iterable[str]) -> list[str]:
    """Rprop-family methods plus one baseline to compare their steps with."""
    methods = sorted(methods)
    rprop = [m for m in methods if plotting.is_rprop(m)]
    others = [m for m in methods if not plotting.is_rprop(m)]
    baseline = [m for m in _BASELINE_PREFERENCE if m in others][:1] or others[:1]
    return (rprop + baseline) if rprop else methods[:2]
