"""Training one run into its recorder: its inputs, its params, its epochs, its result."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from rprop_bench import schema
from rprop_bench.cli.build import Built
from rprop_bench.cli.console import progress_bar, with_progress
from rprop_bench.cli.outcome import Entry, failed_locally, guarded, record_result


def data_splits(problem: str, data: Any) -> list[tuple[str, str, Any, Any]]:
    """The problem's splits as ``(name, context, features, targets)``, NumPy arrays."""
    return [
        (
            f"{problem}/{context}",
            context,
            getattr(data, f"x_{split}").cpu().numpy(),
            getattr(data, f"y_{split}").cpu().numpy(),
        )
        for split, context in schema.DATASET_SPLITS.items()
    ]


def log_inputs(entry: Entry, data: Any, datasets: Any = None) -> None:
    """The run's inputs: the composed config, its problem's splits as MLflow datasets
    (``datasets``: made once for a stack, :func:`rprop_bench.tracking.dataset_inputs`), and
    the data of problem ``line`` as a table."""
    import torch

    entry.recorder.log_text(OmegaConf.to_yaml(entry.cfg, resolve=True), schema.ARTIFACT_CONFIG)
    # (redacted by the recorder: tracking.uri may hold a password)
    entry.recorder.log_datasets(datasets or data_splits(entry.names.problem, data))
    if entry.names.problem == "line":
        rows = torch.cat([data.x_train, data.y_train], dim=1).cpu().tolist()
        entry.recorder.log_table(("x", "y"), rows, schema.ARTIFACT_LINE_DATA)


def run_params(cfg: DictConfig) -> dict[str, str]:
    """The run's MLflow params: the resolved config, flattened to dotted keys.

    Left out: how a tuning study searches (``tune``, the optimizer's ``search`` space); the
    run's tags say which study and trial it belongs to. And the store's URI, which may hold
    a password and is where the run is, not what it computed."""
    from rprop_bench.params import flatten

    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    plain.pop("tune", None)
    if isinstance(plain.get("tracking"), dict):
        plain["tracking"].pop("uri", None)
    if isinstance(plain.get("optimizer"), dict):
        plain["optimizer"].pop(schema.OPTIMIZER_SEARCH_KEY, None)
    return flatten({str(k): v for k, v in plain.items()})


def draw_step_heatmap(rows: Any, title: str) -> Any:
    """The run's step-size heatmap, drawn for the writer; matplotlib is imported only here."""
    from rprop_bench.signals import interrupts_held

    # matplotlib's first import loads C extensions; a signal inside one fails the import with
    # "ImportError: initialization failed" and a traceback: hold it until the import is done
    with interrupts_held():
        from rprop_bench.step_figure import step_heatmap

    return step_heatmap(rows, title)


def train_and_record(built: Built, entry: Entry, uri: str, *, multirun: bool) -> dict[str, Any]:
    """Train with the entry's recorder as the callback and end the run FINISHED, FAILED or
    KILLED (or FAILED locally, in its output directory, if the store went away)."""
    from rprop_bench.retry import StoreUnavailable
    from rprop_bench.training import train

    progress = progress_bar(built.settings.epochs, entry.names.run_name, disable=multirun)

    def train_one() -> Any:
        log_inputs(entry, built.data)
        return train(
            built.model, built.data, built.optimizer, built.settings,
            with_progress(entry.recorder.on_epoch, progress),
        )  # fmt: skip

    try:
        result = guarded(train_one, [entry], multirun=multirun)
    except StoreUnavailable as exc:
        return failed_locally(entry, str(exc), multirun=multirun)
    finally:
        if progress is not None:
            progress.close()
    if result is None:
        return {"status": "FAILED", "run_id": entry.recorder.run_id}
    return record_result(entry, result, built.model, uri, multirun=multirun)
