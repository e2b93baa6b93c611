"""The Rprop family of optimizers: a torch optimizer and an independent NumPy reference.

This package imports only torch and NumPy; it knows nothing of Hydra or MLflow.
"""

from rprop_bench.optim.rprop import VARIANTS, Rprop, RpropHyperparams, rprop

__all__ = ["VARIANTS", "Rprop", "RpropHyperparams", "rprop"]
