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


def _contrast_with_white(colour: str) -> float:
    """WCAG 2.1's contrast ratio of an sRGB colour against white: (1 + 0.05) / (L + 0.05)."""
    channels = [int(colour.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return 1.05 / (luminance + 0.05)


@pytest.mark.parametrize(
    ("colour", "ratio"), [("#FFFFFF", 1.0), ("#000000", 21.0), ("#777777", 4.48)]
)
def test_the_contrast_ratio_is_wcags(colour, ratio):
    assert _contrast_with_white(colour) == pytest.approx(ratio, abs=0.01)


def test_every_optimizer_colour_stands_out_on_a_white_page():
    """At least 3:1 against white (WCAG 2.1, non-text contrast): the pale sky blue that
    iRprop- had (1.8:1) and its bands were hard to see."""
    from rprop_bench import schema

    for colour in (*schema.OPTIMIZER_COLORS.values(), *schema.FALLBACK_COLORS):
        assert _contrast_with_white(colour) >= 3.0, colour


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.0, 0.5], (True, 0.0)),  # all positive: log, no zeros
        ([1.0, 0.1, 0.0], (True, 0.01)),  # a zero: drawn a decade below the smallest positive
        ([np.nan, 3e-4, 0.0], (True, 1e-5)),
        ([-1.0, 1.0], (False, 0.0)),  # a negative value: linear
        ([0.0, 0.0], (False, 0.0)),  # nothing positive: linear
        ([np.nan], (False, 0.0)),
    ],
)
def test_log_axis_floor(values, expected):
    log, floor = plotting.log_axis_floor(np.array(values))
    assert log == expected[0]
    assert floor == pytest.approx(expected[1], rel=1e-12)


def test_a_loss_of_exactly_zero_keeps_the_log_axis_and_is_marked():
    band = _band(["sgd", "irprop+"])
    band.loc[band["step"] == 5, ["median", "q25", "q75"]] = 0.0  # e.g. wine, breast_cancer
    fig = plotting.loss_curves({"training loss": band})
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    floor = 0.01  # a decade below the smallest positive value, 0.8 / 4 = 0.2 -> 0.01
    (curve,) = [line for line in ax.get_lines() if line.get_label() == "sgd"]
    assert curve.get_ydata()[-1] == pytest.approx(floor)  # drawn, not dropped by the log axis
    assert [t.get_text() for t in ax.texts] == ["0 (drawn at 1e-02)"]


def test_the_seed_example_shows_the_truth_over_the_fits_and_counts_identical_seeds():
    fits = pd.DataFrame(
        {"method": ["irprop-"] * 3 + ["adam"] * 2, "w": [2.0, 2.0, 2.0, 1.9, 1.95],
         "b": [3.0, 3.0, 3.0, 2.8, 2.9]}
    )  # fmt: skip
    data = pd.DataFrame({"x": np.linspace(-2, 2, 9), "y": 2 * np.linspace(-2, 2, 9) + 3})
    fig = plotting.line_example(data, fits)
    ax_d, ax_p = fig.axes[:2]
    truth = next(line for line in ax_d.get_lines() if line.get_label().startswith("truth"))
    fitted = [line for line in ax_d.get_lines() if not line.get_label().startswith("truth")]
    assert all(truth.get_zorder() > line.get_zorder() for line in fitted)
    labels = [c.get_label() for c in ax_p.collections]
    assert "irprop- (3 runs at 1 point)" in labels  # three identical seeds: one marker, said
    assert [t.get_text() for t in ax_p.texts] == ["×3"]
    assert all(not c.get_clip_on() for c in ax_p.collections)  # no marker cut at a corner
    assert ax_p.margins()[0] >= 0.1


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
