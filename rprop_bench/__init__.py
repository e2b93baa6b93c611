"""rprop-bench: an experiment-tracking benchmark harness for the Rprop family of optimizers."""

__version__ = "0.1.0"
