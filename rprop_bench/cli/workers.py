"""Joblib's worker processes, forked from a server that has already imported what a job needs.

Why: Hydra's joblib launcher runs the jobs of a sweep in loky worker processes, and loky
starts each one as a fresh interpreter. Before its first job a worker imported torch (and
``torch._dynamo``, which ``torch.optim.Optimizer`` imports on its first call), MLflow with
SQLAlchemy and alembic, scikit-learn and matplotlib: about 5.5 s of CPU, and only once the
main process had finished its own start-up. A 30-run sweep on 2 workers started its first
run 10.4 s after the command, against 7.8 s with 1 worker (which runs in the main process).

How: loky can start its workers with Python's ``forkserver`` method
(:mod:`multiprocessing`). :func:`start_worker_server` starts the fork server at once, before
the CLI composes and checks the sweep's jobs, and the server imports
:mod:`rprop_bench.cli.worker_imports` while the main process works. Each worker is then a fork
of that server, ready in milliseconds. The server is single-threaded and has opened no store
or connection, so forking it is safe where forking the main process would not be.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
from collections.abc import Iterator, Mapping
from typing import Any

#: The module the fork server imports before it forks any worker.
PRELOAD = "rprop_bench.cli.worker_imports"
#: Set to ``0`` to leave loky's start method alone (each worker a fresh interpreter that
#: imports what a job needs itself): for measuring what the fork server saves, or where
#: forking is unwelcome.
FORK_SERVER_ENV = "RPROP_BENCH_FORK_SERVER"
#: The main process's pid, for the fork server to die with it (:mod:`.worker_imports`).
MAIN_PID_ENV = "RPROP_BENCH_MAIN_PID"
#: Variables that size the thread pools of OpenMP, BLAS and friends. Loky sets them in each
#: worker it spawns (cores / workers, unless the environment sets them); a forked worker
#: inherits the server's pools, so the server must start with them.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS",
)  # fmt: skip


def check_joblib_settings(launcher: Mapping[str, Any]) -> None:
    """``hydra.launcher.n_jobs`` must be an integer other than 0 (joblib: -1 is every CPU,
    -2 all but one); raises :class:`~rprop_bench.cli.validate.ConfigError` in one line."""
    from rprop_bench.cli.validate import ConfigError

    n_jobs = launcher.get("n_jobs", -1)
    if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs == 0:
        raise ConfigError(
            f"hydra.launcher.n_jobs={n_jobs!r} is out of range: must be an integer >= 1 (the "
            "number of workers), or < 0 (-1: one per CPU, -2: all but one)"
        )


def worker_count(launcher: Mapping[str, Any]) -> int:
    """How many loky worker processes the joblib launcher's settings start (0: none).

    ``n_jobs=1`` runs the jobs in the main process, and a thread backend (``backend``
    other than loky, ``prefer=threads``, ``require=sharedmem``) starts no loky workers.
    """
    import joblib

    if launcher.get("backend") not in (None, "loky"):
        return 0
    if launcher.get("prefer") == "threads" or launcher.get("require") == "sharedmem":
        return 0
    count = joblib.effective_n_jobs(int(launcher.get("n_jobs", -1)))
    return count if count > 1 else 0


@contextlib.contextmanager
def _thread_limits(workers: int) -> Iterator[None]:
    """The environment loky gives its workers, set while the fork server starts."""
    import joblib

    per_worker = str(max(joblib.cpu_count() // workers, 1))
    added = {name: per_worker for name in THREAD_VARIABLES if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def start_worker_server(launcher: Mapping[str, Any]) -> bool:
    """Start the fork server of joblib's workers for the launcher's settings, if it has any.

    Returns whether loky's workers will be forked from it. Where a fork server cannot start
    (no Unix sockets), or :data:`FORK_SERVER_ENV` is ``0``, loky keeps its own start method
    and nothing else changes.
    """
    workers = worker_count(launcher)
    if not workers or "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    if os.environ.get(FORK_SERVER_ENV, "1") == "0":
        return False
    from joblib.externals.loky.backend.context import set_start_method

    multiprocessing.set_forkserver_preload([PRELOAD])
    os.environ[MAIN_PID_ENV] = str(os.getpid())
    try:
        with _thread_limits(workers):
            multiprocessing.forkserver.ensure_running()
    except OSError:
        return False
    set_start_method("forkserver", force=True)
    return True
