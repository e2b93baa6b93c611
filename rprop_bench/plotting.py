"""Publication figures drawn from the results of :mod:`rprop_bench.analysis`.

Each function takes arrays or frames and returns a :class:`matplotlib.figure.Figure`; none
reads or writes files (the report saves them) and none touches pyplot's global state. The
look they share (sizes, fonts, one colour and line style per optimizer) is
:mod:`rprop_bench.plot_style`; the step-size figure is :mod:`rprop_bench.plot_steps`. Both
are re-exported here, so ``plotting`` is the one name a report section needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rprop_bench.plot_steps import step_size_panels
from rprop_bench.plot_style import (
    ONE_COLUMN,
    RC,
    RPROP_VARIANTS,
    TWO_COLUMN,
    is_rprop,
    legend_below,
    method_color,
    method_linestyle,
    new_figure,
)
from rprop_bench.text import count

__all__ = [
    "ONE_COLUMN",
    "RC",
    "RPROP_VARIANTS",
    "TWO_COLUMN",
    "cd_diagram",
    "improvement_heatmap",
    "is_rprop",
    "line_example",
    "loss_curves",
    "method_color",
    "method_linestyle",
    "performance_profiles",
    "runtime_ecdfs",
    "step_size_panels",
    "tuning_gain_heatmap",
    "working_range_map",
]


def loss_curves(
    bands: Mapping[str, pd.DataFrame],
    *,
    title: str = "",
    width: float = TWO_COLUMN,
) -> Figure:
    """Median loss across seeds with an interquartile band, against epoch and wall time.

    Args:
        bands: panel row label (e.g. ``"training loss"``) -> output of
            :func:`rprop_bench.analysis.seed_bands` for one problem, with columns ``method``,
            ``step``, ``median``, ``q25``, ``q75`` and ``time_median``.
        title: figure title.
        width: figure width in inches.

    Returns:
        A ``len(bands) × 2`` grid: left against the median gradient evaluations where the
        bands have ``evals_median`` (else the epoch), right against median wall time; log
        y-axis where all values are positive.
    """
    with mpl.rc_context(RC):
        fig = new_figure(width, 1.7 * len(bands) + 0.5)
        axes = fig.subplots(len(bands), 2, squeeze=False)
        methods: list[str] = []
        for row, (label, band) in enumerate(bands.items()):
            cost = "evals_median" if "evals_median" in band else "step"
            log, floor = log_axis_floor(band[["median", "q25", "q75"]].to_numpy(float))
            for col, x in enumerate((cost, "time_median")):
                ax = axes[row, col]
                for method, g in band.groupby("method", sort=True):
                    if method not in methods:
                        methods.append(method)
                    if x not in g or g[x].isna().all():
                        continue
                    g = g.sort_values("step")
                    lo, mid, hi = (np.maximum(g[q], floor) for q in ("q25", "median", "q75"))
                    color, ls = method_color(method), method_linestyle(method)
                    ax.plot(g[x], mid, color=color, linestyle=ls, label=method)
                    ax.fill_between(g[x], lo, hi, color=color, alpha=0.3, linewidth=0)
                if log:
                    ax.set_yscale("log")
                if floor > 0:  # exact zeros, drawn on a marked floor instead of vanishing
                    ax.axhline(floor, color="0.5", linestyle=":", linewidth=0.8)
                    ax.annotate(
                        f"0 (drawn at {floor:.0e})", (1, floor), xycoords=("axes fraction", "data"),
                        xytext=(-2, 2), textcoords="offset points", ha="right", va="bottom",
                        fontsize="x-small", color="0.4",
                    )  # fmt: skip
                ax.set_xlabel({"step": "epoch", "evals_median": "gradient evaluations"}.get(
                    x, "wall time [s]"))  # fmt: skip
                ax.set_ylabel(label)
        legend_below(fig, axes, sorted(methods))
        if title:
            fig.suptitle(title)
        return fig


def log_axis_floor(values: np.ndarray) -> tuple[bool, float]:
    """Whether values belong on a log axis (none negative, some positive), and the floor at
    which exact zeros among them are drawn: a decade below the smallest positive value
    (0.0: no zeros). A loss that reaches exactly 0 (breast_cancer, wine) must not switch the
    axis to linear and hide every other curve's decades."""
    finite = values[np.isfinite(values)]
    if not finite.size or finite.min() < 0 or not (finite > 0).any():
        return False, 0.0
    if not (finite == 0).any():
        return True, 0.0
    return True, float(10 ** (np.floor(np.log10(finite[finite > 0].min())) - 1))


