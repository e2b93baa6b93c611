"""Counts in English for the console and the report: ``1 run``, ``2 runs``, ``0 problems``."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, made plural (``noun + "s"``, or ``plural``) unless ``n`` is 1.

    Example:
        >>> count(1, "run"), count(3, "optimizer"), count(2, "analysis", "analyses")
        ('1 run', '3 optimizers', '2 analyses')
    """
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
