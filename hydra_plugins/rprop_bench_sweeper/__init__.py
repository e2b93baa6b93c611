"""rprop-bench's Hydra sweeper plugin (``hydra/sweeper=preflighted``).

Hydra finds plugins only in the ``hydra_plugins`` namespace package, so this thin package
lives there; see :mod:`hydra_plugins.rprop_bench_sweeper.preflighted_sweeper`.
"""
