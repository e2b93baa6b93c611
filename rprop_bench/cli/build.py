"""Config to objects: the one place that turns the composed config into what a run uses.

Problem data, model, optimizer, train settings and tracking options. torch and the harness
modules are imported inside the functions: the CLI's main process imports this module too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from rprop_bench import schema
from rprop_bench.cli.validate import ConfigError

if TYPE_CHECKING:
    import torch

    from rprop_bench.problems import ProblemData
    from rprop_bench.tracking import TrackingOptions
    from rprop_bench.training import TrainSettings


@dataclass
class Built:
    """The objects one run trains with."""

    data: ProblemData
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    settings: TrainSettings


def build_data(cfg: DictConfig) -> ProblemData:
    """The problem's data on ``train.device`` (and torch's thread count set for the run)."""
    import torch

    device = str(cfg.train.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={device!r} is out of range: CUDA is not available here")
    torch.set_num_threads(int(cfg.train.num_threads))
    from hydra.errors import InstantiationException

    from rprop_bench.problems import UnknownProblemError

    try:
        data = hydra_instantiate(cfg.problem.data).to(device, train_dtype(cfg))
    except InstantiationException as exc:  # Hydra wraps what the problem's builder raised
        if isinstance(exc.__cause__, UnknownProblemError):  # a job run without the pre-flight
            raise ConfigError(str(exc.__cause__)) from exc
        raise
    except OSError as exc:  # a data file that is missing or unreadable
        name = cfg.problem.data.get("name", "?")
        raise ConfigError(f"cannot load the data of problem {name!r}: {exc}") from exc
    from rprop_bench.metrics import loss_function

    try:  # the loss must fit the task, which is known once the data is
        loss_function(data.task, cfg.problem.loss)
    except ValueError as exc:
        raise ConfigError(f"{exc} (problem {data.name!r})") from exc
    return data


def train_dtype(cfg: DictConfig) -> torch.dtype:
    """``train.dtype`` as a torch dtype (float32 or float64)."""
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[str(cfg.train.dtype)]


def model_builder(cfg: DictConfig, data: ProblemData) -> Callable[[], torch.nn.Module]:
    """A function that builds the config's model for ``data`` (seed torch before calling it),
    in ``train.dtype``: initialised in float32, as torch does, then cast, so a float64 run
    starts from the float32 run's weights."""
    partial = hydra_instantiate(cfg.model)
    device, dtype = str(cfg.train.device), train_dtype(cfg)
    return lambda: partial(n_inputs=data.n_inputs, n_outputs=data.n_outputs).to(device, dtype)


def train_settings(cfg: DictConfig) -> TrainSettings:
    """The :class:`~rprop_bench.training.TrainSettings` of the ``train`` group."""
    from rprop_bench.training import TrainSettings

    return TrainSettings(
        epochs=int(cfg.train.epochs),
        batch_size=cfg.train.batch_size,
        target_loss=cfg.train.target_loss,
        log_every=int(cfg.train.log_every),
        histogram_every=int(cfg.train.histogram_every),
        seed=int(cfg.train.seed),
        loss=cfg.problem.loss,
        targets=tuple(float(t) for t in cfg.problem.targets or ()),
        success_within=cfg.problem.success_within,
    )


def optimizer_partial(cfg: DictConfig) -> Callable[..., torch.optim.Optimizer]:
    """The optimizer's class with its hyperparameters bound, without the harness's own keys
    (:data:`~rprop_bench.schema.OPTIMIZER_HARNESS_KEYS`): call it with the parameters."""
    node = OmegaConf.masked_copy(
        cfg.optimizer, [k for k in cfg.optimizer if k not in schema.OPTIMIZER_HARNESS_KEYS]
    )
    return hydra_instantiate(node)


def declared_elementwise(cfg: DictConfig) -> bool | None:
    """Whether the optimizer's config declares it elementwise (``None``: it does not say)."""
    value = cfg.optimizer.get(schema.OPTIMIZER_ELEMENTWISE_KEY)
    return None if value is None else bool(value)


def build(cfg: DictConfig) -> Built:
    """Build the problem data, the model (seeded by ``train.seed``), the optimizer and settings."""
    import torch

    data = build_data(cfg)
    torch.manual_seed(int(cfg.train.seed))
    model = model_builder(cfg, data)()
    optimizer = optimizer_partial(cfg)(model.parameters())
    return Built(data, model, optimizer, train_settings(cfg))


def tracking_options(cfg: DictConfig, cwd: Path) -> TrackingOptions:
    """The :class:`~rprop_bench.tracking.TrackingOptions` of the ``tracking`` group."""
    from rprop_bench.store import resolve_uri
    from rprop_bench.tracking import TrackingOptions

    return TrackingOptions(
        uri=resolve_uri(str(cfg.tracking.uri), cwd),
        experiment=str(cfg.tracking.experiment),
        batch_logging=bool(cfg.tracking.batch_logging),
        flush_seconds=float(cfg.tracking.flush_seconds),
        max_batch=int(cfg.tracking.max_batch),
        histograms=bool(cfg.tracking.histograms),
        heatmap=bool(cfg.tracking.heatmap),
        retry_seconds=float(cfg.tracking.retry_seconds),
        stale_seconds=float(cfg.tracking.stale_seconds),
    )


def hydra_instantiate(node: DictConfig) -> Any:
    """``hydra.utils.instantiate`` with plain Python containers (lists, not ListConfig)."""
    from hydra.utils import instantiate

    return instantiate(node, _convert_="all")
