"""The look shared by every figure: sizes, fonts, and one colour and line style per optimizer.

- sizes for a one-column (:data:`ONE_COLUMN` = 3.25 in) and a two-column (:data:`TWO_COLUMN`
  = 6.75 in) paper, fonts of 7–8 pt that stay readable at that size;
- one fixed colour (and line style: solid for the Rprop family, dashed for baselines) per
  optimizer in every figure, from Paul Tol's colour-blind-safe "muted" scheme plus black and
  Okabe–Ito orange (:func:`method_color`; the palette is in :mod:`rprop_bench.schema`);
- vector PDF with embedded TrueType fonts and no LaTeX (:data:`RC`, used when saving).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import matplotlib as mpl
from matplotlib.figure import Figure

from rprop_bench import schema

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


def plain_text(fig: Any) -> Any:
    """Draw every text of ``fig`` that is not an axis's tick label as plain text: titles,
    labels, legends and annotations carry run data (names, problems, params), and a name
    such as ``$\\foo$`` must show as written, not be parsed as mathtext (and fail). Tick
    labels keep mathtext, which log axes' ``10^k`` labels need. Returns ``fig``."""
    from matplotlib.text import Text

    ticks: set[int] = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            ticks.add(id(axis.get_offset_text()))
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                ticks.update((id(tick.label1), id(tick.label2)))
    for text in fig.findobj(Text):
        if id(text) not in ticks:
            text.set_parse_math(False)
    return fig


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


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of ``width`` × ``height`` inches, in constrained layout, under :data:`RC`."""
    with mpl.rc_context(RC):
        return Figure(figsize=(width, height), layout="constrained")


def legend_below(fig: Figure, axes: Any, methods: Sequence[str]) -> None:
    """One legend below the figure: a line of each method's colour and style."""
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
