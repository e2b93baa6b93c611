"""One Hydra job: build the objects from the composed config, train, record in MLflow.

This is the only place that turns config into objects (problem data, model, optimizer,
train settings, tracking options) and hands them to :func:`rprop_bench.training.train`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from rprop_bench import schema
from rprop_bench.cli.validate import ConfigError, validate

PROGRAM = "python -m rprop_bench"
#: Set by the CLI before a sweep starts: the sweep's id, from its jobs' run keys, so that the
#: same sweep run again (resumed) finds its parent run. Every job gets it through its Hydra
#: config's ``hydra.job.env_set``, on whatever machine it runs (rprop_bench.cli.launchers).
SWEEP_ID_ENV = "RPROP_BENCH_SWEEP_ID"
#: Set by the CLI before a sweep starts: the number of its jobs, for the "[3/30]" lines.
SWEEP_SIZE_ENV = "RPROP_BENCH_SWEEP_SIZE"
#: Config nodes that say how a run is recorded or scheduled, not what it computes. They stay out
#: of the run key, so a change of store, launcher, output directory or resume policy keeps it.
#: (Hydra's own settings, launcher and output directories included, are not in a job's config.)
NOT_IN_RUN_KEY = ("tracking", "sweep", "hydra")
#: The name of the file a run leaves in its Hydra output directory when the store went away.
LOCAL_FAILURE_FILE = "run_failed_locally.json"


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signum`` says which (the exit status is 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def install_sigterm_handler() -> None:
    """Make SIGTERM interrupt like Ctrl-C, so that a killed run flushes and is marked KILLED.

    Python's default for SIGTERM is to die at once, leaving the run RUNNING with its buffered
    metrics lost. Only the main thread may install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupted)


