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
from dataclasses import dataclass

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


@dataclass(frozen=True)
class HistogramRow:
    """One bin of one layer's histogram at one epoch (the columns of schema.HISTOGRAM_COLUMNS)."""

    epoch: int
    layer: str
    bin_left: float
    bin_right: float
    count: int


def is_rprop_family(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` keeps Rprop step sizes (groups with ``etas`` and ``step_sizes``)."""
    return all("etas" in g and "step_sizes" in g for g in optimizer.param_groups)


def histogram_counts(steps: np.ndarray) -> np.ndarray:
    """Counts of ``steps`` in the bins of :data:`HISTOGRAM_EDGES` (out-of-range values clipped)."""
    clipped = np.clip(steps, HISTOGRAM_EDGES[0], HISTOGRAM_EDGES[-1])
    counts, _ = np.histogram(clipped, bins=HISTOGRAM_EDGES)
    return counts


def step_quantiles(steps: np.ndarray) -> dict[str, float]:
    """The quantiles named in ``schema.STEP_QUANTILES`` of a flat array of steps."""
    values = np.quantile(steps, list(schema.STEP_QUANTILES.values()))
    return {name: float(v) for name, v in zip(schema.STEP_QUANTILES, values, strict=True)}


class StepSizeMonitor:
    """Measures the step each weight took, epoch by epoch.

    Call :meth:`start_epoch` before an epoch's updates and :meth:`end_epoch` after them.

    Args:
        named_parameters: the model's ``(name, parameter)`` pairs; names label the layers.
        optimizer: the optimizer that updates them.
    """

    def __init__(
        self,
        named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
        optimizer: torch.optim.Optimizer,
    ) -> None:
        self._params = [(n, p) for n, p in named_parameters if p.requires_grad]
        self._optimizer = optimizer
        self._rprop = is_rprop_family(optimizer)
        self._start: list[torch.Tensor] = []
        self._previous_signs: list[torch.Tensor] | None = None
        bounds = [g["step_sizes"] for g in optimizer.param_groups] if self._rprop else []
        self._step_min = float(min(b[0] for b in bounds)) if bounds else None
        self._step_max = float(max(b[1] for b in bounds)) if bounds else None

    def start_epoch(self) -> None:
        """Remember the weights at the start of the epoch (for the |Δθ| of non-Rprop optimizers)."""
        self._start = [p.detach().clone() for _, p in self._params]

    def _steps(self) -> list[np.ndarray]:
        """The per-weight steps of each parameter, flattened."""
        steps = []
        for i, (_, p) in enumerate(self._params):
            delta = None
            if self._rprop:
                state = self._optimizer.state.get(p, {})
                delta = next((state[k] for k in RPROP_STEP_KEYS if k in state), None)
            if delta is None:
                delta = (p.detach() - self._start[i]).abs() if self._start else torch.zeros_like(p)
            steps.append(delta.detach().reshape(-1).double().cpu().numpy())
        return steps

    def skip_epoch(self) -> None:
        """Note the gradient signs of an epoch that is not reported, so flips stay per-epoch."""
        self._sign_flip_fraction()

    def _sign_flip_fraction(self) -> float:
        signs = [
            torch.sign(p.grad.detach()) if p.grad is not None else torch.zeros_like(p)
            for _, p in self._params
        ]
        flipped, total = 0, 0
        if self._previous_signs is not None:
            for now, before in zip(signs, self._previous_signs, strict=True):
                flipped += int(((now * before) < 0).sum())
                total += now.numel()
        self._previous_signs = signs
        return flipped / total if total else 0.0

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
        per_layer = self._steps()
        everything = np.concatenate(per_layer) if per_layer else np.zeros(1)
        metrics = step_quantiles(everything)
        metrics[schema.SIGN_FLIP_FRACTION] = self._sign_flip_fraction()
        if self._step_min is not None and self._step_max is not None:
            metrics[schema.AT_MIN_FRACTION] = float(
                np.mean(everything <= self._step_min * (1 + _AT_BOUND_RTOL))
            )
            metrics[schema.AT_MAX_FRACTION] = float(
                np.mean(everything >= self._step_max * (1 - _AT_BOUND_RTOL))
            )
        rows: list[HistogramRow] = []
        if with_histograms:
            layers = [(name, s) for (name, _), s in zip(self._params, per_layer, strict=True)]
            layers.append((schema.HISTOGRAM_ALL_LAYERS, everything))
            for name, steps in layers:
                counts = histogram_counts(steps)
                rows.extend(
                    HistogramRow(
                        epoch,
                        name,
                        float(HISTOGRAM_EDGES[i]),
                        float(HISTOGRAM_EDGES[i + 1]),
                        int(counts[i]),
                    )
                    for i in np.flatnonzero(counts)
                )
        return metrics, rows
