"""Composing the config before Hydra runs: option lists and the pre-flight check.

:func:`preflight` composes, with Hydra's compose API, every job that a command line will run
(the sweep grid of ``conf/sweep/`` combined with the command line's own overrides, exactly as
Hydra's basic sweeper combines them) and validates each one. So an unknown option, a typo in
a key or an out-of-range value is reported in one line before the first run starts.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.resources
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra import compose
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from rprop_bench.cli.structured import register_schema
from rprop_bench.cli.validate import ConfigError, validate, wrong_type
from rprop_bench.params import MAX_PARAM_VALUE

register_schema()  # conf/config.yaml's defaults name it: before anything composes

#: The package that holds the configs: ``conf/`` at the repository root, installed as
#: ``rprop_bench.conf`` (pyproject.toml's package-dir), in a wheel as in an editable install.
CONF_PACKAGE = "rprop_bench.conf"
CONFIG_NAME = "config"


def _conf_dir() -> Path:
    """The config package's folder on disk.

    A real folder rather than Hydra's ``pkg://rprop_bench.conf``: every consumer (``hydra.main``,
    the compose API, the sweeper's pickled config loader in joblib's workers, the option
    listing) then reads the files Hydra's file source reads, as a plain string path. The
    package is always unpacked on disk (wheels and editable installs alike; zip imports are
    not supported).
    """
    try:
        files = importlib.resources.files(CONF_PACKAGE)
    except ModuleNotFoundError as exc:  # an editable install from before conf/ was a package
        raise ImportError(
            f"cannot find the configs: the package {CONF_PACKAGE} is not installed; "
            "install rprop-bench again (pip install -e . in a checkout)"
        ) from exc
    if not isinstance(files, Path) or not (files / f"{CONFIG_NAME}.yaml").is_file():
        raise ImportError(f"cannot find the configs: {CONF_PACKAGE} ({files}) is not a folder")
    return files


#: The project's config folder, found through the installed package (the one definition:
#: the CLI, ``report``, the tests all use it).
CONF_DIR: Path = _conf_dir()
#: The config groups users swap, in the order ``--help`` lists them.
GROUPS = ("optimizer", "problem", "model", "train", "tracking", "sweep", "tune", "experiment")
_PLURAL = {
    "sweep": "sweep grids", "train": "train settings", "tracking": "tracking settings",
    "tune": "tuning settings",
}  # fmt: skip
#: Hydra's flags that add a config folder to the search path (the last one given counts).
CONFIG_DIR_FLAGS = ("--config-dir", "-cd")
_SEARCHPATH = "hydra.searchpath"


def config_dirs(flags: Sequence[str]) -> tuple[str, ...]:
    """The folder of ``--config-dir DIR`` (or ``-cd DIR``, ``--config-dir=DIR``), if given.

    >>> config_dirs(["--config-dir", "my", "--cfg", "job"])
    ('my',)
    """
    found: tuple[str, ...] = ()
    for i, flag in enumerate(flags):
        name, eq, value = flag.partition("=")
        if name in CONFIG_DIR_FLAGS:
            if eq:
                found = (value,)
            elif i + 1 < len(flags):
                found = (flags[i + 1],)
    return found


def search_path(extra_dirs: Sequence[str] = ()) -> Any:
    """Hydra's config search path as ``hydra.main`` builds it for the CLI: the package's
    configs, and each ``--config-dir`` folder where Hydra adds it (after them).

    Raises:
        ConfigError: a ``--config-dir`` folder that does not exist.
    """
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery

    path = create_config_search_path(str(CONF_DIR))
    for folder in extra_dirs:
        absolute = os.path.abspath(folder)
        if not os.path.isdir(absolute):
            raise ConfigError(f"--config-dir {folder}: no such directory ({absolute})")
        path.prepend("command-line", f"file://{absolute}", anchor=SearchPathQuery("schema"))
    return path


@contextlib.contextmanager
def initialized(
    extra_dirs: Sequence[str] = (), *, job_name: str = "app", version_base: str | None = None
) -> Iterator[None]:
    """Hydra's ``initialize_config_dir(CONF_DIR)``, with the ``--config-dir`` folders added.

    Everything that composes a config with Hydra's compose API goes through this.
    """
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    csp = search_path(extra_dirs)  # first: a missing folder changes nothing
    backup = get_gh_backup()
    version.setbase(version_base)
    Hydra.create_main_hydra2(task_name=job_name, config_search_path=csp)
    try:
        yield
    finally:
        restore_gh_from_backup(backup)


def _searchpath_overrides(overrides: Sequence[Override]) -> list[str]:
    """The ``hydra.searchpath=[...]`` overrides among ``overrides``, checked.

    Raises:
        ConfigError: a ``file://`` entry (or a plain path) that is not a directory.
    """
    found = [o for o in overrides if o.key_or_group == _SEARCHPATH and o.input_line]
    for override in found:
        value = override.value()
        for entry in value if isinstance(value, list) else []:
            scheme, sep, where = str(entry).partition("://")
            folder = where if sep else scheme
            if (not sep or scheme == "file") and not os.path.isdir(folder):
                raise ConfigError(f"{_SEARCHPATH}: {entry!r} is not a directory")
    return [str(o.input_line) for o in found]


def all_group_options(
    overrides: Sequence[Override] = (), extra_dirs: Sequence[str] = ()
) -> dict[str, list[str]]:
    """The options of every config group (:data:`GROUPS`): the configs Hydra finds in
    ``<group>/`` of every folder on the search path, the package's ``conf/`` and the user's
    (``--config-dir``: ``extra_dirs``; ``hydra.searchpath=[...]`` among ``overrides``)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.object_type import ObjectType

    loader = ConfigLoaderImpl(config_search_path=search_path(extra_dirs))
    searchpath = _searchpath_overrides(overrides)
    try:
        # Hydra's get_group_options, with the search path set up once for all the groups
        _, repo = loader._parse_overrides_and_create_caching_repo(CONFIG_NAME, searchpath)
        return {g: sorted(repo.get_group_options(g, ObjectType.CONFIG)) for g in GROUPS}
    except Exception as exc:  # e.g. hydra.searchpath is not a list of strings
        raise ConfigError(f"invalid {_SEARCHPATH}: {_one_line(exc)}") from exc


