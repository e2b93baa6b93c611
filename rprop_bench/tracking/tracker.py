"""The store and experiment: runs created, sweep parents found or made, dead runs marked
KILLED, and a report logged under its sweep (see the package)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from mlflow.entities import Metric, Param, Run
from mlflow.exceptions import MlflowException

from rprop_bench import schema
from rprop_bench.first_start import open_store
from rprop_bench.liveness import process_tags, run_is_alive
from rprop_bench.locks import file_lock
from rprop_bench.params import MAX_TAG_VALUE, cut
from rprop_bench.redaction import redact
from rprop_bench.store import TrackingError, artifact_root
from rprop_bench.tracking.options import TrackingOptions, open_client
from rprop_bench.tracking.recorder import RunRecorder

if TYPE_CHECKING:
    from rprop_bench.tracking.recorder import HeatmapDrawer

MAX_PARAMS_PER_BATCH = 100  # MLflow's limit for params in one log_batch call
_PARENT_LOCK = ".rprop_bench_parent.lock"


def _local_failure(output_dir: str | None, run_id: str) -> dict[str, Any] | None:
    """The local failure record a run's process left in ``output_dir``, if it is this run's."""
    if not output_dir:
        return None
    try:
        record = json.loads((Path(output_dir) / schema.LOCAL_FAILURE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("run_id") == run_id else None


class SweepEnd(NamedTuple):
    """How a sweep's parent run ended (see :meth:`Tracker.end_sweep_parent`)."""

    counts: dict[str, int]  # the children by status
    still_running: int  # children RUNNING in live processes (another sweep): parent not ended
    reused: int = 0  # FINISHED runs of earlier sweeps that this sweep's grid reused
    trained: int = 0  # children started since ``since`` (trained by this invocation)
    finished_before: int = 0  # children FINISHED before ``since`` (an earlier attempt)
    unfinished: int = 0  # children RUNNING whose process is gone: the parent is FAILED


#: The most runs :meth:`Tracker.runs_by_key` reads in its one search (MLflow's SQL stores
#: return at most 50,000 a call).
_BULK_RUNS = 50_000


@dataclass(frozen=True)
class PreviousRuns:
    """What the store already holds for one run key (see :meth:`Tracker.previous_runs`)."""

    finished: str | None = None  # the id of a FINISHED run, if any
    running: str | None = None  # the id of a RUNNING run whose process is alive, if any
    reaped: list[str] = field(default_factory=list)  # dead RUNNING runs, now marked KILLED
    since: str | None = None  # the id of a run started at or after ``since``, not reaped
    diverged: str | None = None  # the id of a run that FAILED because its loss diverged


