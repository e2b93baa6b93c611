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
        confidence: coverage of the bootstrap intervals.
        n_resamples: bootstrap resamples.
        seed: bootstrap seed (the report repeats exactly with the same seed).
        log_to_mlflow: also log the report under the sweep's parent run.
        progress: show progress bars while reading.
        label_params: params (e.g. ``"train.batch_size"``) whose value joins the optimizer's
            name, so that runs differing only there show apart (``"irprop- batch_size=8"``).
    """

    out: Path
    formats: tuple[str, ...] = ("pdf", "png")
    sweep: str = "latest"
    confidence: float = 0.95
    n_resamples: int = 2000
    seed: int = 0
    log_to_mlflow: bool = True
    progress: bool = True
    label_params: tuple[str, ...] = ()

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
        if self.n_resamples < 1:
            raise results.ResultsError(f"report.n_resamples must be >= 1, got {self.n_resamples}")
