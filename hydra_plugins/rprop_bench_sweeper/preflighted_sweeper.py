"""The basic sweeper without its second check, and a launcher that composes once per config set.

(No ``from __future__ import annotations``: Hydra imports plugin modules without registering
them in ``sys.modules``, where dataclasses must look string annotations up.)

Hydra's basic sweeper composes every job of a batch to check it can be composed
(``validate_batch_is_legal``), then the launcher composes every job again to run it. Each
composition re-reads the YAML files and rebuilds the defaults tree (about 0.2 s a job here), so
a 30-run sweep spent as long composing configs as training. rprop-bench's CLI has already
composed and validated every job before Hydra starts (:func:`rprop_bench.cli.compose.preflight`),
so this sweeper:

* skips the second check, and
* hands the launcher a :class:`CachingConfigLoader`: jobs that choose the same config files
  (optimizer, problem, ...) share one composition, and each job's plain ``key=value``
  overrides are applied to a copy with Hydra's own override code, exactly as Hydra applies
  them after composing (:mod:`._caching_loader`). Joblib workers receive the loader pickled
  and keep one cache per worker process.

Everything else (grid expansion, batching, ``multirun.yaml``) is Hydra's
:class:`~hydra._internal.core_plugins.basic_sweeper.BasicSweeper`, except with ``job_list``:
a JSON file of the jobs' override lists replaces the grid. ``python -m rprop_bench tune``
launches its trials so, since a search's points are no Cartesian product.
"""

import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional  # noqa: UP035 - OmegaConf reads these annotations

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.rprop_bench_sweeper._caching_loader import CachingConfigLoader


@dataclass
class PreflightedSweeperConf:
    """The sweeper's config: the same fields as Hydra's ``hydra/sweeper=basic``."""

    _target_: str = "hydra_plugins.rprop_bench_sweeper.preflighted_sweeper.PreflightedSweeper"
    max_batch_size: Optional[int] = None  # noqa: UP045
    params: Optional[Dict[str, str]] = None  # noqa: UP006, UP045
    # false: every job composes its config from the files, as with Hydra's basic sweeper
    # (the second check is still skipped); for measuring what the shared composition saves
    compose_once: bool = True
    # a JSON file holding a list of jobs, each a list of overrides: these jobs, not the grid
    job_list: Optional[str] = None  # noqa: UP045


ConfigStore.instance().store(
    group="hydra/sweeper", name="preflighted", node=PreflightedSweeperConf, provider="rprop_bench"
)


def _stop_if_the_store_failed(results: Sequence[Any]) -> None:
    """Exit 2 if a job stopped the sweep because the store failed (it printed the one line),
    before the basic sweeper re-raises that job's error with Hydra's "Error executing job"
    and a traceback. Reading a failed job's ``return_value`` raises its error, and writes
    that line to stderr: held back here."""
    from hydra.core.utils import JobStatus

    from rprop_bench.cli.outcome import SweepStopped

    for result in results:
        if result.status != JobStatus.FAILED:
            continue
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                _ = result.return_value
            except SweepStopped:
                raise SystemExit(2) from None
            except BaseException:  # another error: the basic sweeper reports it
                pass


class PreflightedSweeper(BasicSweeper):
    """Hydra's basic sweeper for configs that were composed and validated before Hydra ran."""

    def __init__(
        self,
        max_batch_size: Optional[int],  # noqa: UP045
        params: Optional[Dict[str, str]] = None,  # noqa: UP006, UP045
        compose_once: bool = True,
        job_list: Optional[str] = None,  # noqa: UP045
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self._compose_once = compose_once
        self._job_list = job_list
        self._loader: Optional[CachingConfigLoader] = None  # noqa: UP045

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        """Set up as the basic sweeper, with a :class:`CachingConfigLoader` for the launcher
        (unless ``compose_once`` is false)."""
        from rprop_bench.cli.compose import GROUPS

        if self._compose_once:
            self._loader = CachingConfigLoader(hydra_context.config_loader, GROUPS)
            hydra_context = HydraContext(
                config_loader=self._loader, callbacks=hydra_context.callbacks
            )
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        # joblib's workers are processes of this machine: they read the compositions made here
        self._share = "JoblibLauncher" in str(config.hydra.launcher.get("_target_", ""))
        assert self.launcher is not None
        launch = self.launcher.launch

        def launch_then_stop(*args: Any, **kwargs: Any) -> Any:
            from rprop_bench.redaction import redact_file

            saved = Path(str(config.hydra.sweep.dir)) / "multirun.yaml"  # saved just before
            if saved.is_file():
                redact_file(saved)  # the overrides as given: a password in tracking.uri
            results = launch(*args, **kwargs)
            _stop_if_the_store_failed(results)
            return results

        self.launcher.launch = launch_then_stop  # type: ignore[method-assign]

    def sweep(self, arguments: List[str]) -> Any:  # noqa: UP006 - as the base class says
        """Sweep as the basic sweeper (or the jobs of ``job_list``); remove the shared
        compositions' file at the end."""
        from rprop_bench.cli.outcome import SweepStopped

        try:
            if self._job_list is None:
                return super().sweep(arguments)
            return self._sweep_listed(json.loads(Path(self._job_list).read_text()))
        except SweepStopped:  # the store failed; the job that saw it printed the one line
            raise SystemExit(2) from None
        finally:
            if self._loader is not None:
                self._loader.forget_shared()

    def _sweep_listed(self, jobs: List[List[str]]) -> Any:  # noqa: UP006
        """Launch ``jobs`` as the basic sweeper launches a grid: in batches of
        ``max_batch_size`` (all at once if unset), ``multirun.yaml`` saved first."""
        assert self.config is not None
        assert self.launcher is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        size = self.max_batch_size or max(len(jobs), 1)
        returns = []
        for start in range(0, len(jobs), size):
            batch = [list(job) for job in jobs[start : start + size]]
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=start)
            for r in results:
                _ = r.return_value  # raises where the job raised, as the basic sweeper does
            returns.append(results)
        return returns

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """No check: the CLI composed and validated every job before Hydra started.

        Called just before the batch is launched, in this process: under joblib, the batch's
        config sets are composed here, once, for the workers (:meth:`CachingConfigLoader.share`).
        """
        if self._share and self._loader is not None:
            self._loader.share(self.config, batch, Path(str(self.config.hydra.sweep.dir)))
