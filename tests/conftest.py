"""Shared fixtures of the harness tests: the real config, shrunk, and a real MLflow store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from harness_helpers import compose, new_store
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