def group_options(
    group: str, overrides: Sequence[Override] = (), extra_dirs: Sequence[str] = ()
) -> list[str]:
    """The options of one config group, as :func:`all_group_options` finds them."""
    return all_group_options(overrides, extra_dirs).get(group, [])


_MODEL_HINT = " (the problem's default model is fixed: choose model=mlp or model=linear first)"


def _with_hint(text: str) -> str:
    """Add a hint to a failed override of the problem's default model."""
    return text + _MODEL_HINT if "override 'model." in text else text


def _one_line(exc: BaseException) -> str:
    """An exception's message in one line, with a hint for overriding the default model."""
    cause = exc.__cause__
    if cause is not None and "does not support deletion" in str(cause):
        key = getattr(cause, "full_key", "") or str(exc).rpartition("~")[2]
        return f"~{key}: {key} cannot be deleted (the schema needs it); set it instead ({key}=...)"
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return _with_hint(" ".join(lines[:2]) if lines else type(exc).__name__)


def parse(overrides: list[str]) -> list[Override]:
    """Parse command-line overrides with Hydra's grammar; raise :class:`ConfigError` if bad."""
    try:
        return OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise ConfigError(f"invalid override: {_one_line(exc)}") from exc


def _values(override: Override) -> list[str]:
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    return [override.get_value_element_as_str()]


def check_group_choices(overrides: list[Override], extra_dirs: Sequence[str] = ()) -> None:
    """Reject an option that a config group does not have, listing the valid ones.

    The valid ones include the user's configs on the search path (``extra_dirs``: the
    ``--config-dir`` folder; ``hydra.searchpath=[...]`` among ``overrides``).
    """
    _searchpath_overrides(overrides)  # a user's config folder that is missing: say so
    options: dict[str, list[str]] | None = None  # listed once, when a group is chosen
    for override in overrides:
        group = override.key_or_group
        if group not in GROUPS or override.package is not None or override.is_delete():
            continue
        if options is None:
            options = all_group_options(overrides, extra_dirs)
        valid = options[group]
        for value in _values(override):
            if value not in ("null", "None") and value not in valid:
                noun = _PLURAL.get(group, f"{group}s")
                raise ConfigError(
                    f"unknown {group} {value!r}; valid {noun}: {', '.join(valid) or '(none)'}"
                )


