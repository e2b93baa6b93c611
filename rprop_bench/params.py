"""A run's config as MLflow params: nested mappings flattened to dotted names and strings.

Why apart: the job makes the params from its config and the writer only sends them; this is
pure (no MLflow import), so both, and the tests, use it without a store.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["MAX_PARAM_VALUE", "flatten"]

MAX_PARAM_VALUE = 6000  # MLflow's limit for the length of a param (or tag) value


def flatten(config: Mapping[str, object], prefix: str = "") -> dict[str, str]:
    """Flatten nested mappings into ``{"a.b.c": "value"}`` strings, as MLflow params.

    >>> flatten({"optimizer": {"lr": 0.01, "etas": [0.5, 1.2]}})
    {'optimizer.lr': '0.01', 'optimizer.etas': '[0.5, 1.2]'}
    """
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:MAX_PARAM_VALUE]
    return flat
