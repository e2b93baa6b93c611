"""The ``tune`` command: a tuning study with the same budget for every optimizer.

``python -m rprop_bench tune optimizer=adam,irprop_plus problem=iris,moons tune.trials=32``

The comma lists (and an experiment bundle's grid) name the study's *cells*, one per
(optimizer, problem, ...); seeds come from ``tune.seeds`` and ``tune.rerun_seeds``. The
protocol (README, "Fair tuning"):

1. **Trials.** Every cell gets ``tune.trials`` points of its optimizer's declared search space
   (``search:`` in its config, :mod:`rprop_bench.tuning.space`): scrambled Sobol points, or
   Optuna's TPE asked in rounds of ``tune.batch``. Each point trains on every tuning seed.
2. **Selection on what is scored.** Per cell and objective (``tune.objective``,
   :mod:`rprop_bench.tuning.selection`), the trial with the lowest median over the tuning seeds.
   A winner in the outer ``tune.boundary_fraction`` of a range is flagged with its bound; with
   ``tune.extend_on_boundary=true`` (Sobol) the range is widened and searched again.
3. **Reruns on fresh seeds.** Each winner on ``tune.rerun_seeds``, which tuning never saw, and
   (``tune.rerun_defaults``) each optimizer's default config on the same seeds. Only these are
   scored: ``report report.sweep=<study>.tuned_<objective>`` (tuned against tuned) and
   ``report.sweep=<study>.defaults`` (defaults against defaults).

Tracking: the study is a parent run (kind ``tune``); each phase is a sweep nested in it, its
runs nested in the phase; trials and reruns are ordinary tracked runs with run keys and
tags (role, trial, study), so a killed study resumes without redoing a finished trial. The
study's tables (every trial, the selection, the gain from tuning, the budget per optimizer)
are artifacts of its parent, and the chosen configurations its tags.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rprop_bench import schema
from rprop_bench.cli.validate import ConfigError
from rprop_bench.text import count

if TYPE_CHECKING:
    import pandas as pd
    from omegaconf import DictConfig

    from rprop_bench.tuning.selection import Objective
    from rprop_bench.tuning.space import SearchSpace

#: Overrides a cell does not keep: the seeds are the study's (tune.seeds, tune.rerun_seeds).
_NOT_CELL = ("train.seed=",)


@dataclass
class Cell:
    """One (optimizer, problem, ...) of the study: its overrides (no seed), config and its
    search space in each round (the declared one first, then each widening)."""

    optimizer: str
    problem: str
    job: tuple[str, ...]
    config: DictConfig
    spaces: list[SearchSpace]

    @property
    def space(self) -> SearchSpace:
        """The declared search space."""
        return self.spaces[0]

    @property
    def name(self) -> str:
        """``adam.iris``: the cell in tables and tags."""
        return f"{self.optimizer}.{self.problem}"


@dataclass(frozen=True)
class Settings:
    """The study's ``tune`` settings, checked."""

    trials: int
    sampler: str
    seed: int
    batch: int
    seeds: tuple[int, ...]
    rerun_seeds: tuple[int, ...]
    objectives: tuple[Objective, ...]
    target: int | None
    boundary_fraction: float
    extend: bool
    max_extensions: int
    rerun_defaults: bool

    def identity(self) -> dict[str, Any]:
        """What makes two studies the same (and so the same resumed study)."""
        return {
            "trials": self.trials, "sampler": self.sampler, "seed": self.seed,
            "batch": self.batch if self.sampler == "tpe" else None, "seeds": self.seeds,
            "rerun_seeds": self.rerun_seeds, "objectives": [o.name for o in self.objectives],
            "target": self.target, "boundary_fraction": self.boundary_fraction,
            "extend": self.extend, "max_extensions": self.max_extensions if self.extend else 0,
        }  # fmt: skip


