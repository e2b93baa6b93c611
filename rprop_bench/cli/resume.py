"""Whether a sweep's job is already done: the skip and resume policy."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from rprop_bench.cli.identity import run_key
from rprop_bench.cli.seed_groups import sweep_started, vectorized


def skip_if_done(
    tracker: Any,
    cfg: DictConfig,
    run_name: str,
    label: str,
    *,
    quiet: bool = False,
    sweep_id: str | None = None,
    known: list[Any] | None = None,
) -> dict[str, Any] | None:
    """In a sweep: a summary if this job's run key is already done (or running elsewhere).

    Dead RUNNING runs of the key are marked KILLED on the way (see
    :meth:`rprop_bench.tracking.Tracker.previous_runs`). ``sweep.skip_finished=false``
    redoes every job, except one that its seed group trained in this very sweep. A run that
    FAILED because its loss diverged is a deterministic result, not trained again unless
    ``sweep.retry_failed=true``. ``quiet`` prints only the reaped runs (a seed group
    checking its other members).
    A FINISHED run of an earlier sweep is reused: it is counted a run of sweep ``sweep_id``
    too (:meth:`rprop_bench.tracking.Tracker.adopt`). ``known``: the key's runs, if a
    stack looked them up at once (:meth:`rprop_bench.tracking.Tracker.runs_by_key`).
    """
    started = sweep_started() if vectorized(cfg) else None
    previous = tracker.previous_runs(run_key(cfg), since=started, known=known)
    for run_id in previous.reaped:
        print(f"{label} run {run_id} of {run_name} was left RUNNING by a dead "
              f"process: marked KILLED, redoing it", flush=True)  # fmt: skip
    if previous.since is not None:
        why, done = "trained with its seed group in this sweep", previous.since
    elif OmegaConf.select(cfg, "sweep.skip_finished", default=True) and (
        previous.finished or previous.running
    ):
        why = "already FINISHED" if previous.finished else "already RUNNING in a live process"
        done = previous.finished or previous.running
        if previous.finished and sweep_id:
            tracker.adopt(previous.finished, sweep_id)
    elif (
        previous.diverged
        and OmegaConf.select(cfg, "sweep.skip_finished", default=True)
        and not OmegaConf.select(cfg, "sweep.retry_failed", default=False)
    ):
        why = "already FAILED (its loss diverged; sweep.retry_failed=true trains it again)"
        done = previous.diverged
        if sweep_id:
            tracker.adopt(done, sweep_id)
    else:
        return None
    if not quiet:
        print(f"{label} SKIPPED {run_name}: {why} as run {done}", flush=True)
    return {"status": "SKIPPED", "run_id": done}


def lost_to_another_sweep(
    tracker: Any,
    cfg: DictConfig,
    run_id: str,
    run_name: str,
    label: str,
    known: list[Any] | None = None,
) -> dict[str, Any] | None:
    """After this job created run ``run_id``: a SKIPPED summary if another sweep claimed the
    run key first (the new run is then deleted, see
    :meth:`rprop_bench.tracking.Tracker.lost_claim`), else ``None``: train it. ``known``:
    the key's runs, if looked up at once with its stack's."""
    finished_counts = bool(OmegaConf.select(cfg, "sweep.skip_finished", default=True))
    winner = tracker.lost_claim(run_id, run_key(cfg), finished_counts=finished_counts, known=known)
    if winner is None:
        return None
    print(f"{label} SKIPPED {run_name}: another sweep claimed it first, as run {winner}",
          flush=True)  # fmt: skip
    return {"status": "SKIPPED", "run_id": winner}