def runtime_ecdfs(
    grid: np.ndarray, curves: Mapping[str, np.ndarray], *, width: float = ONE_COLUMN
) -> Figure:
    """Runtime ECDFs (COCO; data profiles): one step curve per method of the fraction of
    (problem, target, run) triples solved against the budget, on a log axis.

    Args:
        grid: shape ``(T,)``, the budgets (gradient evaluations), increasing and positive.
        curves: method -> shape ``(T,)`` fractions (:func:`rprop_bench.analysis.runtime_ecdf`).
        width: figure width in inches.
    """
    with mpl.rc_context(RC):
        fig = new_figure(width, 2.4)
        ax = fig.add_subplot()
        ax.set_xscale("log")
        for method, fraction in curves.items():
            ax.step(grid, fraction, where="post", color=method_color(method),
                    linestyle=method_linestyle(method), label=method)  # fmt: skip
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("gradient evaluations")
        ax.set_ylabel("fraction of targets solved")
        legend_below(fig, [ax], list(curves))
        return fig


def performance_profiles(
    profiles: Mapping[str, tuple[np.ndarray, np.ndarray]],
    methods: Sequence[str],
    *,
    width: float = TWO_COLUMN,
) -> Figure:
    """Dolan–Moré performance profiles, one panel per cost.

    Args:
        profiles: panel title -> ``(taus, rho)`` with shapes ``(T,)`` and ``(T, len(methods))``
            from :func:`rprop_bench.analysis.performance_profile`.
        methods: the solvers, in column order of ``rho``.
        width: figure width in inches.

    Returns:
        Step plots of ``rho_s(tau)`` on a log2 tau axis.
    """
    with mpl.rc_context(RC):
        n = max(1, len(profiles))
        fig = new_figure(width, 2.3)
        axes = fig.subplots(1, n, squeeze=False)[0]
        for ax, (name, (taus, rho)) in zip(axes, profiles.items(), strict=False):
            ax.set_xscale("log", base=2)  # before drawing: autoscaling a linear axis first
            ax.set_xlim(1.0, float(taus[-1]))  # would overflow on huge ratios
            for j, method in enumerate(methods):
                ax.step(
                    taus,
                    rho[:, j],
                    where="post",
                    color=method_color(method),
                    linestyle=method_linestyle(method),
                    label=method,
                )
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("performance ratio τ")
            ax.set_title(name, loc="left")
        axes[0].set_ylabel("fraction of problems ρ(τ)")  # shared: once, not over the neighbours
        legend_below(fig, axes, list(methods))
        return fig