def settings_of(cfg: DictConfig, optimizers: Sequence[str]) -> Settings:
    """The checked settings of a study over ``optimizers`` (their names, one per cell).

    Raises:
        ConfigError: one line naming the field (the ranges were checked by the schema).
    """
    from rprop_bench.tuning.selection import objective_named

    tune = cfg.tune
    names = list(tune.objective) if not isinstance(tune.objective, str) else [tune.objective]
    try:
        objectives = tuple(objective_named(n).for_target(tune.target) for n in names)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    n_optimizers = len(set(optimizers))
    trials = int(tune.trials)
    if tune.total_trials is not None:
        total = int(tune.total_trials)
        if total < n_optimizers:
            raise ConfigError(
                f"tune.total_trials={total} is out of range: must be >= {n_optimizers} "
                f"(the number of optimizers × 1 trial)"
            )
        if total % n_optimizers:
            raise ConfigError(
                f"tune.total_trials={total} does not split equally among {n_optimizers} "
                f"optimizers: use a multiple of {n_optimizers} (e.g. "
                f"{total - total % n_optimizers}), so every optimizer gets the same budget"
            )
        trials = total // n_optimizers
    if tune.extend_on_boundary and tune.sampler != "sobol":
        raise ConfigError(
            "tune.extend_on_boundary=true needs tune.sampler=sobol (a TPE study's space is "
            "fixed when it starts)"
        )
    return Settings(
        trials=trials, sampler=str(tune.sampler), seed=int(tune.seed), batch=int(tune.batch),
        seeds=tuple(int(s) for s in tune.seeds),
        rerun_seeds=tuple(int(s) for s in tune.rerun_seeds), objectives=objectives,
        target=tune.target, boundary_fraction=float(tune.boundary_fraction),
        extend=bool(tune.extend_on_boundary), max_extensions=int(tune.max_extensions),
        rerun_defaults=bool(tune.rerun_defaults),
    )  # fmt: skip


def _choice(job: Sequence[str], group: str, default: str) -> str:
    """The option a job's overrides choose for ``group`` (the last one wins)."""
    chosen = [o.split("=", 1)[1] for o in job if o.startswith(f"{group}=")]
    return chosen[-1] if chosen else default


def _cell_jobs(overrides: list[str], extra_dirs: Sequence[str]) -> list[list[str]]:
    """The study's cells: the grid of the comma lists (and an experiment's sweep grid),
    without seeds or tune settings, each once."""
    from rprop_bench.cli.compose import job_overrides

    seen: dict[tuple[str, ...], None] = {}
    for job in job_overrides(overrides, sweep=True, extra_dirs=extra_dirs):
        seen.setdefault(tuple(o for o in job if not o.startswith(_NOT_CELL)), None)
    return [list(job) for job in seen]


def cells_of(overrides: list[str], extra_dirs: Sequence[str] = ()) -> list[Cell]:
    """Compose and check every cell, and parse its optimizer's search space.

    Raises:
        ConfigError: a bad config or search space, in one line.
    """
    from rprop_bench.cli.build import check_buildable
    from rprop_bench.cli.compose import check_jobs
    from rprop_bench.tuning.space import SearchSpace, SpaceError

    jobs = _cell_jobs(overrides, extra_dirs)
    configs = check_jobs(jobs, extra_dirs)
    check_buildable(configs)  # each cell's data, model size and optimizer arguments
    cells = []
    for job, cfg in zip(jobs, configs, strict=True):
        optimizer = _choice(job, "optimizer", "rprop")
        where = f"optimizer={optimizer}: optimizer.{schema.OPTIMIZER_SEARCH_KEY}"
        try:
            space = SearchSpace.parse(cfg.optimizer.get(schema.OPTIMIZER_SEARCH_KEY), where)
        except SpaceError as exc:
            raise ConfigError(str(exc)) from None
        problem = str(cfg.problem.data.name)
        cells.append(Cell(optimizer, problem, tuple(job), cfg, [space]))
    names = [c.name for c in cells]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(
            f"tune: cell {twice[0]} appears more than once (cells differ in what the comma "
            "lists sweep beyond optimizer and problem); tune one such setting at a time"
        )
    return cells


