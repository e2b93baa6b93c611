"""The command line: ``python -m rprop_bench [COMMAND] [OVERRIDES ...]``.

The command word may stand anywhere among the Hydra overrides
(``python -m rprop_bench optimizer=rprop sweep``):

* ``run`` (the default): one training run.
* ``sweep``: a Hydra multirun over the grid in ``conf/sweep/`` (command-line overrides fix or
  narrow it), recorded as one MLflow parent run with a nested child per job.
* ``tune``: a tuning study (:mod:`rprop_bench.cli.tune`): every optimizer searched with the
  same budget, selected on tuning seeds, rerun on fresh seeds; its phases are sweeps.
* ``ui``: the MLflow UI on 127.0.0.1 against the same store.
* ``report``: dispatched to its own module.

Before Hydra starts any job, every job's config is composed and validated and the tracking
store and the working directory are checked, so bad input costs one line on stderr and a
non-zero exit, no traceback. Ctrl-C or SIGTERM marks the current run KILLED (its buffered
metrics written) and exits with 128 + the signal number; the same sweep command resumes.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rprop_bench import schema
from rprop_bench.cli.compose import (
    CONF_DIR,
    CONFIG_NAME,
    GROUPS,
    all_group_options,
    config_dirs,
    parse,
    preflight,
)
from rprop_bench.cli.validate import ConfigError
from rprop_bench.text import count

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override
    from omegaconf import DictConfig

    from rprop_bench.cli.launchers import Launcher

COMMANDS = ("run", "sweep", "tune", "ui", "report")
#: Hydra flags that only print something: they pass straight to Hydra, without checks.
_HYDRA_INFO_FLAGS = {"--cfg", "-c", "--info", "-i", "--hydra-help", "--shell-completion", "-sc"}
#: Hydra flags followed by a value.
_HYDRA_VALUE_FLAGS = {
    "--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
    "--config-dir", "-cd", "--experimental-rerun",
}  # fmt: skip
_MULTIRUN_FLAGS = {"--multirun", "-m"}

EXIT_BAD_INPUT = 2


def split_arguments(args: Sequence[str]) -> tuple[str, list[str], list[str]]:
    """Split a command line into the command word, Hydra flags and overrides.

    >>> split_arguments(["optimizer=rprop", "sweep", "--cfg", "job"])
    ('sweep', ['--cfg', 'job'], ['optimizer=rprop'])
    """
    command: str | None = None
    flags: list[str] = []
    overrides: list[str] = []
    expect_value = False
    for arg in args:
        if expect_value:
            flags.append(arg)
            expect_value = False
        elif arg.startswith("-"):
            flags.append(arg)
            expect_value = arg in _HYDRA_VALUE_FLAGS
        elif command is None and arg in COMMANDS:
            command = arg
        else:
            overrides.append(arg)
    return command or "run", flags, overrides


def help_text(flags: Sequence[str] = (), overrides: Sequence[str] = ()) -> str:
    """The ``--help`` text: commands, config groups with their options, examples.

    The options include the user's own configs on the search path (``--config-dir`` among
    ``flags``, ``hydra.searchpath=[...]`` among ``overrides``).
    """
    options = all_group_options(parse(list(overrides)), config_dirs(flags))
    groups = "\n".join(
        f"  {group:<10} {', '.join(options[group]) or '(none yet)'}" for group in GROUPS
    )
    return f"""usage: python -m rprop_bench [COMMAND] [OVERRIDES ...]

Benchmark the Rprop family against other optimizers; every run is recorded in MLflow.

