"""A sweep job that trains its seed group: the members not done, as one stacked model.

The plan of the groups is made by the CLI's main process (:mod:`rprop_bench.cli.seed_groups`);
this is the job side: claim the members under the group's lock, then train and record them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rprop_bench import schema
from rprop_bench.cli import seed_groups
from rprop_bench.cli.build import (
    Built,
    build_data,
    declared_elementwise,
    model_builder,
    optimizer_partial,
    stack_optimizer_partial,
    train_settings,
)
from rprop_bench.cli.identity import SWEEP_SIZE_ENV, RunNames, run_key, run_names, run_tags
from rprop_bench.cli.outcome import Entry, all_failed_locally, guarded, record_result
from rprop_bench.cli.recording import (
    data_splits,
    draw_step_heatmap,
    log_inputs,
    run_params,
    train_and_record,
)
from rprop_bench.cli.resume import lost_to_another_sweep, skip_if_done


def member_output_dir(index: int, *, launched: bool = True) -> Path:
    """The Hydra output directory of job ``index`` of this sweep (``sweep.dir/<job num>``).

    ``launched=False``: a grid member whose job was never launched (only a grid's first job
    per stack is, numbered by the job list): a folder of its own in this job's directory.
    """
    hydra_cfg = HydraConfig.get()
    own = Path(hydra_cfg.runtime.output_dir)
    if not launched:  # made here: no Hydra job makes it
        folder = own / "members" / str(index)
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    if str(hydra_cfg.sweep.subdir) == str(hydra_cfg.job.num):
        return own.parent / str(index)
    return own  # a custom subdir pattern: the members share the leader's directory


def run_seed_group(
    cfg: DictConfig,
    group: tuple[str, list[Any]],
    tracker: Any,
    parent_run_id: str,
    sweep_tags: dict[str, str],
    sweep_dir: Path,
) -> dict[str, Any]:
    """Train this job's seed group: every member whose run is not done, as one stacked model.

    Under the group's lock file (shared by joblib workers), the members still to do are found
    and their runs created RUNNING; another worker reaching a member of the group then sees it
    RUNNING in a live process, or done in this sweep, and skips it. This job's own summary is
    returned; if its own run is done, nothing is trained (the job that trains it is another),
    except in a grid (``train.vectorize=grid``), whose other members have no job of their
    own: the members not done train, and this job's SKIPPED summary is returned.
    """
    from rprop_bench.locks import file_lock

    group_key, members = group
    choice = HydraConfig.get().runtime.choices.get("optimizer")
    size = os.environ.get(SWEEP_SIZE_ENV, "?")
    data = build_data(cfg)
    grid = seed_groups.mode(cfg) == "grid"
    own_key = run_key(cfg)
    with file_lock(sweep_dir / f".rprop_bench_seed_group_{group_key}.lock"):
        own_done, todo = _members_to_do(cfg, members, tracker, choice, size, sweep_tags, grid)
        if own_done is not None and not todo:  # this job's own run is done: its summary
            return own_done
        entries = []
        heatmap = draw_step_heatmap if not grid or cfg.tracking.grid_heatmap else None
        curves = schema.REPORT_CURVES if grid and cfg.tracking.grid_curves == "report" else None
        for member, member_cfg, names in todo:
            if member.key == own_key:  # this job's own folder (a grid's job list renumbers)
                output_dir = Path(HydraConfig.get().runtime.output_dir)
            else:
                output_dir = member_output_dir(member.index, launched=not grid)
            tags = {
                **run_tags(member_cfg, names, data.task, member.overrides, output_dir),
                **sweep_tags,
            }
            if len(todo) > 1:
                tags[schema.TAG_VECTORIZED] = str(len(todo))
            recorder = tracker.start_run(
                names.run_name, tags, run_params(member_cfg), parent_run_id,
                draw_heatmap=heatmap, sharing=len(todo), curves=curves,
            )  # fmt: skip
            label = f"  [{member.index + 1}/{size}]"
            entries.append(Entry(member_cfg, names, recorder, label, output_dir))
        keys = [member.key for member, _, _ in todo]  # the plan's: run_key costs ms a call
        entries, own_lost = _claimed(tracker, entries, keys, own_key, grid)
    own_lost = own_lost or own_done
    if not entries:
        assert own_lost is not None
        return own_lost
    uri = tracker.options.uri
    if len(entries) == 1:
        import torch

        one = entries[0].cfg
        torch.manual_seed(int(one.train.seed))
        model = model_builder(one, data)()
        optimizer = optimizer_partial(one)(model.parameters())
        built = Built(data, model, optimizer, train_settings(one))
        summary = train_and_record(built, entries[0], uri, multirun=True)
    else:
        summary = train_stacked(cfg, data, entries, own_key, uri)
    return own_lost or summary


def _claimed(
    tracker: Any, entries: list[Entry], keys: list[str], own_key: str, grid: bool = False
) -> tuple[list[Entry], dict[str, Any] | None]:
    """The entries whose runs won their claim (another sweep may have claimed a seed first),
    and this job's own SKIPPED summary if its own seed was lost. ``keys``: the entries' run
    keys. A ``grid`` looks its runs up in one search."""
    kept, own_lost = [], None
    known = _runs_of(tracker, keys, entries[0].names) if grid else None
    for entry, key in zip(entries, keys, strict=True):
        lost = lost_to_another_sweep(
            tracker, entry.cfg, entry.recorder.run_id, entry.names.run_name, entry.label,
            None if known is None else known[key],
        )  # fmt: skip
        if lost is None:
            kept.append(entry)
        elif key == own_key:
            own_lost = lost
    if len(kept) != len(entries):  # the stack is smaller than the runs' tags say
        for entry in kept:
            if len(kept) > 1:
                tracker.client.set_tag(entry.recorder.run_id, schema.TAG_VECTORIZED, str(len(kept)))
            else:  # trains alone
                tracker.client.delete_tag(entry.recorder.run_id, schema.TAG_VECTORIZED)
    return kept, own_lost


def _runs_of(tracker: Any, keys: list[str], names: RunNames) -> dict[str, list[Any]] | None:
    """The runs of each of a stack's run keys, in one search of its problem's and model's
    runs (every run of a key has the key's problem and model tags)."""
    tags = {schema.TAG_PROBLEM: names.problem, schema.TAG_MODEL: names.model}
    return tracker.runs_by_key(keys, tags)


def _members_to_do(
    cfg: DictConfig,
    members: list[Any],
    tracker: Any,
    choice: str | None,
    size: str,
    sweep_tags: dict[str, str],
    grid: bool = False,
) -> tuple[dict[str, Any] | None, list[tuple[Any, DictConfig, RunNames]]]:
    """This job's own summary if its own run is done (a line is printed only for that one),
    and the members of the group whose runs are not done, each with its config and names.
    When this job's own run is done, the others are looked up only in a ``grid``: in seed
    groups, their own jobs do that."""
    own_key = run_key(cfg)
    own_done = None
    todo: list[tuple[Any, DictConfig, RunNames]] = []
    known = None
    if grid:  # one search for the stack, not one per member (a seed group is a few seeds)
        known = _runs_of(tracker, [m.key for m in members], run_names(cfg, choice))
    for member in members:
        member_cfg = cfg.copy()
        member_cfg.train.seed = member.seed
        for name, value in member.hypers.items():  # a grid member's own hyperparameters
            member_cfg.optimizer[name] = value
        names = run_names(member_cfg, choice)
        quiet = member.key != own_key
        label = f"  [{member.index + 1}/{size}]"
        done = skip_if_done(
            tracker, member_cfg, names.run_name, label, quiet=quiet,
            sweep_id=sweep_tags.get(schema.TAG_SWEEP_ID),
            known=None if known is None else known[member.key],
        )  # fmt: skip
        if done is not None and not quiet:
            own_done = done
            if not grid:
                return own_done, []
        if done is None:
            todo.append((member, member_cfg, names))
    return own_done, todo


def train_stacked(
    cfg: DictConfig, data: Any, entries: list[Entry], own_key: str, uri: str
) -> dict[str, Any]:
    """Train ``entries`` (one seed each) as one stacked model; record each as its own run."""
    from rprop_bench.seed_batch import batchable, seeded_models, train_seeds

    models = seeded_models(model_builder(cfg, data), [int(e.cfg.train.seed) for e in entries])
    exact = not batchable(models[0])  # e.g. a shortcut network: each member's own operations
    if seed_groups.mode(cfg) == "grid":  # each member with its own hyperparameters
        make_optimizer = stack_optimizer_partial([e.cfg for e in entries], exact=exact)
    else:
        make_optimizer = optimizer_partial(cfg)

    def train_all() -> list[Any]:
        from rprop_bench.tracking.recorder import dataset_inputs

        shared = dataset_inputs(data_splits(entries[0].names.problem, data))
        for entry in entries:
            log_inputs(entry, data, shared)
        return train_seeds(
            models, data, make_optimizer, train_settings(cfg),
            [e.recorder.on_epoch for e in entries], elementwise=declared_elementwise(cfg),
            exact=exact,
        )  # fmt: skip

    from rprop_bench.retry import StoreUnavailable

    try:
        results = guarded(train_all, entries, multirun=True)
    except StoreUnavailable as exc:
        return all_failed_locally(entries, str(exc), multirun=True)  # raises SweepStopped
    else:
        summaries = [
            record_result(entry, result, model, uri, multirun=True)
            if result is not None
            else {"status": "FAILED", "run_id": entry.recorder.run_id}
            for entry, result, model in zip(
                entries, results or [None] * len(entries), models, strict=True
            )
        ]
    own = [s for e, s in zip(entries, summaries, strict=True) if run_key(e.cfg) == own_key]
    return own[0] if own else summaries[0]
