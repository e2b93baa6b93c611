"""Which jobs of a sweep train together as one stacked model (``train.vectorize``).

Jobs whose resolved configs are equal once ``train.seed`` is left out form a *seed group*
(``train.vectorize=seeds``, or ``vectorize_seeds=true``); with ``train.vectorize=grid`` the
optimizer's elementwise arguments are left out too
(:func:`rprop_bench.optim.members.grid_arguments`), so a grid over Δ0 and η± and seeds is one
group whose members differ in their hyperparameters (:class:`Member`'s ``hypers``).
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

In grid mode the CLI launches only each group's first job (and the ungrouped ones): a grid
of 5,000 runs would otherwise start 5,000 Hydra jobs only to skip them.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rprop_bench import schema
from rprop_bench.cli.build import declared_elementwise
from rprop_bench.cli.identity import run_key
from rprop_bench.params import flatten

#: The plan file of the running sweep (JSON), set by the CLI for every job (hydra.job.env_set).
PLAN_ENV = "RPROP_BENCH_SEED_PLAN"
#: The Unix time the sweep command started: a run of a group member started since then was
#: trained by this sweep (its group), whatever its status, and is not redone by its own job.
STARTED_ENV = "RPROP_BENCH_SWEEP_STARTED"


@dataclass(frozen=True)
class Member:
    """One job of a group: its number in the sweep (0-based), seed, run key, overrides, and
    (``train.vectorize=grid``) its values of the optimizer's elementwise arguments."""

    index: int
    seed: int
    key: str
    overrides: tuple[str, ...]
    hypers: dict[str, Any] = field(default_factory=dict)


def mode(cfg: DictConfig) -> str | None:
    """What ``cfg`` asks to stack: ``"seeds"``, ``"grid"`` or ``None`` (``train.vectorize``;
    ``train.vectorize_seeds=true`` is ``"seeds"``)."""
    chosen = cfg.train.get("vectorize", None)
    if chosen is not None:
        return str(chosen)
    return "seeds" if cfg.train.get("vectorize_seeds", False) else None


def vectorized(cfg: DictConfig) -> bool:
    """Whether ``cfg`` asks for vectorised training (seeds or a grid)."""
    return mode(cfg) is not None


def option(cfg: DictConfig) -> str:
    """The option as the user set it, for the lines that name it."""
    chosen = mode(cfg)
    if cfg.train.get("vectorize", None) is None:
        return "train.vectorize_seeds"
    return f"train.vectorize={chosen}"


def grid_hypers(cfg: DictConfig) -> dict[str, Any]:
    """The optimizer arguments of ``cfg`` that may differ within a grid's stack, resolved
    (:func:`rprop_bench.optim.members.grid_arguments`); empty unless ``vectorize=grid``."""
    from hydra.utils import get_class

    from rprop_bench.optim.members import grid_arguments

    if mode(cfg) != "grid":
        return {}
    names = grid_arguments(get_class(str(cfg.optimizer._target_)))
    plain = OmegaConf.to_container(cfg.optimizer, resolve=True)
    assert isinstance(plain, dict)
    return {name: plain[name] for name in names if name in plain}


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
    fallback: Counter[tuple[str, str]] = Counter()
    stacks: dict[str, dict[str, Any]] = {}  # grid stacks: key → what the stack shares, flat
    for index, (job, cfg) in enumerate(zip(jobs, configs, strict=True)):
        if not vectorized(cfg):
            continue
        why = why_not_stacked(cfg)
        if why is not None:
            fallback[option(cfg), why.split(". ")[0]] += 1
            continue
        hypers = grid_hypers(cfg)
        member = Member(index, int(cfg.train.seed), run_key(cfg), tuple(job), hypers)
        key = run_key(cfg, without_seed=True, without_optimizer=hypers)
        groups.setdefault(key, []).append(member)
        if mode(cfg) == "grid" and key not in stacks:
            stacks[key] = _shared_settings(cfg, hypers)
    groups = _split(groups, configs)
    notes = [
        f"{name}: {n} run{'s' * (n != 1)} train one by one: {why}"
        for (name, why), n in fallback.items()
    ]
    if len(stacks) > 1:
        notes.append(_split_note(stacks))
    return groups, notes


def _split(
    groups: dict[str, list[Member]], configs: Sequence[DictConfig]
) -> dict[str, list[Member]]:
    """The groups of two or more members, each cut into stacks of at most ``sweep.max_stack``
    members in job order (``<key>.<k>``), so that a launcher's workers (joblib's ``n_jobs``)
    train several at once; a stack of one trains alone."""
    out: dict[str, list[Member]] = {}
    for key, members in groups.items():
        size = configs[members[0].index].sweep.get("max_stack") or len(members)
        for k, start in enumerate(range(0, len(members), size)):
            stack = members[start : start + size]
            if len(stack) > 1:
                out[key if size >= len(members) else f"{key}.{k}"] = stack
    return out


def _shared_settings(cfg: DictConfig, hypers: dict[str, Any]) -> dict[str, Any]:
    """The resolved settings of ``cfg`` that every member of its grid stack shares, by dotted
    path (seed, the elementwise optimizer arguments and run-key-free keys left out)."""
    from rprop_bench.cli.identity import NOT_IN_RUN_KEY

    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    for name in NOT_IN_RUN_KEY:
        plain.pop(name, None)
    plain.get("train", {}).pop("seed", None)
    for name in (*hypers, *schema.OPTIMIZER_HARNESS_KEYS):
        plain.get("optimizer", {}).pop(name, None)
    return flatten({str(k): v for k, v in plain.items()})  # as the runs' params are named


def _split_note(stacks: dict[str, dict[str, Any]]) -> str:
    """The line that says why a grid trains as several stacks: the settings they differ in."""
    shown = list(stacks.values())
    paths = sorted({path for one in shown for path in one})
    differ = [p for p in paths if len({one.get(p) for one in shown}) > 1]
    # another choice of config group (problem=iris,moons) differs in many keys: name the group
    under = Counter(p.split(".")[0] for p in differ)
    groups = sorted(g for g, n in under.items() if n > 2 and g in ("problem", "model", "optimizer"))
    named = [*groups, *(p for p in differ if p.split(".")[0] not in groups)]
    listed = ", ".join(named[:6]) + (f" and {len(named) - 6} more" if len(named) > 6 else "")
    return (
        f"train.vectorize=grid: {len(stacks)} stacks, not one: the jobs differ in {listed}, "
        "which members of one stack cannot (only the optimizer's elementwise hyperparameters "
        "can, e.g. Rprop's lr, etas and step_sizes)"
    )


def remote_note(count: int, launcher: str, name: str = "train.vectorize_seeds") -> str:
    """The line printed when ``count`` vectorised runs go to a launcher on other machines
    (``name``: the option as set, :func:`option`)."""
    return (
        f"{name}: {count} run{'s' * (count != 1)} train one by one: "
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
        parsed = [
            Member(m["index"], m["seed"], m["key"], tuple(m["overrides"]), m.get("hypers", {}))
            for m in members
        ]
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
