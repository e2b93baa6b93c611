"""The report's sections are a list: a section added to it shows in the report, in its place.

The store is the hand-chosen one of ``conftest.standard_runs`` (two problems, two optimizers,
12 runs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rprop_bench import report
from rprop_bench.document import DocumentWriter
from rprop_bench.report_sections import problem


@pytest.mark.slow
def test_a_registered_section_shows_in_the_report_and_leaves_no_trace(
    standard_store, tmp_path, monkeypatch
):
    seen: list[report.ReportContext] = []

    def throwaway(ctx: report.ReportContext, w: DocumentWriter) -> None:
        seen.append(ctx)
        w.heading(2, "Throwaway section")
        w.para(f"{len(ctx.runs)} runs on {len(ctx.problems)} problems")

    def throwaway_part(ctx: report.ReportContext, name: str, w: DocumentWriter) -> None:
        w.para(f"throwaway part of {name}")

    sections, parts = list(report.SECTIONS), list(problem.PARTS)
    out = tmp_path / "r"
    options = report.ReportOptions(out=out, formats=("png",), progress=False, log_to_mlflow=False)
    with monkeypatch.context() as m:
        m.setattr(report, "SECTIONS", [*report.SECTIONS, throwaway])
        m.setattr(problem, "PARTS", [*problem.PARTS, throwaway_part])
        built = report.build_report(standard_store, "exp", options)
    assert sections == report.SECTIONS  # registered for that build only
    assert throwaway not in report.SECTIONS
    assert parts == problem.PARTS

    (ctx,) = seen
    assert (ctx.problems, ctx.methods, ctx.out) == (["iris", "line"], ["adam", "irprop+"], out)
    md = built.markdown.read_text(encoding="utf-8")
    assert "## Throwaway section\n\n12 runs on 2 problems\n" in md
    assert md.index("## All runs") < md.index("## Throwaway section")  # last, as registered
    iris_part = md.index("throwaway part of iris")
    assert md.index("### iris: final results") < iris_part < md.index("## Problem: line")
    assert md.index("## Problem: line") < md.index("throwaway part of line")
    html = built.index_html.read_text(encoding="utf-8")
    assert '<h2 id="throwaway-section">Throwaway section</h2>\n<p>12 runs on 2 problems</p>' in html
    assert '<a href="#throwaway-section">Throwaway section</a>' in html  # in the contents
    assert "<p>throwaway part of iris</p>" in html


def test_a_time_to_target_from_a_minority_of_runs_is_never_bold():
    from rprop_bench.comparison import Rope
    from rprop_bench.report_sections.finals import _bold_best

    # adamw reached the target in 1 of 10 runs, fast; lbfgs in 9 of 10, slower: lbfgs wins
    numbers = pd.DataFrame({
        "method": ["adamw", "lbfgs", "sgd"], "n_runs": [10, 10, 10],
        "n_reached_target": [1, 9, 0], "test_loss_median": [0.5, 0.4, 0.6],
        "test_accuracy_median": [0.5, 0.6, 0.4],
        "epochs_to_target_median": [5.0, 13.0, np.nan],
        "seconds_to_target_median": [0.1, 0.3, np.nan],
    })  # fmt: skip
    display = pd.DataFrame("", index=numbers.index, columns=[
        "test loss median [IQR]", "accuracy median [IQR]", "epochs to target",
        "seconds to target"])  # fmt: skip
    bold = _bold_best(numbers, display, "test_accuracy", "accuracy", Rope())
    assert bold["epochs to target"].tolist() == [False, True, False]
    assert bold["seconds to target"].tolist() == [False, True, False]
    assert bold["test loss median [IQR]"].tolist() == [False, True, False]
