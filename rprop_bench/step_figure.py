"""The step-size heatmap of one run: epoch × log10(step), colour = number of weights.

MLflow has no native histograms, so every run carries this figure next to the tidy histogram
CSV. The function builds a :class:`matplotlib.figure.Figure` without pyplot (no global state)
and does no file I/O; the tracking module logs it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from rprop_bench import schema
from rprop_bench.diagnostics import HISTOGRAM_EDGES, HistogramRow


def _plain_number(value: float, _position: object = None) -> str:
    return f"{value:g}"


def step_heatmap(rows: Sequence[HistogramRow], title: str = "") -> Figure:
    """Heatmap of the all-weights step histograms in ``rows``.

    Args:
        rows: histogram rows as :class:`~rprop_bench.diagnostics.StepSizeMonitor` makes them;
            only layer ``schema.HISTOGRAM_ALL_LAYERS`` is drawn.
        title: the axes title (e.g. the run name).
    """
    rows = [r for r in rows if r.layer == schema.HISTOGRAM_ALL_LAYERS]
    epochs = sorted({r.epoch for r in rows})
    column = {e: i for i, e in enumerate(epochs)}
    log_edges = np.log10(HISTOGRAM_EDGES)
    counts = np.zeros((len(log_edges) - 1, max(len(epochs), 1)))
    for r in rows:
        counts[int(np.argmin(np.abs(log_edges[:-1] - np.log10(r.bin_left)))), column[r.epoch]] = (
            r.count
        )
    # No constrained layout and an image, not a mesh: this is drawn once per run, so it must
    # be cheap (about 70 ms with its PNG written, on 2 busy cores).
    fig = Figure(figsize=(6.0, 3.6), dpi=90)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.16, top=0.88)
    ax = fig.add_subplot()
    if epochs:
        occupied = np.flatnonzero(counts.sum(axis=1))
        lo, hi = occupied.min(), occupied.max() + 1
        image = ax.imshow(
            np.ma.masked_equal(counts[lo:hi], 0),
            aspect="auto",
            origin="lower",
            interpolation="nearest",
            extent=(epochs[0] - 0.5, epochs[-1] + 0.5, log_edges[lo], log_edges[hi]),
            norm=LogNorm(vmin=1, vmax=max(counts.max(), 1)),
            cmap="viridis",
        )
        # Plain tick labels (1, 10, 100): the default 10^k labels go through mathtext, which
        # costs a third of the figure's time; minor ticks cost about as much again.
        colorbar = fig.colorbar(
            image, ax=ax, label="weights", pad=0.02, format=FuncFormatter(_plain_number)
        )
        colorbar.ax.minorticks_off()
    ax.grid(False)  # grid lines over an image hide its cells
    # Sizes for a figure viewed on its own at 540 × 324 px (MLflow's artifact view), not
    # shrunk into a paper's column: the run name in the title must be readable there.
    ax.set_xlabel("epoch", fontsize=11)
    ax.set_ylabel("log10 step size", fontsize=11)
    ax.tick_params(labelsize=10)
    # the run's name, as written: no mathtext
    ax.set_title(title or "step size per weight", fontsize=13, loc="left", parse_math=False)
    return fig