def _text_width(fig: Figure, text: str, fontsize: float) -> float:
    """The width in inches ``text`` takes at ``fontsize`` points in ``fig``, with 5 % to
    spare: measured at 300 dpi, where font hinting distorts least (at a screen's 100 dpi a
    label measures narrower than a 150-dpi PNG or the PDF draws it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    dpi = fig.dpi
    fig.set_dpi(300)
    artist = fig.text(0, 0, text, fontsize=fontsize)
    width = artist.get_window_extent(canvas.get_renderer()).width / 300
    artist.remove()
    fig.set_dpi(dpi)
    return 1.05 * float(width)


def cd_diagram(
    avg_ranks: Sequence[float] | np.ndarray,
    methods: Sequence[str],
    cd: float,
    cliques: Sequence[Sequence[int]],
    *,
    title: str = "",
    width: float = ONE_COLUMN,
) -> Figure:
    """Critical-difference diagram (Demšar 2006, Fig. 1).

    The layout is measured, not guessed: the side margins are as wide as the longest label
    on each side, the figure widens (up to :data:`TWO_COLUMN`) and then the labels' font
    shrinks until the rank axis keeps at least 1.3 in, and rank numbers are thinned so that
    they never overlap. So nothing runs past the figure's edge, at any number of methods.

    Args:
        avg_ranks: shape ``(k,)``, average rank per method (1 = best).
        methods: the k method names.
        cd: Nemenyi critical difference, drawn as a bar above the axis.
        cliques: groups of method indices not significantly different
            (:func:`rprop_bench.comparison.cd_cliques`), joined by thick bars.
        title: figure title.
        width: the figure's width in inches, if the labels fit in it.
    """
    r = np.asarray(avg_ranks, dtype=float)
    k = len(r)
    order = np.argsort(r, kind="stable")
    half = (k + 1) // 2
    labels = [f"{methods[m]} ({r[m]:.2f})" for m in order]
    rows = max(half, k - half)
    with mpl.rc_context(RC):
        title_h = 0.22 if title else 0.0
        height = 0.6 + 0.12 * len(cliques) + 0.17 * rows
        fig = Figure(figsize=(width, height + title_h))
        gap, min_axis = 0.12, 1.3  # inches: label to axis end; the least rank axis
        fontsize = float(RC["legend.fontsize"])
        while True:
            left = max(_text_width(fig, t, fontsize) for t in labels[:half]) + gap + 0.05
            right = max((_text_width(fig, t, fontsize) for t in labels[half:]), default=0.0)
            right += gap + 0.05
            fig_w = max(width, min(TWO_COLUMN, left + right + min_axis))
            if fig_w - left - right >= min_axis or fontsize <= 4:
                break
            fontsize -= 0.5
        fig.set_size_inches(fig_w, height + title_h)
        axis_w = max(fig_w - left - right, 0.5)
        ax = fig.add_axes((left / fig_w, 0.02 * height / (height + title_h), axis_w / fig_w,
                           0.96 * height / (height + title_h)))  # fmt: skip
        ax.set_xlim(1, max(k, 2))
        ax.set_ylim(0, 1)
        ax.axis("off")
        per_inch = (max(k, 2) - 1) / axis_w  # rank units per inch along the axis
        y_axis = 1 - 0.42 / height  # y positions in axes units, distances in inches / height
        every = _tick_stride(fig, k, axis_w)
        _draw_rank_axis(ax, k, cd, y_axis, height, every)
        y = y_axis - 0.1 / height
        for clique in cliques:  # thick bars just below the axis
            lo, hi = r[list(clique)].min(), r[list(clique)].max()
            ax.plot([lo - 0.03, hi + 0.03], [y, y], color="#444444", linewidth=2.5,
                    solid_capstyle="round", clip_on=False)  # fmt: skip
            y -= 0.12 / height
        _draw_rank_labels(ax, r, methods, y_axis, top=y - 0.05 / height, step=0.17 / height,
                          reach=gap * per_inch, fontsize=fontsize)  # fmt: skip
        if title:
            fig.suptitle(title, x=0.02, y=0.99, ha="left", va="top", fontsize=RC["axes.titlesize"])
        return fig


def _tick_stride(fig: Figure, k: int, axis_w: float) -> int:
    """Label every n-th rank so that the rank numbers (7 pt) do not touch."""
    widest = _text_width(fig, str(k), float(RC["xtick.labelsize"])) + 0.04
    spacing = axis_w / max(k - 1, 1)
    return max(1, int(np.ceil(widest / spacing)))


def _draw_rank_axis(
    ax: Axes, k: int, cd: float, y_axis: float, height: float, every: int = 1
) -> None:
    """The rank axis 1..k with its ticks (every ``every``-th numbered, and the last), and the
    critical difference above its left end."""
    ax.plot([1, k], [y_axis, y_axis], color="black", linewidth=0.8, clip_on=False)
    for t in range(1, k + 1):
        tick = [y_axis, y_axis + 0.05 / height]
        ax.plot([t, t], tick, color="black", linewidth=0.8, clip_on=False)
        if (t - 1) % every == 0:
            ax.text(t, y_axis + 0.07 / height, str(t), ha="center", va="bottom",
                    fontsize=RC["xtick.labelsize"])  # fmt: skip
    y_cd = 1 - 0.08 / height
    ax.plot([1, 1 + cd], [y_cd, y_cd], color="black", linewidth=1.0, clip_on=False)
    ax.text(1 + cd / 2, y_cd - 0.03 / height, f"CD = {cd:.2f}", ha="center", va="top", fontsize=6)


def _draw_rank_labels(
    ax: Axes,
    r: np.ndarray,
    methods: Sequence[str],
    y_axis: float,
    top: float,
    step: float,
    reach: float,
    fontsize: float,
) -> None:
    """Each method's name and average rank, joined to its rank on the axis: the better half
    on the left, the worse half on the right, outermost first; ``reach`` is how far (rank
    units) past the axis' ends the joins go."""
    k = len(r)
    half = (k + 1) // 2
    for i, m in enumerate(np.argsort(r, kind="stable")):
        left = i < half
        y_label = top - (i if left else k - 1 - i) * step
        x_end = 1 - reach if left else max(k, 2) + reach
        ax.plot([r[m], r[m], x_end], [y_axis, y_label, y_label], color=method_color(methods[m]),
                linewidth=0.9, clip_on=False)  # fmt: skip
        ax.text(x_end, y_label, f"{methods[m]} ({r[m]:.2f})", ha="right" if left else "left",
                va="center", fontsize=fontsize)  # fmt: skip