def compose_config(
    overrides: list[str], *, with_hydra: bool = False, extra_dirs: Sequence[str] = ()
) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides`` (no sweeps) via Hydra's compose API
    (``extra_dirs``: the ``--config-dir`` folder, if any)."""
    with initialized(extra_dirs):
        return compose(CONFIG_NAME, overrides=overrides, return_hydra_config=with_hydra)


def job_overrides(
    overrides: list[str], *, sweep: bool, extra_dirs: Sequence[str] = ()
) -> list[list[str]]:
    """The overrides of every job the command line runs, in Hydra's order.

    For a sweep, the grid in ``hydra.sweeper.params`` (from the chosen ``sweep`` config) comes
    first and the command line's overrides win over it key by key, as in Hydra's basic sweeper.
    """
    parsed = parse(overrides)
    check_group_choices(parsed, extra_dirs)
    if not sweep:
        return [overrides]
    node = _hydra_node(_fixed(parsed), tuple(extra_dirs))
    params = OmegaConf.select(node, "sweeper.params") or {}
    grid = [f"{key}={value}" for key, value in params.items()]
    everything = parse(grid) + parsed
    check_group_choices(everything, extra_dirs)
    batches = BasicSweeper.split_arguments(everything, max_batch_size=None)
    return [list(job) for batch in batches for job in batch]


def hydra_settings(overrides: list[str], extra_dirs: Sequence[str] = ()) -> DictConfig:
    """The ``hydra`` node that a command line composes (sweeper grid, launcher settings),
    comma lists left out; read-only, and composed once per command line."""
    parsed = parse(overrides)
    check_group_choices(parsed, extra_dirs)
    return _hydra_node(_fixed(parsed), tuple(extra_dirs))


def _fixed(parsed: list[Override]) -> tuple[str, ...]:
    """The overrides of a command line that are not comma lists and that choose files or
    Hydra settings: all the ``hydra`` node depends on. A plain value such as
    ``optimizer.search.lr.low=1e-7`` is left out: with ``optimizer=sgd,momentum`` it belongs
    to each job's optimizer, not to the default one the node is composed with."""
    return tuple(
        o.input_line
        for o in parsed
        if not o.is_sweep_override() and o.input_line and _selects_files(o)
    )


@functools.lru_cache(maxsize=8)
def _hydra_node(fixed: tuple[str, ...], extra_dirs: tuple[str, ...] = ()) -> DictConfig:
    try:
        node = compose_config(list(fixed), with_hydra=True, extra_dirs=extra_dirs).hydra
    except Exception as exc:
        raise ConfigError(f"invalid configuration: {_one_line(exc)}") from exc
    OmegaConf.set_readonly(node, True)
    return node


def _selects_files(override: Override) -> bool:
    """Whether an override changes which files compose the config (or is not a plain change).

    Such overrides go through Hydra's composition; plain ``key=value`` changes are applied on
    top with OmegaConf, as Hydra applies them, which is what makes checking a big sweep fast.
    """
    key = override.key_or_group
    return (
        key in GROUPS
        or "/" in key
        or key.startswith("hydra")
        or override.package is not None
        or override.type != OverrideType.CHANGE
    )


