"""Figures: fixed colours per optimizer, sizes, and no file I/O."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from rprop_bench import plotting

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
