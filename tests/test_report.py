"""The report, rendered from a real temporary MLflow SQLite store.

The runs are the hand-chosen ones of ``conftest.standard_runs``; the numbers the tables must
show are worked out by hand in the tests.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from mlflow_runs import XSS_NAME, HandRun, finals

from rprop_bench import report, schema
from rprop_bench.cli import report_command

FIGURES = [
    "iris_loss_curves",
    "iris_step_sizes",
    "line_loss_curves",
    "line_step_sizes",
    "performance_profiles",
    "probability_of_improvement",
    "probability_of_improvement_grad_evals_to_target",
    "runtime_ecdf",
    "line_seed_example",
]
TABLES = [
    "profile_scores",
    "budget_tests",
    "expected_running_time",
    "iris_final",
    "line_final",
    "final_all_problems",
    "ranks",
    "probability_of_improvement",
    "probability_of_improvement_grad_evals_to_target",
    "line_fit",
    "runs",
]


@pytest.fixture(scope="module")
def built(standard_store, tmp_path_factory) -> report.Report:
    """The standard runs' report with PNG figures (what most tests read)."""
    out = tmp_path_factory.mktemp("report") / "exp"
    opts = report.ReportOptions(out=out, formats=("png",), progress=False)
    return report.build_report(standard_store, "exp", opts)


@pytest.fixture(scope="module")
def built_in_every_format(standard_store, tmp_path_factory) -> report.Report:
    """The same report with every figure in PDF, PNG and SVG (the full lane: PDF and SVG
    double the time of the figures)."""
    out = tmp_path_factory.mktemp("report_all_formats") / "exp"
    opts = report.ReportOptions(out=out, formats=("pdf", "png", "svg"), progress=False)
    return report.build_report(standard_store, "exp", opts)


def _report_cli(uri: str, experiment: str, out: Path) -> int:
    """``report`` on ``experiment`` into ``out``: PNG figures, no progress bars, not logged."""
    return report_command.main([
        f"tracking.uri={uri}", f"experiment={experiment}", f"report.out={out}",
        "report.formats=[png]", "report.progress=false", "report.log_to_mlflow=false",
    ])  # fmt: skip


def _table(built: report.Report, name: str) -> pd.DataFrame:
    return pd.read_csv(built.out / "tables" / f"{name}.csv")


def _row(frame: pd.DataFrame, method: str) -> pd.Series:
    rows = frame[frame["method"] == method]
    assert len(rows) == 1, f"expected one row for {method}"
    return rows.iloc[0]


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for key, value in attrs:
            if key in ("src", "href", "srcset", "data", "action") and value is not None:
                self.refs.append((tag, key, value))


# ------------------------------------------------------------------ files


@pytest.mark.slow
def test_every_promised_file_exists_and_is_valid(built_in_every_format):
    from pypdf import PdfReader

    built = built_in_every_format
    assert built.index_html == built.out / "index.html"
    assert built.markdown.read_text(encoding="utf-8").startswith("# rprop-bench report: exp")
    for name in FIGURES:
        pdf = built.out / "figures" / f"{name}.pdf"
        assert pdf.read_bytes().startswith(b"%PDF"), name
        assert len(PdfReader(str(pdf)).pages) == 1
        image = matplotlib.image.imread(built.out / "figures" / f"{name}.png")
        assert image.ndim == 3
        assert min(image.shape[:2]) > 100
        root = ET.parse(built.out / "figures" / f"{name}.svg").getroot()
        assert root.tag.endswith("svg")
    for name in TABLES:
        assert len(_table(built, name)) > 0, name
        tex = (built.out / "tables" / f"{name}.tex").read_text(encoding="utf-8")
        assert "\\toprule" in tex
        assert "\\bottomrule" in tex
    md_links = re.findall(r"\]\((figures/[^)]+)\)", built.markdown.read_text(encoding="utf-8"))
    assert len(md_links) == len(FIGURES)
    assert all((built.out / link).is_file() for link in md_links)
    written = {p.name for p in built.figures} | {p.name for p in built.tables}
    assert {f"{n}.pdf" for n in FIGURES} <= written
    assert {f"{n}.tex" for n in TABLES} <= written


def test_html_is_self_contained_and_parses(built):
    text = built.index_html.read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(text)
    parser.close()
    assert parser.tags.count("img") == len(FIGURES)
    for tag, key, value in parser.refs:
        if tag == "img":
            assert value.startswith("data:image/png;base64,"), value[:40]
        else:
            assert value.startswith("#"), (tag, key, value)
    lowered = text.lower()
    for scheme in ("http://", "https://", "file:", "//cdn"):
        assert f'="{scheme}' not in lowered
    assert "@import" not in lowered
    assert "url(" not in lowered


