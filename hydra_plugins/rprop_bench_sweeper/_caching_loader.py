"""A config loader that composes once per set of config files (:class:`CachingConfigLoader`).

It lives in a module whose name starts with ``_`` so that Hydra's plugin scanner skips it: the
scanner re-executes every module it finds, which would rebind :data:`_CACHES` and give a
class that joblib's cloudpickle no longer finds by name (it would then ship it by value, and
every job would compose again).
"""

import contextlib
import copy
import pickle
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.rprop_bench_sweeper._long_lived import freeze_once


def _plain_value(override: Override, groups: frozenset[str]) -> bool:
    """A ``key=value`` change of the job's own config: applied after composing, not part of it."""
    return (
        override.type == OverrideType.CHANGE
        and override.package is None
        and not override.is_hydra_override()
        and "/" not in override.key_or_group
        and override.key_or_group not in groups
        and not override.is_sweep_override()
    )


def _edits_values(override: Override, groups: frozenset[str]) -> bool:
    """Whether Hydra applies ``override`` to the composed config (``+k=v``, ``++k=v``, ``~k``).

    Such an override goes into the composition here, so a plain value before it in the list
    cannot be moved after it: Hydra applies these in the order given.
    """
    key = override.key_or_group
    return not (override.is_hydra_override() or key in groups or "/" in key) and (
        override.type != OverrideType.CHANGE or override.package is not None
    )


#: Every :class:`CachingConfigLoader` of this process by its token: the loaders that a joblib
#: worker unpickles (one per job) share their compositions.
_CACHES: dict[str, dict[tuple[str, ...], DictConfig]] = {}
#: The tokens whose shared compositions (:meth:`CachingConfigLoader.share`) this process read.
_READ: set[str] = set()


class CachingConfigLoader:
    """A config loader whose ``load_sweep_config`` composes once per set of config files.

    Every other attribute is the wrapped Hydra loader's. The cache key is the job's overrides
    that can change the defaults list (group choices, ``+``/``~``/``++``, ``hydra.*``), so a
    group option that is also a key (``model``) still goes through composition. A plain value
    is taken out of the key only if no ``+``/``++``/``~`` override follows it, so that the
    order in which Hydra applies them is kept.
    """

    def __init__(self, loader: Any, groups: Sequence[str]) -> None:
        self._loader = loader
        self._groups = frozenset(groups)
        self._token = uuid.uuid4().hex
        self._cache: dict[tuple[str, ...], DictConfig] = _CACHES.setdefault(self._token, {})
        self._shared: str | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_loader", "_groups", "_token", "_cache", "_shared"):
            raise AttributeError(name)  # not set yet (unpickling): do not recurse
        return getattr(self._loader, name)

    def __getstate__(self) -> dict[str, Any]:
        return {"_loader": self._loader, "_groups": self._groups, "_token": self._token,
                "_shared": self._shared}  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache = _CACHES.setdefault(self._token, {})

    def _split(
        self, sweep_overrides: Sequence[str]
    ) -> tuple[tuple[str, ...], list[Override], list[Override]]:
        """A job's cache key (the overrides composed), the plain values applied after, and all
        its overrides parsed."""
        parsed = OverridesParser.create().parse_overrides(list(sweep_overrides))
        moved = [
            _plain_value(o, self._groups)
            and not any(_edits_values(later, self._groups) for later in parsed[i + 1 :])
            for i, o in enumerate(parsed)
        ]
        key = tuple(o.input_line for o, m in zip(parsed, moved, strict=True) if not m)
        return key, [o for o, m in zip(parsed, moved, strict=True) if m], parsed

    def share(
        self, master_config: DictConfig, jobs: Sequence[Sequence[str]], directory: Path
    ) -> None:
        """Compose every config set of ``jobs`` here, and leave them in a file in ``directory``.

        Worker processes on this machine (joblib's) then read them once (about 10 ms) instead
        of composing each config set again (about 60 ms each, per worker). A job that does not
        find the file (a worker on another machine) composes as before.
        """
        for job in jobs:
            key, _, _ = self._split(job)
            if key not in self._cache:
                self._cache[key] = self._loader.load_sweep_config(master_config, list(key))
        # absolute: a job with hydra.job.chdir=true may run in another directory
        path = Path(directory).resolve() / f".rprop_bench_configs_{self._token}.pickle"
        path.write_bytes(pickle.dumps(self._cache))
        self._shared = str(path)

    def forget_shared(self) -> None:
        """Remove the file that :meth:`share` wrote (the sweep is over)."""
        if self._shared is not None:
            Path(self._shared).unlink(missing_ok=True)
            self._shared = None

    def _read_shared(self) -> None:
        """Add the compositions shared by the submitting process to this process's cache."""
        if self._shared is None or self._token in _READ:
            return
        _READ.add(self._token)
        with contextlib.suppress(OSError):  # not on this machine's disks: compose here
            self._cache.update(pickle.loads(Path(self._shared).read_bytes()))

    def load_sweep_config(
        self, master_config: DictConfig, sweep_overrides: list[str]
    ) -> DictConfig:
        """The config of one job: as Hydra's ``load_sweep_config``, from a shared composition."""
        freeze_once()  # the launcher calls this once per job, in the process that runs it
        key, values, parsed = self._split(sweep_overrides)
        if key not in self._cache:
            self._read_shared()
        if key not in self._cache:
            self._cache[key] = self._loader.load_sweep_config(master_config, list(key))
        cfg = copy.deepcopy(self._cache[key])
        # Hydra's own code for applying value overrides after composition (struct mode kept).
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        task = [o for o in parsed if not o.is_hydra_override()]
        job = cfg.hydra.job
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [o.input_line for o in task]
            job.override_dirname = get_overrides_dirname(
                overrides=task,
                kv_sep=job.config.override_dirname.kv_sep,
                item_sep=job.config.override_dirname.item_sep,
                exclude_keys=list(job.config.override_dirname.exclude_keys),
            )
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        return cfg
