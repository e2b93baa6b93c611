"""Composing the config before Hydra runs: option lists and the pre-flight check.

:func:`preflight` composes, with Hydra's compose API, every job that a command line will run
(the sweep grid of ``conf/sweep/`` combined with the command line's own overrides, exactly as
Hydra's basic sweeper combines them) and validates each one. So an unknown option, a typo in
a key or an out-of-range value is reported in one line before the first run starts.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf

from rprop_bench.cli.validate import ConfigError, validate

#: The project's config directory (``conf/`` at the repository root).
CONF_DIR: Path = Path(__file__).resolve().parents[2] / "conf"
CONFIG_NAME = "config"
#: The config groups users swap, in the order ``--help`` lists them.
GROUPS = ("optimizer", "problem", "model", "train", "tracking", "sweep", "experiment")
_PLURAL = {"sweep": "sweep grids", "train": "train settings", "tracking": "tracking settings"}


def group_options(group: str) -> list[str]:
    """The options of a config group: the names of the YAML files in ``conf/<group>/``."""
    directory = CONF_DIR / group
    return sorted(p.stem for p in directory.glob("*.yaml")) if directory.is_dir() else []


_MODEL_HINT = " (the problem's default model is fixed: choose model=mlp or model=linear first)"


def _with_hint(text: str) -> str:
    """Add a hint to a failed override of the problem's default model."""
    return text + _MODEL_HINT if "override 'model." in text else text


def _one_line(exc: BaseException) -> str:
    """An exception's message in one line, with a hint for overriding the default model."""
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


def check_group_choices(overrides: list[Override]) -> None:
    """Reject an option that a config group does not have, listing the valid ones."""
    for override in overrides:
        group = override.key_or_group
        if group not in GROUPS or override.package is not None or override.is_delete():
            continue
        valid = group_options(group)
        for value in _values(override):
            if value not in ("null", "None") and value not in valid:
                noun = _PLURAL.get(group, f"{group}s")
                raise ConfigError(
                    f"unknown {group} {value!r}; valid {noun}: {', '.join(valid) or '(none)'}"
                )


def compose_config(overrides: list[str], *, with_hydra: bool = False) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides`` (no sweeps) via Hydra's compose API."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(CONFIG_NAME, overrides=overrides, return_hydra_config=with_hydra)


def job_overrides(overrides: list[str], *, sweep: bool) -> list[list[str]]:
    """The overrides of every job the command line runs, in Hydra's order.

    For a sweep, the grid in ``hydra.sweeper.params`` (from the chosen ``sweep`` config) comes
    first and the command line's overrides win over it key by key, as in Hydra's basic sweeper.
    """
    parsed = parse(overrides)
    check_group_choices(parsed)
    if not sweep:
        return [overrides]
    params = OmegaConf.select(_hydra_node(_fixed(parsed)), "sweeper.params") or {}
    grid = [f"{key}={value}" for key, value in params.items()]
    everything = parse(grid) + parsed
    check_group_choices(everything)
    batches = BasicSweeper.split_arguments(everything, max_batch_size=None)
    return [list(job) for batch in batches for job in batch]


def hydra_settings(overrides: list[str]) -> DictConfig:
    """The ``hydra`` node that a command line composes (sweeper grid, launcher settings),
    comma lists left out; read-only, and composed once per command line."""
    parsed = parse(overrides)
    check_group_choices(parsed)
    return _hydra_node(_fixed(parsed))


def _fixed(parsed: list[Override]) -> tuple[str, ...]:
    """The overrides of a command line that are not comma lists (what every job shares)."""
    return tuple(o.input_line for o in parsed if not o.is_sweep_override() and o.input_line)


@functools.lru_cache(maxsize=8)
def _hydra_node(fixed: tuple[str, ...]) -> DictConfig:
    try:
        node = compose_config(list(fixed), with_hydra=True).hydra
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


def _apply_values(cfg: DictConfig, values: list[Override]) -> DictConfig:
    """A copy of ``cfg`` with plain ``key=value`` overrides applied (struct mode: no new keys)."""
    cfg = copy.deepcopy(cfg)
    for override in values:
        try:
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
        except Exception as exc:
            raise ConfigError(
                _with_hint(f"Could not override '{override.key_or_group}': {_one_line(exc)}")
            ) from exc
    return cfg


def preflight(overrides: list[str], *, sweep: bool) -> tuple[list[list[str]], list[DictConfig]]:
    """Compose and validate every job; return the jobs' overrides and their configs.

    Hydra composes once per distinct choice of config files (optimizer, problem, ...); each
    job's plain value overrides are then applied to a copy, and the result validated.

    Raises:
        ConfigError: the first problem found, in one line.
    """
    jobs = job_overrides(overrides, sweep=sweep)
    composed: dict[tuple[str, ...], DictConfig] = {}
    configs: list[DictConfig] = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        for job in jobs:
            parsed = parse(job)
            # hydra/... settings (launcher, sweeper) do not change the job config being checked
            selecting = tuple(
                o.input_line or ""
                for o in parsed
                if _selects_files(o) and not o.key_or_group.startswith("hydra")
            )
            if selecting not in composed:
                try:
                    composed[selecting] = compose(CONFIG_NAME, overrides=list(selecting))
                except Exception as exc:
                    raise ConfigError(f"invalid configuration: {_one_line(exc)}") from exc
            cfg = _apply_values(composed[selecting], [o for o in parsed if not _selects_files(o)])
            validate(cfg)
            configs.append(cfg)
    return jobs, configs