@functools.cache
def git_commit() -> str:
    """The commit of the code being run (``-dirty`` if it has local changes), or ``unknown``."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


@dataclass(frozen=True)
class RunNames:
    """How a run is named and tagged."""

    optimizer: str
    variant: str
    problem: str
    model: str
    seed: int

    @property
    def run_name(self) -> str:
        """A readable run name, e.g. ``irprop+ · iris · seed 3``."""
        label = self.variant if self.optimizer != schema.TORCH_RPROP_LABEL else self.optimizer
        return f"{label} · {self.problem} · seed {self.seed}"


def run_names(cfg: DictConfig, optimizer_choice: str | None) -> RunNames:
    """Name the optimizer (config name), its variant, the problem, the model and the seed."""
    target = str(cfg.optimizer.get("_target_", ""))
    optimizer = optimizer_choice or target.rsplit(".", 1)[-1].lower()
    return RunNames(
        optimizer=optimizer,
        variant=schema.variant_of(target, cfg.optimizer.get("variant"), optimizer),
        problem=str(cfg.problem.data.name),
        model=str(cfg.model.kind),
        seed=int(cfg.train.seed),
    )


def sweep_id_for(sweep_dir: Path) -> str:
    """A sweep's id: the one the CLI computed from its jobs (:func:`sweep_id_of`), else (a
    sweep started without the CLI's checks) its output directory's date and time plus a short
    hash of its path."""
    from_cli = os.environ.get(SWEEP_ID_ENV)
    if from_cli:
        return from_cli
    digest = hashlib.sha1(str(sweep_dir.resolve()).encode()).hexdigest()[:6]
    return f"{sweep_dir.parent.name}_{sweep_dir.name}_{digest}"


def sweep_id_of(run_keys: Iterable[str]) -> str:
    """A sweep's id from its jobs' run keys: the same grid gives the same id, in any order."""
    digest = hashlib.sha1("\n".join(sorted(set(run_keys))).encode()).hexdigest()[:12]
    return f"sweep_{digest}"


def run_key(cfg: DictConfig, *, without_seed: bool = False) -> str:
    """A hash of the resolved config without :data:`NOT_IN_RUN_KEY` (same key = same run).

    Keys are sorted before hashing, so the order of overrides does not matter.
    ``train.vectorize_seeds`` counts only when true: a stacked run agrees with a one-by-one
    run up to last-bit rounding only, so a resumed sweep must not take one for the other, and
    the keys of runs made before the option existed stay valid. ``without_seed`` leaves out
    ``train.seed``: the key of a seed group (:mod:`rprop_bench.cli.seed_groups`).
    """
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    for name in NOT_IN_RUN_KEY:
        plain.pop(name, None)
    train = plain.get("train")
    if isinstance(train, dict):
        if not train.get("vectorize_seeds", False):
            train.pop("vectorize_seeds", None)
        if without_seed:
            train.pop("seed", None)
    text = json.dumps(plain, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _format_finals(finals: dict[str, float]) -> str:
    names = [
        (schema.FINAL_TRAIN_LOSS, "train loss"),
        (schema.TEST_LOSS, "test loss"),
        (schema.TEST_ACCURACY, "test accuracy"),
        (schema.TEST_R2, "test R²"),
        (schema.LINE_WEIGHT, "w"),
        (schema.LINE_BIAS, "b"),
    ]
    return ", ".join(f"{label} {finals[key]:.4g}" for key, label in names if key in finals)


def run_job(cfg: DictConfig) -> dict[str, Any]:
    """The Hydra task: one training run recorded in MLflow.

    Returns a summary dict (status, run id, final metrics). In a single run, a diverged or
    crashed run exits non-zero after it is recorded; in a multirun the sweep goes on. A bad
    config (found here only if the pre-flight check was skipped) exits with one line.
    """
    from rprop_bench.store import TrackingError

    install_sigterm_handler()
    try:
        return _run_job(cfg)
    except (ConfigError, TrackingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


@dataclass
class _Built:
    """The objects one run trains with."""

    data: Any
    model: Any
    optimizer: Any
    settings: Any


def build_data(cfg: DictConfig) -> Any:
    """The problem's data on ``train.device`` (and torch's thread count set for the run)."""
    import torch

    device = str(cfg.train.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={device!r} is out of range: CUDA is not available here")
    torch.set_num_threads(int(cfg.train.num_threads))
    try:
        return hydra_instantiate(cfg.problem.data).to(device)
    except OSError as exc:  # a data file that is missing or unreadable
        name = cfg.problem.data.get("name", "?")
        raise ConfigError(f"cannot load the data of problem {name!r}: {exc}") from exc


def model_builder(cfg: DictConfig, data: Any) -> Any:
    """A function that builds the config's model for ``data`` (seed torch before calling it)."""
    partial = hydra_instantiate(cfg.model)
    device = str(cfg.train.device)
    return lambda: partial(n_inputs=data.n_inputs, n_outputs=data.n_outputs).to(device)


def train_settings(cfg: DictConfig) -> Any:
    """The :class:`~rprop_bench.training.TrainSettings` of the ``train`` group."""
    from rprop_bench.training import TrainSettings

    return TrainSettings(
        epochs=int(cfg.train.epochs),
        batch_size=cfg.train.batch_size,
        target_loss=cfg.train.target_loss,
        log_every=int(cfg.train.log_every),
        histogram_every=int(cfg.train.histogram_every),
        seed=int(cfg.train.seed),
    )


def build(cfg: DictConfig) -> _Built:
    """Build the problem data, the model (seeded by ``train.seed``), the optimizer and settings."""
    import torch

    data = build_data(cfg)
    torch.manual_seed(int(cfg.train.seed))
    model = model_builder(cfg, data)()
    optimizer = hydra_instantiate(cfg.optimizer)(model.parameters())
    return _Built(data, model, optimizer, train_settings(cfg))


def tracking_options(cfg: DictConfig, cwd: Path) -> Any:
    """The :class:`~rprop_bench.tracking.TrackingOptions` of the ``tracking`` group."""
    from rprop_bench.store import resolve_uri
    from rprop_bench.tracking import TrackingOptions

    return TrackingOptions(
        uri=resolve_uri(str(cfg.tracking.uri), cwd),
        experiment=str(cfg.tracking.experiment),
        batch_logging=bool(cfg.tracking.batch_logging),
        flush_seconds=float(cfg.tracking.flush_seconds),
        max_batch=int(cfg.tracking.max_batch),
        histograms=bool(cfg.tracking.histograms),
        heatmap=bool(cfg.tracking.heatmap),
        retry_seconds=float(cfg.tracking.retry_seconds),
        stale_seconds=float(cfg.tracking.stale_seconds),
    )


