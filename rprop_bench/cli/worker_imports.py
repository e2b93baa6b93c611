"""Imported once, by the fork server of joblib's workers: everything a job imports.

See :mod:`rprop_bench.cli.workers`. Each worker forked from the server starts with
:data:`MODULES` loaded and their objects frozen out of the garbage collector's way
(``gc.freeze``). Only that server imports this module: importing it has side effects on
signals.
"""

import gc
import importlib
import os
import signal
import threading

from rprop_bench.signals import die_with_parent

#: What a job imports, found by comparing a worker's ``sys.modules`` after its jobs.
MODULES = (
    "torch",
    "torch._dynamo",  # torch.optim.Optimizer imports it on its first call (about 1 s)
    "mlflow.store.tracking.sqlalchemy_store",
    "sqlalchemy.dialects.sqlite",
    "sklearn.datasets",
    "matplotlib.backends.backend_agg",
    "joblib.externals.loky.process_executor",
    "hydra_plugins.hydra_joblib_launcher._core",
    "hydra_plugins.rprop_bench_sweeper._caching_loader",
    "rprop_bench.cli.callbacks",
    "rprop_bench.cli.job",
    "rprop_bench.cli.seed_groups",
    "rprop_bench.models",
    "rprop_bench.optim",
    "rprop_bench.problems",
    "rprop_bench.seed_batch",
    "rprop_bench.step_figure",
    "rprop_bench.tracking",
    "rprop_bench.training",
)

# The server dies with the sweep's main process, and each worker it forks with the server: a
# main process killed with SIGKILL leaves no process behind. A worker gets SIGTERM, so that
# the run it trains is marked KILLED; the server has nothing to record.
_SERVER = os.getpid()
die_with_parent(signal.SIGKILL, int(os.environ.get("RPROP_BENCH_MAIN_PID") or os.getppid()))
os.register_at_fork(after_in_child=lambda: die_with_parent(signal.SIGTERM, _SERVER))

_ON_MAIN_THREAD = threading.current_thread() is threading.main_thread()
if _ON_MAIN_THREAD:
    # A Ctrl-C while the server imports is for the main process (which reports it in one
    # line); the server ignores SIGINT once it serves, and its workers get Python's default.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
for _name in MODULES:
    importlib.import_module(_name)
importlib.import_module("hydra.core.plugins").Plugins.instance()  # imports Hydra's plugins
gc.collect()
gc.freeze()
if _ON_MAIN_THREAD:
    signal.signal(signal.SIGINT, signal.default_int_handler)
