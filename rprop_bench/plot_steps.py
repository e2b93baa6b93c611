"""The step-size figure of a problem: each method's step-size histogram over the epochs beside
a quantile fan chart (Riedmiller & Braun 1993 adapt one step size per weight; this shows how
they spread). Returns a :class:`~matplotlib.figure.Figure`; reads and writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from rprop_bench.plot_style import RC, TWO_COLUMN, is_rprop, method_color, new_figure


def step_size_panels(
    heatmaps: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    fans: Mapping[str, pd.DataFrame],
    *,
    title: str = "",
    width: float = TWO_COLUMN,
) -> Figure:
    """Step-size heatmap (epoch × log10 step) next to a quantile fan chart, one row per method.

    Args:
        heatmaps: ``(method, epochs, log10_edges, counts)`` per row, as returned by
            :func:`rprop_bench.analysis.histogram_grid` (shapes ``(E,)``, ``(B+1,)``,
            ``(E, B)``). A method without a histogram may pass empty arrays.
        fans: method -> frame with column ``step`` and the step quantile columns
            ``step_p05``, ``step_p25``, ``step_median``, ``step_p75``, ``step_p95`` (and
            optionally ``step_min``/``step_max``), values in step units (not log).
        title: figure title.
        width: figure width in inches.

    Returns:
        ``len(heatmaps) × 2`` grid; left column heatmaps (colour = log10(1 + count)), right
        column fans on a log axis: 5–95 % and 25–75 % bands, the median line and min/max
        dotted. Rows share the y range so variants compare at a glance.
    """
    with mpl.rc_context(RC):
        n = max(1, len(heatmaps))
        fig = new_figure(width, 1.35 * n + 0.4)
        axes = fig.subplots(n, 2, squeeze=False)
        cmap = LinearSegmentedColormap.from_list("steps", ["#FFFFFF", "#88CCEE", "#332288"])
        for row, (method, epochs, edges, counts) in enumerate(heatmaps):
            ax_h, ax_f = axes[row]
            what = "Δ" if is_rprop(method) else "|Δθ|"
            _draw_histogram(fig, ax_h, epochs, edges, counts, cmap)
            ax_h.set_ylabel(f"log10 {what}")
            ax_h.set_title(f"{method}: histogram of {what}", loc="left")
            fan = fans.get(method)
            if fan is not None and len(fan):
                _draw_fan(fig, ax_f, fan, method_color(method))
            ax_f.set_ylabel(what)
            ax_f.set_title(f"{method}: quantiles of {what}", loc="left")
        _share_ranges(axes, heatmaps, fans)
        for ax in axes[-1]:
            ax.set_xlabel("epoch")
        if title:
            fig.suptitle(title)
        return fig


def _draw_histogram(
    fig: Figure, ax: Axes, epochs: np.ndarray, edges: np.ndarray, counts: np.ndarray, cmap: Any
) -> None:
    """One method's histograms as a heatmap: epoch × log10 step, colour log10(1 + count)."""
    if not (np.size(counts) and np.size(epochs)):
        ax.text(0.5, 0.5, "no histogram", ha="center", va="center", transform=ax.transAxes)
        return
    e = np.asarray(epochs, dtype=float)
    e_edges = np.concatenate([[e[0] - 0.5], (e[:-1] + e[1:]) / 2, [e[-1] + 0.5]])
    mesh = ax.pcolormesh(
        e_edges,
        edges,
        np.log10(1.0 + np.asarray(counts, dtype=float)).T,
        cmap=cmap,
        shading="flat",
        rasterized=True,
    )
    ax.grid(False)  # the style's grid would be drawn over the cells
    fig.colorbar(mesh, ax=ax, label="log10(1+count)", pad=0.01)


def _draw_fan(fig: Figure, ax: Axes, fan: pd.DataFrame, color: str) -> None:
    """One method's step quantiles over the epochs: 5–95 % and 25–75 % bands, the median, and
    min / max dotted; the first fan drawn adds the key below the figure."""
    f = fan.sort_values("step")
    x = f["step"].to_numpy(float)
    for lo, hi, alpha in (("step_p05", "step_p95", 0.2), ("step_p25", "step_p75", 0.4)):
        if lo in f and hi in f:
            label = f"{int(lo[-2:])}–{int(hi[-2:])} %"
            ax.fill_between(x, f[lo], f[hi], color=color, alpha=alpha, linewidth=0, label=label)
    if "step_median" in f:
        ax.plot(x, f["step_median"], color=color, label="median")
    for extreme in ("step_min", "step_max"):
        if extreme in f:
            ax.plot(x, f[extreme], color=color, linestyle=":", linewidth=0.8)
    values = f.filter(like="step_").to_numpy(float)
    if values.size and np.nanmax(values) > 0:
        ax.set_yscale("log")
    if not fig.legends:  # one key for the bands, below the figure
        handles, labels = ax.get_legend_handles_labels()
        handles.append(mpl.lines.Line2D([], [], color="#666666", linestyle=":", linewidth=0.8))
        labels.append("min / max")
        fig.legend(handles, labels, loc="outside lower center", ncols=4, frameon=False)


def _share_ranges(
    axes: np.ndarray,
    heatmaps: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    fans: Mapping[str, pd.DataFrame],
) -> None:
    """One y range per column, so that variants and the baseline compare at a glance."""
    drawn = [edges for _, epochs, edges, counts in heatmaps if np.size(counts) and np.size(epochs)]
    if drawn:
        for ax in axes[:, 0]:
            ax.set_ylim(min(e[0] for e in drawn), max(e[-1] for e in drawn))
    fan_axes = [axes[i, 1] for i, (method, *_) in enumerate(heatmaps) if method in fans]
    for ax in fan_axes[1:]:
        ax.sharey(fan_axes[0])