def run_tags(
    cfg: DictConfig,
    names: RunNames,
    task: str,
    overrides: Iterable[str] | None = None,
    output_dir: Path | None = None,
) -> dict[str, str]:
    """The tags of a training run (schema names).

    ``overrides`` and ``output_dir`` default to this Hydra job's; a seed group passes those of
    each member's own job.
    """
    hydra_cfg = HydraConfig.get()
    if overrides is None:
        overrides = hydra_cfg.overrides.task
    if output_dir is None:
        output_dir = Path(hydra_cfg.runtime.output_dir)
    return {
        schema.TAG_RUN_KIND: schema.RUN_KIND_TRAINING,
        schema.TAG_OPTIMIZER: names.optimizer,
        schema.TAG_VARIANT: names.variant,
        schema.TAG_PROBLEM: names.problem,
        schema.TAG_TASK: task,
        schema.TAG_MODEL: names.model,
        schema.TAG_SEED: str(names.seed),
        schema.TAG_GIT_COMMIT: git_commit(),
        schema.TAG_COMMAND: " ".join([PROGRAM, "run", *overrides]),
        schema.TAG_OUTPUT_DIR: str(output_dir.resolve()),
        schema.TAG_RUN_KEY: run_key(cfg),
    }


def _line_weights(model: Any) -> dict[str, float]:
    """``learned_w`` and ``learned_b`` of a one-unit linear model (problem ``line``)."""
    import torch

    linear = next((m for m in model.modules() if isinstance(m, torch.nn.Linear)), None)
    if linear is None or linear.weight.numel() != 1 or linear.bias is None:
        return {}
    return {
        schema.LINE_WEIGHT: float(linear.weight.detach().reshape(())),
        schema.LINE_BIAS: float(linear.bias.detach().reshape(())),
    }


@dataclass
class _Entry:
    """One run being trained: its config, names, recorder and its label in the sweep."""

    cfg: DictConfig
    names: RunNames
    recorder: Any
    label: str
    output_dir: Path


def _run_job(cfg: DictConfig) -> dict[str, Any]:
    from rprop_bench import tracking
    from rprop_bench.cli import seed_groups

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    validate(cfg)
    names = run_names(cfg, hydra_cfg.runtime.choices.get("optimizer"))
    cwd = Path.cwd()
    options = tracking_options(cfg, cwd)
    tracker = tracking.Tracker.open(options)
    parent_run_id = None
    sweep_tags: dict[str, str] = {}
    group = seed_groups.group_of(run_key(cfg)) if multirun else None
    if multirun:
        if group is None:
            skipped = _skip_if_done(tracker, cfg, names.run_name, _job_label())
            if skipped is not None:
                return skipped
        sweep_dir = (cwd / str(hydra_cfg.sweep.dir)).resolve()
        sweep_tags[schema.TAG_SWEEP_ID] = sweep_id = sweep_id_for(sweep_dir)
        parent_run_id = tracker.ensure_sweep_parent(
            sweep_id, sweep_dir, f"sweep {sweep_id}", {schema.TAG_OUTPUT_DIR: str(sweep_dir)}
        )
        if group is not None:
            return _run_seed_group(cfg, group, tracker, parent_run_id, sweep_tags, sweep_dir)
    built = build(cfg)
    tags = {**run_tags(cfg, names, built.data.task), **sweep_tags}
    recorder = tracker.start_run(
        names.run_name, tags, _params(cfg), parent_run_id, draw_heatmap=_step_heatmap
    )
    label = _job_label() if multirun else ""  # a single run has no job number
    entry = _Entry(cfg, names, recorder, label, Path(hydra_cfg.runtime.output_dir))
    return _train_and_record(built, entry, options.uri, multirun=multirun)


def _step_heatmap(rows: Any, title: str) -> Any:
    """The run's step-size heatmap, drawn for the writer; matplotlib is imported only here."""
    from rprop_bench.step_figure import step_heatmap

    return step_heatmap(rows, title)