def improvement_heatmap(
    matrix: pd.DataFrame, *, title: str = "", width: float = ONE_COLUMN
) -> Figure:
    """P(row beats column) as an annotated matrix (colour: blue > 0.5 > red).

    Args:
        matrix: square frame from :func:`rprop_bench.comparison.improvement_matrix`.
        title: figure title.
        width: figure width in inches.
    """
    names = list(matrix.index)
    k = len(names)
    with mpl.rc_context(RC):
        fig = new_figure(width, max(1.8, 0.32 * k + 1.0))
        ax = fig.add_subplot()
        cmap = mpl.colormaps["RdBu"]
        im = ax.imshow(matrix.to_numpy(float), vmin=0, vmax=1, cmap=cmap)
        ax.set_xticks(range(k), names, rotation=45, ha="right")
        ax.set_yticks(range(k), names)
        ax.grid(False)
        for i in range(k):
            for j in range(k):
                v = matrix.iat[i, j]
                if np.isfinite(v):
                    ax.text(
                        j,
                        i,
                        f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if abs(v - 0.5) > 0.3 else "black",
                    )
        ax.set_xlabel("Y")
        ax.set_ylabel("X")
        fig.colorbar(im, ax=ax, label="P(X beats Y)")
        if title:
            ax.set_title(title, loc="left")
        return fig


