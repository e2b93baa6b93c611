"""A run's config as MLflow params: nested mappings flattened to dotted names and strings.

Why apart: the job makes the params from its config and the writer only sends them; this is
pure (no MLflow import), so both, and the tests, use it without a store.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["MAX_PARAM_VALUE", "MAX_TAG_VALUE", "cut", "flatten"]

MAX_PARAM_VALUE = 6000  # MLflow's limit for the length of a param value
MAX_TAG_VALUE = 8000  # MLflow's limit for a tag value (its SQL stores refuse a longer one)


def cut(value: str, limit: int) -> str:
    """``value``, or its start and a note of how much was left out if it is over ``limit``.

    >>> cut("x" * 20, 18)
    'x… (20 chars, cut)'
    """
    if len(value) <= limit:
        return value
    note = f"… ({len(value)} chars, cut)"
    return value[: max(limit - len(note), 0)] + note


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
            flat[name] = cut(str(value), MAX_PARAM_VALUE)
    return flat