def _check_objectives(cells: Sequence[Cell], settings: Settings) -> None:
    """Every cell can report every objective: a training target where one is needed."""
    for obj in settings.objectives:
        if obj.metric == schema.GRAD_EVALS_TO_TARGET:
            for cell in cells:
                if cell.config.train.target_loss is None:
                    raise ConfigError(
                        f"tune.objective={obj.name} needs a training target: problem "
                        f"{cell.problem} has train.target_loss=null (set it, or tune.target=K)"
                    )
        elif settings.target is not None and obj.metric.startswith(schema.LADDER_GRAD_EVALS):
            for cell in cells:
                rungs = list(cell.config.problem.targets or ())
                if settings.target >= len(rungs):
                    raise ConfigError(
                        f"tune.target={settings.target} is out of range: problem "
                        f"{cell.problem} has {len(rungs)} targets (problem.targets)"
                    )


def _override_value(value: Any) -> str:
    """A value as a Hydra override writes it (``0.003162``, ``1e-05``, ``20``, ``true``)."""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def hyperparameter_overrides(cfg: DictConfig, values: dict[str, Any]) -> list[str]:
    """The overrides that set a trial's hyperparameters (``values`` by path, e.g. ``etas.1``):
    a list element changes the whole list, its other elements kept."""
    lists: dict[str, list[Any]] = {}
    out = []
    for path, value in values.items():
        key, _, index = path.partition(".")
        if index:
            lists.setdefault(key, list(cfg.optimizer[key]))[int(index)] = value
        else:
            out.append(f"optimizer.{key}={_override_value(value)}")
    for key, items in lists.items():
        out.append(f"optimizer.{key}=[{','.join(_override_value(v) for v in items)}]")
    return out


def default_values(cfg: DictConfig, space: SearchSpace) -> dict[str, Any]:
    """The optimizer's default of each tuned hyperparameter (by path)."""
    out = {}
    for d in space.dimensions:
        node = cfg.optimizer[d.key]
        out[d.path] = node[d.index] if d.index is not None else node
    return out


def study_id_of(cells: Sequence[Cell], settings: Settings) -> str:
    """The study's id, from its cells (their seed-free run keys) and settings: the same
    command finds and resumes the same study."""
    from rprop_bench.cli.identity import run_key

    keys = sorted(run_key(c.config, without_seed=True) for c in cells)
    spaces = sorted(f"{c.name}: {c.space.describe()}" for c in cells)
    text = json.dumps({"cells": keys, "spaces": spaces, **settings.identity()}, sort_keys=True)
    return f"tune_{hashlib.sha1(text.encode()).hexdigest()[:12]}"


@dataclass
class Job:
    """One run the study launches: its overrides and what it is for."""

    overrides: list[str]
    cell: str
    seed: int
    role: str
    trial: int | None = None
    round: int = 0
    values: dict[str, Any] = field(default_factory=dict)
    run_key: str = ""


