"""Publication figures drawn from the results of :mod:`rprop_bench.analysis`.

Each function takes arrays or frames and returns a :class:`matplotlib.figure.Figure`; none
reads or writes files (the report saves them) and none touches pyplot's global state.

Style:

- sizes for a one-column (:data:`ONE_COLUMN` = 3.25 in) and a two-column (:data:`TWO_COLUMN`
  = 6.75 in) paper, fonts of 7–8 pt that stay readable at that size;
- one fixed colour (and line style: solid for the Rprop family, dashed for baselines) per
  optimizer in every figure, from Paul Tol's colour-blind-safe "muted" scheme plus black and
  Okabe–Ito orange (:func:`method_color`);
- vector PDF with embedded TrueType fonts and no LaTeX (:data:`RC`, used when saving).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from rprop_bench import schema

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
    "step_size_panels",
]

ONE_COLUMN = 3.25  # inches, one column of a two-column paper
TWO_COLUMN = 6.75  # inches, full text width

#: Matplotlib settings every figure is drawn and saved under.
RC: dict[Any, Any] = {  # Any keys: matplotlib types rcParams keys as a Literal
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.2,
    "pdf.fonttype": 42,  # TrueType: text stays text in the PDF
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "text.usetex": False,
    "savefig.dpi": 150,
    "savefig.bbox": "standard",  # constrained layout already fits; "tight" costs a redraw
}

RPROP_VARIANTS = schema.RPROP_VARIANTS


def is_rprop(method: str) -> bool:
    """Whether a method label belongs to the Rprop family (ours or torch's)."""
    return schema.is_rprop_family(method)


def method_color(method: str) -> str:
    """The colour of a method, the same in every figure and every report.

    Known optimizers have a fixed colour; any other name gets one from the same palette by a
    stable hash of its name (so it too never changes between figures).
    """
    if method in schema.OPTIMIZER_COLORS:
        return schema.OPTIMIZER_COLORS[method]
    base = method.split(" ", 1)[0]  # "irprop- batch_size=8" keeps irprop-'s colour
    if base in schema.OPTIMIZER_COLORS:
        return schema.OPTIMIZER_COLORS[base]
    return schema.FALLBACK_COLORS[zlib.crc32(method.encode()) % len(schema.FALLBACK_COLORS)]


_SUFFIX_STYLES = ("-", "--", ":", "-.")


def method_linestyle(method: str) -> str:
    """Solid for the Rprop family, dashed for baselines (tells them apart in greyscale).

    A label with a suffix (``"irprop- batch_size=8"``, see the report's ``label_params``) gets
    a line style from its suffix instead, so the variants of one optimizer differ.
    """
    if " " in method:
        suffix = method.split(" ", 1)[1]
        if suffix.endswith("=full"):
            return "-"
        return _SUFFIX_STYLES[1 + zlib.crc32(suffix.encode()) % (len(_SUFFIX_STYLES) - 1)]
    return "-" if is_rprop(method) else "--"


def _figure(width: float, height: float) -> Figure:
    with mpl.rc_context(RC):
        return Figure(figsize=(width, height), layout="constrained")


def _legend_below(fig: Figure, axes, methods: Sequence[str]) -> None:
    handles = [
        mpl.lines.Line2D([], [], color=method_color(m), linestyle=method_linestyle(m), label=m)  # type: ignore[arg-type]
        for m in methods
    ]
    if handles:
        # As many columns as fit the figure's width: long labels (e.g. "irprop+
        # batch_size=32") would otherwise run off the page. An entry is about 0.45 in of
        # line and padding plus 0.6 em per character of its label.
        em = RC["legend.fontsize"] / 72
        entry = 0.45 + 0.6 * em * max(len(m) for m in methods)
        fitting = max(1, int(fig.get_figwidth() // entry))
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=min(len(handles), 6, fitting),
            fontsize=RC["legend.fontsize"],
            frameon=False,
        )


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
        A ``len(bands) × 2`` grid: left against epoch, right against median wall time; log
        y-axis where all values are positive.
    """
    with mpl.rc_context(RC):
        fig = _figure(width, 1.7 * len(bands) + 0.5)
        axes = fig.subplots(len(bands), 2, squeeze=False)
        methods: list[str] = []
        for row, (label, band) in enumerate(bands.items()):
            for col, x in enumerate(("step", "time_median")):
                ax = axes[row, col]
                for method, g in band.groupby("method", sort=True):
                    if method not in methods:
                        methods.append(method)
                    if x not in g or g[x].isna().all():
                        continue
                    g = g.sort_values("step")
                    color, ls = method_color(method), method_linestyle(method)
                    ax.plot(g[x], g["median"], color=color, linestyle=ls, label=method)
                    ax.fill_between(g[x], g["q25"], g["q75"], color=color, alpha=0.2, linewidth=0)
                values = band[["median", "q25", "q75"]].to_numpy(float)
                if values.size and np.nanmin(values) > 0:
                    ax.set_yscale("log")
                ax.set_xlabel("epoch" if x == "step" else "wall time [s]")
                ax.set_ylabel(label)
        _legend_below(fig, axes, sorted(methods))
        if title:
            fig.suptitle(title)
        return fig


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
        fig = _figure(width, 1.35 * n + 0.4)
        axes = fig.subplots(n, 2, squeeze=False)
        cmap = LinearSegmentedColormap.from_list("steps", ["#FFFFFF", "#88CCEE", "#332288"])
        for row, (method, epochs, edges, counts) in enumerate(heatmaps):
            ax_h, ax_f = axes[row]
            color = method_color(method)
            what = "Δ" if is_rprop(method) else "|Δθ|"
            if np.size(counts) and np.size(epochs):
                e = np.asarray(epochs, dtype=float)
                e_edges = np.concatenate([[e[0] - 0.5], (e[:-1] + e[1:]) / 2, [e[-1] + 0.5]])
                mesh = ax_h.pcolormesh(
                    e_edges,
                    edges,
                    np.log10(1.0 + np.asarray(counts, dtype=float)).T,
                    cmap=cmap,
                    shading="flat",
                    rasterized=True,
                )
                fig.colorbar(mesh, ax=ax_h, label="log10(1+count)", pad=0.01)
            else:
                ax_h.text(
                    0.5, 0.5, "no histogram", ha="center", va="center", transform=ax_h.transAxes
                )
            ax_h.set_ylabel(f"log10 {what}")
            ax_h.set_title(f"{method}: histogram of {what}", loc="left")
            fan = fans.get(method)
            if fan is not None and len(fan):
                f = fan.sort_values("step")
                x = f["step"].to_numpy(float)
                for lo, hi, alpha in (("step_p05", "step_p95", 0.2), ("step_p25", "step_p75", 0.4)):
                    if lo in f and hi in f:
                        ax_f.fill_between(
                            x,
                            f[lo],
                            f[hi],
                            color=color,
                            alpha=alpha,
                            linewidth=0,
                            label=f"{int(lo[-2:])}–{int(hi[-2:])} %",
                        )
                if "step_median" in f:
                    ax_f.plot(x, f["step_median"], color=color, label="median")
                for extreme in ("step_min", "step_max"):
                    if extreme in f:
                        ax_f.plot(x, f[extreme], color=color, linestyle=":", linewidth=0.8)
                vals = f.filter(like="step_").to_numpy(float)
                if vals.size and np.nanmax(vals) > 0:
                    ax_f.set_yscale("log")
                if not fig.legends:  # one key for the bands, below the figure
                    handles, labels = ax_f.get_legend_handles_labels()
                    handles.append(
                        mpl.lines.Line2D([], [], color="#666666", linestyle=":", linewidth=0.8)
                    )
                    labels.append("min / max")
                    fig.legend(handles, labels, loc="outside lower center", ncols=4, frameon=False)
            ax_f.set_ylabel(what)
            ax_f.set_title(f"{method}: quantiles of {what}", loc="left")
        # one y range per column, so that variants and the baseline compare at a glance
        lows = [e[0] for _, ep, e, c in heatmaps if np.size(c) and np.size(ep)]
        highs = [e[-1] for _, ep, e, c in heatmaps if np.size(c) and np.size(ep)]
        if lows:
            for ax in axes[:, 0]:
                ax.set_ylim(min(lows), max(highs))
        fan_axes = [axes[i, 1] for i, (m, *_) in enumerate(heatmaps) if m in fans]
        for ax in fan_axes[1:]:
            ax.sharey(fan_axes[0])
        for ax in axes[-1]:
            ax.set_xlabel("epoch")
        if title:
            fig.suptitle(title)
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
        fig = _figure(width, 2.3)
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
        _legend_below(fig, axes, list(methods))
        return fig


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

    Args:
        avg_ranks: shape ``(k,)``, average rank per method (1 = best).
        methods: the k method names.
        cd: Nemenyi critical difference, drawn as a bar above the axis.
        cliques: groups of method indices not significantly different
            (:func:`rprop_bench.analysis.cd_cliques`), joined by thick bars.
        title: figure title.
        width: figure width in inches.
    """
    r = np.asarray(avg_ranks, dtype=float)
    k = len(r)
    order = np.argsort(r, kind="stable")
    half = (k + 1) // 2
    rows = max(half, k - half)
    with mpl.rc_context(RC):
        bars_h = 0.12 * len(cliques)
        title_h = 0.22 if title else 0.0
        height = 0.6 + bars_h + 0.17 * rows
        fig = Figure(figsize=(width, height + title_h))
        # the rank axis spans the middle of the figure; labels go in the side margins
        ax = fig.add_axes(
            (0.3, 0.02 * height / (height + title_h), 0.4, 0.96 * height / (height + title_h))
        )
        top, step = 0.0, 0.17 / height  # one label row, in axes units per inch of height
        ax.set_xlim(1, max(k, 2))
        ax.set_ylim(0, 1)
        ax.axis("off")
        y_axis = 1 - 0.42 / height
        ax.plot([1, k], [y_axis, y_axis], color="black", linewidth=0.8, clip_on=False)
        for t in range(1, k + 1):
            ax.plot(
                [t, t],
                [y_axis, y_axis + 0.05 / height],
                color="black",
                linewidth=0.8,
                clip_on=False,
            )
            ax.text(t, y_axis + 0.07 / height, str(t), ha="center", va="bottom")
        # the critical difference, above the axis at its left end
        y_cd = 1 - 0.08 / height
        ax.plot([1, 1 + cd], [y_cd, y_cd], color="black", linewidth=1.0, clip_on=False)
        ax.text(
            1 + cd / 2, y_cd - 0.03 / height, f"CD = {cd:.2f}", ha="center", va="top", fontsize=6
        )
        # cliques: thick bars just below the axis
        y = y_axis - 0.1 / height
        for clique in cliques:
            lo, hi = r[list(clique)].min(), r[list(clique)].max()
            ax.plot(
                [lo - 0.03, hi + 0.03],
                [y, y],
                color="#444444",
                linewidth=2.5,
                solid_capstyle="round",
                clip_on=False,
            )
            y -= 0.12 / height
        top = y - 0.05 / height
        for i, m in enumerate(order):
            left = i < half
            depth = i if left else k - 1 - i
            y_label = top - depth * step
            x_end = 1 - 0.05 * (k - 1) if left else k + 0.05 * (k - 1)
            color = method_color(methods[m])
            ax.plot(
                [r[m], r[m], x_end],
                [y_axis, y_label, y_label],
                color=color,
                linewidth=0.9,
                clip_on=False,
            )
            ax.text(
                x_end,
                y_label,
                f"{methods[m]} ({r[m]:.2f})",
                ha="right" if left else "left",
                va="center",
                fontsize=RC["legend.fontsize"],
            )
        if title:
            fig.suptitle(title, x=0.02, y=0.99, ha="left", va="top", fontsize=RC["axes.titlesize"])
        return fig


def improvement_heatmap(
    matrix: pd.DataFrame, *, title: str = "", width: float = ONE_COLUMN
) -> Figure:
    """P(row beats column) as an annotated matrix (colour: blue > 0.5 > red).

    Args:
        matrix: square frame from :func:`rprop_bench.analysis.improvement_matrix`.
        title: figure title.
        width: figure width in inches.
    """
    names = list(matrix.index)
    k = len(names)
    with mpl.rc_context(RC):
        fig = _figure(width, max(1.8, 0.32 * k + 1.0))
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
        Left: data, the true line and each method's median fitted line. Right: every run's
        learned ``(w, b)`` with the truth marked.
    """
    with mpl.rc_context(RC):
        fig = _figure(width, 2.5)
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
            linewidth=0.8,
            linestyle=":",
            label=f"truth y = {truth[0]:g}x + {truth[1]:g}",
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
                label=f"{m}: {w:.3f}x + {b:.3f}",
            )
            ax_p.scatter(
                g["w"], g["b"], s=12, color=method_color(m), label=m, alpha=0.8, edgecolors="none"
            )
        ax_p.scatter([truth[0]], [truth[1]], marker="*", s=80, color="black", label="truth")
        ax_d.set_xlabel("x")
        ax_d.set_ylabel("y")
        ax_d.legend(loc="upper left", fontsize=6)
        ax_p.set_xlabel("learned w")
        ax_p.set_ylabel("learned b")
        ax_p.legend(loc="best", fontsize=6)
        return fig