def test_run_names_from_the_store_are_escaped(built):
    text = built.index_html.read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(text)
    assert "script" not in parser.tags  # the injected tag never becomes an element
    assert "<script>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    md = built.markdown.read_text(encoding="utf-8")
    assert "<script>" not in md


# ------------------------------------------------------------------ numbers


def test_final_table_matches_hand_computed_values(built):
    iris = _table(built, "iris_final")
    irprop = _row(iris, "irprop+")
    # test losses 0.1, 0.2, 0.4: median 0.2; q25 = 0.1 + 0.5*0.1, q75 = 0.2 + 0.5*0.2
    assert irprop["test_loss_median"] == pytest.approx(0.2)
    assert irprop["test_loss_q25"] == pytest.approx(0.15)
    assert irprop["test_loss_q75"] == pytest.approx(0.3)
    assert 0.1 <= irprop["test_loss_ci_low"] <= 0.2 <= irprop["test_loss_ci_high"] <= 0.4
    # accuracies 0.90, 0.92, 0.94; epochs to target 3, 4, 5; seconds 0.03, 0.04, 0.05
    assert irprop["test_accuracy_median"] == pytest.approx(0.92)
    assert irprop["epochs_to_target_median"] == pytest.approx(4.0)
    assert irprop["epochs_to_target_q25"] == pytest.approx(3.5)
    assert irprop["seconds_to_target_median"] == pytest.approx(0.04)
    assert (irprop["n_runs"], irprop["n_failed"], irprop["n_reached_target"]) == (3, 0, 3)
    adam = _row(iris, "adam")
    # finished adam runs: 0.3, 0.5; the third FAILED and is counted, not averaged
    assert adam["test_loss_median"] == pytest.approx(0.4)
    assert adam["test_loss_q25"] == pytest.approx(0.35)
    assert adam["test_accuracy_median"] == pytest.approx(0.805)
    assert (adam["n_runs"], adam["n_failed"], adam["n_reached_target"]) == (3, 1, 0)
    assert math.isnan(adam["epochs_to_target_median"])
    line = _table(built, "line_final")
    assert _row(line, "adam")["test_loss_median"] == pytest.approx(0.05)
    assert _row(line, "irprop+")["test_r2_median"] == pytest.approx(0.99)
    combined = _table(built, "final_all_problems")
    assert len(combined) == 4


def test_best_per_problem_is_bold_everywhere(built):
    html_text = built.index_html.read_text(encoding="utf-8")
    assert "<b>0.2 [0.15, 0.3]</b>" in html_text  # irprop+ has the lowest iris test loss
    assert "<b>0.4 [0.35, 0.45]</b>" not in html_text
    tex = (built.out / "tables" / "iris_final.tex").read_text(encoding="utf-8")
    assert "\\textbf{0.2 [0.15, 0.3]}" in tex
    assert "\\textbf{0.92 [0.91, 0.93]}" in tex  # highest accuracy
    md = built.markdown.read_text(encoding="utf-8")
    assert "**0.2 [0.15, 0.3]**" in md


def test_ranks_and_friedman_by_hand(built):
    ranks = _table(built, "ranks")
    assert set(ranks["criterion"]) == {
        "final training loss", "final test loss", "evaluations to target"}  # fmt: skip
    for criterion in ("final test loss", "evaluations to target"):
        r = ranks[ranks["criterion"] == criterion]
        # irprop+ is better on both problems (lower loss; adam never reaches the target):
        # ranks (1, 1) and (2, 2); chi2 = 12*2/(2*3) * (1 + 4 - 2*9/4) = 2,
        # p = P(chi2_1 >= 2) = 0.1573
        assert _row(r, "irprop+")["average_rank"] == 1.0
        assert _row(r, "adam")["average_rank"] == 2.0
        assert r["friedman_chi2"].iloc[0] == pytest.approx(2.0)
        assert r["friedman_p"].iloc[0] == pytest.approx(0.157299, abs=1e-5)
        # two problems that agree: Iman–Davenport's F is infinite, and the gate (Friedman's
        # p = 0.157) does not open: no post-hoc test, no critical-difference diagram
        assert math.isinf(r["iman_davenport_f"].iloc[0])
        assert not r["omnibus_rejects"].any()
    assert not list((built.out / "figures").glob("cd_diagram_*"))
    text = built.markdown.read_text(encoding="utf-8")
    assert "final test loss: no difference detected (Friedman p = 0.1573" in text


