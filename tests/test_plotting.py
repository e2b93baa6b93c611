"""Figures: fixed colours per optimizer, sizes, and no file I/O."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from rprop_bench import plotting
from rprop_bench.plot_style import RC

KNOWN = [
    "irprop+",
    "irprop-",
    "rprop+",
    "rprop-",
    "torch_rprop",
    "sgd",
    "momentum",
    "adam",
    "adamw",
    "rmsprop",
    "lbfgs",
]


def test_known_optimizers_have_distinct_fixed_colours():
    colours = [plotting.method_color(m) for m in KNOWN]
    assert len(set(colours)) == len(KNOWN)
    assert plotting.method_color("irprop+") == "#332288"  # Tol muted indigo, in every report


def test_unknown_and_suffixed_names_are_stable():
    assert plotting.method_color("my_opt") == plotting.method_color("my_opt")
    assert plotting.method_color("adam batch_size=8") == plotting.method_color("adam")
    assert plotting.method_linestyle("adam batch_size=full") == "-"
    assert plotting.method_linestyle("adam batch_size=8") != "-"
    assert plotting.method_linestyle("irprop+") == "-"
    assert plotting.method_linestyle("sgd") == "--"


def _band(methods):
    steps = np.arange(1, 6)
    return pd.DataFrame(
        {
            "method": np.repeat(methods, len(steps)),
            "step": np.tile(steps, len(methods)),
            "median": np.tile(1.0 / steps, len(methods)),
            "q25": np.tile(0.8 / steps, len(methods)),
            "q75": np.tile(1.2 / steps, len(methods)),
            "time_median": np.tile(0.1 * steps, len(methods)),
        }
    )


def test_loss_curves_use_the_method_colours_and_two_column_width():
    fig = plotting.loss_curves({"training loss": _band(["sgd", "irprop+"])})
    assert fig.get_size_inches()[0] == plotting.TWO_COLUMN
    ax = fig.axes[0]
    colours = {line.get_label(): to_hex(line.get_color()) for line in ax.get_lines()}
    assert colours == {
        "sgd": plotting.method_color("sgd").lower(),
        "irprop+": plotting.method_color("irprop+").lower(),
    }
    assert ax.get_yscale() == "log"


def test_one_column_figures():
    matrix = pd.DataFrame([[0.5, 0.8], [0.2, 0.5]], index=["a", "b"], columns=["a", "b"])
    assert plotting.improvement_heatmap(matrix).get_size_inches()[0] == plotting.ONE_COLUMN
    cd = plotting.cd_diagram([1.2, 1.8], ["a", "b"], 0.6, [(0, 1)])
    assert cd.get_size_inches()[0] == plotting.ONE_COLUMN


LEGEND_CASES = [
    ["sgd", "irprop+"],
    [f"{m} batch_size={b}" for m in KNOWN[:5] for b in ("8", "32", "full")],
]


@pytest.mark.parametrize("methods", LEGEND_CASES, ids=["short", "fifteen_long"])
def test_performance_profile_legend_stays_inside_the_figure(methods):
    taus = np.geomspace(1.0, 2.0**30, 20)
    rho = np.tile(np.linspace(0.0, 1.0, 20)[:, None], (1, len(methods)))
    fig = plotting.performance_profiles({"final test loss": (taus, rho)}, methods)
    fig.canvas.draw()
    inside = fig.bbox.padded(1.0)  # a pixel of slack for rounding
    (legend,) = fig.legends
    box = legend.get_window_extent()
    assert inside.x0 <= box.x0
    assert box.x1 <= inside.x1
    assert fig.axes[0].get_xlim() == (1.0, 2.0**30)


@pytest.mark.parametrize("k", [3, 8, 15, 24])
def test_the_cd_diagram_keeps_every_artist_inside_the_figure_and_rank_numbers_apart(k):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.lines import Line2D
    from matplotlib.text import Text

    # the minibatch study's labels: 15 of them, long
    methods = [f"irprop{'+-'[i % 2]} batch_size={2 ** (i % 8)} lr={0.001 * (i + 1):g}"
               for i in range(k)]  # fmt: skip
    ranks = np.linspace(1.2, k - 0.3, k)
    fig = plotting.cd_diagram(ranks, methods, 2.5, [(0, 1, 2)], title="average rank: a criterion")
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    fig.set_dpi(RC["savefig.dpi"])  # as the PNG is saved
    renderer = canvas.get_renderer()
    fig.draw(renderer)
    bounds = fig.bbox
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
    assert len(texts) >= k
    drawn = fig.findobj(lambda a: isinstance(a, Text | Line2D) and a.get_visible())
    for artist in drawn:  # the axes is off: its lines and texts are all that is drawn
        if isinstance(artist, Text) and not artist.get_text():
            continue
        box = artist.get_window_extent(renderer)
        if box.width == 0 and box.height == 0:
            continue
        inside = (bounds.x0 - 1 <= box.x0, box.x1 <= bounds.x1 + 1,
                  bounds.y0 - 1 <= box.y0, box.y1 <= bounds.y1 + 1)  # fmt: skip
        assert all(inside), (artist, box, bounds)
    numbers = sorted((t.get_window_extent(renderer) for t in texts if t.get_text().isdigit()),
                     key=lambda b: b.x0)  # fmt: skip
    assert all(a.x1 < b.x0 for a, b in itertools.pairwise(numbers))
    assert fig.get_size_inches()[0] <= plotting.TWO_COLUMN + 1e-9