def _params(cfg: DictConfig) -> dict[str, str]:
    from rprop_bench.params import flatten

    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    return flatten({str(k): v for k, v in plain.items()})


def _skip_if_done(
    tracker: Any, cfg: DictConfig, run_name: str, label: str, *, quiet: bool = False
) -> dict[str, Any] | None:
    """In a sweep: a summary if this job's run key is already done (or running elsewhere).

    Dead RUNNING runs of the key are marked KILLED on the way (see
    :meth:`rprop_bench.tracking.Tracker.previous_runs`). ``sweep.skip_finished=false``
    redoes every job, except one that its seed group trained in this very sweep.
    ``quiet`` prints only the reaped runs (a seed group checking its other members).
    """
    from rprop_bench.cli.seed_groups import sweep_started

    started = sweep_started() if vectorized_cfg(cfg) else None
    previous = tracker.previous_runs(run_key(cfg), since=started)
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
    else:
        return None
    if not quiet:
        print(f"{label} SKIPPED {run_name}: {why} as run {done}", flush=True)
    return {"status": "SKIPPED", "run_id": done}


def vectorized_cfg(cfg: DictConfig) -> bool:
    """Whether ``cfg`` asks for seed-vectorised training (``train.vectorize_seeds``)."""
    return bool(OmegaConf.select(cfg, "train.vectorize_seeds", default=False))


def _member_output_dir(index: int) -> Path:
    """The Hydra output directory of job ``index`` of this sweep (``sweep.dir/<job num>``)."""
    hydra_cfg = HydraConfig.get()
    own = Path(hydra_cfg.runtime.output_dir)
    if str(hydra_cfg.sweep.subdir) == str(hydra_cfg.job.num):
        return own.parent / str(index)
    return own  # a custom subdir pattern: the members share the leader's directory


def _run_seed_group(
    cfg: DictConfig,
    group: tuple[str, list[Any]],
    tracker: Any,
    parent_run_id: str,
    sweep_tags: dict[str, str],
    sweep_dir: Path,
) -> dict[str, Any]:
    """Train this job's seed group: every member whose run is not done, as one stacked model.

    Under the group's lock file (shared by joblib workers), the members still to do are found
    and their runs created RUNNING; another worker reaching a member of the group then sees it
    RUNNING in a live process, or done in this sweep, and skips it. This job's own summary is
    returned; if its own run is done, nothing is trained (the job that trains it is another).
    """
    from rprop_bench.locks import file_lock

    group_key, members = group
    hydra_cfg = HydraConfig.get()
    choice = hydra_cfg.runtime.choices.get("optimizer")
    own_key = run_key(cfg)
    size = os.environ.get(SWEEP_SIZE_ENV, "?")
    data = build_data(cfg)
    todo: list[tuple[Any, DictConfig, RunNames]] = []
    with file_lock(sweep_dir / f".rprop_bench_seed_group_{group_key}.lock"):
        for member in members:
            member_cfg = cfg.copy()
            member_cfg.train.seed = member.seed
            names = run_names(member_cfg, choice)
            label = f"  [{member.index + 1}/{size}]"
            quiet = member.key != own_key
            done = _skip_if_done(tracker, member_cfg, names.run_name, label, quiet=quiet)
            if done is not None and not quiet:
                return done
            if done is None:
                todo.append((member, member_cfg, names))
        entries = []
        for member, member_cfg, names in todo:
            output_dir = _member_output_dir(member.index)
            tags = {
                **run_tags(member_cfg, names, data.task, member.overrides, output_dir),
                **sweep_tags,
            }
            if len(todo) > 1:
                tags[schema.TAG_VECTORIZED] = str(len(todo))
            recorder = tracker.start_run(
                names.run_name, tags, _params(member_cfg), parent_run_id, draw_heatmap=_step_heatmap
            )
            label = f"  [{member.index + 1}/{size}]"
            entries.append(_Entry(member_cfg, names, recorder, label, output_dir))
    uri = tracker.options.uri
    if len(entries) == 1:
        import torch

        torch.manual_seed(int(cfg.train.seed))
        model = model_builder(cfg, data)()
        optimizer = hydra_instantiate(cfg.optimizer)(model.parameters())
        built = _Built(data, model, optimizer, train_settings(cfg))
        return _train_and_record(built, entries[0], uri, multirun=True)
    return _train_stacked(cfg, data, entries, own_key, uri)


