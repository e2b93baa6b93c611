"""How to render a report: :class:`ReportOptions`, checked when made."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rprop_bench import results

__all__ = ["FORMATS", "ReportOptions"]

FORMATS = ("pdf", "png", "svg")


@dataclass(frozen=True)
class ReportOptions:
    """How to render a report.

    Attributes:
        out: output folder.
        formats: figure files to write, a subset of :data:`FORMATS`.
        sweep: which runs: ``"latest"`` sweep, ``"all"`` runs, or a sweep/parent run id.
        confidence: the least coverage of the intervals of medians (each shows its own).
        n_resamples: bootstrap resamples (aggregates across problems).
        seed: bootstrap seed (the report repeats exactly with the same seed).
        alpha: the level of the tests; the post-hoc test is shown only where the omnibus
            test rejects at it.
        rope_relative, rope_absolute: the region of practical equivalence: scores within
            ``max(rope_relative · max(|a|, |b|), rope_absolute)`` tie before ranking
            (:class:`rprop_bench.comparison.Rope`).
        log_to_mlflow: also log the report under the sweep's parent run.
        progress: show progress bars while reading.
        command: the command line that rendered the report, for its header.
        control: the reference method of the tests at fixed budgets (``None``: iRprop- where
            present, else the first method).
        budgets: the fixed budgets of those tests, as shares in (0, 1] of each problem's
            largest number of gradient evaluations.
        label_params: params (e.g. ``"train.batch_size"``) whose value joins the optimizer's
            name, so that runs differing only there show apart (``"irprop- batch_size=8"``).
    """

    out: Path
    formats: tuple[str, ...] = ("pdf", "png")
    sweep: str = "latest"
    confidence: float = 0.95
    n_resamples: int = 2000
    seed: int = 0
    alpha: float = 0.05
    rope_relative: float = 1e-3
    rope_absolute: float = 1e-5
    log_to_mlflow: bool = True
    progress: bool = True
    label_params: tuple[str, ...] = ()
    command: str = ""
    control: str | None = None
    budgets: tuple[float, ...] = (0.1, 0.3, 1.0)

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise results.ResultsError(
                f"report.formats must be a non-empty subset of {list(FORMATS)}, got "
                f"{list(self.formats)}"
            )
        if not 0.0 < self.confidence < 1.0:
            raise results.ResultsError(
                f"report.confidence must be in (0, 1), got {self.confidence}"
            )
        if not 0.0 < self.alpha < 1.0:
            raise results.ResultsError(f"report.alpha must be in (0, 1), got {self.alpha}")
        for name in ("rope_relative", "rope_absolute"):
            if not getattr(self, name) >= 0:
                raise results.ResultsError(f"report.{name} must be >= 0, got {getattr(self, name)}")
        if not self.budgets or not all(0 < b <= 1 for b in self.budgets):
            raise results.ResultsError(
                f"report.budgets must be shares in (0, 1], got {list(self.budgets)}"
            )
        if self.n_resamples < 1:
            raise results.ResultsError(f"report.n_resamples must be >= 1, got {self.n_resamples}")
