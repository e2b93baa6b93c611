"""Joblib's workers forked from a preloaded server (``rprop_bench/cli/workers.py``), and the
CLI's exit without the interpreter's shutdown collection.

Each real-process check runs in a fresh interpreter: the fork server and loky's start method
are per process, and a frozen heap would stay frozen in pytest's own process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import joblib
import pytest

from rprop_bench.cli.workers import THREAD_VARIABLES, worker_count

CPUS = joblib.cpu_count()

#: (joblib launcher settings, loky workers they start; 0: none, so no fork server)
WORKER_COUNTS = [
    ({"n_jobs": 2}, 2),
    ({"n_jobs": 4, "backend": "loky"}, 4),
    ({"n_jobs": 1}, 0),  # joblib runs the jobs in the calling process
    ({"n_jobs": -1}, CPUS if CPUS > 1 else 0),  # the launcher's default: every core
    ({"n_jobs": 2, "backend": "threading"}, 0),
    ({"n_jobs": 2, "backend": "multiprocessing"}, 0),  # a pool of its own, not loky's
    ({"n_jobs": 2, "prefer": "threads"}, 0),
    ({"n_jobs": 2, "require": "sharedmem"}, 0),
]


@pytest.mark.parametrize(("launcher", "expected"), WORKER_COUNTS)
def test_worker_count_follows_joblibs_rules(launcher, expected):
    assert worker_count(launcher) == expected


def _python(script: str, env: dict[str, str] | None = None) -> dict:
    """Run ``script`` in a fresh interpreter; it prints one JSON object last."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


WORKERS_SCRIPT = """
    import gc, json, os, sys
    import joblib
    from rprop_bench.cli.workers import THREAD_VARIABLES, start_worker_server

    def probe(_):
        # what the worker had before its task imported anything
        return {"pid": os.getpid(), "ppid": os.getppid(), "torch": "torch" in sys.modules,
                "dynamo": "torch._dynamo" in sys.modules, "frozen": gc.get_freeze_count(),
                "threads": {v: os.environ.get(v) for v in THREAD_VARIABLES}}

    if __name__ == "__main__":
        started = start_worker_server({"n_jobs": 2})
        seen = joblib.Parallel(n_jobs=2)(joblib.delayed(probe)(i) for i in range(6))
        print(json.dumps({"started": started, "main": os.getpid(), "seen": seen,
                          "main_threads": {v: os.environ.get(v) for v in THREAD_VARIABLES},
                          "main_torch": "torch" in sys.modules}))
"""


@pytest.mark.slow
def test_workers_are_forked_from_a_server_that_imported_torch_and_the_rest():
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    found = _python(WORKERS_SCRIPT, env)
    assert found["started"] is True
    seen = found["seen"]
    workers = {s["pid"] for s in seen}
    assert len(workers) == 2
    assert found["main"] not in workers
    # children of the fork server; loky's own start method makes them the main's children
    (server,) = {s["ppid"] for s in seen}
    assert server != found["main"]
    assert all(s["torch"] and s["dynamo"] for s in seen)  # imported before any task ran
    assert all(s["frozen"] > 100_000 for s in seen)  # the server's objects, out of gc's way
    per_worker = str(max(CPUS // 2, 1))  # as loky sets them for the workers it spawns
    assert all(s["threads"] == dict.fromkeys(THREAD_VARIABLES, per_worker) for s in seen)
    assert found["main_threads"] == dict.fromkeys(THREAD_VARIABLES)  # the main's untouched
    assert found["main_torch"] is False  # the main process never paid for those imports


@pytest.mark.slow
def test_thread_variables_set_by_the_user_win():
    env = {**os.environ, "OMP_NUM_THREADS": "3"}
    found = _python(WORKERS_SCRIPT.replace("range(6)", "range(2)"), env)
    assert {s["threads"]["OMP_NUM_THREADS"] for s in found["seen"]} == {"3"}


EXIT_SCRIPT = """
    import gc, json, sys
    from rprop_bench.cli import main

    frozen = {}
    for name, argv in (("explicit", ["--help"]), ("program", None)):
        sys.argv = ["rprop_bench", "--help"]
        try:
            main(argv)
        except SystemExit:
            frozen[name] = gc.get_freeze_count()
    print(json.dumps(frozen))
"""


def test_the_cli_freezes_its_heap_only_when_it_is_the_program():
    frozen = _python(EXIT_SCRIPT)
    assert frozen["explicit"] == 0  # a caller's own process keeps a collectable heap
    assert frozen["program"] > 1000  # the process ends: its shutdown collection skips these
