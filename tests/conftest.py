"""Shared fixtures of the harness tests: the real config, shrunk, and a real MLflow store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from harness_helpers import compose, new_store
from mlflow_runs import make_store_factory, standard_runs
from omegaconf import DictConfig


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
