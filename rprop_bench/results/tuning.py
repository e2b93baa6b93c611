"""The tables of a tuning study (``python -m rprop_bench tune``) that a report shows.

The study's parent run (kind :data:`~rprop_bench.schema.RUN_KIND_TUNE`) holds them as CSV
artifacts; each phase of the study is a sweep nested in it. :func:`load_tuning` goes from a
phase's parent run up to its study and reads them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rprop_bench import schema
from rprop_bench.results.runs import NoRunsError, _search_all, connect

__all__ = ["TuningResults", "load_tuning", "tuning_studies"]

_TABLES = {
    "trials": schema.ARTIFACT_TUNE_TRIALS,
    "selection": schema.ARTIFACT_TUNE_SELECTION,
    "gain": schema.ARTIFACT_TUNE_GAIN,
    "budget": schema.ARTIFACT_TUNE_BUDGET,
}


@dataclass(frozen=True)
class TuningResults:
    """A tuning study's tables, and which of its phases a report is on.

    Attributes:
        study_id: the study's id (``tune_…``).
        phase: the phase of the sweep reported on (``tuned_<objective>``, ``defaults``).
        command: the tune command line.
        trials, selection, gain, budget: the study's tables (columns as the tune command
            writes them, :mod:`rprop_bench.cli.tune`).
    """

    study_id: str
    phase: str
    command: str
    trials: pd.DataFrame
    selection: pd.DataFrame
    gain: pd.DataFrame
    budget: pd.DataFrame

    @property
    def objective(self) -> str | None:
        """The objective a ``tuned_…`` phase's winners were chosen by; ``None`` otherwise."""
        prefix = "tuned_"
        return self.phase[len(prefix) :] if self.phase.startswith(prefix) else None


def load_tuning(tracking_uri: str, sweep_run_id: str | None) -> TuningResults | None:
    """The study whose phase is the sweep with parent run ``sweep_run_id``; ``None`` if that
    sweep is no phase of a finished study (its tables are written when the study ends)."""
    if not sweep_run_id:
        return None
    client = connect(tracking_uri)
    phase_run = client.get_run(sweep_run_id)
    study_run_id = phase_run.data.tags.get(schema.TAG_PARENT_RUN_ID)
    if not study_run_id:
        return None
    study = client.get_run(study_run_id)
    tags = study.data.tags
    if tags.get(schema.TAG_RUN_KIND) != schema.RUN_KIND_TUNE:
        return None
    study_id = tags.get(schema.TAG_SWEEP_ID, "")
    phase = phase_run.data.tags.get(schema.TAG_SWEEP_ID, "").removeprefix(f"{study_id}.")
    listed = {f.path for f in client.list_artifacts(study_run_id, "tuning")}
    if not set(_TABLES.values()) <= listed:
        return None
    frames = {}
    with tempfile.TemporaryDirectory(prefix="rprop_bench_tuning_") as tmp:
        for name, path in _TABLES.items():
            local = client.download_artifacts(study_run_id, path, tmp)
            text = Path(local).read_text(encoding="utf-8")
            frames[name] = pd.read_csv(Path(local)) if text.strip() else pd.DataFrame()
    return TuningResults(study_id, phase, tags.get(schema.TAG_COMMAND, ""), **frames)


def tuning_studies(tracking_uri: str, experiment_name: str) -> pd.DataFrame:
    """The tuning studies of an experiment, oldest first: one row per study's parent run with
    ``study_id``, ``run_id``, ``status``, ``start_time`` and ``command``.

    Raises:
        StoreNotFoundError: the store does not exist.
        NoRunsError: no such experiment.
    """
    client = connect(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise NoRunsError(f"no experiment named {experiment_name!r} in {tracking_uri}")
    kind = f"tags.`{schema.TAG_RUN_KIND}` = '{schema.RUN_KIND_TUNE}'"
    rows = [
        {
            "study_id": run.data.tags.get(schema.TAG_SWEEP_ID, ""),
            "run_id": run.info.run_id,
            "status": run.info.status,
            "start_time": run.info.start_time or 0,
            "command": run.data.tags.get(schema.TAG_COMMAND, ""),
        }
        for run in _search_all(client, experiment.experiment_id, kind)
    ]
    columns = ["study_id", "run_id", "status", "start_time", "command"]
    return pd.DataFrame(rows, columns=columns)
