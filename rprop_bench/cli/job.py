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
from rprop_bench.cli.validate import RPROP_TARGET, ConfigError, validate

TORCH_RPROP_TARGET = "torch.optim.Rprop"
PROGRAM = "python -m rprop_bench"
#: Set by the CLI before a sweep starts: the sweep's id, from its jobs' run keys, so that the
#: same sweep run again (resumed) finds its parent run. Joblib workers inherit it.
SWEEP_ID_ENV = "RPROP_BENCH_SWEEP_ID"
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
        label = self.variant if self.optimizer != "torch_rprop" else self.optimizer
        return f"{label} · {self.problem} · seed {self.seed}"


def run_names(cfg: DictConfig, optimizer_choice: str | None) -> RunNames:
    """Name the optimizer (config name), its variant, the problem, the model and the seed."""
    target = str(cfg.optimizer.get("_target_", ""))
    optimizer = optimizer_choice or target.rsplit(".", 1)[-1].lower()
    if target == RPROP_TARGET:
        variant = str(cfg.optimizer.variant)
    elif target == TORCH_RPROP_TARGET:
        variant = "irprop-"  # torch.optim.Rprop is iRprop- (no backtracking, zeroed gradient)
    else:
        variant = optimizer
    return RunNames(
        optimizer=optimizer,
        variant=variant,
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


def run_key(cfg: DictConfig) -> str:
    """A hash of the resolved config without :data:`NOT_IN_RUN_KEY` (same key = same run).

    Keys are sorted before hashing, so the order of overrides does not matter.
    """
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    for name in NOT_IN_RUN_KEY:
        plain.pop(name, None)
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


def build(cfg: DictConfig) -> _Built:
    """Build the problem data, the model (seeded by ``train.seed``), the optimizer and settings."""
    import torch

    from rprop_bench.training import TrainSettings

    device = str(cfg.train.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={device!r} is out of range: CUDA is not available here")
    torch.set_num_threads(int(cfg.train.num_threads))
    try:
        data = hydra_instantiate(cfg.problem.data).to(device)
    except OSError as exc:  # a data file that is missing or unreadable
        name = cfg.problem.data.get("name", "?")
        raise ConfigError(f"cannot load the data of problem {name!r}: {exc}") from exc
    torch.manual_seed(int(cfg.train.seed))
    model = hydra_instantiate(cfg.model)(n_inputs=data.n_inputs, n_outputs=data.n_outputs)
    model = model.to(device)
    optimizer = hydra_instantiate(cfg.optimizer)(model.parameters())
    settings = TrainSettings(
        epochs=int(cfg.train.epochs),
        batch_size=cfg.train.batch_size,
        target_loss=cfg.train.target_loss,
        log_every=int(cfg.train.log_every),
        histogram_every=int(cfg.train.histogram_every),
        seed=int(cfg.train.seed),
    )
    return _Built(data, model, optimizer, settings)


def tracking_options(cfg: DictConfig, cwd: Path) -> Any:
    """The :class:`~rprop_bench.tracking.TrackingOptions` of the ``tracking`` group."""
    from rprop_bench.tracking import TrackingOptions, resolve_uri

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


def run_tags(cfg: DictConfig, names: RunNames, task: str) -> dict[str, str]:
    """The tags of a training run (schema names)."""
    hydra_cfg = HydraConfig.get()
    return {
        schema.TAG_RUN_KIND: schema.RUN_KIND_TRAINING,
        schema.TAG_OPTIMIZER: names.optimizer,
        schema.TAG_VARIANT: names.variant,
        schema.TAG_PROBLEM: names.problem,
        schema.TAG_TASK: task,
        schema.TAG_MODEL: names.model,
        schema.TAG_SEED: str(names.seed),
        schema.TAG_GIT_COMMIT: git_commit(),
        schema.TAG_COMMAND: " ".join([PROGRAM, "run", *hydra_cfg.overrides.task]),
        schema.TAG_OUTPUT_DIR: str(Path(hydra_cfg.runtime.output_dir).resolve()),
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


def _run_job(cfg: DictConfig) -> dict[str, Any]:
    from rprop_bench import tracking

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    validate(cfg)
    names = run_names(cfg, hydra_cfg.runtime.choices.get("optimizer"))
    cwd = Path.cwd()
    options = tracking_options(cfg, cwd)
    tracker = tracking.Tracker.open(options)
    parent_run_id = None
    sweep_tags: dict[str, str] = {}
    if multirun:
        skipped = _skip_if_done(tracker, cfg, names.run_name)
        if skipped is not None:
            return skipped
        sweep_dir = (cwd / str(hydra_cfg.sweep.dir)).resolve()
        sweep_tags[schema.TAG_SWEEP_ID] = sweep_id = sweep_id_for(sweep_dir)
        parent_run_id = tracker.ensure_sweep_parent(
            sweep_id, sweep_dir, f"sweep {sweep_id}", {schema.TAG_OUTPUT_DIR: str(sweep_dir)}
        )
    built = build(cfg)
    tags = {**run_tags(cfg, names, built.data.task), **sweep_tags}
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    recorder = tracker.start_run(names.run_name, tags, tracking.flatten(plain), parent_run_id)
    try:
        return _train_and_record(cfg, built, names, recorder, options.uri, multirun=multirun)
    except tracking.StoreUnavailable as exc:
        return _failed_locally(recorder, names, str(exc), multirun=multirun)


def _skip_if_done(tracker: Any, cfg: DictConfig, run_name: str) -> dict[str, Any] | None:
    """In a sweep: a summary if this job's run key is already done (or running elsewhere).

    Dead RUNNING runs of the key are marked KILLED on the way (see
    :meth:`rprop_bench.tracking.Tracker.previous_runs`). ``sweep.skip_finished=false``
    redoes every job.
    """
    previous = tracker.previous_runs(run_key(cfg))
    for run_id in previous.reaped:
        print(f"{_job_label()} run {run_id} of {run_name} was left RUNNING by a dead "
              f"process: marked KILLED, redoing it", flush=True)  # fmt: skip
    if not OmegaConf.select(cfg, "sweep.skip_finished", default=True):
        return None
    done = previous.finished or previous.running
    if done is None:
        return None
    why = "FINISHED" if previous.finished else "RUNNING in a live process"
    print(f"{_job_label()} SKIPPED {run_name}: already {why} as run {done}", flush=True)
    return {"status": "SKIPPED", "run_id": done}


def _train_and_record(
    cfg: DictConfig, built: _Built, names: RunNames, recorder: Any, uri: str, *, multirun: bool
) -> dict[str, Any]:
    """Train with ``recorder`` as the callback and end the run FINISHED, FAILED or KILLED."""
    import torch  # heavy imports only once a job really runs

    from rprop_bench.tracking import StoreUnavailable
    from rprop_bench.training import train

    progress = _progress(built.settings.epochs, names.run_name, disable=multirun)
    try:
        recorder.log_text(OmegaConf.to_yaml(cfg, resolve=True), schema.ARTIFACT_CONFIG)
        if names.problem == "line":
            rows = torch.cat([built.data.x_train, built.data.y_train], dim=1).cpu().tolist()
            recorder.log_table(("x", "y"), rows, schema.ARTIFACT_LINE_DATA)
        result = train(
            built.model, built.data, built.optimizer, built.settings,
            _with_progress(recorder.on_epoch, progress),
        )  # fmt: skip
    except KeyboardInterrupt as exc:
        why = f"interrupted ({exc})" if isinstance(exc, Interrupted) else "interrupted (SIGINT)"
        recorder.fail(why, names.run_name, status="KILLED")
        print(f"run {recorder.run_id} KILLED: {names.run_name}: {why}", file=sys.stderr)
        raise
    except StoreUnavailable:
        raise  # the store is gone: recording the failure there would fail too
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        recorder.fail(reason, names.run_name)
        print(f"run {recorder.run_id} FAILED: {names.run_name}: {reason}", file=sys.stderr)
        if multirun:
            return {"status": "FAILED", "run_id": recorder.run_id, "reason": reason}
        raise SystemExit(1) from exc
    finally:
        if progress is not None:
            progress.close()

    finals = dict(result.final_metrics)
    if result.diverged:
        recorder.fail(result.reason or "diverged", names.run_name)
    else:
        if names.problem == "line":
            finals.update(_line_weights(built.model))
        recorder.finish(finals, names.run_name)
    status = "FAILED" if result.diverged else "FINISHED"
    _print_summary(
        status, recorder.run_id, names.run_name, finals, result, recorder.seconds, uri,
        multirun=multirun,
    )  # fmt: skip
    if result.diverged and not multirun:
        raise SystemExit(1)
    return {"status": status, "run_id": recorder.run_id, "final_metrics": finals}


def _failed_locally(
    recorder: Any, names: RunNames, reason: str, *, multirun: bool
) -> dict[str, Any]:
    """The store went away mid-run: record the failure (and the unsent metrics) in a file.

    The run cannot be marked FAILED in a store that does not answer, so it is marked FAILED
    here, in the Hydra output directory, and the user is told where. In the store it stays
    RUNNING; its process ends, so a later sweep sees it dead, marks it KILLED and redoes it.
    """
    path = Path(HydraConfig.get().runtime.output_dir).resolve() / LOCAL_FAILURE_FILE
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
) -> None:
    if multirun:
        detail = _format_finals(finals) if status == "FINISHED" else result.reason
        print(
            f"{_job_label()} {status} {run_name}: {detail} ({result.train_seconds:.2f} s)",
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
    return f"  [{number}/{os.environ.get('RPROP_BENCH_SWEEP_SIZE', '?')}]"


def _default_uri() -> str:
    from rprop_bench.store import resolve_uri

    env = os.environ.get("MLFLOW_TRACKING_URI")
    return resolve_uri(env or "sqlite:///mlflow.db", Path.cwd())
