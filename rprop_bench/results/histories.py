"""Metric histories (read in bulk) and the artifacts a report draws (see the package)."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Sequence

import pandas as pd
from tqdm.auto import tqdm

from rprop_bench import schema
from rprop_bench.results.runs import HISTORY_METRICS, ResultsError, connect, mlflow_env, restore_inf

_BULK_CHUNK = 200  # run ids per bulk query (well below SQLite's variable limit)
_REST_BULK_CHUNK = 100  # run ids per request that a tracking server accepts
_MAX_HISTORY = 1_000_000_000


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _history_rows_bulk(client, run_ids: Sequence[str], metric: str, max_steps: int) -> list:
    """``(run_id, step, timestamp, value)`` rows for one metric over many runs, in bulk."""
    store = client._tracking_client.store  # MLflow exposes the bulk reads on the store only
    rows = []
    if hasattr(store, "get_metric_history_bulk"):  # SQL stores: one query per chunk of runs
        for chunk in _chunks(run_ids, _BULK_CHUNK):
            for m in store.get_metric_history_bulk(list(chunk), metric, _MAX_HISTORY):
                rows.append((m.run_id, m.step, m.timestamp, m.value))
        return rows
    if hasattr(store, "get_metric_history_bulk_interval"):  # tracking servers
        for chunk in _chunks(run_ids, _REST_BULK_CHUNK):
            for m in store.get_metric_history_bulk_interval(
                list(chunk), metric, max_steps, None, None
            ):
                rows.append((m.run_id, m.step, m.timestamp, m.value))
        return rows
    return _history_rows_naive(client, run_ids, metric)


def _history_rows_naive(client, run_ids: Sequence[str], metric: str) -> list:
    """One ``get_metric_history`` request per run: the slow route, kept for comparison."""
    rows = []
    for run_id in run_ids:
        for m in client.get_metric_history(run_id, metric):
            rows.append((run_id, m.step, m.timestamp, m.value))
    return rows


def load_histories(
    tracking_uri: str,
    run_ids: Sequence[str],
    metrics: Sequence[str] = HISTORY_METRICS,
    *,
    max_steps: int = 100_000,
    bulk: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Per-epoch metric histories of many runs, as one long frame.

    Args:
        tracking_uri: the store.
        run_ids: runs to read.
        metrics: metric keys to read (missing ones simply yield no rows).
        max_steps: most points per run and metric a tracking server is asked for.
        bulk: read many runs per request (``False`` reads one request per run per metric,
            for the benchmark's comparison).
        progress: show a tqdm bar over (metric, chunk of runs).

    Returns:
        Columns ``run_id``, ``metric``, ``step`` (int, the epoch), ``value`` (float): one row
        per logged value, the latest value kept where a step was logged twice; sorted by
        run, metric, step.
    """
    client = connect(tracking_uri)
    ids = list(dict.fromkeys(run_ids))
    frames = []
    chunk = _BULK_CHUNK if bulk else 1
    total = len(metrics) * max(1, math.ceil(len(ids) / chunk))
    with tqdm(
        total=total, desc="reading metric histories", unit="req", disable=not progress
    ) as bar:
        for metric in metrics:
            for part in _chunks(ids, chunk):
                if bulk:
                    rows = _history_rows_bulk(client, part, metric, max_steps)
                else:
                    rows = _history_rows_naive(client, part, metric)
                if rows:
                    f = pd.DataFrame(rows, columns=["run_id", "step", "timestamp", "value"])
                    f["metric"] = metric
                    frames.append(f)
                bar.update(1)
    if not frames:
        return pd.DataFrame(
            {
                "run_id": pd.Series(dtype=str),
                "metric": pd.Series(dtype=str),
                "step": pd.Series(dtype="int64"),
                "value": pd.Series(dtype=float),
            }
        )
    out = pd.concat(frames, ignore_index=True)
    out = out.sort_values(["run_id", "metric", "step", "timestamp"], kind="stable")
    out = out.drop_duplicates(["run_id", "metric", "step"], keep="last")
    out["step"] = out["step"].astype("int64")
    out["value"] = restore_inf(out["value"].to_numpy(float))
    return out[["run_id", "metric", "step", "value"]].reset_index(drop=True)


def _quiet_artifact_downloads():
    """Silence MLflow's per-file download bar (ours counts runs instead)."""
    return mlflow_env(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")


def _download_csv(client, run_id: str, path: str) -> pd.DataFrame | None:
    with tempfile.TemporaryDirectory() as tmp, _quiet_artifact_downloads():
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except Exception:  # missing artifact: MLflow raises several types depending on store
            return None
        return pd.read_csv(local)


def load_step_histograms(
    tracking_uri: str, run_ids: Sequence[str], *, progress: bool = True
) -> pd.DataFrame:
    """Step-size histogram artifacts (:data:`schema.ARTIFACT_STEP_HISTOGRAMS`) of some runs.

    Returns:
        Columns ``run_id`` + :data:`schema.HISTOGRAM_COLUMNS`; runs without the artifact
        contribute no rows.

    Raises:
        ResultsError: an artifact lacks one of the schema's columns.
    """
    client = connect(tracking_uri)
    frames = []
    for run_id in tqdm(
        list(run_ids), desc="reading step-size histograms", disable=not progress, unit="run"
    ):
        f = _download_csv(client, run_id, schema.ARTIFACT_STEP_HISTOGRAMS)
        if f is None:
            continue
        missing = [c for c in schema.HISTOGRAM_COLUMNS if c not in f.columns]
        if missing:
            raise ResultsError(
                f"run {run_id}: {schema.ARTIFACT_STEP_HISTOGRAMS} lacks columns {missing}"
            )
        f = f[list(schema.HISTOGRAM_COLUMNS)].copy()
        f.insert(0, "run_id", run_id)
        frames.append(f)
    if not frames:
        return pd.DataFrame(columns=["run_id", *schema.HISTOGRAM_COLUMNS])
    return pd.concat(frames, ignore_index=True)


def load_line_data(tracking_uri: str, run_id: str) -> pd.DataFrame | None:
    """The training data of a ``line`` run (:data:`schema.ARTIFACT_LINE_DATA`, columns x, y).

    Returns ``None`` when the run has no such artifact.
    """
    f = _download_csv(connect(tracking_uri), run_id, schema.ARTIFACT_LINE_DATA)
    if f is None or not {"x", "y"} <= set(f.columns):
        return None
    return f[["x", "y"]]
