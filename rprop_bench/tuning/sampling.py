"""Where the trials of a search lie: quasi-random (Sobol) points, or Optuna's TPE.

* :func:`sobol_points`: scrambled Sobol points of the unit cube (``scipy.stats.qmc``), the
  default, as AlgoPerf's external tuning draws its trials. They depend on the seed and the
  dimension only, so every optimizer with as many hyperparameters gets the same design, and
  a round of widened ranges continues the sequence instead of repeating it.
* :class:`OptunaSearch`: Optuna's TPE sampler (Bergstra et al. 2011) through its ask-and-tell
  API, its journal kept in a file that survives kill -9 (``JournalFileBackend``); trials
  asked but never told (a killed study) are asked again with the same values when the study
  resumes, so a resumed study repeats no finished trial.

Pure: no Hydra, no MLflow.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rprop_bench import schema
from rprop_bench.tuning.space import Dimension, SearchSpace

__all__ = ["SAMPLERS", "OptunaSearch", "sobol_points"]

SAMPLERS = schema.TUNE_SAMPLERS


def sobol_points(dimension: int, n: int, seed: int, skip: int = 0) -> np.ndarray:
    """``n`` scrambled Sobol points of [0, 1)^dimension, after the first ``skip``.

    Returns:
        Array of shape (n, dimension), reproducible from ``seed``.
    """
    from scipy.stats import qmc

    sampler = qmc.Sobol(d=dimension, scramble=True, seed=np.random.default_rng(seed))
    with warnings.catch_warnings():
        # A count that is not a power of two loses the balance of the full net, not its
        # low discrepancy; the trial count is the user's to choose.
        warnings.filterwarnings("ignore", message=".*balance properties.*")
        if skip:
            sampler.fast_forward(skip)
        return sampler.random(n)


@dataclass(frozen=True)
class AskedTrial:
    """A trial that Optuna proposed: its number in the study and the hyperparameters."""

    number: int
    values: dict[str, Any]


def _distribution(d: Dimension) -> Any:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if d.choices is not None:
        return CategoricalDistribution(list(d.choices))
    if d.integer:
        return IntDistribution(int(d.low), int(d.high), log=d.log)
    return FloatDistribution(d.low, d.high, log=d.log)


class OptunaSearch:
    """One Optuna study (TPE, seeded) for one (optimizer, problem) cell, asked and told.

    Args:
        space: the dimensions.
        journal: the journal file (created with its folder); the same file and ``name``
            resume the study.
        name: the study's name in the journal.
        seed: the TPE sampler's seed.
        startup_trials: random trials before TPE models the results (Optuna's default 10,
            capped at half the budget so that a small budget still uses TPE).
    """

    def __init__(
        self, space: SearchSpace, journal: Path, name: str, seed: int, startup_trials: int
    ) -> None:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        journal.parent.mkdir(parents=True, exist_ok=True)
        storage = JournalStorage(JournalFileBackend(str(journal)))
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)
        self.space = space
        self.study = optuna.create_study(
            study_name=name, storage=storage, sampler=sampler, load_if_exists=True
        )

    def _values(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            d.path: params[d.name] if d.choices is not None else d.from_sampled(params[d.name])
            for d in self.space.dimensions
        }

    def told(self) -> int:
        """How many trials of the study have a result."""
        from optuna.trial import TrialState

        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def completed(self) -> list[tuple[int, dict[str, Any]]]:
        """Every told trial: its number and hyperparameters."""
        from optuna.trial import TrialState

        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return [(t.number, self._values(t.params)) for t in done]

    def ask(self, n: int) -> list[AskedTrial]:
        """Up to ``n`` trials to run: first those asked before and never told (a study that
        was killed), then new ones."""
        from optuna.trial import TrialState

        pending = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        asked = [AskedTrial(t.number, self._values(t.params)) for t in pending[:n]]
        dists = {d.name: _distribution(d) for d in self.space.dimensions}
        while len(asked) < n:
            trial = self.study.ask(dists)
            asked.append(AskedTrial(trial.number, self._values(trial.params)))
        return asked

    def tell(self, number: int, value: float) -> None:
        """The objective of trial ``number`` (lower is better)."""
        self.study.tell(number, value)
