"""Range checks of a composed config, run before any training starts.

:func:`validate` raises :class:`ConfigError` with one line that names the field, its value and
the allowed range, e.g. ``optimizer.lr=-1.0 is out of range: must be > 0``.

- The groups with a fixed shape (train, problem data, tracking, sweep) are structured configs
  (:mod:`rprop_bench.cli.structured`): OmegaConf enforces their types on every merge, and each
  field carries its :class:`Rule` in its metadata, which :func:`check_fields` applies.
- The optimizer group is any class's keyword arguments (torch's, ours, a user's), so its
  checks look at which keys a config has (``etas``, ``momentum``, ``betas`` ...) rather than at
  its name: every config of the group, and any new one, is covered. The model group is checked
  the same way, so a user's model builder may take keys of its own.

This module imports only OmegaConf (no torch), so bad input is reported within a second.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from rprop_bench import schema

LINE_SEARCHES = (None, "strong_wolfe")
DEVICES = ("cpu", "cuda", "mps")
#: The metadata key under which a structured config's field carries its :class:`Rule`.
RULE = "rprop_bench.rule"


class ConfigError(ValueError):
    """A config value is out of range or inconsistent; the message is one line."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _anything(value: Any) -> bool:
    return True


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a config value must be: of a kind (checked first), then within a range.

    A wrong kind (``optimizer.lr=abc``) gets its own message: "out of range" would mislead.
    """

    text: str  # the range, as the message says it: "> 0", "in [0, 1)"
    ok: Callable[[Any], bool]
    kind: str = ""  # "a number", "an integer", "true or false"; "" = no separate kind check
    is_kind: Callable[[Any], bool] = _anything
    allows_null: bool = False

    def check(self, path: str, value: Any) -> None:
        """Raise :class:`ConfigError` naming ``path`` unless ``value`` obeys the rule."""
        if value is None and self.allows_null:
            return
        if not self.is_kind(value):
            raise ConfigError(f"{path}={value!r} has the wrong type: must be {self.expected}")
        if not self.ok(value):
            raise ConfigError(f"{path}={value!r} is out of range: must be {self.text}")

    @property
    def expected(self) -> str:
        """The kind and range together: ``an integer >= 1``."""
        return " ".join(part for part in (self.kind, self.text) if part)

    def or_null(self) -> Rule:
        """The same rule, with ``null`` allowed too."""
        text = f"{self.text} (or null)" if self.text else "null"
        return dataclasses.replace(self, allows_null=True, text=text)


def positive() -> Rule:
    return Rule("> 0", lambda v: math.isfinite(v) and v > 0, "a number", _number)


def non_negative() -> Rule:
    return Rule(">= 0", lambda v: math.isfinite(v) and v >= 0, "a number", _number)


def unit_interval() -> Rule:
    """``[0, 1)``: momentum, dampening, a moving average's decay."""
    return Rule("in [0, 1)", lambda v: 0 <= v < 1, "a number", _number)


def open_unit_interval() -> Rule:
    """``(0, 1)``: a fraction of the data."""
    return Rule("in (0, 1)", lambda v: 0 < v < 1, "a number", _number)


def at_least(low: int) -> Rule:
    return Rule(f">= {low}", lambda v: v >= low, "an integer", _integer)


def integer_in(low: int, high: int, why: str = "") -> Rule:
    text = f"in [{low}, {high}]" + (f" ({why})" if why else "")
    return Rule(text, lambda v: low <= v <= high, "an integer", _integer)


def boolean() -> Rule:
    return Rule("", _anything, "true or false", lambda v: isinstance(v, bool))


def one_of(choices: Sequence[Any], shown: str | None = None) -> Rule:
    return Rule(shown or f"one of {tuple(choices)}", lambda v: v in choices)


def non_empty_text(what: str) -> Rule:
    return Rule(f"a non-empty {what}", lambda v: isinstance(v, str) and bool(v))


def descending_targets() -> Rule:
    """A ladder of loss targets: numbers > 0, strictly decreasing (easiest first)."""

    def numbers(v: Any) -> bool:
        return isinstance(v, list | tuple) and len(v) > 0 and all(_number(t) for t in v)

    def ok(v: Any) -> bool:
        positive = all(math.isfinite(t) and t > 0 for t in v)
        return positive and all(a > b for a, b in itertools.pairwise(v))

    return Rule("> 0, strictly decreasing (easiest first)", ok, "a list of numbers", numbers)


def seed_list(minimum: int) -> Rule:
    """At least ``minimum`` distinct seeds (integers >= 0)."""

    def seeds(v: Any) -> bool:
        return isinstance(v, list | tuple) and all(_integer(s) and s >= 0 for s in v)

    return Rule(
        f"at least {minimum} distinct seeds", lambda v: len(set(v)) == len(v) >= minimum,
        "a list of integers >= 0", seeds,
    )  # fmt: skip