def _train_stacked(
    cfg: DictConfig, data: Any, entries: list[_Entry], own_key: str, uri: str
) -> dict[str, Any]:
    """Train ``entries`` (one seed each) as one stacked model; record each as its own run."""
    from rprop_bench.seed_batch import seeded_models, train_seeds

    models = seeded_models(model_builder(cfg, data), [int(e.cfg.train.seed) for e in entries])

    def train_all() -> list[Any]:
        for entry in entries:
            _log_inputs(entry, data)
        return train_seeds(
            models, data, hydra_instantiate(cfg.optimizer), train_settings(cfg),
            [e.recorder.on_epoch for e in entries],
        )  # fmt: skip

    from rprop_bench.retry import StoreUnavailable

    try:
        results = _guarded(train_all, entries, multirun=True)
    except StoreUnavailable as exc:
        summaries = [_failed_locally(entry, str(exc), multirun=True) for entry in entries]
    else:
        summaries = [
            _record_result(entry, result, model, uri, multirun=True)
            if result is not None
            else {"status": "FAILED", "run_id": entry.recorder.run_id}
            for entry, result, model in zip(
                entries, results or [None] * len(entries), models, strict=True
            )
        ]
    own = [s for e, s in zip(entries, summaries, strict=True) if run_key(e.cfg) == own_key]
    return own[0] if own else summaries[0]


def _log_inputs(entry: _Entry, data: Any) -> None:
    """The run's input artifacts: the composed config, and the data of problem ``line``."""
    import torch

    entry.recorder.log_text(OmegaConf.to_yaml(entry.cfg, resolve=True), schema.ARTIFACT_CONFIG)
    if entry.names.problem == "line":
        rows = torch.cat([data.x_train, data.y_train], dim=1).cpu().tolist()
        entry.recorder.log_table(("x", "y"), rows, schema.ARTIFACT_LINE_DATA)


def _guarded(train_call: Any, entries: list[_Entry], *, multirun: bool) -> Any:
    """``train_call()``, ending every run of ``entries`` KILLED or FAILED if it raises.

    Ctrl-C or SIGTERM marks every run KILLED (metrics so far written) and re-raises. Another
    error marks every run FAILED with the reason; a sweep goes on (``None`` is returned), a
    single run exits 1. A store that went away is re-raised: recording there would fail too.
    """
    from rprop_bench.retry import StoreUnavailable

    try:
        return train_call()
    except KeyboardInterrupt as exc:
        why = f"interrupted ({exc})" if isinstance(exc, Interrupted) else "interrupted (SIGINT)"
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
            entry.recorder.fail(reason, entry.names.run_name)
            print(f"run {entry.recorder.run_id} FAILED: {entry.names.run_name}: {reason}",
                  file=sys.stderr)  # fmt: skip
        if multirun:
            return None
        raise SystemExit(1) from exc


def _train_and_record(built: _Built, entry: _Entry, uri: str, *, multirun: bool) -> dict[str, Any]:
    """Train with the entry's recorder as the callback and end the run FINISHED, FAILED or
    KILLED (or FAILED locally, in its output directory, if the store went away)."""
    from rprop_bench.retry import StoreUnavailable
    from rprop_bench.training import train

    progress = _progress(built.settings.epochs, entry.names.run_name, disable=multirun)

    def train_one() -> Any:
        _log_inputs(entry, built.data)
        return train(
            built.model, built.data, built.optimizer, built.settings,
            _with_progress(entry.recorder.on_epoch, progress),
        )  # fmt: skip

    try:
        result = _guarded(train_one, [entry], multirun=multirun)
    except StoreUnavailable as exc:
        return _failed_locally(entry, str(exc), multirun=multirun)
    finally:
        if progress is not None:
            progress.close()
    if result is None:
        return {"status": "FAILED", "run_id": entry.recorder.run_id}
    return _record_result(entry, result, built.model, uri, multirun=multirun)