def dotted_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Every key of ``cfg``, nested ones dotted (``train``, ``train.epochs``, ...)."""
    keys = []
    for key, value in cfg.items_ex(resolve=False) if isinstance(cfg, DictConfig) else ():
        dotted = f"{prefix}{key!s}"
        keys.append(dotted)
        if isinstance(value, DictConfig):
            keys += dotted_keys(value, dotted + ".")
    return keys


def no_such_key(key: str, cfg: DictConfig) -> str | None:
    """``"train.epoch: no such key; did you mean train.epochs?"`` if ``cfg`` lacks ``key``
    (the nearest existing key by :mod:`difflib`, else the valid keys beside it), or
    ``None`` if the key exists."""
    missing = object()
    if OmegaConf.select(cfg, key, default=missing) is not missing:
        return None
    import difflib

    close = difflib.get_close_matches(key, dotted_keys(cfg), n=1, cutoff=0.75)
    if close:
        return f"{key}: no such key; did you mean {close[0]}?"
    parent = key.rpartition(".")[0]
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if isinstance(node, DictConfig):
        where = f" under {parent}" if parent else ""
        return f"{key}: no such key; the keys{where}: {', '.join(map(str, node.keys()))}"
    return f"{key}: no such key"


def _apply_values(cfg: DictConfig, values: list[Override]) -> DictConfig:
    """A copy of ``cfg`` with plain ``key=value`` overrides applied (struct mode: no new keys)."""
    cfg = copy.deepcopy(cfg)
    for override in values:
        try:
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
        except ValidationError as exc:  # a value a structured field cannot hold
            raise wrong_type(exc, override.value()) from exc
        except Exception as exc:
            unknown = no_such_key(override.key_or_group, cfg)
            if unknown and not override.key_or_group.startswith("model."):  # model: its hint
                raise ConfigError(unknown) from exc
            raise ConfigError(
                _with_hint(f"Could not override '{override.key_or_group}': {_one_line(exc)}")
            ) from exc
    return cfg


#: The problem loader's ``_target_``: its ``name`` must be a registered problem.
PROBLEM_LOADER = "rprop_bench.problems.load_problem"


@functools.cache
def _problem_config_names() -> frozenset[str]:
    """The package's problem configs (listed once: the check runs for every job of a sweep)."""
    return frozenset(group_options("problem"))


def check_problem_name(cfg: DictConfig) -> None:
    """A name of the problem registry (:data:`rprop_bench.problems.PROBLEMS`).

    The name of a problem config in conf/problem/ is its data's name, so that is accepted
    without importing the problems (torch and scikit-learn, seconds in the CLI's process).
    """
    data = cfg.problem.data
    name = data.get("name")
    if data.get("_target_") != PROBLEM_LOADER or name in _problem_config_names():
        return
    from rprop_bench.problems import problem_names

    valid = problem_names()
    if name not in valid:
        raise ConfigError(
            f"problem.data.name={name!r} is not a problem; valid problems: {', '.join(valid)}"
        )


def preflight(
    overrides: list[str], *, sweep: bool, extra_dirs: Sequence[str] = ()
) -> tuple[list[list[str]], list[DictConfig]]:
    """Compose and validate every job; return the jobs' overrides and their configs.

    Hydra composes once per distinct choice of config files (optimizer, problem, ...); each
    job's plain value overrides are then applied to a copy, and the result validated.
    ``extra_dirs``: the ``--config-dir`` folder, if any (``hydra.searchpath`` comes with the
    overrides).

    Raises:
        ConfigError: the first problem found, in one line.
    """
    jobs = job_overrides(overrides, sweep=sweep, extra_dirs=extra_dirs)
    return jobs, check_jobs(jobs, extra_dirs)


def check_jobs(jobs: list[list[str]], extra_dirs: Sequence[str] = ()) -> list[DictConfig]:
    """Compose and validate the jobs of an explicit list (see :func:`preflight`); return their
    configs.

    Raises:
        ConfigError: the first problem found, in one line.
    """
    composed: dict[tuple[str, ...], DictConfig] = {}
    configs: list[DictConfig] = []
    with initialized(extra_dirs):
        for job in jobs:
            parsed = parse(job)
            for override in parsed:
                if len(override.input_line or "") > MAX_PARAM_VALUE:
                    raise ConfigError(
                        f"{override.key_or_group}: the override is "
                        f"{len(override.input_line or ''):,} characters long; a run's params "
                        f"keep at most {MAX_PARAM_VALUE:,} (MLflow's limit)"
                    )
            # hydra/... settings (launcher, sweeper) do not change the job config being checked;
            # hydra.searchpath does: it says where the chosen config files are
            selecting = tuple(
                o.input_line or ""
                for o in parsed
                if _selects_files(o)
                and (not o.key_or_group.startswith("hydra") or o.key_or_group == _SEARCHPATH)
            )
            if selecting not in composed:
                try:
                    composed[selecting] = compose(CONFIG_NAME, overrides=list(selecting))
                except Exception as exc:
                    raise ConfigError(f"invalid configuration: {_one_line(exc)}") from exc
            cfg = _apply_values(composed[selecting], [o for o in parsed if not _selects_files(o)])
            validate(cfg)
            check_problem_name(cfg)
            configs.append(cfg)
    return configs
