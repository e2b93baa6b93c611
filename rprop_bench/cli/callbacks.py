"""A Hydra callback that makes every multirun one MLflow parent run with nested children.

``conf/config.yaml`` registers :class:`SweepParentCallback`. When a multirun starts (in the
main process, before any job), it creates the sweep's parent run; each job, in this process
or a joblib worker, finds that parent by the sweep id and nests under it. When the multirun
ends, the parent is marked FINISHED and a summary printed. The sweep id comes from the jobs'
run keys (see :func:`rprop_bench.cli.identity.sweep_id_of`), so the same sweep run again (resumed
after a crash) finds its parent run and opens it again.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

if TYPE_CHECKING:
    from rprop_bench.tracking.tracker import SweepEnd

#: The longest run name MLflow's SQL stores keep (``runs.name`` is VARCHAR(250); PostgreSQL and
#: MySQL refuse a longer one, SQLite does not check).
MAX_RUN_NAME = 250


def parent_run_name(shown: str, sweep_dir: Path) -> str:
    """``sweep · OVERRIDES · DATE TIME``, the overrides cut short (``…``) to fit
    :data:`MAX_RUN_NAME`; the full command line is in the parent's command tag."""
    when = f" · {sweep_dir.parent.name} {sweep_dir.name}"
    room = MAX_RUN_NAME - len("sweep · ") - len(when)
    if len(shown) > room:
        shown = shown[: room - 1] + "…"
    return f"sweep · {shown}{when}"


def sweep_description(
    command: str, params: dict[str, str], overrides: list[str], jobs: str | None
) -> str:
    """The parent's description in the MLflow UI (Markdown): how many runs, the command that
    started the sweep, and its grid (the sweep config's ``params`` with the command line's
    overrides of them) and fixed overrides.

    Example:
        >>> print(sweep_description("python -m rprop_bench sweep optimizer=sgd",
        ...       {"optimizer": "adam,sgd", "train.seed": "0,1"}, ["optimizer=sgd"], "2"))
        Sweep of 2 runs, started with
        <BLANKLINE>
            python -m rprop_bench sweep optimizer=sgd
        <BLANKLINE>
        Grid:
        <BLANKLINE>
        - `optimizer`: sgd
        - `train.seed`: 0, 1
    """
    grid = dict(params)
    fixed = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key.split(".")[0] in ("sweep", "tracking") or not value:
            continue  # how the sweep is run and stored, not what it computes
        if key in grid or "," in value:
            grid[key] = value
        else:
            fixed.append(override)
    size = f"{jobs} runs" if jobs else "runs"
    lines = [f"Sweep of {size}, started with", "", f"    {command}", ""]
    if grid:
        lines += ["Grid:", ""]
        lines += [f"- `{k}`: {', '.join(v.split(','))}" for k, v in grid.items()]
    else:
        lines.append("Its jobs are listed one by one (a phase of a tuning study).")
    if fixed:
        lines += ["", "Fixed: " + ", ".join(f"`{o}`" for o in fixed)]
    return "\n".join(lines)


def sweep_summary(ended: SweepEnd) -> str:
    """What a sweep did, e.g. ``6 trained, 6 reused; runs: 12 FINISHED``: the runs this
    invocation trained, those it reused (FINISHED by an earlier attempt or sweep), and the
    sweep's runs by status (reused ones included; earlier interrupted attempts too)."""
    from rprop_bench.text import count

    counts = dict(ended.counts)
    if ended.reused:
        counts["FINISHED"] = counts.get("FINISHED", 0) + ended.reused
    statuses = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"
    reused = ended.reused + ended.finished_before
    summary = f"{ended.trained} trained, {reused} reused; runs: {statuses}"
    if ended.still_running:
        summary += (
            f" (parent left RUNNING: {count(ended.still_running, 'run')} of another sweep "
            "still running into it)"
        )
    return summary


class SweepParentCallback(Callback):
    """Creates and ends the MLflow parent run of a Hydra multirun."""

    def __init__(self) -> None:
        self._tracker: Any = None
        self._parent_run_id: str | None = None
        self._started = 0.0  # Unix time: runs started since were trained by this invocation

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Create the sweep's parent run before the first job starts."""
        from rprop_bench.store import TrackingError

        self._started = time.time()
        try:
            self._start(config)
        except TrackingError as exc:  # e.g. a store MLflow cannot open: one line, no traceback
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    def _start(self, config: DictConfig) -> None:
        from rprop_bench import schema, tracking
        from rprop_bench.cli.build import tracking_options
        from rprop_bench.cli.identity import (
            PROGRAM,
            SWEEP_COMMAND_ENV,
            SWEEP_SIZE_ENV,
            SWEEP_TITLE_ENV,
            SWEEP_WITHIN_ENV,
            git_commit,
            sweep_id_for,
        )

        cwd = Path.cwd()
        sweep_dir = (cwd / str(config.hydra.sweep.dir)).resolve()
        sweep_id = sweep_id_for(sweep_dir)
        options = tracking_options(config, cwd)
        uri = options.uri
        self._tracker = tracking.Tracker.open(options)
        resumed = self._tracker.find_sweep_parent(sweep_id) is not None
        overrides = [str(o) for o in config.hydra.overrides.task]
        shown = " ".join(o for o in overrides if not o.startswith("sweep=")) or "default grid"
        command = " ".join([PROGRAM, "sweep", *map(shlex.quote, overrides)])
        tags = {
            schema.TAG_COMMAND: os.environ.get(SWEEP_COMMAND_ENV) or command,
            schema.TAG_OUTPUT_DIR: str(sweep_dir),
            schema.TAG_GIT_COMMIT: git_commit(),
        }
        params = {str(k): str(v) for k, v in (config.hydra.sweeper.get("params") or {}).items()}
        tags[schema.TAG_NOTE] = sweep_description(
            tags[schema.TAG_COMMAND], params, overrides, os.environ.get(SWEEP_SIZE_ENV)
        )
        within = os.environ.get(SWEEP_WITHIN_ENV)  # a phase of a tuning study: nested in it
        if within:
            tags[schema.TAG_PARENT_RUN_ID] = within
        name = os.environ.get(SWEEP_TITLE_ENV) or parent_run_name(shown, sweep_dir)
        self._parent_run_id = self._tracker.ensure_sweep_parent(
            sweep_id, sweep_dir, name[:MAX_RUN_NAME], tags, reopen=True
        )
        how = "resuming parent run" if resumed else "parent run"
        print(f"sweep {sweep_id}: {how} {self._parent_run_id} in {uri}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Mark the parent run FINISHED and print how the children ended; exit 1 if a child
        was left RUNNING by a process that is gone."""
        from rprop_bench.text import count

        if self._tracker is None or self._parent_run_id is None:
            return
        ended = self._tracker.end_sweep_parent(self._parent_run_id, since=self._started)
        print(
            f"sweep done: {sweep_summary(ended)}; parent run {self._parent_run_id}\n"
            f"  compare the runs in the MLflow UI: python -m rprop_bench ui",
            file=sys.stdout,
            flush=True,
        )
        if ended.unfinished:  # work left undone is not a success
            print(
                f"error: {count(ended.unfinished, 'run')} of this sweep ended without recording "
                "how (RUNNING, its process gone); the parent is marked FAILED; run the same "
                "command again to redo them",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(1)
