"""Which jobs of a sweep train together as one stacked model (``train.vectorize_seeds=true``).

Jobs whose resolved configs are equal once ``train.seed`` is left out form a *seed group*;
:func:`rprop_bench.seed_batch.train_seeds` can train such a group as one stacked model. Hydra's
launchers call one job at a time and know nothing of groups, so the CLI's main process, which
has composed every job before Hydra starts (:func:`rprop_bench.cli.compose.preflight`), writes
a *plan* (run key → the group's members: job number, seed, run key) to a file named by
:data:`PLAN_ENV`. Each job then looks itself up: the first job of a group that finds its own
run not done trains every member that is not done, under a lock file per group in the sweep
directory (so two joblib workers never train one group twice); the other jobs of the group
later find their run done by this sweep and skip (see :mod:`rprop_bench.cli.group_job`).

Groups are formed only from jobs that can train stacked: full batch (``train.batch_size``
null) and an elementwise optimizer (its config's ``elementwise: true``, or else a class in
:data:`rprop_bench.seed_batch.ELEMENTWISE_OPTIMIZERS`).
The rest train one by one, and the CLI prints one line saying how many and why.

The plan and the lock files live on the submitting machine, so groups form only where the
jobs run there (launchers ``basic``, ``joblib``, ``submitit_local``, and ``ray`` started on
the spot). On SLURM nodes or a Ray cluster given by its address every run trains one by one,
with one line saying so (:func:`remote_note`).
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig

from rprop_bench import schema
from rprop_bench.cli.build import declared_elementwise
from rprop_bench.cli.identity import run_key

#: The plan file of the running sweep (JSON), set by the CLI for every job (hydra.job.env_set).
PLAN_ENV = "RPROP_BENCH_SEED_PLAN"
#: The Unix time the sweep command started: a run of a group member started since then was
#: trained by this sweep (its group), whatever its status, and is not redone by its own job.
STARTED_ENV = "RPROP_BENCH_SWEEP_STARTED"


@dataclass(frozen=True)
class Member:
    """One job of a seed group: its number in the sweep (0-based), seed, run key, overrides."""

    index: int
    seed: int
    key: str
    overrides: tuple[str, ...]


def vectorized(cfg: DictConfig) -> bool:
    """Whether ``cfg`` asks for seed-vectorised training."""
    return bool(cfg.train.get("vectorize_seeds", False))


def why_not_stacked(cfg: DictConfig) -> str | None:
    """Why the seeds of ``cfg`` cannot train stacked (one line), ``None`` if they can."""
    from hydra.utils import get_class

    from rprop_bench.seed_batch import why_not_stacked as optimizer_blocker

    if cfg.train.batch_size is not None:
        return (
            f"train.batch_size={cfg.train.batch_size}: stacked seeds train full batch only "
            "(mini-batches are shuffled per seed)"
        )
    kind = get_class(str(cfg.optimizer._target_))
    declared = declared_elementwise(cfg)
    if declared is None:
        return optimizer_blocker(kind)
    if declared:
        return None
    return optimizer_blocker(kind) or (
        f"{kind.__name__} is declared `{schema.OPTIMIZER_ELEMENTWISE_KEY}: false` in its config"
    )


def plan(jobs: Sequence[Sequence[str]], configs: Sequence[DictConfig]) -> tuple[dict, list[str]]:
    """The seed groups of a sweep and the lines to print about jobs that train one by one.

    Returns:
        ``(groups, notes)``: ``groups`` maps a group key to its members (groups of two or more
        jobs only); ``notes`` has one line per reason that jobs fall back to one-by-one.
    """
    groups: dict[str, list[Member]] = {}
    fallback: Counter[str] = Counter()
    for index, (job, cfg) in enumerate(zip(jobs, configs, strict=True)):
        if not vectorized(cfg):
            continue
        why = why_not_stacked(cfg)
        if why is not None:
            fallback[why.split(". ")[0]] += 1
            continue
        member = Member(index, int(cfg.train.seed), run_key(cfg), tuple(job))
        groups.setdefault(run_key(cfg, without_seed=True), []).append(member)
    groups = {key: members for key, members in groups.items() if len(members) > 1}
    notes = [
        f"train.vectorize_seeds: {n} run{'s' * (n != 1)} train one by one: {why}"
        for why, n in fallback.items()
    ]
    return groups, notes


def remote_note(count: int, launcher: str) -> str:
    """The line printed when ``count`` seed-vectorised runs go to a launcher on other machines."""
    return (
        f"train.vectorize_seeds: {count} run{'s' * (count != 1)} train one by one: "
        f"hydra/launcher={launcher} runs jobs on other machines, which cannot share the "
        "sweep's seed groups"
    )


def write_plan(groups: dict[str, list[Member]], path: Path) -> None:
    """Write ``groups`` to ``path`` (JSON) for the jobs to read (:func:`group_of`)."""
    path.write_text(
        json.dumps({key: [asdict(m) for m in members] for key, members in groups.items()})
    )


@functools.cache
def _load(path: str) -> dict[str, tuple[str, list[Member]]]:
    """The plan at ``path``, indexed by the run key of each member: (group key, members)."""
    raw = json.loads(Path(path).read_text())
    by_key: dict[str, tuple[str, list[Member]]] = {}
    for group, members in raw.items():
        parsed = [Member(m["index"], m["seed"], m["key"], tuple(m["overrides"])) for m in members]
        for member in parsed:
            by_key[member.key] = (group, parsed)
    return by_key


def group_of(key: str) -> tuple[str, list[Member]] | None:
    """The seed group (group key, members) of the job with run key ``key`` in this sweep."""
    path = os.environ.get(PLAN_ENV)
    if not path or not Path(path).is_file():
        return None
    return _load(path).get(key)


def sweep_started() -> float | None:
    """When this sweep command started (Unix time), if the CLI said so."""
    value = os.environ.get(STARTED_ENV)
    return float(value) if value else None
