"""Config to objects: the one place that turns the composed config into what a run uses.

Problem data, model, optimizer, train settings and tracking options. torch and the harness
modules are imported inside the functions: the CLI's main process imports this module too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def check_device(device: str) -> None:
    """Raise :class:`ConfigError` unless this machine has ``device`` (``cuda:1`` needs two
    GPUs; ``mps`` an Apple GPU)."""
    import torch

    kind, _, index = device.partition(":")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"train.device={device!r} is out of range: CUDA is not available here"
            )
        count = torch.cuda.device_count()
        if index and int(index) >= count:
            raise ConfigError(
                f"train.device={device!r} is out of range: this machine has {count} CUDA "
                f"device(s), cuda:0 to cuda:{count - 1}"
            )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device={device!r} is out of range: MPS is not available here")


def build_data(cfg: DictConfig) -> ProblemData:
    """The problem's data on ``train.device`` (and torch's thread count set for the run).

    Raises:
        ConfigError: a device this machine lacks, or data that cannot be built or trained on
            (an option the builder refuses, an empty split, NaN or infinite values): refused
            before training, so that bad data is never recorded as the optimizer's divergence.
    """
    import torch

    device = str(cfg.train.device)
    check_device(device)
    torch.set_num_threads(int(cfg.train.num_threads))
    from hydra.errors import InstantiationException

    from rprop_bench.problems import BadDataError, check_data

    name = cfg.problem.data.get("name", "?")
    try:
        data = hydra_instantiate(cfg.problem.data).to(device, train_dtype(cfg))
        check_data(data)
    except InstantiationException as exc:  # Hydra wraps what the problem's builder raised
        cause = exc.__cause__
        if isinstance(cause, OSError):  # a data file that is missing or unreadable
            raise ConfigError(f"cannot load the data of problem {name!r}: {cause}") from exc
        if isinstance(cause, ValueError | TypeError):  # BadDataError, UnknownProblemError too
            text = str(cause).strip().splitlines()[0] if str(cause).strip() else repr(cause)
            if text.startswith("problem."):  # names its field already
                raise ConfigError(text) from exc
            raise ConfigError(
                f"problem.data: the data of problem {name!r} cannot be built ({text})"
            ) from exc
        raise
    except BadDataError as exc:
        raise ConfigError(f"problem.data: {exc}; refused before training") from exc
    except OSError as exc:
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


def stack_optimizer_partial(
    cfgs: Sequence[DictConfig], *, exact: bool = False
) -> Callable[[list[torch.Tensor]], torch.optim.Optimizer]:
    """The optimizer of a grid's stack: member k has the hyperparameters of ``cfgs[k]``
    (:func:`rprop_bench.optim.members.member_optimizer`; ``exact``: bit-exact baselines)."""
    from rprop_bench.optim.members import member_optimizer

    partials = [optimizer_partial(one) for one in cfgs]
    kind = partials[0].func  # type: ignore[attr-defined]
    member_kwargs = [
        {
            name: OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
            for name, value in one.keywords.items()  # type: ignore[attr-defined]
        }
        for one in partials
    ]
    return lambda params: member_optimizer(kind, params, member_kwargs, exact=exact)


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


#: What training holds per parameter, in parameter-sized copies: the weights, their gradient,
#: and up to three optimizer buffers (Rprop: previous gradient, step sizes, last update).
COPIES_PER_PARAMETER = 5


def check_buildable(configs: list[DictConfig]) -> None:
    """Build what each job would build, short of training, before any job starts: its data
    (each distinct data config once), its model on torch's ``meta`` device (no memory), whose
    size must fit in this machine's free memory, and its optimizer's arguments.

    Raises:
        ConfigError: the first job that could not train, in one line.
    """
    data_of: dict[str, Any] = {}
    model_of: dict[str, torch.nn.Module] = {}
    checked: set[str] = set()
    for cfg in configs:  # each distinct data, model and optimizer config once
        data_key = OmegaConf.to_yaml(cfg.problem.data, resolve=True) + str(cfg.train.device)
        if data_key not in data_of:
            data_of[data_key] = build_data(cfg)
        model_key = data_key + OmegaConf.to_yaml(cfg.model) + str(cfg.train.dtype)
        if model_key not in model_of:
            model_of[model_key] = _meta_model(cfg, data_of[data_key])
        job_key = model_key + OmegaConf.to_yaml(cfg.optimizer)
        if job_key not in checked:
            checked.add(job_key)
            check_optimizer_arguments(cfg, model_of[model_key])


def _meta_model(cfg: DictConfig, data: ProblemData) -> torch.nn.Module:
    """The job's model on torch's ``meta`` device; :class:`ConfigError` if training it would
    not fit in this machine's free memory."""
    import psutil
    import torch

    partial = hydra_instantiate(cfg.model)
    with torch.device("meta"):
        model = partial(n_inputs=data.n_inputs, n_outputs=data.n_outputs)
    size = sum(p.numel() for p in model.parameters())
    need = size * train_dtype(cfg).itemsize * COPIES_PER_PARAMETER
    free = psutil.virtual_memory().available
    if need > free:
        raise ConfigError(
            f"model.hidden={list(cfg.model.get('hidden', []))}: the model has {size:,} "
            f"parameters, about {need / 2**30:.1f} GiB to train, and this machine has "
            f"{free / 2**30:.1f} GiB free"
        )
    return model


def check_optimizer_arguments(cfg: DictConfig, model: torch.nn.Module) -> None:
    """The optimizer's config keys must be arguments of its class; a key its class does not
    take gets one line naming the valid ones. The class is constructed on ``model``'s
    (``meta``) parameters, so a value it refuses is caught too."""
    import inspect

    from hydra.utils import get_class

    target = str(cfg.optimizer.get("_target_", ""))
    try:
        cls = get_class(target)
    except Exception as exc:
        raise ConfigError(f"optimizer._target_={target!r} cannot be imported ({exc})") from exc
    parameters = inspect.signature(cls).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    valid = [name for name in parameters if name != "params"]
    for key in cfg.optimizer:
        key = str(key)
        if key.startswith("_") or key in schema.OPTIMIZER_HARNESS_KEYS or takes_any:
            continue
        if key not in parameters:
            raise ConfigError(
                f"optimizer.{key}: {target} takes no such argument; its arguments: "
                f"{', '.join(valid)}"
            )
    try:
        optimizer_partial(cfg)(list(model.parameters()))
    except Exception as exc:
        text = str(exc.__cause__ or exc).strip().splitlines()
        raise ConfigError(
            f"optimizer: {target} refuses this config ({text[0] if text else type(exc).__name__})"
        ) from exc


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
