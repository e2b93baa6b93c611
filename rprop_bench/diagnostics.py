"""Step-size diagnostics that compare across optimizers.

"The step" of a weight is, for the Rprop family, its current step size Δ (read from the
optimizer's state), and for every other optimizer the size of its update over the epoch,
``|θ_end − θ_start|``. :class:`StepSizeMonitor` reports, per logged epoch, the quantiles of
the step over all weights, the fraction of weights whose gradient sign flipped since the
previous epoch, for the Rprop family the fractions of weights sitting at Δmin and Δmax, and
log-spaced histograms of the step per layer and over all weights.

This module is a leaf: it imports only numpy and torch, and the metric names from ``schema``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import torch

from rprop_bench import schema

#: Histogram bin edges, shared by every run so that histograms compare: 10^-10 … 10^2, four
#: bins per decade. Steps below the first edge (including exact zeros) count in the first bin,
#: steps above the last edge in the last bin.
HISTOGRAM_EDGES: np.ndarray = np.logspace(-10.0, 2.0, 12 * 4 + 1)

#: Optimizer-state keys under which Rprop implementations keep the per-weight step size Δ.
RPROP_STEP_KEYS = ("step_size", "step_sizes", "delta")

_AT_BOUND_RTOL = 1e-6
_EDGES: list[float] = HISTOGRAM_EDGES.tolist()


class HistogramRow(NamedTuple):
    """One bin of one layer's histogram at one epoch (the columns of schema.HISTOGRAM_COLUMNS).

    A named tuple rather than a frozen dataclass: a run makes tens of thousands of rows, and a
    tuple is built several times faster.
    """

    epoch: int
    layer: str
    bin_left: float
    bin_right: float
    count: int  # type: ignore[assignment]  # shadows tuple.count; the CSV column keeps its name


def keeps_step_sizes(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` keeps per-weight step sizes Δ in its state, as the Rprop family
    does (ours and torch's: groups with ``etas`` and ``step_sizes``), so Δ can be read, not
    estimated from |Δθ|. Asked of the object, so it holds for any optimizer built this way."""
    return all("etas" in g and "step_sizes" in g for g in optimizer.param_groups)


def histogram_counts(steps: np.ndarray) -> np.ndarray:
    """Counts of ``steps`` in the bins of :data:`HISTOGRAM_EDGES` (out-of-range values clipped).

    ``steps`` is flat (one histogram) or ``(members, n)`` (one histogram per row, counts of
    shape ``(members, bins)``). Bins are ``[left, right)``, the last one closed, as in
    ``np.histogram``; a NaN step (a diverged member) counts in the last bin.
    """
    rows = np.atleast_2d(steps)
    clipped = np.clip(rows, HISTOGRAM_EDGES[0], HISTOGRAM_EDGES[-1])
    n_bins = len(HISTOGRAM_EDGES) - 1
    bins = np.minimum(np.searchsorted(HISTOGRAM_EDGES, clipped, side="right") - 1, n_bins - 1)
    offsets = np.arange(len(rows))[:, None] * n_bins
    counts = np.bincount((bins + offsets).ravel(), minlength=len(rows) * n_bins)
    counts = counts.reshape(len(rows), n_bins)
    return counts[0] if np.ndim(steps) == 1 else counts


def step_quantiles(steps: np.ndarray) -> dict[str, float]:
    """The quantiles named in ``schema.STEP_QUANTILES`` of a flat array of steps."""
    return _member_quantiles(np.atleast_2d(steps))[0]


def _member_quantiles(steps: np.ndarray) -> list[dict[str, float]]:
    """The quantiles of each row of ``steps`` (``(members, n)``), one dict per member."""
    values = np.quantile(steps, list(schema.STEP_QUANTILES.values()), axis=1)
    return [
        {name: float(v) for name, v in zip(schema.STEP_QUANTILES, column, strict=True)}
        for column in values.T
    ]


