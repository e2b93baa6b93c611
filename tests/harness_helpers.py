"""Helpers shared by the harness tests: real config composition, real MLflow stores, the CLI.

Plain functions rather than fixtures, so that they need no conftest registration.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import pytest
from omegaconf import DictConfig

from rprop_bench.cli.compose import compose_config

#: Keeps the composed test configs small: a few epochs.
SHRINK = ("train.epochs=3",)


def compose(*overrides: str, shrink: bool = True) -> DictConfig:
    """The real ``conf/config.yaml`` composed with ``overrides`` (and few epochs)."""
    return compose_config([*(SHRINK if shrink else ()), *overrides])


@functools.cache
def _template_store() -> Path:
    """An empty MLflow SQLite database, migrated once per test session (about 3 s)."""
    from mlflow import MlflowClient

    directory = Path(tempfile.mkdtemp(prefix="rprop_bench_store_"))
    MlflowClient(f"sqlite:///{directory / 'mlflow.db'}").search_experiments()
    return directory / "mlflow.db"


def new_store(directory: Path) -> str:
    """A fresh, real SQLite store ``directory/mlflow.db``; returns its URI."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(_template_store(), directory / "mlflow.db")
    return f"sqlite:///{directory / 'mlflow.db'}"


T = TypeVar("T")


def _cli_env(env: dict[str, str] | None) -> dict[str, str]:
    full_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full_env.update(env or {})
    return full_env


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rprop_bench ARGS`` in ``cwd`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "rprop_bench", *args],
        cwd=cwd,
        env=_cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python -m rprop_bench ARGS`` in ``cwd`` without waiting (output to pipes).

    It leads its own process group, as a command started from a shell does, so that
    :func:`stop_group` reaches its worker processes too. It takes Ctrl-C as a command in the
    foreground does: a shell without job control starts background commands with SIGINT
    ignored (POSIX), and pytest run that way would pass that on to the command.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "rprop_bench", *args],
        cwd=cwd,
        env=_cli_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_take_ctrl_c,
    )


def _take_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # in the child, before it runs Python


def wait_for(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``probe`` every 0.1 s until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def mlflow_server(
    directory: Path, backend_uri: str | None = None, workers: int = 1, timeout: float = 180
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real ``mlflow server`` on 127.0.0.1 with artifacts in ``directory/artifacts``.

    Its backend store is ``backend_uri`` (e.g. a PostgreSQL URI from ``servers.py``), or a
    fresh SQLite store in ``directory/backend``. It logs to ``directory/server.log``.
    Yields its URI and process; stops it by its own process group at the end.
    """
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers),
        "--backend-store-uri", backend_uri or new_store(directory / "backend"),
        "--artifacts-destination", (directory / "artifacts").as_uri(),
    ]  # fmt: skip
    log = directory / "server.log"
    with log.open("ab") as sink:
        server = subprocess.Popen(
            command,
            cwd=directory,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it stops its workers too
        )
    uri = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if server.poll() is not None:  # it died (bad backend URI, missing driver): say so now
            raise AssertionError(f"mlflow server exited with {server.returncode}")
        return _answers(f"{uri}/health")

    try:
        try:
            wait_for(up, timeout, "mlflow server")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log ends:\n{log.read_text()[-3000:]}") from exc
        yield uri, server
    finally:
        stop_group(server)


def communicate_or_explain(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """``process.communicate(timeout=timeout)``; if it times out, fail with the process's Python
    stack (py-spy, where installed), to say where it hung."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        try:
            dump = subprocess.run(
                [spy, "dump", "--pid", str(process.pid)], capture_output=True, text=True,
                timeout=60,
            ).stdout  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            dump = f"(no stack: {exc})"
        pytest.fail(f"still running after {timeout} s; its stack:\n{dump}")


def stop_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group that ``process`` leads (if alive) and reap it."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
    process.wait(timeout=30)


def runs_of_kind(uri: str, kind: str | None = "training", experiment: str = "rprop-bench") -> list:
    """The runs of ``experiment`` in the store at ``uri`` whose run-kind tag is ``kind``
    (``"training"`` or ``"sweep"``; ``None``: every run); ``[]`` before the first run."""
    from mlflow import MlflowClient

    from rprop_bench import schema

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    where = f"tags.`{schema.TAG_RUN_KIND}` = '{kind}'" if kind else ""
    return client.search_runs([found.experiment_id], filter_string=where, max_results=10000)


def processes_in(directory: Path) -> list[int]:
    """The processes whose working directory is ``directory`` (a sweep's main process, its
    workers, its fork server)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):  # gone, or not ours to read
                if Path(os.readlink(entry / "cwd")) == directory:
                    found.append(int(entry.name))
    return found


def running_with_curves(uri: str, count: int) -> list[str] | None:
    """The ids of the RUNNING training runs at ``uri`` once there are ``count`` of them and
    each has logged a training loss (a stack in mid-training), else ``None``."""
    from mlflow import MlflowClient

    from rprop_bench import schema

    runs = [r for r in runs_of_kind(uri) if r.info.status == "RUNNING"]
    client = MlflowClient(uri)
    if len(runs) == count and all(
        client.get_metric_history(r.info.run_id, schema.TRAIN_LOSS) for r in runs
    ):
        return [r.info.run_id for r in runs]
    return None