def tuning_gain_heatmap(
    ratio: pd.DataFrame, labels: pd.DataFrame, *, title: str = "", width: float = ONE_COLUMN
) -> Figure:
    """What tuning gained: log10(default / tuned) of a cost per (problem, optimizer).

    Args:
        ratio: problems × optimizers, log10 of the default's median over the tuned one's
            (> 0: tuning lowered the cost); NaN where it cannot be said (drawn grey).
        labels: the same shape, the text of each cell (e.g. ``"×3.2"``, ``"only tuned"``).
        title: figure title.
        width: figure width in inches.
    """
    rows, cols = list(ratio.index), list(ratio.columns)
    values = ratio.to_numpy(float)
    finite = values[np.isfinite(values)]
    span = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    width = max(width, 0.55 * len(cols) + 1.6)  # room for a label per cell
    with mpl.rc_context(RC):
        fig = new_figure(width, max(1.8, 0.28 * len(rows) + 1.3))
        ax = fig.add_subplot()
        cmap = mpl.colormaps["RdBu"].with_extremes(bad="0.85")
        im = ax.imshow(np.ma.masked_invalid(values), vmin=-span, vmax=span, cmap=cmap)
        ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        ax.grid(False)
        for i in range(len(rows)):
            for j in range(len(cols)):
                v = values[i, j]
                dark = np.isfinite(v) and abs(v) > 0.6 * span
                ax.text(j, i, str(labels.iat[i, j]), ha="center", va="center", fontsize=5,
                        color="white" if dark else "black")  # fmt: skip
        fig.colorbar(im, ax=ax, label="log10(default / tuned)", shrink=0.8)
        if title:
            ax.set_title(title, loc="left")
        return fig


