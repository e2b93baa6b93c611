"""Selection on what is scored: a declared objective, a trial's score over its seeds, the winner.

The objective is the quantity a study reports, so a baseline is never tuned for one thing and
ranked on another:

* ``train_evals_to_target`` (the optimisation track): gradient evaluations until the training
  loss first reaches the target (``train.target_loss``, or rung ``k`` of the problem's ladder
  with ``tune.target=k``). A run that never reaches it counts as ∞; trials tied at ∞ are told
  apart by their final training loss, so a trial that nearly learns beats one that does not.
* ``best_val_loss`` (the generalisation track): the lowest validation loss of the run (early
  stopping judged without retraining).

A trial's score is the median over its tuning seeds (a failed run counts as ∞); the winner has
the lowest score, ties going to the earlier trial. Pure functions on a runs table
(:func:`rprop_bench.results.load_experiment`'s columns): no MLflow here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rprop_bench import schema

__all__ = ["OBJECTIVES", "Objective", "objective_named", "run_values", "trial_scores", "winner"]


@dataclass(frozen=True)
class Objective:
    """What a tuning study minimises, per run.

    ``metric`` is read from the runs table; ``tie_break`` orders trials whose median is ∞.
    """

    name: str
    metric: str
    tie_break: str | None

    def for_target(self, target: int | None) -> Objective:
        """The objective at rung ``target`` of the ladder (``None``: ``train.target_loss``)."""
        if target is None or self.metric != schema.GRAD_EVALS_TO_TARGET:
            return self
        metric = schema.ladder_metric(schema.LADDER_GRAD_EVALS, target)
        return Objective(self.name, metric, self.tie_break)


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        # the optimisation track; the generalisation track
        Objective("train_evals_to_target", schema.GRAD_EVALS_TO_TARGET, schema.FINAL_TRAIN_LOSS),
        Objective("best_val_loss", schema.BEST_VAL_LOSS, None),
    )
}


def objective_named(name: str) -> Objective:
    """The objective ``name``.

    Raises:
        ValueError: an unknown name, listing the valid ones.
    """
    if name not in OBJECTIVES:
        raise ValueError(
            f"tune.objective={name!r} is not an objective; valid objectives: "
            f"{', '.join(OBJECTIVES)}"
        )
    return OBJECTIVES[name]


def _column(runs: pd.DataFrame, name: str | None) -> np.ndarray:
    if name is None or name not in runs:
        return np.full(len(runs), np.inf)
    values = pd.to_numeric(runs[name], errors="coerce").to_numpy(float)
    failed = runs["failed"].to_numpy(bool) if "failed" in runs else np.zeros(len(runs), bool)
    return np.where(failed | ~np.isfinite(values), np.inf, values)


def run_values(runs: pd.DataFrame, objective: Objective) -> pd.DataFrame:
    """Each run's objective (``value``) and tie-break (``tie``), ∞ where failed or missing."""
    return pd.DataFrame(
        {
            "value": _column(runs, objective.metric),
            "tie": _column(runs, objective.tie_break),
        },
        index=runs.index,
    )


def trial_scores(runs: pd.DataFrame, objective: Objective, by: Sequence[str]) -> pd.DataFrame:
    """The score of every trial: the median over its seeds of the objective and tie-break.

    Args:
        runs: one row per (trial, seed) run, with the columns ``by`` names and ``failed``.
        objective: what is minimised.
        by: the columns that identify a trial (e.g. cell and trial number).

    Returns:
        One row per trial: ``by``, ``score`` (the median), ``tie``, ``n_seeds``, ``n_failed``,
        ``n_reached`` (runs with a finite objective).
    """
    values = run_values(runs, objective)
    frame = pd.concat([runs[list(by)], values, runs[["failed"]]], axis=1)
    grouped = frame.groupby(list(by), sort=True, dropna=False)
    return grouped.agg(
        score=("value", "median"),
        tie=("tie", "median"),
        n_seeds=("value", "size"),
        n_failed=("failed", "sum"),
        n_reached=("value", lambda v: int(np.isfinite(v).sum())),
    ).reset_index()


def winner(scores: pd.DataFrame, order: str = "trial") -> pd.Series:
    """The best trial of one cell's scores: lowest score, then tie-break, then ``order``."""
    ranked = scores.sort_values(["score", "tie", order], kind="stable")
    return ranked.iloc[0]


def penalised(score: float, tie: float) -> float:
    """A single number for a sampler that models the objective (TPE): the score where finite,
    else a penalty above any finite score, ordered by the tie-break."""
    if np.isfinite(score):
        return float(score)
    return 1e12 * (1.0 + (float(tie) if np.isfinite(tie) else 1e6))