def objectives() -> Rule:
    """A tuning objective's name, or a list of them (one track each)."""

    def ok(v: Any) -> bool:
        names = v if isinstance(v, list | tuple) else [v]
        return bool(names) and all(n in schema.TUNE_OBJECTIVES for n in names)

    text = f"one of {', '.join(schema.TUNE_OBJECTIVES)} (or a list of them)"
    return Rule(text, ok)


def device() -> Rule:
    """``cpu``, ``cuda``, ``cuda:1``, ``mps`` (whether this machine has it is checked when the
    data is built: :func:`rprop_bench.cli.build.check_device`)."""

    def ok(v: Any) -> bool:
        kind, _, index = str(v).partition(":")
        return kind in DEVICES and (not index or (kind == "cuda" and index.isdigit()))

    return Rule(f"one of {DEVICES}, or cuda:N", ok, "a device name", lambda v: isinstance(v, str))


def optional_boolean() -> Rule:
    """``true``, ``false`` or ``null`` (torch's "choose for me"), e.g. ``foreach``."""
    return Rule("", _anything, "true, false or null", lambda v: v is None or isinstance(v, bool))


def check_fields(node: DictConfig, path: str, values: Mapping[str, Any]) -> None:
    """Apply the :class:`Rule` in each field's metadata of the structured config ``node`` to
    its resolved ``values``, then the node's own ``check_together`` (rules across fields)."""
    node_type = OmegaConf.get_type(node)
    if node_type is None or not dataclasses.is_dataclass(node_type):
        return  # a group option that does not use the schema: nothing declared to check
    for field in dataclasses.fields(node_type):
        rule = field.metadata.get(RULE)
        if rule is not None:
            rule.check(f"{path}.{field.name}", values[field.name])
    together = getattr(node_type, "check_together", None)
    if together is not None:
        together(values, path)


def wrong_type(exc: ValidationError, value: Any) -> ConfigError:
    """The one-line error for a value OmegaConf could not convert to a structured field's type,
    with the field's rule where it has one (``train.epochs='abc' has the wrong type: must be an
    integer >= 1``)."""
    expected = exc.msg.splitlines()[0] if exc.msg else "of the field's type"
    node_type = exc.object_type
    if node_type is not None and dataclasses.is_dataclass(node_type):
        fields = {field.name: field for field in dataclasses.fields(node_type)}
        field = fields.get(str(exc.key))
        rule = field.metadata.get(RULE) if field is not None else None
        if rule is not None:
            expected = rule.expected
    return ConfigError(f"{exc.full_key}={value!r} has the wrong type: must be {expected}")


def _pair(path: str, value: Any) -> tuple[float, float]:
    Rule(
        "a pair of numbers [a, b]",
        lambda v: isinstance(v, list | tuple) and len(v) == 2 and all(_number(x) for x in v),
    ).check(path, value)
    return float(value[0]), float(value[1])


def _require(path: str, value: Any, holds: bool, text: str) -> None:
    """A rule across several values, decided by the caller (``holds``)."""
    Rule(text, lambda _: holds).check(path, value)


#: torch's optimizer switches: true or false ...
_OPTIMIZER_FLAGS = ("maximize", "nesterov", "amsgrad", "centered", "capturable",
                    "differentiable", "decoupled_weight_decay")  # fmt: skip
#: ... and those where null lets torch choose.
_OPTIMIZER_OPTIONAL_FLAGS = ("foreach", "fused")


def validate_optimizer(opt: Mapping[str, Any], batch_size: int | None) -> None:
    """Check the optimizer group's hyperparameters (only the keys it has)."""
    target = opt.get("_target_", "")
    by_key: dict[str, Rule] = {
        "lr": positive(),
        "momentum": unit_interval(),
        "dampening": unit_interval(),
        "alpha": unit_interval(),
        "eps": positive(),
        "weight_decay": non_negative(),
        "max_iter": at_least(1),
        "history_size": at_least(1),
        "max_eval": at_least(1).or_null(),
        "tolerance_grad": non_negative(),
        "tolerance_change": non_negative(),
        "line_search_fn": one_of(LINE_SEARCHES, "null or 'strong_wolfe'"),
        "variant": one_of(schema.RPROP_VARIANTS, str(schema.RPROP_VARIANTS)),
        schema.OPTIMIZER_ELEMENTWISE_KEY: boolean(),
        **{key: boolean() for key in _OPTIMIZER_FLAGS},
        **{key: optional_boolean() for key in _OPTIMIZER_OPTIONAL_FLAGS},
    }
    for key, rule in by_key.items():
        if key in opt:
            rule.check(f"optimizer.{key}", opt[key])
    if "etas" in opt:
        eta_minus, eta_plus = _pair("optimizer.etas", opt["etas"])
        _require(
            "optimizer.etas",
            list(opt["etas"]),
            0 < eta_minus < 1 < eta_plus and math.isfinite(eta_plus),
            "[eta_minus, eta_plus] with 0 < eta_minus < 1 < eta_plus",
        )
    if "step_sizes" in opt:
        low, high = _pair("optimizer.step_sizes", opt["step_sizes"])
        _require(
            "optimizer.step_sizes",
            list(opt["step_sizes"]),
            0 <= low <= high and math.isfinite(high),
            "[step_min, step_max] with 0 <= step_min <= step_max < inf",
        )
        if target == schema.RPROP_TARGET:
            _require("optimizer.lr", opt["lr"], low <= opt["lr"] <= high, f"in [{low}, {high}]")
    if opt.get("nesterov"):
        momentum = opt.get("momentum", 0)
        _require(
            "optimizer.momentum",
            momentum,
            momentum > 0 and not opt.get("dampening"),
            "> 0 (with dampening 0) for Nesterov momentum",
        )
    if "betas" in opt:
        b1, b2 = _pair("optimizer.betas", opt["betas"])
        _require("optimizer.betas", list(opt["betas"]), 0 <= b1 < 1 and 0 <= b2 < 1,
                 "[beta1, beta2], each in [0, 1)")  # fmt: skip
    if target == "torch.optim.LBFGS" and batch_size is not None:
        raise ConfigError(
            f"train.batch_size={batch_size!r} is out of range: must be null (full batch) for L-BFGS"
        )


