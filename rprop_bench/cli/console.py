"""What a run prints: its progress bar, its result line and the single run's summary."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rprop_bench import schema
from rprop_bench.cli.identity import PROGRAM


def format_finals(finals: dict[str, float]) -> str:
    names = [
        (schema.FINAL_TRAIN_LOSS, "train loss"),
        (schema.TEST_LOSS, "test loss"),
        (schema.TEST_ACCURACY, "test accuracy"),
        (schema.TEST_R2, "test R²"),
        (schema.LINE_WEIGHT, "w"),
        (schema.LINE_BIAS, "b"),
    ]
    return ", ".join(f"{label} {finals[key]:.4g}" for key, label in names if key in finals)


def print_summary(
    status: str,
    run_id: str,
    run_name: str,
    finals: dict[str, float],
    result: Any,
    logging_seconds: float,
    uri: str,
    *,
    multirun: bool,
    label: str = "",
) -> None:
    if multirun:
        detail = format_finals(finals) if status == "FINISHED" else result.reason
        print(
            f"{label} {status} {run_name}: {detail} ({result.train_seconds:.2f} s)",
            flush=True,
        )
        return
    print(f"run {run_id} {status}: {run_name}")
    if status == "FINISHED":
        print(f"  {format_finals(finals)}")
    else:
        print(f"  {result.reason}")
    print(
        f"  {result.epochs_run} epochs, {result.train_seconds:.2f} s training, "
        f"{logging_seconds:.2f} s logging"
    )
    ui = PROGRAM + " ui" + ("" if uri == default_uri() else f" tracking.uri={uri}")
    print(f"  store: {uri}\n  compare runs in the MLflow UI: {ui}")


def progress_bar(total: int, description: str, *, disable: bool) -> Any:
    if disable:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="epoch", leave=False, disable=None)


def with_progress(callback: Any, progress: Any) -> Any:
    if progress is None:
        return callback

    def on_epoch(epoch: int, metrics: dict[str, float], rows: Any) -> None:
        callback(epoch, metrics, rows)
        progress.update(epoch - progress.n)
        progress.set_postfix(loss=f"{metrics[schema.TRAIN_LOSS]:.4g}", refresh=False)

    return on_epoch


def default_uri() -> str:
    from rprop_bench.store import resolve_uri

    env = os.environ.get("MLFLOW_TRACKING_URI")
    return resolve_uri(env or schema.DEFAULT_TRACKING_URI, Path.cwd())