class Study:
    """A running tuning study: its cells, settings, store and phases."""

    def __init__(
        self,
        flags: list[str],
        fixed: list[str],
        cells: list[Cell],
        settings: Settings,
        launcher: Any,
        parsed: Any,
        command: str,
    ) -> None:
        from rprop_bench import tracking
        from rprop_bench.cli.build import tracking_options

        self.flags, self.fixed, self.cells, self.settings = flags, fixed, cells, settings
        self.launcher, self.parsed, self.command = launcher, parsed, command
        self.by_name = {c.name: c for c in cells}
        self.id = study_id_of(cells, settings)
        self.cwd = Path.cwd()
        self.options = tracking_options(cells[0].config, self.cwd)
        self.tracker = tracking.Tracker.open(self.options)
        self.dir = self.cwd / "multirun" / "tune" / self.id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.trials: list[Job] = []
        self.run_id = ""

    # --- the phases ---------------------------------------------------------------------

    def start(self, title: str) -> None:
        """Create (or find, resuming) the study's parent run."""
        from rprop_bench.cli.identity import git_commit

        note = (
            f"Tuning study {self.id}: {len(self.cells)} cells × {self.settings.trials} trials "
            f"({self.settings.sampler}, seed {self.settings.seed}) on tuning seeds "
            f"{list(self.settings.seeds)}; winners by "
            f"{', '.join(o.name for o in self.settings.objectives)}, rerun on seeds "
            f"{list(self.settings.rerun_seeds)}.\n\nCommand: {self.command}"
        )
        tags = {
            schema.TAG_COMMAND: self.command,
            schema.TAG_GIT_COMMIT: git_commit(),
            schema.TAG_OUTPUT_DIR: str(self.dir),
            schema.TAG_NOTE: note,
        }
        self.run_id = self.tracker.ensure_sweep_parent(
            self.id, self.dir, title, tags, reopen=True, kind=schema.RUN_KIND_TUNE
        )

    def job(self, cell: Cell, seed: int, role: str, **extra: Any) -> Job:
        """A job of ``cell`` on ``seed`` for ``role``, with the trial's hyperparameters."""
        values = extra.get("values", {})
        overrides = [
            *cell.job,
            *hyperparameter_overrides(cell.config, values),
            f"train.seed={seed}",
            f"tune.role={role}",
            f"tune.study={self.id}",
        ]
        if extra.get("trial") is not None:
            overrides.append(f"tune.trial={extra['trial']}")
        return Job(overrides, cell.name, seed, role, **extra)

    def run_phase(self, name: str, jobs: list[Job]) -> int:
        """Launch ``jobs`` as sweep ``<study>.<name>`` nested in the study; 0 or its exit code.

        Jobs whose run is done already (FINISHED, or FAILED by divergence, as a sweep skips
        them) are not launched: a resumed study of thousands of runs would otherwise start a
        job for each only to skip it. They are counted runs of the phase (adopted), so its
        report covers them."""
        from rprop_bench.cli import launch_sweep
        from rprop_bench.cli.identity import (
            SWEEP_COMMAND_ENV,
            SWEEP_TITLE_ENV,
            SWEEP_WITHIN_ENV,
        )

        configs = self.keyed(jobs)
        sweep_id = f"{self.id}.{name}"
        done = self._done(jobs, configs[0] if configs else None)
        todo = [(j, c) for j, c in zip(jobs, configs, strict=True) if j.run_key not in done]
        already = f", {len(jobs) - len(todo)} done already" if done else ""
        print(f"tune {self.id}: phase {name}: {count(len(jobs), 'run')}{already}", flush=True)
        if done:
            parent = self.tracker.ensure_sweep_parent(
                sweep_id, self.dir, f"{name} · {self.id}",
                {schema.TAG_PARENT_RUN_ID: self.run_id, schema.TAG_COMMAND: self.command},
            )  # fmt: skip
            for run_id, home in done.values():
                if sweep_id not in home:  # a run of another phase or sweep: now also this one's
                    self.tracker.adopt(run_id, sweep_id)
            if not todo:
                self.tracker.end_sweep_parent(parent)
                return 0
        path = self.dir / f"jobs_{name}.json"
        path.write_text(json.dumps([j.overrides for j, _ in todo], indent=0))
        env = {
            SWEEP_TITLE_ENV: f"{name} · {self.id}",
            SWEEP_COMMAND_ENV: self.command,
            SWEEP_WITHIN_ENV: self.run_id,
        }
        return launch_sweep(
            self.flags, [*self.fixed, f"hydra.sweeper.job_list={path}"],
            [j.overrides for j, _ in todo], [c for _, c in todo], self.launcher, self.parsed,
            sweep_id=sweep_id, env=env,
        )  # fmt: skip

    def keyed(self, jobs: Sequence[Job]) -> list[DictConfig]:
        """Compose and check ``jobs`` (one line if one is bad), set their run keys, and
        return their configs."""
        from rprop_bench.cli.compose import check_jobs, config_dirs
        from rprop_bench.cli.identity import run_key

        configs = check_jobs([j.overrides for j in jobs], config_dirs(self.flags))
        for job, cfg in zip(jobs, configs, strict=True):
            job.run_key = run_key(cfg)
        return configs

    def _done(self, jobs: Sequence[Job], cfg: DictConfig | None) -> dict[str, tuple[str, str]]:
        """The run keys of ``jobs`` that a sweep would skip, with their runs' ids and the
        sweeps each already counts in."""
        from rprop_bench.results import runs_with_keys

        if cfg is None or not cfg.sweep.skip_finished:
            return {}
        runs = runs_with_keys(self.options.uri, self.options.experiment, [j.run_key for j in jobs])
        if runs.empty:
            return {}
        finished = runs["status"] == "FINISHED"
        diverged = (runs["status"] == "FAILED") & runs["diverged"]
        keep = finished | (diverged & (not cfg.sweep.retry_failed))
        kept = runs[keep]
        homes = (kept["sweep_id"] + " " + kept["also_in_sweeps"]).str.split()
        return {
            key: (run_id, home)
            for key, run_id, home in zip(kept["run_key"], kept["run_id"], homes, strict=True)
        }

    def results(self, jobs: Sequence[Job]) -> pd.DataFrame:
        """The runs of ``jobs`` (by run key) with each job's cell, seed, role and trial."""
        import pandas as pd

        from rprop_bench.results import runs_with_keys

        runs = runs_with_keys(self.options.uri, self.options.experiment, [j.run_key for j in jobs])
        meta = pd.DataFrame(
            [
                {"run_key": j.run_key, "cell": j.cell, "trial": j.trial, "round": j.round}
                for j in jobs
            ]
        )
        if runs.empty:
            return meta.assign(failed=True)
        merged = meta.merge(runs.drop(columns=["seed"], errors="ignore"), on="run_key", how="left")
        merged["failed"] = merged["failed"].fillna(True).astype(bool)
        return merged


