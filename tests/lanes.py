"""The two test lanes (README "Tests"): the fast lane, ``pytest``, leaves out what is marked
``slow``; the full lane, ``pytest -m slow`` after it, runs the rest.

Slow: subprocess sweeps and servers, Ray, and the cases of a big table beyond its first,
which :func:`fast_first` marks so that the fast lane still runs every test once.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest


def fast_first(cases: Sequence[object], keep: int = 1, every: int = 0) -> list[object]:
    """A parametrize table whose first ``keep`` cases (and, with ``every``, each ``every``-th
    case: one per variant of a table ordered by variant) run in the fast lane and whose others
    are marked ``slow`` (the full lane): the fast lane exercises the test, the full lane every
    case. A case is a value, a tuple of values, or a ``pytest.param``."""
    out: list[object] = []
    for i, case in enumerate(cases):
        if i < keep or (every and i % every == 0):
            out.append(case)
        elif hasattr(case, "values") and hasattr(case, "marks"):  # a pytest.param
            marks = [*case.marks, pytest.mark.slow]
            out.append(pytest.param(*case.values, marks=marks, id=case.id))
        else:
            values = case if isinstance(case, tuple) else (case,)
            out.append(pytest.param(*values, marks=pytest.mark.slow))
    return out