def test_probability_of_improvement_by_hand(built):
    p = _table(built, "probability_of_improvement").set_index(["method", "versus"])
    # iris: irprop+ {0.1, 0.2, 0.4} vs adam {0.3, 0.5, failed}: 3 + 3 + 2 wins of 9 pairs;
    # line: every irprop+ loss beats every adam loss. Mean over problems: (8/9 + 1) / 2.
    assert p.loc[("irprop+", "adam"), "p_improvement"] == pytest.approx((8 / 9 + 1) / 2)
    assert p.loc[("adam", "irprop+"), "p_improvement"] == pytest.approx((1 / 9 + 0) / 2)
    assert p.loc[("adam", "adam"), "p_improvement"] == 0.5
    # the stratified bootstrap's interval holds the estimate; on line irprop+ always wins,
    # so its P there is 1 in every resample: the interval's low end is at least 1/2
    low, high = p.loc[("irprop+", "adam"), ["ci_low", "ci_high"]]
    assert 0.5 <= low <= (8 / 9 + 1) / 2 <= high <= 1.0
    e = _table(built, "probability_of_improvement_grad_evals_to_target").set_index(
        ["method", "versus"]
    )
    # every irprop+ run reaches the target, no adam run does (inf; the failed one NaN)
    assert e.loc[("irprop+", "adam"), "p_improvement"] == 1.0


def test_line_seed_example_table(built):
    fit = _table(built, "line_fit")
    irprop = _row(fit, "irprop+")
    assert irprop["w_median"] == pytest.approx(2.01)  # w = 2.00, 2.01, 2.02
    assert irprop["b_median"] == pytest.approx(2.99)  # b = 3.00, 2.99, 2.98
    assert irprop["abs_w_error_median"] == pytest.approx(0.01)
    assert _row(fit, "adam")["b_median"] == pytest.approx(2.81)


def test_failed_run_is_shown_as_failed(built):
    runs = _table(built, "runs")
    assert len(runs) == 12  # nothing dropped
    bad = runs[runs["run_name"] == XSS_NAME].iloc[0]
    assert bool(bad["failed"])
    assert bad["status"] == "FAILED"
    assert "nan" in bad["failure_reason"]
    assert runs["failed"].sum() == 1
    text = built.index_html.read_text(encoding="utf-8")
    assert "loss became nan at epoch 3" in text
    assert built.n_failed == 1


def test_report_is_logged_under_the_sweep_parent(built, standard_store):
    from mlflow import MlflowClient

    assert built.logged_to_run is not None
    client = MlflowClient(standard_store)
    parent = client.get_run(built.logged_to_run)
    assert parent.data.tags[schema.TAG_RUN_KIND] == schema.RUN_KIND_SWEEP
    names = {a.path for a in client.list_artifacts(built.logged_to_run, schema.ARTIFACT_REPORT_DIR)}
    assert f"{schema.ARTIFACT_REPORT_DIR}/index.html" in names
    assert f"{schema.ARTIFACT_REPORT_DIR}/figures" in names


# ------------------------------------------------------------------ bad input


def _run_cli(capsys, *overrides: str) -> tuple[int, str]:
    capsys.readouterr()  # drop what setting up the store printed
    code = report_command.main(list(overrides))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.slow
