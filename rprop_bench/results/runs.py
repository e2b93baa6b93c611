"""Runs, their params, tags and final metrics: the report's one table (see the package).

:func:`connect` opens an existing store; :func:`load_experiment` reads the training runs of an
experiment, or of one of its sweeps, with paged ``search_runs`` calls.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from rprop_bench import schema
from rprop_bench.store import sqlite_path
from rprop_bench.text import count

#: Per-epoch metrics a report draws, read in bulk by default.
HISTORY_METRICS: tuple[str, ...] = schema.REPORT_CURVES

#: Run statuses MLflow uses for runs that did not finish.
_NOT_FINISHED = ("FAILED", "KILLED")
#: Optimizer configs of the Rprop family that are *ours* (their variant tag names the method).
_TORCH_RPROP = "torch_rprop"
SQL_INF = np.finfo(float).max  # what SQL stores keep for an infinite metric


class ResultsError(Exception):
    """Input the report cannot use; the message is one line fit for the command line."""


class StoreNotFoundError(ResultsError):
    """The tracking store does not exist or cannot be reached."""


class NoRunsError(ResultsError):
    """The experiment does not exist or holds no training runs."""


class MissingMetricError(ResultsError):
    """Some runs lack a metric the report needs."""


@dataclass(frozen=True)
class ExperimentResults:
    """The training runs of one experiment (or one sweep), as tidy frames.

    Attributes:
        experiment_name: the MLflow experiment's name.
        experiment_id: its id.
        tracking_uri: the store they came from.
        runs: one row per training run. Columns: ``run_id``, ``run_name``, ``status``,
            ``failed`` (bool: MLflow status FAILED/KILLED, or the run carries
            :data:`schema.TAG_FAILURE_REASON`), ``failure_reason``, ``optimizer``, ``variant``,
            ``method`` (see :func:`method_label`), ``problem``, ``task``, ``model``, ``seed``
            (int, or -1 when untagged), ``sweep_id``, ``parent_run_id``, ``start_time``
            (ms), then one column per final metric (NaN where not logged) and one
            ``param.<name>`` column per param.
        parent_run_id: the sweep's parent run the report belongs to (``None`` when the runs
            are not under one sweep).
        sweep_id: the sweep id tag of that parent, if any.
        foreign: the ids of the experiment's runs that the harness did not write (no
            :data:`schema.TAG_RUN_KIND` tag, e.g. a run added by hand): left out.
        repeated: the ids of runs left out because another run has the same run key (the
            same config trained twice, e.g. one single run repeated): a grid point counts
            once, not as two seeds (:func:`one_run_per_key`).
        interrupted: the ids of attempts that are no result (:func:`split_attempts`): KILLED
            by a signal, or FAILED because the store failed. Left out, and listed apart.
        running: the names of runs still RUNNING: left out, and named.
    """

    experiment_name: str
    experiment_id: str
    tracking_uri: str
    runs: pd.DataFrame
    parent_run_id: str | None
    sweep_id: str | None
    foreign: tuple[str, ...] = ()
    repeated: tuple[str, ...] = ()
    interrupted: tuple[str, ...] = ()
    running: tuple[str, ...] = ()


def split_attempts(runs: pd.DataFrame) -> tuple[pd.DataFrame, tuple[str, ...], tuple[str, ...]]:
    """The runs that are results, the ids of interrupted attempts, the names of runs still
    RUNNING.

    A grid point's result is its FINISHED run, or its FAILED one (diverged, or an error of
    the run's own). An attempt KILLED by a signal, or FAILED because the store failed
    (:data:`~rprop_bench.schema.FAILURE_STORE`), says nothing about the optimizer: counted as
    a failure, it would be an infinite cost in medians, ranks and profiles.
    """
    if runs.empty:
        return runs, (), ()
    store_failed = runs["failure_kind"] == schema.FAILURE_STORE
    interrupted = (runs["status"] == "KILLED") | ((runs["status"] == "FAILED") & store_failed)
    running = runs["status"] == "RUNNING"
    kept = runs[~interrupted & ~running]
    return (
        kept,
        tuple(sorted(runs.loc[interrupted, "run_id"])),
        tuple(sorted(runs.loc[running, "run_name"])),
    )


def connect(tracking_uri: str):  # -> mlflow.MlflowClient (import kept lazy)
    """Return an ``MlflowClient`` for an *existing* store.

    MLflow silently creates a new, empty SQLite database for a path that does not exist; a
    report must instead say that the store is missing.

    Raises:
        StoreNotFoundError: the SQLite file or the ``file:`` directory does not exist, or a
            tracking server does not answer.
    """
    from mlflow import MlflowClient

    db = sqlite_path(tracking_uri)
    if db is not None and not db.is_file():
        raise StoreNotFoundError(f"tracking store not found: {tracking_uri} (no file {db})")
    parsed = urlparse(tracking_uri)
    if parsed.scheme in ("", "file") and not tracking_uri.startswith("sqlite"):
        local = Path(unquote(parsed.path) if parsed.scheme == "file" else tracking_uri)
        if not local.is_dir():
            raise StoreNotFoundError(f"tracking store not found: {tracking_uri}")
    if db is not None:  # a first start cut short is repaired (no runs) before reading
        from rprop_bench.first_start import open_store
        from rprop_bench.store import TrackingError

        try:
            note = open_store(tracking_uri, check_integrity=True)
        except TrackingError as exc:
            raise StoreNotFoundError(str(exc)) from exc
        if note:
            print(f"store: {note}", file=sys.stderr, flush=True)
    client = MlflowClient(tracking_uri=tracking_uri)
    if parsed.scheme in ("http", "https"):
        try:
            with mlflow_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10"):
                client.search_experiments(max_results=1)
        except Exception as exc:  # any transport error means the same to the user
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreNotFoundError(
                f"tracking server not reachable: {tracking_uri} ({first})"
            ) from exc
    return client


def method_label(optimizer: str, variant: str) -> str:
    """The name a report shows for a run's optimizer.

    Our Rprop configs (``rprop``, ``irprop_plus``, ...) are named by the variant they run
    (``"irprop+"``), so a variant overridden on the command line shows as what it is.
    ``torch_rprop`` and the baselines keep their config name.

    >>> method_label("irprop_plus", "irprop+"), method_label("torch_rprop", "irprop-")
    ('irprop+', 'torch_rprop')
    >>> method_label("adam", "adam"), method_label("adam", "")
    ('adam', 'adam')
    """
    if not variant or variant == optimizer or optimizer == _TORCH_RPROP:
        return optimizer or variant or "unknown"
    return variant


def _search_all(client, experiment_id: str, filter_string: str = "") -> list:
    """Every run of an experiment matching a filter, following pages."""
    runs: list = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=filter_string,
            max_results=1000,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def restore_inf(values: np.ndarray) -> np.ndarray:
    """Undo SQL stores' encoding of ±inf as ±max float (they cannot store infinities)."""
    v = np.asarray(values, dtype=float).copy()
    big = np.abs(v) >= SQL_INF
    v[big] = np.sign(v[big]) * np.inf
    return v