# --- the search ----------------------------------------------------------------------------


def sobol_round(study: Study, round_: int) -> list[Job]:
    """The trials of round ``round_`` (0: the declared spaces; later: widened ones, only for
    the cells whose space was widened) on every tuning seed."""
    from rprop_bench.tuning.sampling import sobol_points

    settings = study.settings
    jobs = []
    for cell in study.cells:
        if round_ >= len(cell.spaces):
            continue
        space = cell.spaces[round_]
        points = sobol_points(
            len(space.dimensions), settings.trials, settings.seed, skip=round_ * settings.trials
        )
        for i, point in enumerate(points):
            number = round_ * settings.trials + i
            values = space.values(point)
            for seed in settings.seeds:
                jobs.append(
                    study.job(cell, seed, "trial", trial=number, round=round_, values=values)
                )
    return jobs


def run_sobol(study: Study) -> tuple[int, list[Job]]:
    """The Sobol search with its widening rounds; the exit code (0) and every trial job."""
    jobs = sobol_round(study, 0)
    study.trials = jobs
    code = study.run_phase("trials", jobs)
    rounds = study.settings.max_extensions if study.settings.extend else 0
    for round_ in range(1, rounds + 1):
        if code:
            break
        scored = study.results(jobs)
        widened = 0
        flagged = _flags(study, scored)
        for cell in study.cells:
            flags = flagged.get(cell.name, {})
            wider = cell.spaces[-1].widened(flags) if flags else cell.spaces[-1]
            if flags and wider != cell.spaces[-1]:
                cell.spaces.append(wider)
                widened += 1
                print(f"tune: {cell.name}: winner on a bound ({', '.join(flags)}); widened "
                      f"to {wider.describe()}", flush=True)  # fmt: skip
        if not widened:
            break
        more = sobol_round(study, round_)
        jobs += more
        study.trials = jobs
        code = study.run_phase(f"trials{round_}", more)
    return code, jobs