def test_cli_writes_the_report(capsys, standard_store, tmp_path):
    code = report_command.main(
        [
            f"tracking.uri={standard_store}",
            "experiment=exp",
            f"report.out={tmp_path / 'r'}",
            "report.formats=[png]",
            "report.progress=false",
            "report.log_to_mlflow=false",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "12 runs (1 failed)" in out
    assert (tmp_path / "r" / "index.html").is_file()
    assert not list((tmp_path / "r" / "figures").glob("*.pdf"))


@pytest.mark.slow
def test_a_run_the_harness_did_not_write_is_left_out_in_one_line(capsys, store_factory, tmp_path):
    from mlflow import MlflowClient
    from mlflow_runs import standard_runs

    uri = store_factory(standard_runs(), experiment="with_foreign")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("with_foreign")
    foreign = client.create_run(experiment.experiment_id, run_name="by hand")  # no run kind
    client.log_metric(foreign.info.run_id, "train_loss", 0.5)
    client.set_terminated(foreign.info.run_id)
    code = _report_cli(uri, "with_foreign", tmp_path / "r")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "12 runs (1 failed)" in captured.out  # the harness's runs, the foreign one left out
    line = (
        f"Left out: 1 run that the harness did not write (no {schema.TAG_RUN_KIND} tag), "
        f"e.g. run {foreign.info.run_id}"
    )
    assert line in captured.out
    assert line in (tmp_path / "r" / "report.md").read_text()
    runs_csv = (tmp_path / "r" / "tables" / "runs.csv").read_text()
    assert foreign.info.run_id not in runs_csv


def test_cli_nonexistent_store(capsys, tmp_path):
    code, err = _run_cli(capsys, f"tracking.uri=sqlite:///{tmp_path / 'nope.db'}")
    assert code != 0
    assert "tracking store not found" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "nope.db").exists()  # not created by accident


def test_cli_experiment_without_runs(capsys, tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    MlflowClient(uri).create_experiment("empty", artifact_location=(tmp_path / "a").as_uri())
    code, err = _run_cli(capsys, f"tracking.uri={uri}", "experiment=empty")
    assert code != 0
    assert err == f"error: experiment 'empty' has no training runs in {uri}"
    code, err = _run_cli(capsys, f"tracking.uri={uri}", "experiment=absent")
    assert code != 0
    assert "no experiment named 'absent'" in err
    assert "empty" in err  # lists the experiments that exist


def test_cli_runs_lacking_a_metric(capsys, store_factory, tmp_path):
    runs = [
        HandRun("iris", "adam", "adam", 0, finals(0.3, acc=0.9), [1.0, 0.5]),
        HandRun("iris", "adam", "adam", 1, {schema.FINAL_TRAIN_LOSS: 0.4}, [1.0, 0.4]),
    ]
    uri = store_factory(runs, experiment="lacking")
    code, err = _run_cli(
        capsys, f"tracking.uri={uri}", "experiment=lacking", f"report.out={tmp_path / 'r'}"
    )
    assert code != 0
    assert "1 of 2 finished runs lack metric 'test_loss'" in err
    assert "adam s1 · iris" in err
    assert len(err.splitlines()) == 1


def test_cli_runs_lacking_accuracy(capsys, store_factory, tmp_path):
    runs = [HandRun("iris", "adam", "adam", 0, finals(0.3), [1.0, 0.5])]
    uri = store_factory(runs, experiment="noacc")
    code, err = _run_cli(
        capsys, f"tracking.uri={uri}", "experiment=noacc", f"report.out={tmp_path / 'r'}"
    )
    assert code != 0
    assert "problem 'iris'" in err
    assert "'test_accuracy'" in err


def test_cli_bad_override_and_format(capsys, standard_store):
    code, err = _run_cli(capsys, "no_such_key=1")
    assert code != 0
    assert "no_such_key" in err
    code, err = _run_cli(
        capsys, f"tracking.uri={standard_store}", "experiment=exp", "report.formats=[gif]"
    )
    assert code != 0
    assert "report.formats" in err


def test_report_options_validate():
    with pytest.raises(Exception, match="confidence"):
        report.ReportOptions(out=Path("x"), confidence=1.0)


def test_cli_runs_lacking_a_loss_history(capsys, store_factory, tmp_path):
    runs = [
        HandRun("iris", "adam", "adam", 0, finals(0.3, acc=0.9), [1.0, 0.5]),
        HandRun("iris", "adam", "adam", 1, finals(0.3, acc=0.9), []),
    ]
    uri = store_factory(runs, experiment="nohistory")
    code, err = _run_cli(
        capsys,
        f"tracking.uri={uri}",
        "experiment=nohistory",
        f"report.out={tmp_path / 'r'}",
        "report.progress=false",
    )
    assert code != 0
    assert err.startswith("error: 1 of 2 finished runs lack metric history")
    assert "'train_loss'" in err


def test_cli_help_lists_the_keys(capsys):
    assert report_command.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "experiment=NAME" in out
    assert "label_params" in out


# ------------------------------------------------------------------ LaTeX


def _every_table_tex(built: report.Report) -> list[Path]:
    return sorted((built.out / "tables").glob("*.tex"))


def test_every_latex_table_is_plain_ascii(built):
    for tex in _every_table_tex(built):
        text = tex.read_text(encoding="utf-8")
        assert text.isascii(), (tex.name, sorted({c for c in text if not c.isascii()}))


def _non_ascii_of_the_report_sources() -> str:
    """Every non-ASCII character in the package's sources: a superset of what a report's
    own text (captions, headers, formatted numbers) can hold."""
    sources = Path(report.__file__).parent.rglob("*.py")
    found = {c for p in sources for c in p.read_text(encoding="utf-8") if not c.isascii()}
    return "".join(sorted(found))


def test_the_escape_covers_every_character_the_report_writes():
    from rprop_bench.document import latex_escape

    for c in _non_ascii_of_the_report_sources():  # each has a LaTeX spelling of its own
        assert latex_escape(c).isascii()
        assert latex_escape(c) not in ("", "?"), c
    # a name from the store that no mapping names: its ASCII letters, or "?"
    assert latex_escape("ñ漢") == "n?"
    assert latex_escape("ñ") == "n"


def test_every_latex_table_compiles_under_pdflatex_with_booktabs(built, tmp_path):
    from rprop_bench.document import latex_escape

    if shutil.which("pdflatex") is None:
        if os.environ.get("RPROP_BENCH_TEST_PDFLATEX") == "required":  # CI installed it
            pytest.fail("pdflatex is required here ($RPROP_BENCH_TEST_PDFLATEX) but missing")
        pytest.skip("pdflatex is not installed (.ci/run installs it)")

    tables = _every_table_tex(built)
    assert len(tables) >= len(TABLES)
    every = _non_ascii_of_the_report_sources()
    body = "\n".join(f"\\input{{{t.as_posix()}}}\n\\clearpage" for t in tables)
    (tmp_path / "all.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        f"{body}\n{latex_escape(every)}\n\\end{{document}}\n",
        encoding="ascii",
    )
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "all.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "all.pdf").read_bytes().startswith(b"%PDF")


def test_the_report_opens_with_its_reproducibility_record(built):
    import platform

    import torch

    header = built.markdown.read_text(encoding="utf-8").split("## ", 1)[0]
    runs = _table(built, "runs")
    assert f"Code: the runs were made at commit 0123456789ab ({len(runs)} runs)" in header
    assert f"Software: Python {platform.python_version()}, rprop-bench " in header
    assert f"torch {torch.__version__}" in header
    assert "Machine: " in header
    assert " logical cores" in header
    assert "Command: (library call" in header
    # the tidy per-run table: the resolved config, the run key, the commit, every final
    for column in ("param.optimizer.lr", "run_key", "git_commit", "test_loss",
                   "final_train_loss", "epochs_to_target", "test_accuracy"):  # fmt: skip
        assert column in runs, column
    assert set(runs["run_key"]) >= {"key-iris-irprop_plus-irprop+-0", "key-line-adam-adam-1"}


@pytest.mark.slow
def test_the_report_command_records_itself(capsys, standard_store, tmp_path):
    out = tmp_path / "r"
    code = report_command.main([f"tracking.uri={standard_store}", "tracking.experiment=exp",
                                f"report.out={out}", "report.formats=[png]",
                                "report.progress=false", "report.log_to_mlflow=false"])  # fmt: skip
    assert code == 0
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "Command: python -m rprop_bench report tracking.uri=" in text
    assert "report.formats=[png]" in text


def test_profiles_are_of_costs_to_the_target_with_algoperfs_score(built):
    scores = _table(built, "profile_scores")
    assert set(scores["cost"]) == {"gradient evaluations to target", "seconds to target"}
    evals = scores[scores["cost"] == "gradient evaluations to target"].set_index("method")
    # irprop+ reaches the target on both problems, adam on neither: 1 and 0
    assert evals.loc["irprop+", "profile_score"] == 1.0
    assert evals.loc["adam", "profile_score"] == 0.0
    md = built.markdown.read_text(encoding="utf-8")
    assert "final test loss, the seconds" not in md  # no profile of a loss
    assert "Runs from before evaluation counting count their epochs." in md


def test_tests_at_fixed_budgets_by_hand(built):
    tests = _table(built, "budget_tests")
    # two methods, two problems, three budgets (0.5, 1.5 and 5 epochs): one pair each, all
    # with the control irprop+, except at 0.5 epochs, before the first logged epoch
    assert len(tests) == 2 * 2
    assert set(tests["budget_share"]) == {0.3, 1.0}
    assert set(tests["test"]) == {"wilcoxon"}  # seeds pair, the failed adam run's (inf) too
    full = tests[(tests["problem"] == "line") & (tests["budget_share"] == 1.0)].iloc[0]
    # line: seeds 0-2 of both methods finished, paired by seed; train losses at epoch 5:
    # adam 0.05, 0.04, 0.06 against irprop+ 0.01, 0.02, 0.03: every difference positive
    assert full["test"] == "wilcoxon"
    assert full["p"] == pytest.approx(0.25)  # the smallest two-sided p with 3 pairs
    assert full["budget_grad_evals"] == 5.0  # no grad_evals logged: epochs
    md = built.markdown.read_text(encoding="utf-8")
    assert "With 3 seeds the signed-rank test cannot give p below 0.25" in md
    # Holm over the 3 budgets of a problem: each p times at most 3, capped at 1
    assert (tests["p_holm_control"] >= tests["p"]).all()
    assert (tests["p_holm_control"] <= 1.0).all()


def test_expected_running_time_and_the_runtime_ecdf_by_hand(built):
    ert = _table(built, "expected_running_time").set_index(["problem", "method"])
    # iris: irprop+ reaches the target in 3, 4, 5 epochs (no grad_evals logged: epochs):
    # ERT = (3 + 4 + 5) / 3; adam never does
    assert ert.loc[("iris", "irprop+"), "ert"] == pytest.approx(4.0)
    assert ert.loc[("iris", "irprop+"), "reached"] == 3
    assert math.isinf(ert.loc[("iris", "adam"), "ert"])
    assert ert.loc[("line", "irprop+"), "ert"] == pytest.approx(11.0)  # 10, 11, 12


@pytest.mark.slow
def test_cli_unknown_control_is_one_line(capsys, standard_store, tmp_path):
    code = report_command.main([f"tracking.uri={standard_store}", "tracking.experiment=exp",
                                f"report.out={tmp_path / 'r'}", "report.control=lbfgs",
                                "report.progress=false", "report.log_to_mlflow=false"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (
        "error: report.control='lbfgs' is not a method of these runs; valid: adam, irprop+"
    )


@pytest.mark.slow
def test_unbalanced_problems_and_repeated_runs_are_left_out_and_named(
    capsys, store_factory, tmp_path
):
    """A problem that not every optimizer ran is left out of the statistics across problems
    (not ranked as ∞), and a config trained twice counts once (its newest FINISHED run)."""
    import time

    from mlflow import MlflowClient
    from mlflow_runs import HandRun, finals, standard_runs

    wine = [
        HandRun("wine", "irprop_plus", "irprop+", s, finals(0.1 + s / 10, acc=0.9), [1.0, 0.5])
        for s in range(3)
    ]
    uri = store_factory([*standard_runs(), *wine], experiment="unbalanced")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("unbalanced")
    (first,) = client.search_runs(
        [experiment.experiment_id],
        f"tags.`{schema.TAG_RUN_KEY}` = 'key-iris-irprop_plus-irprop+-0'",
    )
    time.sleep(0.05)  # the repeat starts later: it is the newer run of the key
    tags = {k: v for k, v in first.data.tags.items() if k != "mlflow.runName"}
    repeat = client.create_run(experiment.experiment_id, run_name="again", tags=tags)
    for key, value in first.data.metrics.items():
        client.log_metric(repeat.info.run_id, key, value, step=0)
    for epoch, loss in enumerate([1.0, 0.5, 0.3, 0.2, 0.1], start=1):
        client.log_metric(repeat.info.run_id, schema.TRAIN_LOSS, loss, step=epoch)
    client.set_terminated(repeat.info.run_id)
    code = _report_cli(uri, "unbalanced", tmp_path / "r")
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "report on 15 runs (1 failed)" in out.out  # 12 + 3 wine, the older repeat left out
    repeated = (
        "Left out: 1 run repeating the config (run key) of another run, which counts once "
        f"(by its newest FINISHED run, else its newest), e.g. run {first.info.run_id}"
    )
    assert repeated in out.out
    md = (tmp_path / "r" / "report.md").read_text()
    assert repeated in md
    runs_csv = (tmp_path / "r" / "tables" / "runs.csv").read_text()
    assert first.info.run_id not in runs_csv
    assert repeat.info.run_id in runs_csv
    assert "Left out of the comparisons across problems" in md
    assert "wine (not run by adam)" in md
    assert "Average ranks over 2 problems" in md  # iris and line, which both ran
    ranks = pd.read_csv(tmp_path / "r" / "tables" / "ranks.csv")
    assert set(ranks["method"]) == {"adam", "irprop+"}
    assert np.isfinite(ranks["average_rank"]).all()