def _tick(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def working_range_map(
    panels: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]],
    *,
    x_label: str,
    y_label: str,
    cost_label: str,
    title: str = "",
    width: float = TWO_COLUMN,
) -> Figure:
    """The working range of two hyperparameters: log10 of a median cost per grid cell.

    Args:
        panels: per panel title (e.g. ``"η- = 0.5"``, or ``""`` for one panel), the median
            cost (rows: ``y`` ascending, drawn upwards; columns: ``x`` ascending) and the
            text of each cell (e.g. how many runs reached the goal). A cost of ``inf`` (the
            goal missed by half the runs or more) is drawn grey with a cross.
        x_label, y_label: the hyperparameters' names; cost_label: what the colour is.
        title: figure title.
        width: figure width in inches.
    """
    names = list(panels)
    finite = np.concatenate([
        m.to_numpy(float)[np.isfinite(m.to_numpy(float))] for m, _ in panels.values()
    ])  # fmt: skip
    finite = finite[finite > 0]
    low, high = (np.log10(finite.min()), np.log10(finite.max())) if finite.size else (0, 1)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    ncols = min(4, len(names))
    nrows = -(-len(names) // ncols)
    side = min(2.4, (width - 0.9) / ncols)
    with mpl.rc_context(RC):
        fig = new_figure(width, nrows * (side + 0.35) + 0.6)
        grid = fig.add_gridspec(nrows, ncols)
        cmap = mpl.colormaps["viridis"].with_extremes(bad="0.82")
        image = None
        for k, name in enumerate(names):
            median, labels = panels[name]
            ax = fig.add_subplot(grid[k // ncols, k % ncols])
            values = median.to_numpy(float)
            with np.errstate(divide="ignore", invalid="ignore"):
                shown = np.ma.masked_invalid(np.log10(values))
            image = ax.imshow(shown, origin="lower", cmap=cmap, vmin=low, vmax=high,
                              aspect="auto")  # fmt: skip
            ax.set_xticks(range(median.shape[1]), [_tick(v) for v in median.columns],
                          rotation=90, fontsize=5)  # fmt: skip
            ax.set_yticks(range(median.shape[0]), [_tick(v) for v in median.index], fontsize=5)
            ax.grid(False)
            small = median.size <= 100
            for i in range(median.shape[0]):
                for j in range(median.shape[1]):
                    if not np.isfinite(values[i, j]):
                        ax.text(j, i, "×", ha="center", va="center", fontsize=6, color="0.3")
                    elif small:  # dark text on viridis' light end
                        light = (np.log10(values[i, j]) - low) / (high - low) > 0.6
                        ax.text(j, i, str(labels.iat[i, j]), ha="center", va="center",
                                fontsize=4, color="black" if light else "white")  # fmt: skip
            if k // ncols == nrows - 1:
                ax.set_xlabel(x_label)
            if k % ncols == 0:
                ax.set_ylabel(y_label)
            if name:
                ax.set_title(name, fontsize=7)
        if image is not None:
            fig.colorbar(image, ax=fig.axes, label=f"log10 {cost_label}", shrink=0.8)
        if title:
            fig.suptitle(title, x=0.02, ha="left")
        return fig


def line_example(
    data: pd.DataFrame | None,
    fits: pd.DataFrame,
    *,
    truth: tuple[float, float] = (2.0, 3.0),
    width: float = TWO_COLUMN,
) -> Figure:
    """The seed example ``y = 2x + 3``: the data with fitted lines, and learned (w, b).

    Args:
        data: the training data (columns ``x``, ``y``), or ``None`` if not logged.
        fits: one row per run, with columns ``method``, ``w``, ``b`` (failed runs may be
            NaN and are left out of the plot).
        truth: the true ``(w, b)``.
        width: figure width in inches.

    Returns:
        Left: data, the true line (dashed, drawn over the fits, which it would otherwise
        hide under) and each method's median fitted line. Right: every run's learned
        ``(w, b)`` with the truth marked; runs that learned the same ``(w, b)`` are one
        marker labelled ``×n``, and the axes leave room so that no marker is clipped.
    """
    with mpl.rc_context(RC):
        fig = new_figure(width, 2.5)
        ax_d, ax_p = fig.subplots(1, 2)
        ok = fits.dropna(subset=["w", "b"])
        if data is not None and len(data):
            ax_d.scatter(data["x"], data["y"], s=6, color="#999999", label="data", zorder=1)
            xs = np.linspace(float(data["x"].min()), float(data["x"].max()), 2)
        else:
            xs = np.array([-2.0, 2.0])
        ax_d.plot(
            xs,
            truth[0] * xs + truth[1],
            color="black",
            linewidth=1.0,
            linestyle=(0, (4, 3)),
            label=f"truth y = {truth[0]:g}x + {truth[1]:g}",
            zorder=5,  # over the fits, which lie on it when they are good
        )
        methods = sorted(ok["method"].unique())
        for m in methods:
            g = ok[ok["method"] == m]
            w, b = float(g["w"].median()), float(g["b"].median())
            ax_d.plot(
                xs,
                w * xs + b,
                color=method_color(m),
                linestyle=method_linestyle(m),
                linewidth=1.6,
                label=f"{m}: {w:.3f}x + {b:.3f}",
                zorder=3,
            )
            same = g.groupby(["w", "b"]).size().reset_index(name="n")
            ax_p.scatter(
                same["w"], same["b"], s=14, color=method_color(m), alpha=0.8, edgecolors="none",
                label=m + (f" ({count(len(g), 'run')} at {count(len(same), 'point')})"
                           if len(same) < len(g) else ""),
                clip_on=False, zorder=3,
            )  # fmt: skip
            for row in same[same["n"] > 1].itertuples():
                ax_p.annotate(
                    f"×{row.n}", (row.w, row.b), xytext=(3, 3), textcoords="offset points",
                    fontsize=6, color=method_color(m),
                )  # fmt: skip
        ax_p.scatter(
            [truth[0]], [truth[1]], marker="*", s=80, color="black", label="truth",
            clip_on=False, zorder=4,
        )  # fmt: skip
        ax_p.margins(0.15)  # room for the markers at the corners
        ax_d.set_xlabel("x")
        ax_d.set_ylabel("y")
        ax_d.legend(loc="upper left", fontsize=6)
        ax_p.set_xlabel("learned w")
        ax_p.set_ylabel("learned b")
        ax_p.legend(loc="best", fontsize=6)
        return fig