def run_tpe(study: Study) -> tuple[int, list[Job]]:
    """The TPE search in rounds of ``tune.batch`` trials per cell, told the first objective;
    the exit code and every trial job (rebuilt from the journal, so a resumed study has all)."""
    from rprop_bench.tuning.sampling import OptunaSearch
    from rprop_bench.tuning.selection import penalised, trial_scores

    settings = study.settings
    journal = _journal_path(study)
    startup = max(1, min(10, settings.trials // 2))
    searches = {
        c.name: OptunaSearch(c.space, journal, f"{study.id}.{c.name}", settings.seed, startup)
        for c in study.cells
    }
    round_ = 0
    jobs: list[Job] = []
    while True:
        asked = {
            name: s.ask(min(settings.batch, settings.trials - s.told()))
            for name, s in searches.items()
            if s.told() < settings.trials
        }
        if not asked:
            break
        batch = [
            study.job(study.by_name[name], seed, "trial", trial=t.number, values=t.values)
            for name, trials in asked.items()
            for t in trials
            for seed in settings.seeds
        ]
        code = study.run_phase(f"tpe{round_}", batch)
        if code:
            return code, jobs
        scores = trial_scores(study.results(batch), settings.objectives[0], ["cell", "trial"])
        for row in scores.itertuples():
            searches[str(row.cell)].tell(int(row.trial), penalised(row.score, row.tie))
        round_ += 1
    for name, search in searches.items():
        for number, values in search.completed():
            for seed in settings.seeds:
                jobs.append(
                    study.job(study.by_name[name], seed, "trial", trial=number, values=values)
                )
    study.keyed(jobs)
    return 0, jobs


def _journal_path(study: Study) -> Path:
    """Optuna's journal, beside the MLflow store (an SQLite file's folder), else here."""
    from rprop_bench.store import sqlite_path

    db = sqlite_path(study.options.uri)
    folder = Path(db).parent if db is not None else study.cwd
    return folder / "optuna" / f"{study.id}.journal"


def _flags(study: Study, scored: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Per cell: the bounds that any objective's winner sits on (each objective's winners
    selected once, for every cell together)."""
    flags: dict[str, dict[str, str]] = {}
    for obj in study.settings.objectives:
        for name, win in select(study, scored, obj).items():
            flags.setdefault(name, {}).update(win["boundary"])
    return flags


# --- selection -----------------------------------------------------------------------------


def select(
    study: Study, scored: pd.DataFrame, objective: Objective, *, declared: bool = False
) -> dict[str, dict[str, Any]]:
    """The winner of every cell under ``objective``: its trial, score and values, and the
    bounds it sits on of the cell's final space (``declared``: of its declared one)."""
    from rprop_bench.tuning.selection import trial_scores, winner

    values = {(j.cell, j.trial): j.values for j in study.trials}
    scores = trial_scores(scored, objective, ["cell", "trial"])
    best = {}
    for name, group in scores.groupby("cell", sort=True):
        row = winner(group)
        cell = study.by_name[str(name)]
        chosen = values[(cell.name, int(row.trial))]
        best[cell.name] = {
            "trial": int(row.trial),
            "score": float(row.score),
            "tie": float(row.tie),
            "n_reached": int(row.n_reached),
            "n_seeds": int(row.n_seeds),
            "values": chosen,
            "boundary": cell.spaces[0 if declared else -1].boundaries(
                chosen, study.settings.boundary_fraction
            ),
        }
    return best


def _values_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_override_value(v)}" for k, v in values.items())


def tables(
    study: Study,
    scored: pd.DataFrame,
    first_flags: dict[str, dict[str, dict[str, str]]],
    reruns: dict[str, pd.DataFrame],
) -> dict[str, pd.DataFrame]:
    """The study's tables: every trial, the selection, the gain from tuning, the budget."""
    import numpy as np
    import pandas as pd

    from rprop_bench.tuning.selection import run_values, trial_scores

    rows = []
    values = {(j.cell, j.trial): (j.values, j.round) for j in study.trials}
    for obj in study.settings.objectives:
        for r in trial_scores(scored, obj, ["cell", "trial"]).itertuples():
            vals, round_ = values[(str(r.cell), int(r.trial))]
            cell = study.by_name[str(r.cell)]
            rows.append({
                "optimizer": cell.optimizer, "problem": cell.problem, "objective": obj.name,
                "trial": int(r.trial), "round": round_, "score": r.score, "tie_break": r.tie,
                "n_seeds": r.n_seeds, "n_reached": r.n_reached, "n_failed": r.n_failed,
                **{f"optimizer.{k}": v for k, v in vals.items()},
            })  # fmt: skip
    trials = pd.DataFrame(rows)
    selection, gain = [], []
    for obj in study.settings.objectives:
        best = select(study, scored, obj)
        tuned = reruns.get(f"tuned_{obj.name}")
        default = reruns.get("defaults")
        for name, win in best.items():
            cell = study.by_name[name]
            before = first_flags.get(obj.name, {}).get(name, {})
            selection.append({
                "optimizer": cell.optimizer, "problem": cell.problem, "objective": obj.name,
                "trial": win["trial"], "tuning_score": win["score"],
                "tuning_reached": f"{win['n_reached']}/{win['n_seeds']}",
                "chosen": _values_text(win["values"]),
                "default": _values_text(default_values(cell.config, cell.space)),
                "on_boundary_first": "; ".join(f"{k} at {v}" for k, v in before.items()),
                "on_boundary": "; ".join(f"{k} at {v}" for k, v in win["boundary"].items()),
                "widened": len(cell.spaces) > 1,
                "space": cell.spaces[-1].describe(),
            })  # fmt: skip
            row: dict[str, Any] = {
                "optimizer": cell.optimizer, "problem": cell.problem, "objective": obj.name,
            }  # fmt: skip
            for label, frame in (("tuned", tuned), ("default", default)):
                if frame is None:
                    continue
                part = frame[frame["cell"] == name]
                v = run_values(part, obj)["value"].to_numpy(float)
                row[f"{label}_median"] = float(np.median(v)) if len(v) else np.nan
                row[f"{label}_reached"] = f"{int(np.isfinite(v).sum())}/{len(v)}"
            gain.append(row)
    budget = []
    for cell in study.cells:
        mine = scored[scored["cell"] == cell.name]
        evals = pd.to_numeric(mine.get(schema.GRAD_EVALS), errors="coerce")
        budget.append({
            "optimizer": cell.optimizer, "problem": cell.problem,
            "trials": int(mine["trial"].nunique()), "runs": len(mine),
            "grad_evals": float(evals.sum()) if evals is not None else np.nan,
        })  # fmt: skip
    return {
        schema.ARTIFACT_TUNE_TRIALS: trials,
        schema.ARTIFACT_TUNE_SELECTION: pd.DataFrame(selection),
        schema.ARTIFACT_TUNE_GAIN: pd.DataFrame(gain),
        schema.ARTIFACT_TUNE_BUDGET: pd.DataFrame(budget),
    }


# --- the command ---------------------------------------------------------------------------


def tune(flags: list[str], overrides: list[str]) -> int:
    """``python -m rprop_bench tune OVERRIDES``: check everything, then run the study."""
    from rprop_bench.cli import EXIT_BAD_INPUT, open_store_once
    from rprop_bench.cli.compose import config_dirs, parse
    from rprop_bench.cli.identity import PROGRAM
    from rprop_bench.cli.launchers import chosen_launcher
    from rprop_bench.store import TrackingError, check_store, check_writable_dir

    def error(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT

    extra_dirs = config_dirs(flags)
    try:
        parsed = parse(overrides)
        launcher = chosen_launcher(parsed)
        cells = cells_of(overrides, extra_dirs)
        settings = settings_of(cells[0].config, [c.optimizer for c in cells])
        _check_objectives(cells, settings)
        if launcher.name == "joblib":
            from rprop_bench.cli.compose import hydra_settings
            from rprop_bench.cli.workers import start_worker_server

            start_worker_server(hydra_settings(overrides, extra_dirs).launcher)
    except ConfigError as exc:
        return error(str(exc))
    if "--multirun" not in flags and "-m" not in flags:
        flags = [*flags, "--multirun"]
    first = cells[0].config
    try:
        check_writable_dir(Path.cwd(), "cannot write the study's outputs: the working directory")
        check_store(_uri(first), timeout=float(first.tracking.check_timeout_seconds))
    except TrackingError as exc:
        return error(str(exc))
    refused = open_store_once(first)
    if refused is not None:
        return refused
    # Hydra composes the multirun's own config from these: its settings, the store and the
    # bundle. Each job's overrides are complete in the job list; a value for the optimizer
    # (optimizer.search.lr.low=...) would not fit the default optimizer it composes with.
    fixed = [
        o.input_line
        for o in parsed
        if not o.is_sweep_override()
        and o.input_line
        and o.key_or_group.lstrip("+").split(".")[0].split("/")[0]
        in ("hydra", "tracking", "experiment")
    ]
    command = " ".join([PROGRAM, "tune", *map(shlex.quote, [*flags, *overrides])]).replace(
        " --multirun", ""
    )
    study = Study(flags, fixed, cells, settings, launcher, parsed, command)
    shown = " ".join(o for o in overrides if not o.startswith("hydra")) or "default cells"
    study.start(f"tune · {shown}"[:240])
    print(
        f"tune {study.id}: {len(cells)} cells × {settings.trials} trials × "
        f"{len(settings.seeds)} tuning seeds ({settings.sampler}); parent run {study.run_id}",
        flush=True,
    )
    try:
        code = _run_study(study)
    except ConfigError as exc:  # a widened range, or a config changed on disk since the start
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    if code:  # interrupted (128 + signal) or stopped by a store: the study did not finish
        status = "KILLED" if code > 128 else "FAILED"
        study.tracker.annotate(study.run_id, {
            schema.TAG_FAILURE_REASON: f"a phase of the study ended with exit status {code}; "
            "run the same command again to resume it",
        })  # fmt: skip
        study.tracker.client.set_terminated(study.run_id, status=status)
    return code


def _uri(cfg: DictConfig) -> str:
    from rprop_bench.store import resolve_uri

    return resolve_uri(str(cfg.tracking.uri), Path.cwd())


def _run_study(study: Study) -> int:
    settings = study.settings
    code, trials = run_sobol(study) if settings.sampler == "sobol" else run_tpe(study)
    study.trials = trials
    if code:
        return code
    scored = study.results(trials)
    first = _first_flags(study, scored)
    reruns: dict[str, pd.DataFrame] = {}
    chosen_tags = {}
    for obj in settings.objectives:
        best = select(study, scored, obj)
        jobs = [
            study.job(study.by_name[name], seed, "tuned", values=win["values"])
            for name, win in best.items()
            for seed in settings.rerun_seeds
        ]
        for name, win in best.items():
            chosen_tags[f"rprop_bench.tune.chosen.{obj.name}.{name}"] = _values_text(win["values"])
        code = study.run_phase(f"tuned_{obj.name}", jobs)
        if code:
            return code
        reruns[f"tuned_{obj.name}"] = study.results(jobs)
    if settings.rerun_defaults:
        jobs = [study.job(c, seed, "default") for c in study.cells for seed in settings.rerun_seeds]
        code = study.run_phase("defaults", jobs)
        if code:
            return code
        reruns["defaults"] = study.results(jobs)
    out = tables(study, scored, first, reruns)
    texts = {path: frame.to_csv(index=False) for path, frame in out.items()}
    study.tracker.annotate(study.run_id, chosen_tags, texts)
    if _has_reason(study):  # a resumed study: the reason an earlier attempt stopped is past
        study.tracker.client.delete_tag(study.run_id, schema.TAG_FAILURE_REASON)
    study.tracker.client.set_terminated(study.run_id, status="FINISHED")
    _print_summary(study, out)
    return 0


def _has_reason(study: Study) -> bool:
    """Whether the study's parent carries the reason an earlier attempt stopped."""
    return schema.TAG_FAILURE_REASON in study.tracker.client.get_run(study.run_id).data.tags


def _first_flags(study: Study, scored: pd.DataFrame) -> dict[str, dict[str, dict[str, str]]]:
    """Per objective and cell: the bounds its winner sat on in the declared space (before any
    widening), for the tables."""
    round0 = scored[scored["round"] == 0]
    out: dict[str, dict[str, dict[str, str]]] = {}
    for obj in study.settings.objectives:
        best = select(study, round0, obj, declared=True)
        out[obj.name] = {name: win["boundary"] for name, win in best.items()}
    return out


def _print_summary(study: Study, out: dict[str, pd.DataFrame]) -> None:
    selection = out[schema.ARTIFACT_TUNE_SELECTION]
    print(f"tune {study.id}: done; the chosen configurations:", flush=True)
    for r in selection.itertuples():
        flag = f"  [on a bound: {r.on_boundary}]" if r.on_boundary else ""
        print(f"  {r.objective:<22} {r.optimizer:<13} {r.problem:<14} {r.chosen}{flag}")
    experiment = study.options.experiment
    where = f"tracking.uri={study.options.uri} tracking.experiment={experiment}"
    print("reports (tuned against tuned; defaults against defaults):")
    phases = [f"tuned_{o.name}" for o in study.settings.objectives]
    phases += ["defaults"] if study.settings.rerun_defaults else []
    for phase in phases:
        print(f"  python -m rprop_bench report {where} report.sweep={study.id}.{phase} "
              f"report.out=reports/{experiment}/{phase}", flush=True)  # fmt: skip