commands (the word may stand anywhere among the overrides):
  run        one training run (the default)
  sweep      a Hydra multirun over the grid in conf/sweep/, one MLflow parent run with a
             nested child per job; overrides fix or narrow the grid (optimizer=rprop sweep)
  tune       a tuning study: each optimizer × problem of the comma lists searched with the
             same trial budget (conf/tune/, the optimizers' search spaces), the winners
             rerun on fresh seeds (tune optimizer=adam,irprop_plus problem=iris,moons)
  ui         start the MLflow UI on 127.0.0.1 against the same store and print its address
  report     write the report of a sweep (settings: conf/report.yaml)

config groups (choose with GROUP=OPTION):
{groups}

your own configs: hydra.searchpath=[file:///path/to/myconf] (or --config-dir DIR) adds
  DIR/optimizer/NAME.yaml, DIR/problem/NAME.yaml, ... as options (see the README)

overrides: KEY=VALUE for any value, e.g. optimizer.lr=0.05 train.epochs=500
  problem.data.split_seed=1 model=mlp model.hidden=[32,16] tracking.uri=http://127.0.0.1:5000
  a comma list sweeps: python -m rprop_bench sweep optimizer=rprop,adam train.seed=0,1
store: tracking.uri, else $MLFLOW_TRACKING_URI, else {schema.DEFAULT_TRACKING_URI} in this directory

Hydra flags keep working: --cfg job, --resolve, --multirun, hydra/launcher=joblib,
  hydra.launcher.n_jobs=2, --hydra-help (Hydra's own help)

examples:
  python -m rprop_bench                                    # the seed example: Rprop on y = 2x + 3
  python -m rprop_bench optimizer=adam problem=iris train.epochs=500
  python -m rprop_bench optimizer=rprop sweep              # every problem × 3 seeds
  python -m rprop_bench ui                                 # compare the runs
"""


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _run_hydra(flags: list[str], overrides: list[str]) -> int:
    """Hand the command line to Hydra with :func:`rprop_bench.cli.job.run_job` as the task."""
    import hydra

    from rprop_bench.cli.job import run_job

    argv0 = sys.argv[0] if sys.argv else "rprop_bench"
    saved = sys.argv
    sys.argv = [argv0, *flags, *overrides]
    try:
        hydra.main(version_base=None, config_path=str(CONF_DIR), config_name=CONFIG_NAME)(run_job)()
    finally:
        sys.argv = saved
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()  # a command that runs several sweeps (tune) composes again
    return 0


def _train(command: str, flags: list[str], overrides: list[str]) -> int:
    """``run`` and ``sweep``: check everything, then let Hydra run the job(s)."""
    if any(flag in _HYDRA_INFO_FLAGS for flag in flags):
        return _run_hydra(flags, overrides)
    from rprop_bench.cli.launchers import chosen_launcher

    extra_dirs = config_dirs(flags)  # the user's --config-dir: Hydra gets it from the flags
    try:
        parsed = parse(overrides)
        launcher = chosen_launcher(parsed)  # before anything runs: a missing extra is one line
        chosen_sweep = any(
            o.key_or_group == "sweep" and o.value() not in (None, "null") for o in parsed
        )
        sweep = command == "sweep" or chosen_sweep or any(f in _MULTIRUN_FLAGS for f in flags)
        if command == "sweep" and not chosen_sweep:
            overrides = [*overrides, "sweep=default"]
        if sweep and not any(f in _MULTIRUN_FLAGS for f in flags):
            flags = [*flags, "--multirun"]
        if sweep and launcher.name == "joblib":
            from rprop_bench.cli.compose import hydra_settings
            from rprop_bench.cli.workers import check_joblib_settings, start_worker_server

            settings = hydra_settings(overrides, extra_dirs).launcher
            check_joblib_settings(settings)
            # first, so that its workers' imports overlap the checks below
            start_worker_server(settings)
        jobs, configs = preflight(overrides, sweep=sweep, extra_dirs=extra_dirs)
        from rprop_bench.cli.build import check_buildable
        from rprop_bench.signals import interrupts_held

        # data, model size, optimizer arguments: before any job. Its first imports (torch,
        # scikit-learn) hold Ctrl-C back: one cut short leaves numpy half-imported, and the
        # exit path then fails on it with a traceback instead of one line.
        with interrupts_held():
            check_buildable(configs)
    except ConfigError as exc:
        return _error(str(exc))

    from rprop_bench.store import TrackingError, check_store, resolve_uri

    first = configs[0]
    uri = resolve_uri(str(first.tracking.uri), Path.cwd())
    try:
        _check_output_dir(overrides, extra_dirs, sweep)
        check_store(
            uri,
            timeout=float(first.tracking.check_timeout_seconds),
            wait_seconds=float(first.tracking.retry_seconds),
        )
    except TrackingError as exc:
        return _error(str(exc))
    if not sweep:
        return _single_run(flags, overrides, first)
    print(f"sweep: {count(len(jobs), 'run')} into {uri}", flush=True)
    return launch_sweep(flags, overrides, jobs, configs, launcher, parsed)


def _check_output_dir(overrides: list[str], extra_dirs: Sequence[str], sweep: bool) -> None:
    """Hydra's output directory (``hydra.run.dir`` or ``hydra.sweep.dir``) must be writable:
    its deepest folder that exists now is probed (the rest has a time in it, and is made by
    Hydra). Raises :class:`~rprop_bench.store.TrackingError` in one line."""
    from omegaconf import OmegaConf

    from rprop_bench.cli.compose import hydra_settings
    from rprop_bench.store import TrackingError

    key = "sweep.dir" if sweep else "run.dir"
    try:
        node = hydra_settings(overrides, extra_dirs)
        plain: Any = OmegaConf.to_container(node, resolve=False)
        pattern = str(plain["sweep" if sweep else "run"]["dir"])
    except (ConfigError, KeyError, TypeError):
        pattern = "."
    fixed = Path.cwd() / pattern.split("${", 1)[0]
    existing = next(p for p in [fixed, *fixed.parents] if p.exists())
    if not existing.is_dir():
        raise TrackingError(f"cannot write Hydra's outputs: hydra.{key}={pattern} is under "
                            f"{existing}, which is not a directory")  # fmt: skip
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".rprop_bench_probe_"):
            pass
    except OSError as exc:
        where = (
            f"the working directory {existing}"
            if existing == Path.cwd()
            else f"hydra.{key}={pattern}: {existing}"
        )
        raise TrackingError(
            f"cannot write Hydra's outputs: {where} is not writable "
            f"({exc.strerror or type(exc).__name__})"
        ) from exc


def open_store_once(cfg: DictConfig) -> int | None:
    """A SQLite store's first start, or the repair of one cut short, once everything else is
    checked and before any job: created whole, one process at a time
    (:mod:`rprop_bench.first_start`); a line if repaired. Returns the exit status of a store
    that cannot be used (its one line printed), else ``None``."""
    from rprop_bench.store import TrackingError, resolve_uri, sqlite_path

    uri = resolve_uri(str(cfg.tracking.uri), Path.cwd())
    if sqlite_path(uri) is None:
        return None  # a tracking server keeps its own store
    from rprop_bench.first_start import open_store

    try:
        note = open_store(uri, check_schema=True, retry_seconds=float(cfg.tracking.retry_seconds))
    except TrackingError as exc:
        return _error(str(exc))
    if note:
        print(f"store: {note}", flush=True)
    return None


def launch_sweep(
    flags: list[str],
    overrides: list[str],
    jobs: list[list[str]],
    configs: list[DictConfig],
    launcher: Launcher,
    parsed: list[Override],
    *,
    sweep_id: str | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """A checked sweep: its id and size for every job, the seed plan, then Hydra's multirun.

    ``sweep_id`` (default: from the jobs' run keys) and ``env`` (variables for the sweep's
    callback, in this process only) let the ``tune`` command run its phases as sweeps of a
    study.
    """
    from rprop_bench.cli.identity import SWEEP_ID_ENV, SWEEP_SIZE_ENV, run_key, sweep_id_of
    from rprop_bench.cli.launchers import job_environment, launcher_overrides, runs_on_this_machine

    sweep_env = {
        SWEEP_ID_ENV: sweep_id or sweep_id_of(run_key(cfg) for cfg in configs),
        SWEEP_SIZE_ENV: str(len(jobs)),  # for the jobs' "[3/30]" progress lines
    }
    refused = open_store_once(configs[0])
    if refused is not None:
        return refused
    local = runs_on_this_machine(launcher, parsed)
    with _seed_plan(jobs, configs, None if local else launcher.name) as (plan_env, job_list):
        sweep_env.update(plan_env)
        # This process (the sweep-parent callback, joblib workers) reads them from os.environ;
        # jobs elsewhere (Ray cluster, SLURM nodes) from their Hydra config's hydra.job.env_set.
        os.environ.update(sweep_env)
        os.environ.update(env or {})
        if job_list is not None:  # a grid's stacks: only their first jobs are launched
            overrides = [o for o in overrides if not o.startswith(f"{_JOB_LIST}=")]
            overrides.append(f"{_JOB_LIST}={job_list}")
        try:
            extra = [*launcher_overrides(launcher, parsed), *job_environment(sweep_env)]
            ender = _sweep_ender(configs[0], sweep_env[SWEEP_ID_ENV])
            return _run_interruptible(flags, [*overrides, *extra], launcher, ender)
        finally:
            for name in [*sweep_env, *(env or {})]:
                os.environ.pop(name, None)


def _single_run(flags: list[str], overrides: list[str], cfg: Any) -> int:
    """A ``run``: refuse ``train.vectorize_seeds=true`` where seeds cannot train stacked."""
    from rprop_bench.cli.seed_groups import option, vectorized, why_not_stacked

    if vectorized(cfg):
        why = why_not_stacked(cfg)
        if why is not None:
            named = option(cfg)  # as set: train.vectorize=grid, or train.vectorize_seeds=true
            return _error(f"{named}{'=true' * (named == 'train.vectorize_seeds')}: {why}")
    refused = open_store_once(cfg)
    if refused is not None:
        return refused
    return _run_interruptible(flags, overrides)


#: The sweeper's option that launches the jobs of a JSON file instead of the grid.
_JOB_LIST = "hydra.sweeper.job_list"


@contextlib.contextmanager
def _seed_plan(
    jobs: list[list[str]], configs: list[Any], remote: str | None = None
) -> Iterator[tuple[dict[str, str], Path | None]]:
    """With ``train.vectorize``: the sweep's groups, in a file for the jobs.

    Yields the environment variables that tell the jobs where the plan is
    (:data:`~rprop_bench.cli.seed_groups.PLAN_ENV`) and when the sweep started, and, when a
    grid's stacks formed, a job list holding only each group's first job and the ungrouped
    jobs (the others would start only to skip); the files live as long as the sweep. A line
    is printed for jobs that train one by one (L-BFGS, mini-batches), and for a grid that
    splits into several stacks. ``remote`` names a launcher whose jobs run on other machines:
    they cannot read the file (nor share the per-group lock files), so every run trains one
    by one there.
    """
    from rprop_bench.cli import seed_groups

    wanted = [cfg for cfg in configs if seed_groups.vectorized(cfg)]
    if not wanted:
        yield {}, None
        return
    if remote is not None:
        print(seed_groups.remote_note(len(wanted), remote, seed_groups.option(wanted[0])),
              flush=True)  # fmt: skip
        yield {}, None
        return
    groups, notes = seed_groups.plan(jobs, configs)
    for note in notes:
        print(note, flush=True)
    followers = {
        member.index
        for members in groups.values()
        if seed_groups.mode(configs[members[0].index]) == "grid"
        for member in members[1:]
    }
    with tempfile.TemporaryDirectory(prefix="rprop_bench_plan_") as tmp:
        path = Path(tmp) / "seed_groups.json"
        seed_groups.write_plan(groups, path)
        job_list = None
        if followers:
            job_list = Path(tmp) / "jobs.json"
            launched = [job for index, job in enumerate(jobs) if index not in followers]
            job_list.write_text(json.dumps(launched))
        env = {seed_groups.PLAN_ENV: str(path), seed_groups.STARTED_ENV: f"{time.time():.3f}"}
        yield env, job_list


#: How long, after Ctrl-C, the CLI waits for a sweep's workers to end before it marks their
#: runs KILLED (joblib kills them at once; other launchers may take a moment).
_WORKERS_END_SECONDS = 5.0


def _run_interruptible(
    flags: list[str],
    overrides: list[str],
    launcher: Any = None,
    end_sweep: Callable[[str], int] | None = None,
) -> int:
    """:func:`_run_hydra`, turning Ctrl-C and SIGTERM into one line and 128 + the signal.

    The line says what became of the runs in progress, which depends on the ``launcher``
    (:func:`rprop_bench.cli.launchers.after_interrupt`). For a sweep, ``end_sweep(reason)``
    then marks the runs its stopped processes left RUNNING, and its parent, KILLED.
    """
    from rprop_bench.cli.launchers import LAUNCHERS, after_interrupt
    from rprop_bench.signals import Interrupted, install_sigterm_handler

    install_sigterm_handler()
    try:
        return _run_hydra(flags, overrides)
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)
        name = signal.Signals(signum).name
        what = after_interrupt(launcher or LAUNCHERS["basic"])
        if end_sweep is not None:
            for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C: no traceback
                signal.signal(sig, signal.SIG_IGN)
            try:
                marked = end_sweep(
                    f"interrupted ({name}): its process was stopped before it could record "
                    "that; marked KILLED by the sweep's command"
                )
            except Exception as error:  # the store went away too: the next sweep will judge
                what += f" (the runs left RUNNING could not be marked: {error})"
            else:
                if marked:
                    what += f"; {marked} run{'s' * (marked != 1)} left RUNNING marked KILLED"
        print(f"error: interrupted by {name}; {what}", file=sys.stderr, flush=True)
        return 128 + signum


def _sweep_ender(cfg: Any, sweep_id: str) -> Callable[[str], int]:
    """``end_sweep`` for :func:`_run_interruptible`: the sweep ``sweep_id`` in ``cfg``'s store."""

    def end_sweep(reason: str) -> int:
        from rprop_bench import tracking
        from rprop_bench.cli.build import tracking_options

        tracker = tracking.Tracker.open(tracking_options(cfg, Path.cwd()))
        return tracker.end_interrupted_sweep(sweep_id, reason, _WORKERS_END_SECONDS)

    return end_sweep


def _ui(overrides: list[str]) -> int:
    from rprop_bench.cli.ui import serve

    try:
        return serve(overrides)
    except ConfigError as exc:
        return _error(str(exc))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m rprop_bench`` and the ``rprop-bench`` script; exits.

    ``argv`` (default: ``sys.argv[1:]``) lets a caller run a command in its own process.
    """
    try:
        with _redacted_output(), _private_files():
            _dispatch(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt as exc:  # one that came outside a command's own handling
        from rprop_bench.signals import Interrupted

        signum = exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)
        print(f"error: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        sys.exit(128 + signum)
    finally:
        from rprop_bench.signals import end_by_signal_from_now, forget_caught_interrupt

        forget_caught_interrupt()  # every Ctrl-C was handled above: the status is ours
        if argv is None:
            end_by_signal_from_now()  # a signal at exit: no traceback from an exit callback
            # The process ends here. The interpreter's shutdown would collect garbage over
            # every object alive (torch, MLflow, SQLAlchemy, Hydra: about 1.3 s here, a sixth
            # of a single run), though none of it needs the collector at exit; it skips
            # frozen objects.
            gc.freeze()


@contextlib.contextmanager
def _redacted_output() -> Iterator[None]:
    """Console output with every URI password masked (:mod:`rprop_bench.redaction`): MLflow's,
    SQLAlchemy's and Hydra's messages and tracebacks included."""
    from rprop_bench.redaction import RedactingStream

    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)  # type: ignore[assignment]
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = saved


@contextlib.contextmanager
def _private_files() -> Iterator[None]:
    """Files made by the command (the SQLite store, artifacts, Hydra's outputs, reports) are
    not readable by other users: the user's umask, with "others" masked out."""
    old = os.umask(0o077)
    os.umask(old | 0o007)
    try:
        yield
    finally:
        os.umask(old)


def _dispatch(args: list[str]) -> None:
    """Run the command in ``args``; exits."""
    command, flags, overrides = split_arguments(args)
    rest = list(args)
    if command in rest:
        rest.remove(command)  # the arguments in their order, without the command word
    if command == "report":
        from rprop_bench.cli.report_command import main as report_main

        sys.exit(report_main(rest))
    if "--help" in flags or "-h" in flags:
        try:
            print(help_text(flags, overrides))
        except ConfigError as exc:
            sys.exit(_error(str(exc)))
        sys.exit(0)
    if command == "ui":
        sys.exit(_ui(overrides))
    if command == "tune":
        from rprop_bench.cli.tune import tune

        sys.exit(tune(flags, overrides))
    sys.exit(_train(command, flags, overrides))
