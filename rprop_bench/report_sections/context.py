"""What every section of the report reads: :class:`ReportContext`; and what a section is.

A section is a function ``(ctx, w) -> None`` (:data:`Section`) that reads the context and
adds headings, paragraphs, figures and tables to the
:class:`~rprop_bench.document.DocumentWriter` ``w``; a part of each problem's section is a
function ``(ctx, problem, w) -> None`` (:data:`ProblemSection`). The context is read only:
sections do not change it, so that they do not depend on each other's order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from rprop_bench import comparison, schema
from rprop_bench.document import DocumentWriter
from rprop_bench.report_sections.finals import FinalTable, final_table
from rprop_bench.report_sections.options import ReportOptions
from rprop_bench.results import ExperimentResults

__all__ = ["Compared", "ProblemSection", "ReportContext", "Section"]

#: What decides that two methods' runs are the same: results, never timings.
IDENTITY_METRICS = (
    schema.FINAL_TRAIN_LOSS, schema.TEST_LOSS, schema.TEST_ACCURACY, schema.TEST_R2,
    schema.EPOCHS_RUN, schema.REACHED_TARGET, schema.EPOCHS_TO_TARGET, schema.GRAD_EVALS,
)  # fmt: skip


@dataclass(frozen=True)
class Compared:
    """The runs that the statistics across problems compare: methods whose runs are
    bit-identical on every problem and seed merged into one, labelled ``a = b``, so that
    one method does not enter a rank test twice; and only the problems that every method
    ran on, so that a method is never ranked on a problem it did not run (as ∞) while the
    pairwise tables leave the same pair out.

    Attributes:
        runs: the runs of :attr:`problems`, one method of each identical group kept, under
            the merged label.
        methods: the labels compared, sorted.
        merged: the groups of identical methods (empty when there are none).
        problems: the problems every method ran on, sorted.
        dropped: each problem left out, with the methods that did not run on it.
    """

    runs: pd.DataFrame
    methods: list[str]
    merged: list[tuple[str, ...]]
    problems: list[str]
    dropped: dict[str, list[str]]


@dataclass(frozen=True)
class ReportContext:
    """The runs of a report and how to render it.

    Attributes:
        tracking_uri: the MLflow store the runs come from (sections may read more of it
            through :mod:`rprop_bench.results`, e.g. a run's artifact).
        experiment: the MLflow experiment's name.
        options: the :class:`ReportOptions`.
        results: what :func:`results.load_experiment` read (ids of the experiment, of the
            sweep and its parent run).
        runs: one row per training run (:class:`results.ExperimentResults`'s ``runs``), its
            ``method`` labels extended by ``options.label_params``.
        histories: the runs' metric histories, tidy (``run_id``, ``metric``, ``step``,
            ``value``, ...; :func:`results.load_histories`).
        wide: the histories one row per (run, step), a column per metric, with the run's
            ``problem``, ``method``, ``seed`` and ``failed``.
        histograms: the step-size histograms of the runs the step-size figures show
            (:func:`results.load_step_histograms`).
        problems: the problems, sorted.
        methods: the methods (optimizer labels), sorted.
    """

    tracking_uri: str
    experiment: str
    options: ReportOptions
    results: ExperimentResults
    runs: pd.DataFrame
    histories: pd.DataFrame
    wide: pd.DataFrame
    histograms: pd.DataFrame
    problems: list[str]
    methods: list[str]

    @property
    def out(self) -> Path:
        """The output folder."""
        return Path(self.options.out)

    def problem_runs(self, problem: str) -> pd.DataFrame:
        """The runs of one problem."""
        return self.runs[self.runs["problem"] == problem]

    def problem_wide(self, problem: str) -> pd.DataFrame:
        """The metric histories (:attr:`wide`) of one problem's runs."""
        return self.wide[self.wide["problem"] == problem]

    @cached_property
    def _merged(self) -> tuple[pd.DataFrame, list[tuple[str, ...]]]:
        """Every run, with identical methods merged (:class:`Compared`), and the groups."""
        values = [c for c in (*IDENTITY_METRICS, "failed") if c in self.runs]
        merged = comparison.identical_methods(self.runs, values)
        runs = self.runs
        for group in merged:
            runs = runs[~runs["method"].isin(group[1:])]
            runs = runs.assign(
                method=runs["method"].where(runs["method"] != group[0], " = ".join(group))
            )
        return runs, merged

    @cached_property
    def compared(self) -> Compared:
        """The runs the statistics across problems compare (:class:`Compared`)."""
        runs, merged = self._merged
        methods = sorted(runs["method"].unique())
        ran = runs.groupby("problem")["method"].unique()
        dropped = {
            str(p): sorted(set(methods) - set(ran[p]))
            for p in self.problems
            if set(ran.get(p, [])) != set(methods)
        }
        problems = [p for p in self.problems if p not in dropped]
        runs = runs[runs["problem"].isin(problems)]
        return Compared(runs, methods, merged, problems, dropped)

    def compared_wide(self, problem: str) -> pd.DataFrame:
        """The metric histories of one problem's runs, under the compared labels (identical
        methods merged, as in :attr:`compared`), whether or not every method ran on it."""
        labels = self._merged[0][["run_id", "method"]]
        wide = self.problem_wide(problem).drop(columns="method")
        return wide.merge(labels, on="run_id")

    @cached_property
    def finals(self) -> dict[str, FinalTable]:
        """Each problem's final results (computed once, on first use)."""
        return {p: final_table(p, self.problem_runs(p), self.options) for p in self.problems}


#: A section of the report: reads the context, writes to the document.
Section = Callable[[ReportContext, DocumentWriter], None]
#: A part of each problem's section: the context, the problem, the document.
ProblemSection = Callable[[ReportContext, str, DocumentWriter], None]