class Tracker:
    """An open MLflow store and experiment: creates runs and sweep parents.

    Use :meth:`open` to reuse one tracker per store and experiment within a process (a sweep's
    jobs then share the client and skip the experiment lookup).

    Raises:
        TrackingError: the store or the experiment cannot be opened.
    """

    _open: ClassVar[dict[tuple[str, str], Tracker]] = {}

    @classmethod
    def open(cls, options: TrackingOptions) -> Tracker:
        """The tracker for ``options.uri`` and ``options.experiment``, created on first use."""
        key = (options.uri, options.experiment)
        tracker = cls._open.get(key)
        if tracker is None:
            tracker = cls._open[key] = cls(options)
        else:
            tracker.options = options
            tracker.client.retry_seconds = options.retry_seconds
        return tracker

    def __init__(self, options: TrackingOptions) -> None:
        self.options = options
        self._parents: dict[str, str] = {}
        try:
            note = open_store(options.uri)  # one process at a time on a store's first start
            if note:
                print(note, file=sys.stderr, flush=True)
            self.client: Any = open_client(options.uri, options.retry_seconds)
            self.experiment_id = self._experiment_id()
        except MlflowException as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TrackingError(f"cannot open MLflow store {options.uri}: {first}") from exc

    def _experiment_id(self) -> str:
        """The experiment's id, made (or restored) if need be, with the training-view tag."""
        name = self.options.experiment
        found = self.client.get_experiment_by_name(name)
        if found is None:
            kind = {schema.EXPERIMENT_KIND_TAG: schema.EXPERIMENT_KIND_TRAINING}
            try:
                return str(
                    self.client.create_experiment(
                        name, artifact_location=artifact_root(self.options.uri), tags=kind
                    )
                )
            except MlflowException:  # another process created it first
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            self.client.restore_experiment(found.experiment_id)
        if schema.EXPERIMENT_KIND_TAG not in found.tags:  # made before the tag; a user's kind stays
            self.client.set_experiment_tag(
                found.experiment_id, schema.EXPERIMENT_KIND_TAG, schema.EXPERIMENT_KIND_TRAINING
            )
        return str(found.experiment_id)

    def start_run(
        self,
        run_name: str,
        tags: Mapping[str, str],
        params: Mapping[str, str],
        parent_run_id: str | None = None,
        draw_heatmap: HeatmapDrawer | None = None,
        sharing: int = 1,
        curves: Collection[str] | None = None,
    ) -> RunRecorder:
        """Create a run (nested under ``parent_run_id`` if given) with its tags and params.

        ``draw_heatmap`` draws the run's step-size heatmap at its end (see :class:`RunRecorder`).
        ``sharing``: the runs of one stack that are recorded together; they write their
        buffered metrics, all together, about as often as one run does (each ``sharing`` times
        less often, but at least twice within ``stale_seconds``, so that other hosts see
        their heartbeats): a stack of 5,000 members would otherwise make 5,000 writes every
        ``flush_seconds``. ``curves``: the per-epoch metrics kept as histories (default: all;
        see :class:`RunRecorder`).
        """
        started = time.perf_counter()
        all_tags = {k: cut(redact(v), MAX_TAG_VALUE) for k, v in {**tags, **process_tags()}.items()}
        if parent_run_id:
            all_tags[schema.TAG_PARENT_RUN_ID] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=redact(run_name), tags=all_tags)
        run_id = run.info.run_id
        # made first, so that an interrupt from here on finds the run (live_recorders)
        flush = self.options.flush_seconds
        if sharing > 1:
            flush = min(flush * sharing, max(flush, self.options.stale_seconds / 2))
        recorder = RunRecorder(self.client, run_id, self.options, draw_heatmap, flush, curves)
        items = [Param(k, redact(v)) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])
        recorder.seconds += time.perf_counter() - started
        return recorder

    def runs_by_key(
        self, run_keys: Collection[str], tags: Mapping[str, str]
    ) -> dict[str, list[Run]] | None:
        """The training runs of each of ``run_keys``, oldest first, from one search of the
        runs with ``tags`` (tags that every run of these keys has, its problem and model): a
        stack of 5,000 runs looks itself up at once, not in 5,000 searches. None where that
        search finds more runs than one search returns (then look up each key alone)."""
        found = self._runs_with({**tags, schema.TAG_RUN_KIND: schema.RUN_KIND_TRAINING}, _BULK_RUNS)
        if len(found) >= _BULK_RUNS:
            return None
        by_key: dict[str, list[Run]] = {key: [] for key in run_keys}
        for run in found:
            listed = by_key.get(run.data.tags.get(schema.TAG_RUN_KEY, ""))
            if listed is not None:
                listed.append(run)
        return by_key

    def previous_runs(
        self, run_key: str, since: float | None = None, known: list[Run] | None = None
    ) -> PreviousRuns:
        """Look up the training runs with ``run_key``; mark the dead RUNNING ones KILLED.

        A resumed sweep skips a key with a FINISHED run (or a live RUNNING one elsewhere) and
        redoes every other. Marking the dead ones KILLED, with the reason, means no run stays
        RUNNING forever and none can be mistaken for a result. ``since`` (Unix time) also
        finds a run started since then, whatever its status: a seed group trained it in this
        sweep (a diverged seed FAILED there must not be redone alone by its own job).
        ``known``: the key's runs, if already looked up (:meth:`runs_by_key`).
        """
        runs = known if known is not None else self._runs_tagged(
            schema.TAG_RUN_KEY, run_key, schema.RUN_KIND_TRAINING, 1000)  # fmt: skip
        finished = running = recent = diverged = None
        reaped: list[str] = []
        for run in runs:
            status, run_id = run.info.status, run.info.run_id
            dead = status == "RUNNING" and not run_is_alive(run, self.options.stale_seconds)
            if since is not None and not dead and (run.info.start_time or 0) >= since * 1000:
                recent = recent or run_id
            if status == "FINISHED":
                finished = finished or run_id
            elif status == "RUNNING" and not dead:
                running = running or run_id
            elif dead:
                self._mark_dead(run)
                reaped.append(run_id)
            elif status == "FAILED" and schema.failed_by_divergence(run.data.tags):
                diverged = diverged or run_id
        return PreviousRuns(finished, running, reaped, recent, diverged)

    def _mark_dead(self, run: Run) -> None:
        """End a RUNNING run whose process is gone: FAILED with the reason its process left in
        :data:`~rprop_bench.schema.LOCAL_FAILURE_FILE` (the store had failed), and the
        metrics it could not send; else KILLED."""
        tags = run.data.tags
        record = _local_failure(tags.get(schema.TAG_OUTPUT_DIR), run.info.run_id)
        if record is not None:
            unsent = [Metric(str(k), float(v), int(record.get("time", 0) * 1000), int(s))
                      for k, v, s in record.get("unsent_metrics") or []]  # fmt: skip
            for i in range(0, len(unsent), 1000):
                self.client.log_batch(run.info.run_id, metrics=unsent[i : i + 1000])
            self.client.set_tag(run.info.run_id, schema.TAG_FAILURE_KIND, schema.FAILURE_STORE)
            self.client.set_tag(
                run.info.run_id, schema.TAG_FAILURE_REASON,
                cut(f"{record.get('reason', 'the store failed')} (recorded from its local "
                    "failure file by a later sweep)", MAX_TAG_VALUE),
            )  # fmt: skip
            self.client.set_terminated(run.info.run_id, status="FAILED")
            return
        writer = f"{tags.get(schema.TAG_HOST, '?')} pid {tags.get(schema.TAG_PID, '?')}"
        self._mark_killed(run.info.run_id, f"its process died ({writer}); marked KILLED by a "
                          "later sweep")  # fmt: skip

    def _mark_killed(self, run_id: str, reason: str) -> None:
        self.client.set_tag(run_id, schema.TAG_FAILURE_REASON, reason)
        self.client.set_terminated(run_id, status="KILLED")

    def _children(self, parent_run_id: str, *, running: bool = False) -> list[Run]:
        """The runs nested under ``parent_run_id`` (only the RUNNING ones if ``running``)."""
        where = f"tags.`{schema.TAG_PARENT_RUN_ID}` = '{parent_run_id}'"
        if running:
            where += " and attributes.status = 'RUNNING'"
        return self.client.search_runs([self.experiment_id], where, max_results=50000)

    def find_sweep_parent(self, sweep_id: str, kind: str = schema.RUN_KIND_SWEEP) -> str | None:
        """The run id of the parent of sweep ``sweep_id`` (or of a study, ``kind``), if any."""
        runs = self._runs_tagged(schema.TAG_SWEEP_ID, sweep_id, kind, 1)
        return runs[0].info.run_id if runs else None

    def adopt(self, run_id: str, sweep_id: str) -> None:
        """Count the FINISHED run ``run_id`` of an earlier sweep as a run of sweep ``sweep_id``
        too (:data:`~rprop_bench.schema.TAG_SWEEPS`): the new sweep reuses it, and its report
        covers it."""
        tags = self.client.get_run(run_id).data.tags
        served = tags.get(schema.TAG_SWEEPS, "").split()
        if sweep_id not in served and tags.get(schema.TAG_SWEEP_ID) != sweep_id:
            self.client.set_tag(run_id, schema.TAG_SWEEPS, " ".join([*served, sweep_id]))

    def _adopted(self, sweep_id: str) -> list[Run]:
        where = f"tags.`{schema.TAG_SWEEPS}` LIKE '%{sweep_id}%'"
        found = self.client.search_runs([self.experiment_id], where, max_results=50000)
        return [r for r in found if sweep_id in r.data.tags.get(schema.TAG_SWEEPS, "").split()]

    def annotate(
        self, run_id: str, tags: Mapping[str, str], texts: Mapping[str, str] | None = None
    ) -> None:
        """Set ``tags`` on run ``run_id`` and log each text of ``texts`` (artifact path →
        content, e.g. a CSV table) as an artifact of it."""
        for key, value in tags.items():
            self.client.set_tag(run_id, key, redact(value))
        for path, text in (texts or {}).items():
            self.client.log_text(run_id, redact(text), path)

    def _runs_tagged(self, tag: str, value: str, kind: str, max_results: int) -> list[Run]:
        """The runs of kind ``kind`` whose ``tag`` is ``value``, oldest first."""
        return self._runs_with({tag: value, schema.TAG_RUN_KIND: kind}, max_results)

    def _runs_with(self, tags: Mapping[str, str], max_results: int) -> list[Run]:
        """The runs with all of ``tags``, oldest first."""
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=" and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items()),
            max_results=max_results,
            order_by=["attributes.start_time ASC"],
        )

    def ensure_sweep_parent(
        self,
        sweep_id: str,
        lock_dir: Path,
        run_name: str,
        tags: Mapping[str, str],
        *,
        reopen: bool = False,
        kind: str = schema.RUN_KIND_SWEEP,
    ) -> str:
        """Find or create the parent run of sweep ``sweep_id``; return its run id.

        Processes of one sweep (e.g. joblib workers) serialise on a lock file in ``lock_dir``
        (the sweep's output directory), so exactly one parent is created. A resumed sweep
        (same id) finds its old parent; ``reopen`` marks it RUNNING again. ``kind``: the
        parent of a tuning study is :data:`~rprop_bench.schema.RUN_KIND_TUNE`.
        """
        if sweep_id in self._parents:
            return self._parents[sweep_id]
        with file_lock(lock_dir / _PARENT_LOCK):
            found = self.find_sweep_parent(sweep_id, kind)
            if found:
                if reopen:
                    self.client.update_run(found, status="RUNNING")
                self._parents[sweep_id] = found
                return found
            all_tags = {
                **{k: cut(redact(v), MAX_TAG_VALUE) for k, v in tags.items()},
                schema.TAG_SWEEP_ID: sweep_id,
                schema.TAG_RUN_KIND: kind,
            }
            run = self.client.create_run(
                self.experiment_id, run_name=redact(run_name), tags=all_tags
            )
            self._parents[sweep_id] = run.info.run_id
            return run.info.run_id

    def end_interrupted_sweep(self, sweep_id: str, reason: str, wait_seconds: float) -> int:
        """After Ctrl-C or SIGTERM stopped sweep ``sweep_id``: mark its runs left RUNNING by
        dead processes KILLED (with ``reason``), and its parent run KILLED.

        A job in the main process marks its own run KILLED when the signal reaches it. A
        joblib worker gets the signal too, but joblib kills its workers (SIGKILL) as soon as
        the main process is interrupted, mostly before they have written that. Runs whose
        writer is still alive are waited for up to ``wait_seconds``; those alive after that
        (a process that outlives the sweep) are left for the next sweep to judge.

        Returns:
            How many runs were marked KILLED here.
        """
        parent = self.find_sweep_parent(sweep_id)
        if parent is None:
            return 0
        deadline = time.monotonic() + wait_seconds
        while True:
            running = self._children(parent, running=True)
            dead = [r for r in running if not run_is_alive(r, self.options.stale_seconds)]
            if len(dead) == len(running) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for run in dead:
            self._mark_killed(run.info.run_id, reason)
        self.client.set_terminated(parent, status="KILLED")
        return len(dead)

    def end_sweep_parent(
        self, run_id: str, status: str = "FINISHED", since: float | None = None
    ) -> SweepEnd:
        """End the parent run of a sweep, unless another sweep still runs into it.

        Two sweeps of one grid share a parent; the first to end leaves it RUNNING while a
        child of the other is RUNNING in a live process, and the last to end ends it.
        ``since`` (Unix time): when this invocation of the sweep started, to tell the runs it
        trained from those an earlier attempt finished.

        Returns:
            The children counted by status, how many are still RUNNING alive (the parent
            was ended only if none is), and how many were reused, trained now, or finished
            by an earlier attempt.
        """
        counts: dict[str, int] = {}
        alive = trained = finished_before = 0
        for child in self._children(run_id):
            counts[child.info.status] = counts.get(child.info.status, 0) + 1
            if child.info.status == "RUNNING":
                alive += run_is_alive(child, self.options.stale_seconds)
            if since is not None and (child.info.start_time or 0) >= since * 1000:
                trained += 1
            elif since is not None and child.info.status == "FINISHED":
                finished_before += 1
        unfinished = counts.get("RUNNING", 0) - alive
        if not alive:  # a sweep that left runs unended has not finished
            self.client.set_terminated(run_id, status="FAILED" if unfinished else status)
        sweep_id = self.client.get_run(run_id).data.tags.get(schema.TAG_SWEEP_ID, "")
        reused = len(self._adopted(sweep_id)) if sweep_id else 0
        return SweepEnd(counts, alive, reused, trained, finished_before, unfinished)

    def lost_claim(
        self,
        run_id: str,
        run_key: str,
        *,
        finished_counts: bool,
        known: list[Run] | None = None,
    ) -> str | None:
        """Whether the new run ``run_id`` lost its claim on ``run_key`` to another run.

        Two sweeps that share a grid point both create a run for it; each then looks at all
        the runs of the key, and both agree on one winner: a FINISHED run (if
        ``finished_counts``, i.e. ``sweep.skip_finished``), else the earliest of the RUNNING
        runs in live processes, by start time and then run id. The loser's run is deleted
        (it has trained nothing) and the winner's id returned; ``None``: this run won.
        Start times come from each writer's clock, so hosts sharing a server store need
        clocks that agree to within the time between a create and this look-up. ``known``:
        the key's runs, if already looked up (:meth:`runs_by_key`).
        """
        mine = None
        rivals = []
        if known is None:
            known = self._runs_tagged(schema.TAG_RUN_KEY, run_key, schema.RUN_KIND_TRAINING, 1000)
        for run in known:
            if run.info.run_id == run_id:
                mine = run
            elif run.info.status == "FINISHED" and finished_counts:
                return self._lose(run_id, run.info.run_id)
            elif run.info.status == "RUNNING" and run_is_alive(run, self.options.stale_seconds):
                rivals.append(run)
        if mine is None:  # not listed yet (a server's search may lag its writes): read it
            mine = self.client.get_run(run_id)

        def order(run: Run) -> tuple[int, str]:
            return (run.info.start_time or 0, run.info.run_id)

        first = min([mine, *rivals], key=order)
        return None if first is mine else self._lose(run_id, first.info.run_id)

    def _lose(self, run_id: str, winner: str) -> str:
        self.client.delete_run(run_id)
        return winner


def log_report_artifacts(
    tracking_uri: str, run_id: str, folder: Path, retry_seconds: float = 30.0
) -> None:
    """Log a report folder as artifacts of run ``run_id``, under ``schema.ARTIFACT_REPORT_DIR``.

    The sweep's parent run then shows its report in the MLflow UI.
    """
    client = open_client(tracking_uri, retry_seconds)
    client.log_artifacts(run_id, str(folder), schema.ARTIFACT_REPORT_DIR)