def _record_result(
    entry: _Entry, result: Any, model: Any, uri: str, *, multirun: bool
) -> dict[str, Any]:
    """End the run FINISHED with its final metrics, or FAILED if it diverged; print a line."""
    from rprop_bench.retry import StoreUnavailable

    recorder, names = entry.recorder, entry.names
    finals = dict(result.final_metrics)
    try:
        if result.diverged:
            recorder.fail(result.reason or "diverged", names.run_name)
        else:
            if names.problem == "line":
                finals.update(_line_weights(model))
            recorder.finish(finals, names.run_name)
    except StoreUnavailable as exc:
        return _failed_locally(entry, str(exc), multirun=multirun)
    status = "FAILED" if result.diverged else "FINISHED"
    _print_summary(
        status, recorder.run_id, names.run_name, finals, result, recorder.seconds, uri,
        multirun=multirun, label=entry.label,
    )  # fmt: skip
    if result.diverged and not multirun:
        raise SystemExit(1)
    return {"status": status, "run_id": recorder.run_id, "final_metrics": finals}


def _failed_locally(entry: _Entry, reason: str, *, multirun: bool) -> dict[str, Any]:
    """The store went away mid-run: record the failure (and the unsent metrics) in a file.

    The run cannot be marked FAILED in a store that does not answer, so it is marked FAILED
    here, in the Hydra output directory, and the user is told where. In the store it stays
    RUNNING; its process ends, so a later sweep sees it dead, marks it KILLED and redoes it.
    """
    recorder, names = entry.recorder, entry.names
    path = entry.output_dir.resolve() / LOCAL_FAILURE_FILE
    record = {
        "status": "FAILED", "run_id": recorder.run_id, "run_name": names.run_name,
        "uri": recorder.options.uri, "reason": reason, "time": time.time(),
        "unsent_metrics": recorder.unsent_metrics(),
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    print(
        f"error: {reason}; run {recorder.run_id} ({names.run_name}) marked FAILED locally "
        f"in {path}",
        file=sys.stderr,
        flush=True,
    )
    if multirun:
        return {"status": "FAILED", "run_id": recorder.run_id, "reason": reason}
    raise SystemExit(1)


def hydra_instantiate(node: DictConfig) -> Any:
    """``hydra.utils.instantiate`` with plain Python containers (lists, not ListConfig)."""
    from hydra.utils import instantiate

    return instantiate(node, _convert_="all")


def _progress(total: int, description: str, *, disable: bool) -> Any:
    if disable:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="epoch", leave=False, disable=None)


def _with_progress(callback: Any, progress: Any) -> Any:
    if progress is None:
        return callback

    def on_epoch(epoch: int, metrics: dict[str, float], rows: Any) -> None:
        callback(epoch, metrics, rows)
        progress.update(epoch - progress.n)
        progress.set_postfix(loss=f"{metrics[schema.TRAIN_LOSS]:.4g}", refresh=False)

    return on_epoch


def _print_summary(
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
        detail = _format_finals(finals) if status == "FINISHED" else result.reason
        print(
            f"{label} {status} {run_name}: {detail} ({result.train_seconds:.2f} s)",
            flush=True,
        )
        return
    print(f"run {run_id} {status}: {run_name}")
    if status == "FINISHED":
        print(f"  {_format_finals(finals)}")
    else:
        print(f"  {result.reason}")
    print(
        f"  {result.epochs_run} epochs, {result.train_seconds:.2f} s training, "
        f"{logging_seconds:.2f} s logging"
    )
    ui = PROGRAM + " ui" + ("" if uri == _default_uri() else f" tracking.uri={uri}")
    print(f"  store: {uri}\n  compare runs in the MLflow UI: {ui}")


def _job_label() -> str:
    """``  [3/30]``: this job's number in the sweep."""
    number = HydraConfig.get().job.num + 1
    return f"  [{number}/{os.environ.get(SWEEP_SIZE_ENV, '?')}]"


def _default_uri() -> str:
    from rprop_bench.store import resolve_uri

    env = os.environ.get("MLFLOW_TRACKING_URI")
    return resolve_uri(env or schema.DEFAULT_TRACKING_URI, Path.cwd())