class StepSizeMonitor:
    """Measures the step each weight took, epoch by epoch.

    Call :meth:`start_epoch` before an epoch's updates and :meth:`end_epoch` (or
    :meth:`skip_epoch`) after them.

    **Stacked members.** With ``members=S`` every parameter carries S independent models
    along its leading dim (as :mod:`rprop_bench.seed_batch` trains S seeds at once), and
    :meth:`end_epoch_members` measures each member on its own: member k's metrics and
    histograms are those a monitor of member k alone would report. The work is done on
    ``(S, n)`` arrays in one pass, not in a loop over members.

    Args:
        named_parameters: the model's ``(name, parameter)`` pairs; names label the layers.
        optimizer: the optimizer that updates them.
        members: ``None`` for one model, else the size S of every parameter's leading dim.
    """

    def __init__(
        self,
        named_parameters: Iterable[tuple[str, torch.Tensor]],
        optimizer: torch.optim.Optimizer,
        members: int | None = None,
    ) -> None:
        self._params = [(n, p) for n, p in named_parameters if p.requires_grad]
        self._optimizer = optimizer
        self._members = members
        self._rows = 1 if members is None else members
        if members is not None:
            for name, p in self._params:
                if p.dim() == 0 or p.shape[0] != members:
                    raise ValueError(
                        f"parameter {name!r} has shape {tuple(p.shape)}; with members={members} "
                        f"every parameter needs a leading dim of size {members}"
                    )
        self._rprop = keeps_step_sizes(optimizer)
        self._start: list[torch.Tensor] = []
        self._previous_signs: list[torch.Tensor] | None = None
        bounds = [g["step_sizes"] for g in optimizer.param_groups] if self._rprop else []

        def per_row(value: Any) -> np.ndarray:  # a bound, or one per member (a grid)
            array = value.detach().cpu().double().numpy() if torch.is_tensor(value) else value
            return np.broadcast_to(np.asarray(array, dtype=float), (self._rows,))

        # (rows, 1): the bounds of each member, the loosest over the groups
        self._step_min = (
            np.min([per_row(b[0]) for b in bounds], axis=0)[:, None] if bounds else None
        )
        self._step_max = (
            np.max([per_row(b[1]) for b in bounds], axis=0)[:, None] if bounds else None
        )

    def start_epoch(self) -> None:
        """Remember the weights at the start of the epoch (for the |Δθ| of non-Rprop optimizers)."""
        self._start = [p.detach().clone() for _, p in self._params]

    def _steps(self) -> list[np.ndarray]:
        """The per-weight steps of each parameter, one row per member: ``(members, n)``."""
        steps = []
        for i, (_, p) in enumerate(self._params):
            delta = None
            if self._rprop:
                state = self._optimizer.state.get(p, {})
                delta = next((state[k] for k in RPROP_STEP_KEYS if k in state), None)
            if delta is None:
                delta = (p.detach() - self._start[i]).abs() if self._start else torch.zeros_like(p)
            steps.append(delta.detach().reshape(self._rows, -1).double().cpu().numpy())
        return steps

    def skip_epoch(self) -> None:
        """Note the gradient signs of an epoch that is not reported, so flips stay per-epoch."""
        self._previous_signs = self._signs()

    def _signs(self) -> list[torch.Tensor]:
        return [
            torch.sign(p.grad.detach()) if p.grad is not None else torch.zeros_like(p)
            for _, p in self._params
        ]

    def _sign_flip_fractions(self) -> list[float]:
        """Per member: the fraction of weights whose gradient sign flipped since last epoch."""
        signs = self._signs()
        flipped = torch.zeros(self._rows, dtype=torch.int64)
        total = 0
        if self._previous_signs is not None:
            for now, before in zip(signs, self._previous_signs, strict=True):
                flips = ((now * before) < 0).reshape(self._rows, -1)
                flipped += flips.sum(dim=1).cpu()
                total += flips.shape[1]
        self._previous_signs = signs
        return [f / total if total else 0.0 for f in flipped.tolist()]

    def end_epoch(
        self, epoch: int, *, with_histograms: bool = True
    ) -> tuple[dict[str, float], list[HistogramRow]]:
        """Measure the steps of the epoch just finished.

        The sign-flip fraction compares the gradient at the end of this epoch with the one at
        the end of the previous epoch (call :meth:`skip_epoch` for epochs not reported).
        Histogram bins with a zero count are left out of the rows.

        Returns:
            The step metrics (schema names) and, if ``with_histograms``, the histogram rows for
            every layer and for all weights together (layer ``schema.HISTOGRAM_ALL_LAYERS``).
        """
        if self._members is not None:
            raise ValueError("a monitor of stacked members reports with end_epoch_members()")
        return self.end_epoch_members(epoch, with_histograms=with_histograms)[0]

    def end_epoch_members(
        self, epoch: int, *, with_histograms: bool = True
    ) -> list[tuple[dict[str, float], list[HistogramRow]]]:
        """:meth:`end_epoch` for each member: one ``(metrics, rows)`` pair per member."""
        per_layer = self._steps()
        everything = np.concatenate(per_layer, axis=1) if per_layer else np.zeros((self._rows, 1))
        results: list[tuple[dict[str, float], list[HistogramRow]]] = [
            (metrics, []) for metrics in _member_quantiles(everything)
        ]
        flips = self._sign_flip_fractions()
        at_min = at_max = None
        if self._step_min is not None and self._step_max is not None:
            at_min = np.mean(everything <= self._step_min * (1 + _AT_BOUND_RTOL), axis=1)
            at_max = np.mean(everything >= self._step_max * (1 - _AT_BOUND_RTOL), axis=1)
        for k, (metrics, _) in enumerate(results):
            metrics[schema.SIGN_FLIP_FRACTION] = flips[k]
            if at_min is not None and at_max is not None:
                metrics[schema.AT_MIN_FRACTION] = float(at_min[k])
                metrics[schema.AT_MAX_FRACTION] = float(at_max[k])
        if with_histograms:
            layers = [(name, s) for (name, _), s in zip(self._params, per_layer, strict=True)]
            layers.append((schema.HISTOGRAM_ALL_LAYERS, everything))
            for name, steps in layers:
                counts = histogram_counts(steps)
                # only the non-empty bins (most are empty), found at once for every member
                for k, i in zip(*np.nonzero(counts), strict=True):
                    results[k][1].append(
                        HistogramRow(epoch, name, _EDGES[i], _EDGES[i + 1], int(counts[k, i]))
                    )
        return results
