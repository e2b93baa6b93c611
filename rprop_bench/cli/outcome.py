"""How a run ends: FINISHED, FAILED (diverged, or an error), KILLED, or FAILED locally.

The failure policy: an interrupt marks every run of the job KILLED and re-raises; another
error marks them FAILED with the reason (a sweep goes on, a single run exits 1); a store that
went away leaves the failure, and the unsent metrics, in a file in the output directory.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rprop_bench import schema
from rprop_bench.cli.console import print_summary
from rprop_bench.cli.identity import RunNames
from rprop_bench.redaction import redact
from rprop_bench.signals import interrupt_reason

LOCAL_FAILURE_FILE = schema.LOCAL_FAILURE_FILE
#: The file in a sweep's directory that tells its later jobs that the store failed.
STOP_FILE = ".rprop_bench_store_failed"


class SweepStopped(RuntimeError):
    """The store failed in a sweep: the job that saw it said so in one line, and no later
    job trains (the CLI exits 2). One argument, so that it pickles back from a worker."""


def stop_file() -> Path:
    """This sweep's :data:`STOP_FILE`."""
    from hydra.core.hydra_config import HydraConfig

    return (Path.cwd() / str(HydraConfig.get().sweep.dir)).resolve() / STOP_FILE


def stopped_sweep() -> None:
    """Raise :class:`SweepStopped` if an earlier job of this sweep saw the store fail."""
    path = stop_file()
    if path.exists():
        raise SweepStopped(path.read_text(errors="replace") or "the store failed")


@dataclass
class Entry:
    """One run being trained: its config, names, recorder and its label in the sweep."""

    cfg: DictConfig
    names: RunNames
    recorder: Any
    label: str
    output_dir: Path


def guarded(train_call: Any, entries: list[Entry], *, multirun: bool) -> Any:
    """``train_call()``, ending every run of ``entries`` KILLED or FAILED if it raises.

    Ctrl-C or SIGTERM marks every run KILLED (metrics so far written) and re-raises. Another
    error marks every run FAILED with the reason; a sweep goes on (``None`` is returned), a
    single run exits 1. A store that went away is re-raised: recording there would fail too.
    """
    from rprop_bench.retry import StoreUnavailable

    try:
        return train_call()
    except KeyboardInterrupt as exc:
        why = interrupt_reason(exc)
        for entry in entries:
            entry.recorder.fail(why, entry.names.run_name, status="KILLED")
            print(f"run {entry.recorder.run_id} KILLED: {entry.names.run_name}: {why}",
                  file=sys.stderr)  # fmt: skip
        raise
    except StoreUnavailable:
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        for entry in entries:
            try:
                entry.recorder.fail(reason, entry.names.run_name)
            except StoreUnavailable as store:  # the store failed too: the runs fail locally
                raise StoreUnavailable(f"{store}; the run had failed: {reason}") from exc
            print(f"run {entry.recorder.run_id} FAILED: {entry.names.run_name}: {reason}",
                  file=sys.stderr)  # fmt: skip
        if multirun:
            return None
        raise SystemExit(1) from exc


def record_result(
    entry: Entry, result: Any, model: Any, uri: str, *, multirun: bool
) -> dict[str, Any]:
    """End the run FINISHED with its final metrics, or FAILED if it diverged; print a line."""
    from rprop_bench.retry import StoreUnavailable

    recorder, names = entry.recorder, entry.names
    finals = dict(result.final_metrics)
    try:
        if result.diverged:
            recorder.fail(result.reason or "diverged", names.run_name, kind=schema.FAILURE_DIVERGED)
        else:
            if names.problem == "line":
                finals.update(line_weights(model))
            if not recorder.finish(finals, names.run_name):
                return _reaped(entry, multirun=multirun)
    except StoreUnavailable as exc:
        return failed_locally(entry, str(exc), multirun=multirun)
    status = "FAILED" if result.diverged else "FINISHED"
    print_summary(
        status, recorder.run_id, names.run_name, finals, result, recorder.seconds, uri,
        multirun=multirun, label=entry.label,
    )  # fmt: skip
    if result.diverged and not multirun:
        raise SystemExit(1)
    return {"status": status, "run_id": recorder.run_id, "final_metrics": finals}


def _reaped(entry: Entry, *, multirun: bool) -> dict[str, Any]:
    """The run was declared dead (KILLED) by another sweep while this process was paused."""
    print(
        f"{entry.label} run {entry.recorder.run_id} ({entry.names.run_name}) was marked KILLED "
        "by another sweep while this process was stopped; its result is dropped, the redo "
        "stands",
        file=sys.stderr,
        flush=True,
    )
    if multirun:
        return {"status": "KILLED", "run_id": entry.recorder.run_id}
    raise SystemExit(1)


def failed_locally(entry: Entry, reason: str, *, multirun: bool) -> dict[str, Any]:
    """The store failed or went away mid-run: record the failure (and the unsent metrics) in
    a file, say so in one line, and stop (see :func:`all_failed_locally`)."""
    return all_failed_locally([entry], reason, multirun=multirun)


def all_failed_locally(entries: list[Entry], reason: str, *, multirun: bool) -> dict[str, Any]:
    """The store failed or went away while ``entries`` trained: record each failure (and the
    unsent metrics) in a file in its output directory, say so in one line, and stop.

    The runs cannot be marked FAILED in a store that does not answer, so they are marked
    FAILED here, and the user is told where. In the store they stay RUNNING until a later
    sweep finds their process dead and records them FAILED from this file
    (:meth:`~rprop_bench.tracking.Tracker.previous_runs`). A single run exits 2; in a sweep
    no later job trains (:class:`SweepStopped`): they would fail the same way.
    """
    wheres = []
    for entry in entries:
        recorder, names = entry.recorder, entry.names
        path = entry.output_dir.resolve() / LOCAL_FAILURE_FILE
        record = {
            "status": "FAILED", "run_id": recorder.run_id, "run_name": names.run_name,
            "uri": redact(recorder.options.uri), "reason": redact(reason), "time": time.time(),
            "unsent_metrics": recorder.unsent_metrics(),
        }  # fmt: skip
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=1))
            where = f"marked FAILED locally in {path}"
        except OSError as exc:  # the disk that is full holds the output directory too
            where = f"could not be marked FAILED locally either ({exc.strerror})"
        wheres.append(f"run {recorder.run_id} ({names.run_name}) {where}")
    line = f"{reason}; {'; '.join(wheres)}"
    print(f"error: {line}", file=sys.stderr, flush=True)
    if not multirun:
        raise SystemExit(2)
    with contextlib.suppress(OSError):
        stop_file().write_text(line)
    raise SweepStopped(line)


def line_weights(model: Any) -> dict[str, float]:
    """``learned_w`` and ``learned_b`` of a one-unit linear model (problem ``line``)."""
    import torch

    linear = next((m for m in model.modules() if isinstance(m, torch.nn.Linear)), None)
    if linear is None or linear.weight.numel() != 1 or linear.bias is None:
        return {}
    return {
        schema.LINE_WEIGHT: float(linear.weight.detach().reshape(())),
        schema.LINE_BIAS: float(linear.bias.detach().reshape(())),
    }
