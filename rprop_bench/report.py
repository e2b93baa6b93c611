"""Render a comparison report of an experiment from what MLflow holds.

``build_report`` reads the runs (:mod:`rprop_bench.results`) into a
:class:`~rprop_bench.report_sections.context.ReportContext`, calls each section of
:data:`SECTIONS` in order, which compute their numbers with the pure functions of
:mod:`rprop_bench.analysis`, draw with :mod:`rprop_bench.plotting` and lay out blocks of
:mod:`rprop_bench.document`, and writes ``<out>/``:

- ``index.html``: self-contained (figures embedded as base64 PNG, inline CSS, no external
  reference); every string read from the store is HTML-escaped;
- ``report.md``;
- ``figures/``: each figure as PDF and PNG (and SVG on request);
- ``tables/``: each table as CSV (numbers) and LaTeX (booktabs, best per problem in bold).

It never trains: a store filled on another machine reports the same, and it never writes to
MLflow itself: :func:`rprop_bench.tracking.log_report_artifacts` logs the folder under the
sweep's parent run (:data:`schema.ARTIFACT_REPORT_DIR`).

Adding a section: write a function ``def my_section(ctx: ReportContext, w: DocumentWriter)
-> None`` that reads the runs, curves and settings from ``ctx`` and adds headings,
paragraphs, figures and tables to ``w`` (in a module of :mod:`rprop_bench.report_sections`),
then add it to :data:`SECTIONS` at the place it should appear. A part of every problem's
section is a function ``(ctx, problem, w) -> None`` added to
:data:`rprop_bench.report_sections.problem.PARTS`; a part of the across-problems section, a
section added to :data:`rprop_bench.report_sections.across.PARTS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rprop_bench import schema
from rprop_bench.document import DocumentWriter, render_html, render_md
from rprop_bench.redaction import redact
from rprop_bench.report_sections import (
    across,
    budgets,
    line,
    problem,
    provenance,
    runs,
    runtimes,
    tuning,
    working_range,
)
from rprop_bench.report_sections.context import ProblemSection, ReportContext, Section
from rprop_bench.report_sections.inputs import load_context
from rprop_bench.report_sections.line import LINE_PROBLEM, LINE_TRUTH
from rprop_bench.report_sections.options import FORMATS, ReportOptions
from rprop_bench.text import count

__all__ = [
    "FORMATS",
    "LINE_PROBLEM",
    "LINE_TRUTH",
    "SECTIONS",
    "ProblemSection",
    "Report",
    "ReportContext",
    "ReportOptions",
    "Section",
    "build_report",
    "foreign_line",
]

#: The report's sections, in the order they appear.
SECTIONS: list[Section] = [
    tuning.tuning_section,
    problem.problems,
    problem.final_all_problems,
    across.across_problems,
    working_range.working_ranges,
    budgets.budget_tests,
    runtimes.runtime_distributions,
    line.line_example,
    runs.all_runs,
]


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    out: Path
    index_html: Path
    markdown: Path
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    logged_to_run: str | None = None
    n_runs: int = 0
    n_failed: int = 0
    foreign: tuple[str, ...] = ()  # runs of the experiment the harness did not write: left out
    repeated: tuple[str, ...] = ()  # runs whose run key another run has: left out
    interrupted: tuple[str, ...] = ()  # KILLED attempts, store failures: no results
    running: tuple[str, ...] = ()  # runs still RUNNING: left out, named


def _meta(ctx: ReportContext) -> list[str]:
    """The report's header lines: where the runs come from, how many, when, and the
    reproducibility record (:mod:`~rprop_bench.report_sections.provenance`)."""
    res, runs, uri = ctx.results, ctx.runs, redact(ctx.tracking_uri)  # no password in a report
    n_failed = int(runs["failed"].sum())
    return [
        f"Tracking store: {uri}; experiment {ctx.experiment} (id {res.experiment_id})",
        f"Sweep parent run: {res.parent_run_id or 'none'}"
        + (f" (sweep id {res.sweep_id})" if res.sweep_id else ""),
        f"{count(len(runs), 'run')} ({n_failed} failed), "
        f"{count(runs['problem'].nunique(), 'problem')}, "
        f"{count(runs['method'].nunique(), 'optimizer')}: {', '.join(ctx.methods)}",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} from MLflow only "
        "(no re-training).",
        provenance.commit_line(runs),
        *provenance.environment_lines(ctx.options.command),
        "Every run, with its resolved config (param.*), run key, commit and every final "
        "metric: tables/runs.csv.",
        *([foreign_line(res.foreign)] if res.foreign else []),
        *([repeated_line(res.repeated)] if res.repeated else []),
        *([interrupted_line(res.interrupted)] if res.interrupted else []),
        *([running_line(res.running)] if res.running else []),
    ]


def interrupted_line(interrupted: tuple[str, ...]) -> str:
    """The line that says which attempts the report did not count as results."""
    return (
        f"Left out: {count(len(interrupted), 'interrupted attempt')} (KILLED by a signal, or "
        f"FAILED because the store failed), which are no results: they are neither runs "
        f"nor failures of their optimizer here, e.g. run {interrupted[0]}"
    )


def running_line(running: tuple[str, ...]) -> str:
    """The line that names the runs still RUNNING, which the report left out."""
    shown = ", ".join(running[:5]) + (", ..." if len(running) > 5 else "")
    return f"Left out: {count(len(running), 'run')} still RUNNING: {shown}"


def foreign_line(foreign: tuple[str, ...]) -> str:
    """The line that says which runs of the experiment a report left out."""
    return (
        f"Left out: {count(len(foreign), 'run')} that the harness did not write (no "
        f"{schema.TAG_RUN_KIND} tag), e.g. run {foreign[0]}"
    )


def repeated_line(repeated: tuple[str, ...]) -> str:
    """The line that says which repeated runs (a run key trained again) a report left out."""
    return (
        f"Left out: {count(len(repeated), 'run')} repeating the config (run key) of another "
        f"run, which counts once (by its newest FINISHED run, else its newest), e.g. run "
        f"{repeated[0]}"
    )


def _write_documents(ctx: ReportContext, w: DocumentWriter) -> Report:
    """Write ``index.html`` and ``report.md`` from the sections' blocks."""
    title = f"rprop-bench report: {ctx.experiment}"
    meta = _meta(ctx)
    index = ctx.out / "index.html"
    index.write_text(render_html(title, meta, w.blocks), encoding="utf-8")
    md = ctx.out / "report.md"
    shown = next(f for f in ("png", "svg", "pdf") if f in ctx.options.formats)
    md.write_text(render_md(title, meta, w.blocks, shown), encoding="utf-8")
    n_failed = int(ctx.runs["failed"].sum())
    return Report(
        ctx.out, index, md, w.figures, w.tables, None, len(ctx.runs), n_failed,
        ctx.results.foreign, ctx.results.repeated, ctx.results.interrupted,
        ctx.results.running,
    )  # fmt: skip


def build_report(tracking_uri: str, experiment: str, options: ReportOptions) -> Report:
    """Read an experiment's runs from MLflow and write the report folder.

    Args:
        tracking_uri: the MLflow store (``sqlite:///mlflow.db``, a server URL, ...).
        experiment: the MLflow experiment name.
        options: :class:`ReportOptions`.

    Returns:
        :class:`Report` with the paths written.

    Raises:
        results.ResultsError: the store, the experiment or a metric is missing (one-line
            message).
    """
    ctx = load_context(tracking_uri, experiment, options)
    ctx.out.mkdir(parents=True, exist_ok=True)
    w = DocumentWriter(ctx.out, options.formats)
    for section in SECTIONS:
        section(ctx, w)
    report = _write_documents(ctx, w)
    parent = ctx.results.parent_run_id
    if options.log_to_mlflow and parent:
        from rprop_bench.tracking import log_report_artifacts  # the one writer to MLflow

        log_report_artifacts(tracking_uri, parent, ctx.out)
        report.logged_to_run = parent
    return report
