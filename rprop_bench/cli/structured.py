"""Structured configs: the types and ranges of the config groups with a fixed shape.

The root config (``conf/config.yaml``) starts its defaults list with :data:`ROOT_SCHEMA`, so
every option of the train and tracking groups, every problem (the package's and a user's) and
the sweep settings are merged into these dataclasses. OmegaConf then refuses a value of the
wrong type or a key the schema lacks on every merge, and each field's :class:`~rprop_bench.
cli.validate.Rule` (in its metadata) states the range that :func:`~rprop_bench.cli.validate.
validate` checks. The YAML files keep the defaults (every field here is ``MISSING``), so a
value is written once.

Two groups stay free-form: an optimizer config is any class's keyword arguments, and a model
config a builder's (their checks look at the keys a config has: ``validate_optimizer``).

Fields typed ``Any`` hold floats that enter the run key: a ``float`` field would turn
``train.target_loss=1`` into ``1.0`` and so change the key of every run made that way; the
rule still checks that the value is a number.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from rprop_bench import schema
from rprop_bench.cli.validate import (
    RULE,
    Rule,
    at_least,
    boolean,
    descending_targets,
    device,
    integer_in,
    non_empty_text,
    non_negative,
    objectives,
    one_of,
    open_unit_interval,
    positive,
    seed_list,
)

#: The name of the root schema in Hydra's ConfigStore (first in conf/config.yaml's defaults).
ROOT_SCHEMA = "rprop_bench_schema"
#: The most torch threads a run may ask for: this machine's CPUs (at least 1).
MAX_THREADS = os.cpu_count() or 1


def checked(rule: Rule) -> Any:
    """A field without a default (the YAML file gives it) that must obey ``rule``."""
    return dataclasses.field(default=MISSING, metadata={RULE: rule})


@dataclasses.dataclass
class TrainConfig:
    """The train group (conf/train/): how to train, independent of optimizer and problem."""

    epochs: int = checked(at_least(1))
    batch_size: int | None = checked(at_least(1).or_null())
    target_loss: Any = checked(non_negative().or_null())
    seed: int = checked(integer_in(0, 2**32 - 1, "NumPy's seed range"))
    device: str = checked(device())
    num_threads: int = checked(integer_in(1, MAX_THREADS, "more threads than CPUs only slow a run"))
    log_every: int = checked(at_least(1))
    histogram_every: int = checked(at_least(0))
    vectorize_seeds: bool = checked(boolean())
    vectorize: str | None = checked(one_of(schema.VECTORIZE_MODES).or_null())
    dtype: str = checked(one_of(schema.DTYPES))


@dataclasses.dataclass
class DataConfig:
    """A problem's data: its builder, its name and the split (conf/base/problem.yaml).

    A builder's own settings go in ``options`` (the schema has no other free keys).
    """

    _target_: str = MISSING
    name: str = MISSING  # checked against the problem registry by the pre-flight
    split_seed: int = checked(integer_in(0, 2**32 - 1, "NumPy's seed range"))
    val_fraction: Any = checked(open_unit_interval())
    test_fraction: Any = checked(open_unit_interval())
    standardize: bool = checked(boolean())
    standardize_target: bool = checked(boolean())
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @staticmethod
    def check_together(values: Mapping[str, Any], path: str) -> None:
        """Validation and test data must leave some training data."""
        total = values["val_fraction"] + values["test_fraction"]
        Rule("< 1 (to leave data)", lambda v: v < 1).check(
            f"{path}.val_fraction + test_fraction", total
        )


@dataclasses.dataclass
class ProblemConfig:
    """The problem group (conf/problem/, inheriting conf/base/problem.yaml)."""

    data: DataConfig = MISSING
    target_loss: Any = checked(non_negative().or_null())
    loss: str | None = checked(one_of(schema.LOSS_NAMES).or_null())
    targets: Any = checked(descending_targets().or_null())
    success_within: Any = checked(open_unit_interval().or_null())
    default_model: Any = MISSING  # a model config (free-form, as the model group)


@dataclasses.dataclass
class TrackingConfig:
    """The tracking group (conf/tracking/): where and how runs are recorded in MLflow."""

    uri: str = checked(non_empty_text("URI"))
    experiment: str = checked(non_empty_text("name"))
    batch_logging: bool = checked(boolean())
    flush_seconds: float = checked(positive())
    max_batch: int = checked(integer_in(1, 1000, "MLflow's log_batch limit"))
    histograms: bool = checked(boolean())
    heatmap: bool = checked(boolean())
    grid_heatmap: bool = checked(boolean())
    grid_curves: str = checked(one_of(schema.GRID_CURVES))
    check_timeout_seconds: float = checked(positive())
    retry_seconds: float = checked(positive())
    stale_seconds: float = checked(positive())
    ui_port: int = checked(integer_in(1, 65535))
    ui_host: str = checked(non_empty_text("host name or address"))


@dataclasses.dataclass
class SweepConfig:
    """How a sweep treats the runs already in the store (conf/config.yaml's ``sweep``)."""

    skip_finished: bool = checked(boolean())
    retry_failed: bool = checked(boolean())
    max_stack: int | None = checked(at_least(2).or_null())


@dataclasses.dataclass
class TuneConfig:
    """How ``python -m rprop_bench tune`` searches (conf/tune/); not part of a run's key."""

    trials: int = checked(at_least(1))
    total_trials: int | None = checked(at_least(1).or_null())
    sampler: str = checked(one_of(schema.TUNE_SAMPLERS))
    seed: int = checked(integer_in(0, 2**32 - 1, "NumPy's seed range"))
    batch: int = checked(at_least(1))
    seeds: list[int] = checked(seed_list(schema.MIN_TUNING_SEEDS))
    rerun_seeds: list[int] = checked(seed_list(schema.MIN_RERUN_SEEDS))
    objective: Any = checked(objectives())
    target: int | None = checked(at_least(0).or_null())
    boundary_fraction: float = checked(
        Rule("in (0, 0.5)", lambda v: 0 < v < 0.5, "a number", lambda v: isinstance(v, float))
    )
    extend_on_boundary: bool = checked(boolean())
    max_extensions: int = checked(at_least(1))
    rerun_defaults: bool = checked(boolean())
    # Set by the tune command on the jobs it launches (their tags), else null.
    role: str | None = checked(one_of(schema.TUNE_ROLES).or_null())
    trial: int | None = checked(at_least(0).or_null())
    study: str | None = None

    @staticmethod
    def check_together(values: Mapping[str, Any], path: str) -> None:
        """The fresh seeds are seeds that tuning never saw."""
        shared = sorted(set(values["seeds"]) & set(values["rerun_seeds"]))
        Rule(f"disjoint from {path}.seeds (shared: {shared})", lambda _: not shared).check(
            f"{path}.rerun_seeds", list(values["rerun_seeds"])
        )


@dataclasses.dataclass
class RootConfig:
    """The composed job config: one node per group."""

    optimizer: Any = MISSING
    problem: ProblemConfig = MISSING
    model: Any = MISSING
    train: TrainConfig = MISSING
    tracking: TrackingConfig = MISSING
    sweep: SweepConfig = MISSING
    tune: TuneConfig = MISSING


def register_schema() -> None:
    """Put the root schema in Hydra's ConfigStore (idempotent; before any composition)."""
    ConfigStore.instance().store(name=ROOT_SCHEMA, node=RootConfig)
