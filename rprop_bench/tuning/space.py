"""A hyperparameter search space, declared as data in each optimizer's config.

An optimizer's config (``conf/optimizer/*.yaml``) carries a ``search`` mapping, one entry per
hyperparameter that tuning may change::

    search:
      delta0:    {path: lr, low: 1.0e-4, high: 1.0, log: true}
      eta_plus:  {path: "etas.1", low: 1.05, high: 2.0, limits: [1.0001, 10.0]}
      beta2:     {path: "betas.1", low: 1.0e-4, high: 0.1, log: true, complement: true}
      history:   {path: history_size, low: 3, high: 100, log: true, integer: true}
      delta_max: {path: "step_sizes.1", low: 1.0, high: 1000.0, log: true, enabled: false}

* ``path``: the hyperparameter, ``lr`` or an element of a list (``etas.1`` is η+); default:
  the entry's name.
* ``low``/``high``: the range; ``log``: sampled uniformly in log scale (log-uniform).
* ``complement``: the range is that of ``1 - value`` (AlgoPerf's ``one_minus_beta1``), so a
  β close to 1 gets the resolution it needs.
* ``integer``: rounded to an integer; ``choices``: a list of values instead of a range.
* ``limits``: how far ``tune.extend_on_boundary`` may widen the range (default: no further
  than a log range's positivity).
* ``enabled: false``: declared, but tuned only when switched on.

This module is pure (no Hydra, no MLflow): it maps points of the unit cube to values, and
values back, to say whether a winner sits on a bound of its range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["Dimension", "SearchSpace", "SpaceError", "significant"]

#: Sampled values keep this many significant digits: a trial's overrides read cleanly
#: (``optimizer.lr=0.003162``), and its run key is the same on every machine.
SIGNIFICANT_DIGITS = 4

_FIELDS = ("path", "low", "high", "log", "complement", "integer", "choices", "limits", "enabled")


class SpaceError(ValueError):
    """A search space that cannot be sampled; the message (one line) names the field."""


def significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (``0.0031622`` → ``0.003162``)."""
    return float(f"{value:.{digits}g}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter's range (or choices); see the module's docstring for the fields."""

    name: str
    path: str
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    complement: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None
    limits: tuple[float, float] | None = None

    @property
    def key(self) -> str:
        """The hyperparameter's top-level key in the optimizer's config (``etas`` of ``etas.1``)."""
        return self.path.split(".", 1)[0]

    @property
    def index(self) -> int | None:
        """The list element a path names (1 for ``etas.1``), or ``None`` for a scalar."""
        rest = self.path.split(".", 1)[1:]
        return int(rest[0]) if rest else None

    @property
    def shown(self) -> str:
        """The quantity whose range this is: ``lr``, or ``1 - betas.1`` for a complement."""
        return f"1 - {self.path}" if self.complement else self.path

    def _scale(self, x: float) -> float:
        return math.log(x) if self.log else x

    def value(self, u: float) -> Any:
        """The hyperparameter at ``u`` ∈ [0, 1) of the range (or of the choices)."""
        if self.choices is not None:
            return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
        lo, hi = self._scale(self.low), self._scale(self.high)
        x = lo + u * (hi - lo)
        return self.from_sampled(math.exp(x) if self.log else x)

    def from_sampled(self, x: float) -> Any:
        """The hyperparameter for a sampled ``x`` of the range: rounded to an integer or to
        :data:`SIGNIFICANT_DIGITS`, and ``1 - x`` for a complement."""
        if self.integer:
            return round(x)
        x = significant(x)
        return significant(1.0 - x, 12) if self.complement else x

    @property
    def hard_limits(self) -> tuple[float, float]:
        """How far the range may be widened: ``limits``, else (0, 1) for a complement, (0, ∞)
        for a log range, and no limit otherwise."""
        if self.limits is not None:
            return self.limits
        if self.complement:
            return (0.0, 1.0)
        return (0.0 if self.log else -math.inf, math.inf)

    def position(self, value: Any) -> float | None:
        """Where ``value`` lies in the range, 0 at ``low`` and 1 at ``high`` (in the sampling
        scale); ``None`` for choices, which have no order to be on the edge of."""
        if self.choices is not None:
            return None
        x = 1.0 - float(value) if self.complement else float(value)
        lo, hi = self._scale(self.low), self._scale(self.high)
        return (self._scale(max(x, 1e-300) if self.log else x) - lo) / (hi - lo)

    def boundary(self, value: Any, fraction: float) -> str | None:
        """``"low"`` or ``"high"`` if ``value`` lies in the outer ``fraction`` of the range at
        that end, else ``None``."""
        where = self.position(value)
        if where is None:
            return None
        if where <= fraction:
            return "low"
        if where >= 1.0 - fraction:
            return "high"
        return None

    def widened(self, side: str) -> Dimension:
        """The range widened at ``side`` by half its width (in the sampling scale), no
        further than its limits; the same range if it already reaches them."""
        lo, hi = self._scale(self.low), self._scale(self.high)
        step = (hi - lo) / 2
        limit_lo, limit_hi = self.hard_limits
        if side == "low":
            new = lo - step
            bound = math.exp(new) if self.log else new
            bound = max(bound, limit_lo)
            if self.log and bound <= 0:
                return self
            return replace(self, low=significant(bound))
        new = hi + step
        bound = min(math.exp(new) if self.log else new, limit_hi)
        return replace(self, high=significant(bound))

    def describe(self) -> str:
        """``lr ∈ [0.0001, 1] (log)``, or ``history_size ∈ {5, 10, 20}``."""
        if self.choices is not None:
            return f"{self.shown} ∈ {{{', '.join(map(str, self.choices))}}}"
        scale = " (log)" if self.log else ""
        kind = " (integer)" if self.integer else ""
        return f"{self.shown} ∈ [{self.low:g}, {self.high:g}]{scale}{kind}"


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions an optimizer is tuned over, in their declared order."""

    dimensions: tuple[Dimension, ...]

    @classmethod
    def parse(cls, declared: Mapping[str, Any] | None, where: str) -> SearchSpace:
        """The enabled dimensions of a ``search`` mapping (``where``: its config path).

        Raises:
            SpaceError: an empty, inverted or unusable range, or an unknown field; the message
                names the field (``optimizer.search.lr.low``).
        """
        dims = []
        for name, spec in (declared or {}).items():
            at = f"{where}.{name}"
            if not isinstance(spec, Mapping):
                raise SpaceError(f"{at} must be a mapping of {', '.join(_FIELDS)}")
            unknown = sorted(set(spec) - set(_FIELDS))
            if unknown:
                raise SpaceError(f"{at}.{unknown[0]} is not a field; valid: {', '.join(_FIELDS)}")
            if not spec.get("enabled", True):
                continue
            dims.append(_dimension(str(name), spec, at))
        if not dims:
            raise SpaceError(f"{where} declares no enabled hyperparameter to tune")
        paths = [d.path for d in dims]
        twice = sorted({p for p in paths if paths.count(p) > 1})
        if twice:
            raise SpaceError(f"{where}: the hyperparameter {twice[0]!r} is declared twice")
        return cls(tuple(dims))

    def values(self, point: Sequence[float]) -> dict[str, Any]:
        """The hyperparameters (by path) at a point of the unit cube."""
        return {d.path: d.value(u) for d, u in zip(self.dimensions, point, strict=True)}

    def boundaries(self, values: Mapping[str, Any], fraction: float) -> dict[str, str]:
        """The dimensions (by :attr:`Dimension.shown`) whose value lies on a bound, and which."""
        flags = {}
        for d in self.dimensions:
            side = d.boundary(values[d.path], fraction)
            if side is not None:
                flags[d.shown] = f"{side} ({d.low:g})" if side == "low" else f"{side} ({d.high:g})"
        return flags

    def widened(self, flags: Mapping[str, str]) -> SearchSpace:
        """The space with every flagged dimension widened at its flagged side."""
        return SearchSpace(
            tuple(
                d.widened(flags[d.shown].split(" ", 1)[0]) if d.shown in flags else d
                for d in self.dimensions
            )
        )

    def describe(self) -> str:
        """One line: every dimension's range."""
        return "; ".join(d.describe() for d in self.dimensions)


def _dimension(name: str, spec: Mapping[str, Any], at: str) -> Dimension:
    path = str(spec.get("path", name))
    parts = path.split(".")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()) or not parts[0]:
        raise SpaceError(f"{at}.path={path!r} must be a key or KEY.INDEX (e.g. etas.1)")
    flags = {f: spec.get(f, False) for f in ("log", "complement", "integer")}
    for field, flag in flags.items():
        if not isinstance(flag, bool):
            raise SpaceError(f"{at}.{field}={flag!r} must be true or false")
    if spec.get("choices") is not None:
        choices = tuple(spec["choices"])
        if not choices:
            raise SpaceError(f"{at}.choices is empty: list at least one value")
        return Dimension(name, path, choices=choices)
    low, high = spec.get("low"), spec.get("high")
    for field, v in (("low", low), ("high", high)):
        if not _number(v):
            raise SpaceError(f"{at}.{field}={v!r} must be a finite number")
    assert low is not None
    assert high is not None
    if not low < high:
        raise SpaceError(f"{at}: low={low} >= high={high}, the range is empty or inverted")
    if flags["log"] and low <= 0:
        raise SpaceError(f"{at}.low={low} is out of range: must be > 0 for a log range")
    if flags["complement"] and not 0 <= low < high <= 1:
        raise SpaceError(f"{at}: a complement's range [{low}, {high}] must lie in [0, 1]")
    limits = spec.get("limits")
    if limits is not None:
        if len(limits) != 2 or not all(_number(v) for v in limits):
            raise SpaceError(f"{at}.limits={list(limits)!r} must be [min, max]")
        if not limits[0] <= low < high <= limits[1]:
            raise SpaceError(f"{at}.limits={list(limits)!r} must contain [low, high]")
        limits = (float(limits[0]), float(limits[1]))
    return Dimension(
        name, path, float(low), float(high), flags["log"], flags["complement"], flags["integer"],
        limits=limits,
    )  # fmt: skip
