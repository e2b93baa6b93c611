"""The Rprop family of optimizers: a torch optimizer and an independent NumPy reference.

This package imports only torch, NumPy and the contract module :mod:`rprop_bench.schema`
(plain constants, which imports nothing); it knows nothing of Hydra or MLflow.
"""

from rprop_bench.optim.functional import RpropHyperparams, rprop
from rprop_bench.optim.rprop import VARIANTS, Rprop

__all__ = ["VARIANTS", "Rprop", "RpropHyperparams", "rprop"]
