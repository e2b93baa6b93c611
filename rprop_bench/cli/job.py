"""One Hydra job: the task Hydra runs, composed of the CLI's pieces.

Identity (:mod:`~rprop_bench.cli.identity`), objects from config (:mod:`~rprop_bench.cli.build`),
the skip policy (:mod:`~rprop_bench.cli.resume`), training and recording
(:mod:`~rprop_bench.cli.recording`, :mod:`~rprop_bench.cli.outcome`) and seed groups
(:mod:`~rprop_bench.cli.group_job`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from rprop_bench import schema
from rprop_bench.cli.build import build, tracking_options
from rprop_bench.cli.group_job import run_seed_group
from rprop_bench.cli.identity import job_label, run_key, run_names, run_tags, sweep_id_for
from rprop_bench.cli.outcome import Entry, SweepStopped, stop_file, stopped_sweep
from rprop_bench.cli.recording import draw_step_heatmap, run_params, train_and_record
from rprop_bench.cli.resume import lost_to_another_sweep, skip_if_done
from rprop_bench.cli.seed_groups import group_of
from rprop_bench.cli.validate import ConfigError, validate
from rprop_bench.signals import (
    install_sigterm_handler,
    interrupt_reason,
    interrupts_held,
    orphaned,
)


def run_job(cfg: DictConfig) -> dict[str, Any]:
    """The Hydra task: one training run recorded in MLflow.

    Returns a summary dict (status, run id, final metrics). In a single run, a diverged or
    crashed run exits non-zero after it is recorded; in a multirun the sweep goes on. A bad
    config (found here only if the pre-flight check was skipped) exits with one line.
    """
    from rprop_bench.store import TrackingError

    install_sigterm_handler()
    _redact_hydra_files()
    try:
        return _run_job(cfg)
    except KeyboardInterrupt as exc:
        _kill_live_runs(exc)
        raise
    except (ConfigError, TrackingError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        if isinstance(exc, TrackingError) and HydraConfig.get().mode == RunMode.MULTIRUN:
            with contextlib.suppress(OSError):  # the store failed: no later job of the sweep
                stop_file().write_text(str(exc))
            raise SweepStopped(str(exc)) from None
        raise SystemExit(2) from None
    finally:
        if orphaned():  # a joblib worker whose sweep died: its run is recorded; end it now
            sys.stderr.flush()
            os._exit(128 + signal.SIGTERM)


def _kill_live_runs(exc: KeyboardInterrupt) -> None:
    """Mark KILLED the runs of this job that an interrupt left RUNNING: one that came while a
    run was created, or wrote its final metrics and artifacts (training marks its own)."""
    module = sys.modules.get("rprop_bench.tracking.recorder")
    if module is None:  # interrupted before MLflow was imported: no run was created
        return
    live_recorders = module.live_recorders
    why = interrupt_reason(exc)
    live = live_recorders()
    if not live:
        return
    # a second signal meanwhile: no half-written mark
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for recorder in live:
            try:
                recorder.kill(f"{why} while the run was being recorded")
            except Exception as error:  # the store is away: a later sweep finds the run dead
                print(f"run {recorder.run_id} could not be marked KILLED: {error}",
                      file=sys.stderr)  # fmt: skip
            else:
                print(f"run {recorder.run_id} KILLED: {why}", file=sys.stderr)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _redact_hydra_files() -> None:
    """Hydra's record of the job (``.hydra/*.yaml``) holds the overrides as given: mask a
    password of ``tracking.uri``, and make them private. (A sweep's ``multirun.yaml`` is the
    sweeper's, in the main process.)"""
    from rprop_bench.redaction import redact_file

    hydra_cfg = HydraConfig.get()
    output = Path(hydra_cfg.runtime.output_dir)
    for path in (output / str(hydra_cfg.output_subdir or ".hydra")).glob("*.yaml"):
        redact_file(path)


def _run_job(cfg: DictConfig) -> dict[str, Any]:
    with interrupts_held():  # an import cut short by Ctrl-C breaks the rest of the process
        from rprop_bench import tracking  # MLflow: imported in the job, not by the CLI's checks

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    validate(cfg)
    names = run_names(cfg, hydra_cfg.runtime.choices.get("optimizer"))
    cwd = Path.cwd()
    options = tracking_options(cfg, cwd)
    tracker = tracking.Tracker.open(options)
    parent_run_id = None
    sweep_tags: dict[str, str] = {}
    group = group_of(run_key(cfg)) if multirun else None
    if multirun:
        stopped_sweep()  # an earlier job saw the store fail: this one would too
        sweep_dir = (cwd / str(hydra_cfg.sweep.dir)).resolve()
        sweep_tags[schema.TAG_SWEEP_ID] = sweep_id = sweep_id_for(sweep_dir)
        if group is None:
            skipped = skip_if_done(tracker, cfg, names.run_name, job_label(), sweep_id=sweep_id)
            if skipped is not None:
                return skipped
        parent_run_id = tracker.ensure_sweep_parent(
            sweep_id, sweep_dir, f"sweep {sweep_id}", {schema.TAG_OUTPUT_DIR: str(sweep_dir)}
        )
        if group is not None:
            return run_seed_group(cfg, group, tracker, parent_run_id, sweep_tags, sweep_dir)
    built = build(cfg)
    tags = {**run_tags(cfg, names, built.data.task), **sweep_tags}
    recorder = tracker.start_run(
        names.run_name, tags, run_params(cfg), parent_run_id, draw_heatmap=draw_step_heatmap
    )
    label = job_label() if multirun else ""  # a single run has no job number
    if multirun:  # two sweeps that share this grid point: one trains it
        lost = lost_to_another_sweep(tracker, cfg, recorder.run_id, names.run_name, label)
        if lost is not None:
            return lost
    entry = Entry(cfg, names, recorder, label, Path(hydra_cfg.runtime.output_dir))
    return train_and_record(built, entry, options.uri, multirun=multirun)