def validate_model(model: Mapping[str, Any]) -> None:
    """Check the model group (or the problem's default model)."""
    one_of(schema.MODEL_KINDS).check("model.kind", model["kind"])
    one_of(schema.ACTIVATIONS).check("model.activation", model["activation"])
    hidden = model["hidden"]
    Rule(
        "a list of layer sizes >= 1",
        lambda v: isinstance(v, list) and all(_integer(h) and h >= 1 for h in v),
    ).check("model.hidden", hidden)
    if model["kind"] == "linear":
        _require("model.hidden", hidden, not hidden, "[] for a linear model")
    if model["kind"] == "mlp":
        _require("model.hidden", hidden, bool(hidden),
                 "at least one hidden layer for an MLP (model=linear has none)")  # fmt: skip
    if model["kind"] == "residual_mlp":
        _require("model.hidden", hidden, bool(hidden) and len(set(hidden)) == 1,
                 "hidden layers of one width for a residual MLP")  # fmt: skip
    if model["kind"] == "cnn1d":
        _require("model.hidden", hidden, bool(hidden), "the channels of each convolution")
        kernels = model.get("kernel_sizes")
        Rule(
            f"{len(hidden)} kernel sizes >= 1 (one per convolution of model.hidden)",
            lambda v: (
                isinstance(v, list)
                and len(v) == len(hidden)
                and all(_integer(k) and k >= 1 for k in v)
            ),
        ).check("model.kernel_sizes", kernels)
        at_least(1).check("model.stride", model.get("stride"))
        at_least(0).check("model.padding", model.get("padding"))
    else:
        for key in ("kernel_sizes", "stride", "padding"):
            _require(f"model.{key}", model.get(key), key not in model, "absent unless kind=cnn1d")
    if "init_range" in model:
        positive().or_null().check("model.init_range", model["init_range"])
    if "output_units" in model:
        one_of((None, 1), "null or 1 (a binary problem's one output)").check(
            "model.output_units", model["output_units"]
        )


def validate(cfg: DictConfig) -> None:
    """Check every group of a composed config; raise :class:`ConfigError` on the first problem."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except ValidationError as exc:  # an interpolation whose value does not fit its field
        raise ConfigError(f"config cannot be resolved: {str(exc.msg).splitlines()[0]}") from exc
    except Exception as exc:  # an interpolation that cannot resolve
        raise ConfigError(f"config cannot be resolved: {str(exc).splitlines()[0]}") from exc
    assert isinstance(plain, dict)
    for group in ("optimizer", "problem", "model", "train", "tracking"):
        if not isinstance(plain.get(group), dict):  # `~optimizer` deleted the whole group
            raise ConfigError(
                f"{group}: the config has no {group} group (was it deleted with ~{group}?); "
                f"choose one with {group}=NAME"
            )

    def structured(path: str) -> None:
        values: Any = plain
        for part in path.split("."):
            values = values.get(part) if isinstance(values, dict) else None
        node = OmegaConf.select(cfg, path)
        if isinstance(node, DictConfig) and isinstance(values, dict):
            check_fields(node, path, values)

    structured("problem.data")
    structured("problem")  # before train, whose target_loss is the problem's unless set
    structured("train")
    validate_optimizer(plain["optimizer"], plain["train"]["batch_size"])
    validate_model(plain["model"])
    single_output_losses = ("mse_sigmoid", "sse_sigmoid", "cross_entropy")
    if plain["model"].get("output_units") == 1 and plain["problem"].get("loss") not in (
        single_output_losses
    ):
        raise ConfigError(
            "model.output_units=1 needs problem.loss='mse_sigmoid', 'sse_sigmoid' or "
            f"'cross_entropy' (a single sigmoid output), not {plain['problem'].get('loss')!r}"
        )
    structured("tracking")
    structured("sweep")
    structured("tune")
