"""Fair tuning: search spaces as data, where the trials lie, and selection on what is scored.

Three pure modules (no Hydra, no MLflow), driven by the ``tune`` command
(:mod:`rprop_bench.cli.tune`):

* :mod:`.space`: a declared search space (log-uniform ranges, complements, choices), the
  values at a point of the unit cube, and whether a winner sits on a bound;
* :mod:`.sampling`: scrambled Sobol points (``scipy.stats.qmc``) or Optuna's TPE;
* :mod:`.selection`: the objectives, a trial's median over seeds, the winner.
"""

from rprop_bench.tuning.sampling import SAMPLERS, OptunaSearch, sobol_points
from rprop_bench.tuning.selection import OBJECTIVES, Objective, objective_named, trial_scores
from rprop_bench.tuning.space import Dimension, SearchSpace, SpaceError

__all__ = [
    "OBJECTIVES", "SAMPLERS", "Dimension", "Objective", "OptunaSearch", "SearchSpace",
    "SpaceError", "objective_named", "sobol_points", "trial_scores",
]  # fmt: skip
