"""Who a run is: its names, run key, sweep id, commit and tags.

Everything here is derived from the composed config (and the Hydra job it runs in), never from
objects built from it, so the CLI's main process can key and name a whole sweep before any job
starts, without importing torch.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from rprop_bench import schema

PROGRAM = "python -m rprop_bench"


#: Set by the CLI before a sweep starts: the sweep's id, from its jobs' run keys, so that the
#: same sweep run again (resumed) finds its parent run. Every job gets it through its Hydra
#: config's ``hydra.job.env_set``, on whatever machine it runs (rprop_bench.cli.launchers).
SWEEP_ID_ENV = "RPROP_BENCH_SWEEP_ID"


#: Set by the CLI before a sweep starts: the number of its jobs, for the "[3/30]" lines.
SWEEP_SIZE_ENV = "RPROP_BENCH_SWEEP_SIZE"


#: Set by the ``tune`` command for each phase of a study it launches as a sweep: the sweep
#: parent's name, its command line, and the study's parent run it nests under.
SWEEP_TITLE_ENV = "RPROP_BENCH_SWEEP_TITLE"
SWEEP_COMMAND_ENV = "RPROP_BENCH_SWEEP_COMMAND"
SWEEP_WITHIN_ENV = "RPROP_BENCH_SWEEP_WITHIN"


#: Config nodes that say how a run is recorded or scheduled, not what it computes. They stay out
#: of the run key, so a change of store, launcher, output directory or resume policy keeps it.
#: (Hydra's own settings, launcher and output directories included, are not in a job's config.)
NOT_IN_RUN_KEY = ("tracking", "sweep", "tune", "hydra")


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
        """A short run name, e.g. ``irprop+ s3 · iris``: the optimizer and the seed come first,
        so that the MLflow UI's narrow name column still tells a sweep's runs apart."""
        label = self.variant if self.optimizer != schema.TORCH_RPROP_LABEL else self.optimizer
        return f"{label} s{self.seed} · {self.problem}"


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


def run_key(
    cfg: DictConfig, *, without_seed: bool = False, without_optimizer: Iterable[str] = ()
) -> str:
    """A hash of the resolved config without :data:`NOT_IN_RUN_KEY` (same key = same run).

    Keys are sorted before hashing, so the order of overrides does not matter.
    ``train.vectorize_seeds`` counts only when true: a stacked run agrees with a one-by-one
    run up to last-bit rounding only, so a resumed sweep must not take one for the other, and
    the keys of runs made before the option existed stay valid. ``train.dtype`` counts only
    when not float32, and ``problem.loss``, ``targets`` and ``success_within`` only when set,
    for the same reason.
    ``train.vectorize=seeds`` is ``vectorize_seeds=true`` (one key for both spellings);
    ``vectorize=grid`` counts as itself: its baselines step per member (last-bit tolerances).
    ``without_seed`` leaves out ``train.seed``: the key of a seed group; ``without_optimizer``
    leaves out those optimizer arguments too: the key of a grid's stack
    (:mod:`rprop_bench.cli.seed_groups`).
    """
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    for name in NOT_IN_RUN_KEY:
        plain.pop(name, None)
    problem = plain.get("problem")
    if isinstance(problem, dict):  # unset, as before the options: keys from then stay
        for option in ("loss", "targets", "success_within"):
            if option in problem and problem[option] is None:
                problem.pop(option)
    optimizer = plain.get("optimizer")
    if isinstance(optimizer, dict):  # traits of the optimizer, not hyperparameters
        for key in (*schema.OPTIMIZER_HARNESS_KEYS, *without_optimizer):
            optimizer.pop(key, None)
    train = plain.get("train")
    if isinstance(train, dict):
        mode = train.pop("vectorize", None) or ("seeds" if train.get("vectorize_seeds") else None)
        train.pop("vectorize_seeds", None)
        if mode == "seeds":  # as before train.vectorize existed
            train["vectorize_seeds"] = True
        elif mode is not None:
            train["vectorize"] = mode
        if train.get("dtype") == "float32":  # the default: keys from before the option stay
            train.pop("dtype", None)
        if without_seed:
            train.pop("seed", None)
    text = json.dumps(plain, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


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
    tags = {
        schema.TAG_RUN_KIND: schema.RUN_KIND_TRAINING,
        schema.TAG_OPTIMIZER: names.optimizer,
        schema.TAG_VARIANT: names.variant,
        schema.TAG_PROBLEM: names.problem,
        schema.TAG_TASK: task,
        schema.TAG_MODEL: names.model,
        schema.TAG_SEED: str(names.seed),
        schema.TAG_GIT_COMMIT: git_commit(),
        schema.TAG_COMMAND: rerun_command(overrides, sweep_settings(cfg)),
        schema.TAG_OUTPUT_DIR: str(output_dir.resolve()),
        schema.TAG_RUN_KEY: run_key(cfg),
        **source_tags(),
        **machine_tags(),
    }
    tags.update(tune_tags(cfg))
    return tags


def rerun_command(overrides: Iterable[str], settings: Iterable[str] = ()) -> str:
    """The command that trains this one run again, shell-quoted (``shlex.join``): the job's
    overrides less those that choose a sweep (``sweep=...``, ``sweep.*``), which would make
    it a one-job sweep that skips the run instead of training it, and plus ``settings``, what
    the sweep config set (:func:`sweep_settings`), so that the run key is the same."""
    kept = [o for o in overrides if o.lstrip("+~").split("=", 1)[0].split(".")[0] != "sweep"]
    return " ".join([PROGRAM, "run", *map(shlex.quote, [*kept, *settings])])


def sweep_settings(cfg: DictConfig) -> list[str]:
    """``key=value`` for every setting outside ``hydra`` that this job's sweep config (e.g.
    ``conf/sweep/default.yaml``: ``train.log_every``) sets, with the job's own value; ``[]``
    outside a sweep. Found in Hydra's search path (``hydra.runtime.config_sources``)."""
    runtime = HydraConfig.get().runtime
    choice = runtime.choices.get("sweep")
    if not choice or choice == "null":
        return []
    for source in runtime.config_sources:
        path = Path(str(source.path)) / "sweep" / f"{choice}.yaml"
        if source.schema == "file" and path.is_file():
            return [f"{key}={_override_value(OmegaConf.select(cfg, key))}"
                    for key in _settings_of(str(path))]  # fmt: skip
    return []


