"""Shared fixtures of the harness tests: the real config, shrunk, and a real MLflow store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from harness_helpers import compose, new_store
from mlflow_runs import make_store_factory, standard_runs
from omegaconf import DictConfig
from servers import TrackingServer, start_tracking_server


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    """``compose_cfg(*overrides)``: ``conf/config.yaml`` composed with Hydra's compose API and
    shrunk to a few epochs (``train.epochs=3``)."""
    return compose


@pytest.fixture
def store_uri(tmp_path: Path) -> str:
    """The URI of a fresh, real SQLite MLflow store in ``tmp_path/store``."""
    return new_store(tmp_path / "store")


@pytest.fixture
def one_torch_thread():
    """One torch thread, as the harness uses: tiny models run slower with more (on 2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def store_factory(tmp_path_factory) -> Callable[..., str]:
    """Make a fresh store: ``store_factory(runs, experiment="exp", sweep=True) -> uri``."""
    return make_store_factory(tmp_path_factory)


@pytest.fixture(scope="module")
def standard_store(store_factory) -> str:
    """URI of a store holding :func:`mlflow_runs.standard_runs` in experiment ``exp``."""
    return store_factory(standard_runs())


# --- a shared tracking server (tests/servers.py) --------------------------------------------

#: The backend the session's tracking server used, for the terminal summary (empty: none).
_TRACKING_BACKEND: list[str] = []


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory) -> Iterator[TrackingServer]:
    """A real ``mlflow server`` on 127.0.0.1 for the whole session, in front of PostgreSQL
    where it can run here (else SQLite), with proxied artifacts; started only if a test asks.

    Yields a :class:`servers.TrackingServer`: pass ``tracking.uri={server.uri}`` to the CLI;
    ``server.backend`` says which database stores the runs (``"postgresql 15.18"`` or
    ``"sqlite (PostgreSQL not installed)"``) and is printed in the terminal summary.
    ``$RPROP_BENCH_TEST_BACKEND=postgresql`` makes a missing PostgreSQL an error. The server
    is shared: give each test its own ``tracking.experiment``. PostgreSQL runs without fsync
    (``durable=False``); both are stopped by their own process ids at the end of the session.
    """
    with start_tracking_server(tmp_path_factory.mktemp("tracking_server"), durable=False) as server:
        _TRACKING_BACKEND.append(server.backend)
        print(f"\ntracking server backend: {server.backend} ({server.uri})")
        yield server


def pytest_terminal_summary(terminalreporter) -> None:
    """Say which backend the tracking server used, so that CI logs show it."""
    for backend in _TRACKING_BACKEND:
        terminalreporter.write_line(f"tracking server backend: {backend}")
