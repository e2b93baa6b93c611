"""Helpers shared by the harness tests: real config composition, real MLflow stores, the CLI.

Plain functions rather than fixtures, so that they need no conftest registration.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rprop_bench ARGS`` in ``cwd`` and capture its output."""
    full_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "rprop_bench", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