def _seed(value: str | None) -> int:
    try:
        return int(float(value)) if value not in (None, "") else -1
    except ValueError:
        return -1


def _runs_frame(runs: Sequence) -> pd.DataFrame:
    """One row per MLflow run: metadata, tags we use, final (latest) metrics and params."""
    rows = []
    for run in runs:
        tags = run.data.tags
        optimizer = tags.get(schema.TAG_OPTIMIZER, "")
        variant = tags.get(schema.TAG_VARIANT, "")
        reason = tags.get(schema.TAG_FAILURE_REASON, "")
        row = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name or "",
            "status": run.info.status,
            "failed": run.info.status in _NOT_FINISHED or bool(reason),
            "failure_reason": reason,
            "failure_kind": tags.get(schema.TAG_FAILURE_KIND, ""),
            "optimizer": optimizer,
            "variant": variant,
            "method": method_label(optimizer, variant),
            "problem": tags.get(schema.TAG_PROBLEM, ""),
            "task": tags.get(schema.TAG_TASK, ""),
            "model": tags.get(schema.TAG_MODEL, ""),
            "seed": _seed(tags.get(schema.TAG_SEED)),
            "sweep_id": tags.get(schema.TAG_SWEEP_ID, ""),
            "also_in_sweeps": tags.get(schema.TAG_SWEEPS, ""),
            "parent_run_id": tags.get(schema.TAG_PARENT_RUN_ID, ""),
            "start_time": run.info.start_time or 0,
            "git_commit": tags.get(schema.TAG_GIT_COMMIT, ""),
            "run_key": tags.get(schema.TAG_RUN_KEY, ""),
            "command": tags.get(schema.TAG_COMMAND, ""),
            "diverged": schema.failed_by_divergence(tags),
            "tune_role": tags.get(schema.TAG_TUNE_ROLE, ""),
            "tune_trial": _seed(tags.get(schema.TAG_TUNE_TRIAL)),
        }
        row.update({k: float(restore_inf(np.array([v]))[0]) for k, v in run.data.metrics.items()})
        row.update({f"param.{k}": v for k, v in run.data.params.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    # A run that diverged may have logged NaN/inf as its final loss: keep the value, mark it.
    for col in (schema.TEST_LOSS, schema.FINAL_TRAIN_LOSS):
        if col in frame:
            bad = ~np.isfinite(pd.to_numeric(frame[col], errors="coerce").to_numpy(float))
            frame.loc[bad & frame[col].notna(), "failed"] = True
    return frame.sort_values(["problem", "method", "seed", "run_id"], ignore_index=True)


def load_experiment(
    tracking_uri: str,
    experiment_name: str,
    sweep: str = "latest",
) -> ExperimentResults:
    """Read the training runs of an experiment (by default those of its latest sweep).

    Args:
        tracking_uri: MLflow tracking URI, e.g. ``sqlite:///mlflow.db``.
        experiment_name: the MLflow experiment.
        sweep: ``"latest"``: the children of the most recent sweep parent run (every training
            run when the experiment has no sweep); ``"all"``: every training run of the
            experiment; otherwise a sweep id (:data:`schema.TAG_SWEEP_ID`) or the parent run's id.

    Returns:
        :class:`ExperimentResults`; failed runs are kept and marked (``failed``), never dropped.

    Raises:
        StoreNotFoundError: the store does not exist.
        NoRunsError: no such experiment, or it (or the chosen sweep) holds no training runs.
    """
    client = connect(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        names = sorted(e.name for e in client.search_experiments(max_results=100))
        listing = ", ".join(names) if names else "none"
        raise NoRunsError(
            f"no experiment named {experiment_name!r} in {tracking_uri} (experiments: {listing})"
        )
    all_runs = _search_all(client, experiment.experiment_id)
    parents = [r for r in all_runs if r.data.tags.get(schema.TAG_RUN_KIND) == schema.RUN_KIND_SWEEP]
    kinds = [r.data.tags.get(schema.TAG_RUN_KIND) for r in all_runs]
    training = [
        r for r, kind in zip(all_runs, kinds, strict=True) if kind == schema.RUN_KIND_TRAINING
    ]
    foreign = tuple(
        r.info.run_id
        for r, kind in zip(all_runs, kinds, strict=True)
        if kind not in (*_NOT_TRAINING, schema.RUN_KIND_TRAINING)
    )
    if not training:
        also = f" ({count(len(foreign), 'run')} that the harness did not write)" if foreign else ""
        raise NoRunsError(
            f"experiment {experiment_name!r} has no training runs in {tracking_uri}{also}"
        )
    parent = _chosen_parent(parents, training, sweep, experiment_name)
    if parent is not None and sweep != "all":
        training = _runs_of_sweep(training, parent)
        if not training:
            raise NoRunsError(
                f"sweep {parent.info.run_id} of experiment {experiment_name!r} has no runs"
            )
    results, interrupted, running = split_attempts(_runs_frame(training))
    if results.empty:
        raise NoRunsError(
            f"experiment {experiment_name!r} has no finished or failed runs yet "
            f"({count(len(interrupted), 'interrupted attempt')}, {len(running)} RUNNING)"
        )
    runs, repeated = one_run_per_key(results)
    return ExperimentResults(
        experiment_name=experiment_name,
        experiment_id=experiment.experiment_id,
        tracking_uri=tracking_uri,
        runs=runs,
        parent_run_id=parent.info.run_id if parent is not None else None,
        sweep_id=parent.data.tags.get(schema.TAG_SWEEP_ID) if parent is not None else None,
        foreign=foreign,
        repeated=repeated,
        interrupted=interrupted,
        running=running,
    )


def one_run_per_key(runs: pd.DataFrame) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Keep one run per run key, so that a config trained twice counts once: the newest
    FINISHED run of the key, else (none finished) its newest run. Runs without a key (made
    before keys existed) are all kept. Returns the runs kept and the ids left out."""
    if runs.empty or "run_key" not in runs:
        return runs, ()
    keyed = runs[runs["run_key"] != ""]
    order = keyed.assign(_finished=keyed["status"] == "FINISHED").sort_values(
        ["_finished", "start_time", "run_id"]
    )
    kept = order.groupby("run_key").tail(1).index
    dropped = keyed.index.difference(kept)
    return runs.drop(index=dropped), tuple(sorted(runs.loc[dropped, "run_id"]))


#: The run kinds that are not training runs: a sweep's parent, a tuning study's parent.
_NOT_TRAINING = (schema.RUN_KIND_SWEEP, schema.RUN_KIND_TUNE)


def _runs_of_sweep(training: list, parent: Any) -> list:
    """The runs a sweep covers: its children, and the FINISHED runs of earlier sweeps that it
    reused (:data:`~rprop_bench.schema.TAG_SWEEPS`), so a report covers its whole grid."""
    sweep_id = parent.data.tags.get(schema.TAG_SWEEP_ID, "")
    return [
        r
        for r in training
        if r.data.tags.get(schema.TAG_PARENT_RUN_ID) == parent.info.run_id
        or (sweep_id and sweep_id in r.data.tags.get(schema.TAG_SWEEPS, "").split())
    ]


def runs_with_keys(tracking_uri: str, experiment_name: str, keys: Iterable[str]) -> pd.DataFrame:
    """The training runs of the given run keys, one per key: its FINISHED run if it has one,
    else its latest run (FAILED or KILLED, marked ``failed``). Keys without a run are absent.

    A tuning study reads its trials this way: by what they compute, whichever sweep ran them.
    """
    wanted = set(keys)
    client = connect(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None or not wanted:
        return pd.DataFrame()
    where = f"tags.`{schema.TAG_RUN_KIND}` = '{schema.RUN_KIND_TRAINING}'"
    runs = [
        r
        for r in _search_all(client, experiment.experiment_id, where)
        if r.data.tags.get(schema.TAG_RUN_KEY) in wanted
    ]
    frame = _runs_frame(runs)
    if frame.empty:
        return frame
    frame["_finished"] = frame["status"] == "FINISHED"
    frame = frame.sort_values(["_finished", "start_time"], ascending=False, kind="stable")
    return frame.drop_duplicates("run_key").drop(columns="_finished").reset_index(drop=True)


def _chosen_parent(parents: list, training: list, sweep: str, experiment_name: str) -> Any:
    """The sweep parent run that ``sweep`` names (see :func:`load_experiment`), or ``None``."""
    if sweep == "latest":
        with_children = [p for p in parents if _runs_of_sweep(training, p)]
        return max(with_children, key=lambda p: p.info.start_time or 0, default=None)
    if sweep != "all":
        matches = [
            p for p in parents if sweep in (p.info.run_id, p.data.tags.get(schema.TAG_SWEEP_ID, ""))
        ]
        if not matches:
            raise NoRunsError(f"experiment {experiment_name!r} has no sweep {sweep!r}")
        return matches[0]
    return max(parents, key=lambda p: p.info.start_time or 0, default=None)


def require_metrics(runs: pd.DataFrame, metrics: Iterable[str]) -> None:
    """Check that every *finished* run logged each metric.

    Failed runs may lack metrics (they stopped early); they are reported as failed instead.

    Raises:
        MissingMetricError: naming the metric, how many runs lack it and one example run.
    """
    ok = runs[~runs["failed"]]
    for metric in metrics:
        lacking = ok if metric not in ok else ok[ok[metric].isna()]
        if len(lacking):
            example = lacking.iloc[0]
            raise MissingMetricError(
                f"{len(lacking)} of {len(ok)} finished runs lack metric {metric!r} "
                f"(e.g. run {example['run_id']} {example['run_name']!r})"
            )


@contextmanager
def mlflow_env(**values: str) -> Iterator[None]:
    """Set MLflow environment variables for the duration of a block, then restore them."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
