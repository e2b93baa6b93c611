# ruff: noqa: E501 - a table of command lines and the messages they must give, one per line
"""Hostile input, as an adversarial user types it: every case is one line on stderr, exit 2,
no training and an untouched directory (no store, no Hydra outputs).

The table is the config fuzz that found tracebacks, multi-line Hydra errors, data refused
only after training, and values accepted that cannot work. The CLI runs in this process
(:func:`rprop_bench.cli.main`), as ``python -m rprop_bench`` does, to keep the table fast.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lanes import fast_first

from rprop_bench.cli import main

#: (command line, a fragment of the one error line it must give).
HOSTILE = [
    # tracebacks before (exit 1)
    ("optimizer.foreach=maybe", "optimizer.foreach='maybe' has the wrong type: must be true, false or null"),
    ("optimizer.maximize=yes", "optimizer.maximize='yes' has the wrong type: must be true or false"),
    ("+optimizer.fused=maybe", "optimizer.fused='maybe' has the wrong type"),
    ("+optimizer.foo=1", "optimizer.foo: rprop_bench.optim.Rprop takes no such argument; its arguments: lr, etas"),
    ("optimizer=adam +optimizer.foo=1", "optimizer.foo: torch.optim.Adam takes no such argument"),
    ("~train.epochs", "~train.epochs: train.epochs cannot be deleted"),
    ("~optimizer", "optimizer: the config has no optimizer group"),
    ("train.seed=1180591620717411303424", "train.seed=1180591620717411303424 is out of range: must be in [0, 4294967295]"),
    ("train.device=mps", "train.device='mps' is out of range: MPS is not available here"),
    ("tracking.uri=postgresql://u:p@127.0.0.1:1/db", "postgresql://u:***@127.0.0.1:1/db"),
    ("tracking.uri=mysql://u:p@127.0.0.1:1/db", "tracking.uri=mysql://u:***@127.0.0.1:1/db: the database driver is not installed"),
    ("tracking.uri=foo://x/y", "'foo' is not a tracking store; valid schemes: sqlite, http"),
    ("sweep hydra/launcher=joblib hydra.launcher.n_jobs=0", "hydra.launcher.n_jobs=0 is out of range"),
    ("hydra.run.dir=/proc/x", "cannot write Hydra's outputs: hydra.run.dir=/proc/x"),
    ("sweep hydra.sweep.dir=/proc/x", "cannot write Hydra's outputs: hydra.sweep.dir=/proc/x"),
    ("model=mlp model.hidden=[100000,100000]", "model.hidden=[100000, 100000]: the model has 10,000,400,001 parameters"),
    # multi-line Hydra errors before
    ("train.num_threads=100000", "train.num_threads=100000 is out of range: must be in [1, "),
    ("problem=iris problem.data.val_fraction=0.5 problem.data.test_fraction=0.49",
     "problem.data: the data of problem 'iris' cannot be built (The train_size = 1"),
    ("problem=moons problem.data.options.n_samples=-1", "The 'n_samples' parameter of make_moons must be an int"),
    ("problem=moons problem.data.options.n_samples=abc", "Got 'abc' instead"),
    ("problem.data.name=iris", "problem.data.options.n_samples: problem 'iris' has no such option; its options: none"),
    ("problem.data.name=../../etc/passwd", "problem.data.name='../../etc/passwd' is not a problem; valid problems:"),
    ("+problem.data.options.foo=1", "problem.data.options.foo: problem 'line' has no such option; its options: n_samples, noise"),
    # trained, then failed, before
    ("problem=moons problem.data.options.n_samples=0", "Got 0 instead"),
    ("problem=moons problem.data.options.noise=nan", "Got nan instead"),
    ("problem=moons problem.data.options.noise=inf", "Got inf instead"),
    ("problem.data.options.noise=nan", "problem.data: problem 'line': 100 NaN or infinite values in y_train; refused before training"),
    ("problem.data.options.n_samples=0", "problem.data: problem 'line' has no train samples"),
    # accepted before, though they cannot work
    ("model=mlp model.hidden=[]", "model.hidden=[] is out of range: must be at least one hidden layer"),
    ("model=mlp model.hidden=[true]", "model.hidden=[True] is out of range"),
    ("train.device=cpu:7", "train.device='cpu:7' is out of range"),
    ("tracking.uri=sqlite:///:memory:", "an in-memory store keeps nothing after the command ends"),
    # the ui command, and an override MLflow could not keep
    ("ui tracking.ui_port=abc", "tracking.ui_port='abc' has the wrong type: must be an integer in [1, 65535]"),
    ("ui tracking.ui_port=99999", "tracking.ui_port=99999 is out of range: must be in [1, 65535]"),
    ("tracking.experiment=" + "x" * 7000, "the override is 7,020 characters long; a run's params keep at most 6,000"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "message"), fast_first(HOSTILE, keep=1, every=4), ids=[c[:48] for c, _ in HOSTILE]
)
def test_hostile_input_is_one_line_exit_2_and_touches_nothing(
    tmp_path, monkeypatch, capsys, command, message
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SystemExit) as exited:
        main([*command.split(" "), "train.epochs=3"])
    out, err = capsys.readouterr()
    assert exited.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in out + err
    assert "u:p@" not in out + err  # a password in a URI is masked
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == []  # no store, no outputs


#: Run-derived text a user (or a shared store) can put in a report: mathtext, live Markdown
#: links and images, HTML, a spreadsheet formula, LaTeX specials.
HOSTILE_NAME = (
    '=HYPERLINK("http://e.invalid","x") $\\foo$ [x](javascript:alert(1)) '
    "![i](http://e.invalid/i.png) <svg onload=alert(1)> x\\](y) 100% & #_{}"
)


#: A Markdown link's or image's ``](`` whose ``]`` is not backslash-escaped, other than the
#: report's own figures.
LIVE_LINK = re.compile(r"(?<!\\)\]\((?!figures/)")


def _renderers() -> list[tuple[str, object, list[str], list[str]]]:
    """(format, renderer, text that must appear, text that must not) for each renderer."""
    import html

    import pandas as pd

    from rprop_bench import document

    def csv(text: str) -> str:
        return document.csv_safe(pd.DataFrame({"name": [text], "loss": [-1.5]})).to_csv(index=False)

    return [
        ("markdown", document.md_cell, ["[x\\](javascript:", "![i\\](http:"],
         ["<svg", "<script"]),
        ("latex", document.latex_escape, ["\\$\\textbackslash{}foo\\$", "\\textless{}svg", "100\\%"],
         ["$\\foo$", "<svg", " & "]),
        ("csv", csv, ["'=HYPERLINK", "-1.5"], ['\n"=HYPERLINK', "\n=HYPERLINK"]),
        ("html", html.escape, ["&lt;svg onload=alert(1)&gt;"], ["<svg"]),
    ]  # fmt: skip


@pytest.mark.parametrize("case", _renderers(), ids=lambda c: c[0])
def test_every_renderer_escapes_hostile_names_for_its_own_format(case):
    name, render, present, absent = case
    text = render(HOSTILE_NAME)
    if name == "markdown":
        assert not LIVE_LINK.search(text)  # no link or image a Markdown viewer would follow
    for fragment in present:
        assert fragment in text
    for fragment in absent:
        assert fragment not in text


def test_a_figure_draws_hostile_names_as_plain_text():
    """mathtext in a title or legend (``$\\foo$``) would stop the report with a parse
    error; tick labels keep their mathtext (log axes)."""
    import io

    from matplotlib.figure import Figure

    from rprop_bench.plot_style import plain_text

    fig = Figure()
    ax = fig.add_subplot()
    ax.semilogy([1, 10, 100], label=HOSTILE_NAME)
    ax.set_title(HOSTILE_NAME)
    ax.legend()
    with pytest.raises(ValueError, match="Unknown symbol"):  # as it was: mathtext fails
        fig.savefig(io.BytesIO(), format="png")
    plain_text(fig)
    fig.savefig(io.BytesIO(), format="png")
    assert ax.get_title() == HOSTILE_NAME
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert any("10^" in label for label in labels)  # still mathtext: $\mathdefault{10^{1}}$


@pytest.mark.slow
def test_a_report_on_hostile_run_names_renders_every_format_escaped(store_factory, tmp_path):
    import csv

    from mlflow_runs import HandRun, finals

    from rprop_bench import report

    runs = [
        HandRun("iris", optimizer, optimizer, seed, finals(0.1 * (seed + 1) + shift, acc=0.9),
                [1.0, 0.5, 0.1 * (seed + 1)], run_name=f"{HOSTILE_NAME} s{seed}")
        for optimizer, shift in ((HOSTILE_NAME, 0.0), ("adam", 0.3)) for seed in range(3)
    ]  # fmt: skip
    uri = store_factory(runs, experiment="hostile")
    opts = report.ReportOptions(out=tmp_path / "r", formats=("png",), progress=False)
    built = report.build_report(uri, "hostile", opts)
    html_text = built.index_html.read_text(encoding="utf-8")
    assert "<svg onload" not in html_text
    assert "&lt;svg onload=alert(1)&gt;" in html_text
    md = built.markdown.read_text(encoding="utf-8")
    assert "javascript:" in md  # the name is there, as text
    assert not LIVE_LINK.search(md)
    assert "<svg" not in md
    for table in built.tables:
        text = table.read_text(encoding="utf-8")
        if table.suffix == ".tex":
            assert "$\\foo$" not in text
            assert "<svg" not in text
        else:
            for row in csv.reader(text.splitlines()):
                assert not [cell for cell in row if cell.startswith(("=", "@", "+"))], row
    assert built.figures  # drawn, with the names as plain text
