"""Which Hydra launcher runs a sweep's jobs, and what every job must be told wherever it runs.

rprop-bench has no scheduler of its own: a sweep's jobs run through a Hydra launcher
(``hydra/launcher=NAME``, see ``docs/launchers.md``). The engines beyond joblib are optional
extras (``pip install 'rprop-bench[ray]'``, ``[slurm]``), so :func:`chosen_launcher` checks,
before anything runs, that the chosen launcher exists and that its extra is installed.

A job learns its sweep (id, size, seed plan) from environment variables. Joblib workers
inherit them, but jobs on an existing Ray cluster or on SLURM nodes do not, so
:func:`job_environment` puts them into ``hydra.job.env_set``: part of each job's Hydra config,
which every launcher ships with the job and Hydra's ``run_job`` sets in the job's process.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hydra.core.override_parser.types import Override

from rprop_bench.cli.validate import ConfigError

#: The config group that picks the launcher, as written on the command line.
LAUNCHER_GROUP = "hydra/launcher"
#: The override that points the Ray launcher at an existing cluster.
RAY_ADDRESS_KEY = "hydra.launcher.ray.init.address"
#: hydra-ray-launcher 1.2.2 calls ``ray.init.setdefault("object_store_memory", 78643200)`` on
#: Hydra's struct-mode config, which fails unless the key exists (ConfigKeyError).
RAY_OBJECT_STORE_KEY = "hydra.launcher.ray.init.object_store_memory"


@dataclass(frozen=True)
class Launcher:
    """A launcher users may choose: the modules it needs, and the extra that installs them.

    Attributes:
        name: the option of ``hydra/launcher``.
        modules: modules that must import (the Hydra plugin first, then its engine).
        extra: the ``rprop-bench[...]`` extra that installs them (``None``: a core dependency).
        engine: the plugin's name in the error message (``the Ray launcher``).
        this_machine: whether its jobs run on the submitting machine (they see its files).
    """

    name: str
    modules: tuple[str, ...] = ()
    extra: str | None = None
    engine: str = ""
    this_machine: bool = True


LAUNCHERS: dict[str, Launcher] = {
    launcher.name: launcher
    for launcher in (
        Launcher("basic"),
        Launcher("joblib", ("hydra_plugins.hydra_joblib_launcher", "joblib")),
        Launcher(
            "ray", ("hydra_plugins.hydra_ray_launcher", "ray"), "ray", "the Ray launcher"
        ),  # this_machine unless an address is given: see runs_on_this_machine
        Launcher(
            "submitit_local",
            ("hydra_plugins.hydra_submitit_launcher", "submitit"),
            "slurm",
            "the submitit launcher",
        ),
        Launcher(
            "submitit_slurm",
            ("hydra_plugins.hydra_submitit_launcher", "submitit"),
            "slurm",
            "the submitit launcher",
            this_machine=False,
        ),
    )
}


def _importable(module: str) -> bool:
    """Whether ``module`` imports. The plugin packages are tiny and imported for real (a broken
    or hidden one must count as missing); an engine (ray: seconds to import) is only found."""
    if module.startswith("hydra_plugins."):
        try:
            importlib.import_module(module)
        except ImportError:
            return False
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        return False


def chosen_launcher(overrides: Sequence[Override]) -> Launcher:
    """The launcher the command line chooses (``basic`` if none), checked to be usable.

    Raises:
        ConfigError: an unknown launcher (the valid ones listed), or one whose extra is not
            installed (the ``pip install`` line to run).
    """
    choice = "basic"
    for override in overrides:
        if override.key_or_group == LAUNCHER_GROUP and not override.is_delete():
            choice = override.get_value_element_as_str()
    launcher = LAUNCHERS.get(choice)
    if launcher is None:
        raise ConfigError(f"unknown launcher {choice!r}; valid launchers: {', '.join(LAUNCHERS)}")
    missing = [m for m in launcher.modules if not _importable(m)]
    if missing:
        how = (
            f"pip install 'rprop-bench[{launcher.extra}]'"
            if launcher.extra
            else "pip install -e . (it is a core dependency)"
        )
        raise ConfigError(
            f"{LAUNCHER_GROUP}={choice} needs {launcher.engine or choice} "
            f"({missing[0]} is not installed): {how}"
        )
    return launcher


def runs_on_this_machine(launcher: Launcher, overrides: Sequence[Override]) -> bool:
    """Whether the launcher's jobs run on this machine: not on SLURM nodes, and not on a Ray
    cluster given by its address (``hydra.launcher.ray.init.address=HOST:PORT``)."""
    if launcher.name == "ray":
        return not any(
            o.key_or_group == RAY_ADDRESS_KEY and o.value() not in (None, "null", "")
            for o in overrides
        )
    return launcher.this_machine


def launcher_overrides(launcher: Launcher, overrides: Sequence[Override]) -> list[str]:
    """Hydra overrides that make the chosen launcher work as documented.

    ``ray``: declare ``ray.init.object_store_memory`` (null: Ray's own default) unless the
    command line sets it, so that the plugin's ``setdefault`` finds the key; null is also what
    ``ray.init`` needs to join an existing cluster, where it refuses a size. (A config file of
    our own under ``conf/hydra/launcher/ray.yaml`` would shadow the plugin's and declare it too,
    but Hydra then warns on every composition that it matches it against the plugin's schema.)
    """
    if launcher.name != "ray":
        return []
    if any(o.key_or_group == RAY_OBJECT_STORE_KEY for o in overrides):
        return []
    return [f"++{RAY_OBJECT_STORE_KEY}=null"]


def job_environment(variables: Mapping[str, str]) -> list[str]:
    """Hydra overrides that set ``variables`` in every job's process, wherever it runs.

    ``hydra.job.env_set`` is part of the Hydra config each launcher ships with a job; Hydra's
    ``run_job`` sets it around the task. Values are quoted, so paths and numbers stay text.
    """
    return [f"++hydra.job.env_set.{name}='{value}'" for name, value in variables.items()]


def after_interrupt(launcher: Launcher) -> str:
    """What became of the runs in progress when Ctrl-C or SIGTERM stopped the CLI (for its
    one line). A run in this process sees the signal, writes its metrics and ends KILLED.
    Joblib kills its workers (SIGKILL) as soon as the main process is interrupted, so the CLI
    marks their runs KILLED itself, with the metrics of their last flush. Ray (on the spot)
    and submitit_local stop their jobs' processes without that chance either; the CLI marks
    the runs of the processes that have ended by then. SLURM jobs are not cancelled by the
    submitting process."""
    resume = "run the same command again to resume"
    if launcher.name == "basic":
        return f"a run in progress is marked KILLED with its metrics so far; {resume}"
    if launcher.name == "joblib":
        return (
            "runs in progress are marked KILLED, with the metrics of their last flush "
            f"(tracking.flush_seconds); {resume}"
        )
    if launcher.name == "submitit_slurm":
        return (
            "the SLURM jobs already submitted keep running (scancel stops them); "
            f"{resume}: it skips the runs they finish"
        )
    return (
        f"runs in progress under {LAUNCHER_GROUP}={launcher.name} were stopped; those whose "
        "processes had ended are marked KILLED, any other by the same command run again, "
        "which resumes the sweep"
    )