@functools.cache
def _settings_of(sweep_file: str) -> tuple[str, ...]:
    """The dotted keys a sweep config sets outside ``hydra`` (read once per process: every run
    of a sweep asks)."""
    from rprop_bench.params import flatten

    content = OmegaConf.to_container(OmegaConf.load(sweep_file))
    assert isinstance(content, dict)
    content.pop("hydra", None)
    return tuple(flatten({str(k): v for k, v in content.items()}))


def _override_value(value: object) -> str:
    """A value in Hydra's override grammar (JSON's scalars and lists are valid in it)."""
    plain = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return plain if isinstance(plain, str) else json.dumps(plain)


def source_tags() -> dict[str, str]:
    """MLflow's own source tags (the UI's Source column): this code's name, kind and commit
    (without the ``-dirty`` mark, which MLflow would take for part of the hash)."""
    tags = {schema.TAG_SOURCE_NAME: schema.SOURCE_NAME, schema.TAG_SOURCE_TYPE: schema.SOURCE_TYPE}
    commit = git_commit().removesuffix("-dirty")
    if commit != "unknown":
        tags[schema.TAG_SOURCE_COMMIT] = commit
    return tags


@functools.cache
def machine_tags() -> dict[str, str]:
    """What a run was trained on: torch's version (read from its package metadata, so that
    naming a sweep imports no torch), the CPU's model and the platform."""
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "unknown"
    return {
        schema.TAG_TORCH_VERSION: torch_version,
        schema.TAG_CPU: cpu_model(),
        schema.TAG_PLATFORM: platform.platform(),
    }


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux's ``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def tune_tags(cfg: DictConfig) -> dict[str, str]:
    """The tags of a tuning study's run (its study, role and trial), if the ``tune`` command
    set them on its job; none otherwise."""
    tune = cfg.get("tune")
    if tune is None or tune.get("role") is None:
        return {}
    tags = {schema.TAG_TUNE_ROLE: str(tune.role), schema.TAG_TUNE_STUDY: str(tune.study)}
    if tune.get("trial") is not None:
        tags[schema.TAG_TUNE_TRIAL] = str(tune.trial)
    return tags


def job_label() -> str:
    """``  [3/30]``: this job's number in the sweep."""
    number = HydraConfig.get().job.num + 1
    return f"  [{number}/{os.environ.get(SWEEP_SIZE_ENV, '?')}]"
