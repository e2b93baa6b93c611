"""Range checks of a composed config, run before any training starts.

:func:`validate` raises :class:`ConfigError` with one line that names the field, its value and
the allowed range, e.g. ``optimizer.lr=-1.0 is out of range: must be > 0``. The checks look at
which keys an optimizer config has (``etas``, ``momentum``, ``betas`` ...) rather than at its
name, so every config of the group, and any new one, is covered.

This module imports only OmegaConf (no torch), so bad input is reported within a second.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rprop_bench import schema

MODEL_KINDS = ("linear", "mlp")
ACTIVATIONS = ("tanh", "sigmoid", "relu")
LINE_SEARCHES = (None, "strong_wolfe")
DEVICES = ("cpu", "cuda", "mps")


class ConfigError(ValueError):
    """A config value is out of range or inconsistent; the message is one line."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(path: str, value: Any, ok: Callable[[Any], bool], rule: str) -> None:
    if not ok(value):
        raise ConfigError(f"{path}={value!r} is out of range: must be {rule}")


def _of_type(path: str, value: Any, is_type: Callable[[Any], bool], kind: str) -> None:
    """A wrong type (``optimizer.lr=abc``) gets its own message: "out of range" would mislead."""
    if not is_type(value):
        raise ConfigError(f"{path}={value!r} has the wrong type: must be {kind}")


def _positive(path: str, value: Any) -> None:
    _of_type(path, value, _number, "a number > 0")
    _check(path, value, lambda v: math.isfinite(v) and v > 0, "> 0")


def _non_negative(path: str, value: Any) -> None:
    _of_type(path, value, _number, "a number >= 0")
    _check(path, value, lambda v: math.isfinite(v) and v >= 0, ">= 0")


def _unit_interval(path: str, value: Any) -> None:
    _of_type(path, value, _number, "a number in [0, 1)")
    _check(path, value, lambda v: 0 <= v < 1, "in [0, 1)")


def _int_at_least(path: str, value: Any, low: int) -> None:
    _of_type(path, value, _integer, f"an integer >= {low}")
    _check(path, value, lambda v: v >= low, f">= {low}")


def _pair(path: str, value: Any) -> tuple[float, float]:
    _check(
        path,
        value,
        lambda v: isinstance(v, list | tuple) and len(v) == 2 and all(_number(x) for x in v),
        "a pair of numbers [a, b]",
    )
    return float(value[0]), float(value[1])


def validate_optimizer(opt: Mapping[str, Any], batch_size: int | None) -> None:
    """Check the optimizer group's hyperparameters (only the keys it has)."""
    target = opt.get("_target_", "")
    if "lr" in opt:
        _positive("optimizer.lr", opt["lr"])
    if "etas" in opt:
        eta_minus, eta_plus = _pair("optimizer.etas", opt["etas"])
        _check(
            "optimizer.etas",
            list(opt["etas"]),
            lambda _: 0 < eta_minus < 1 < eta_plus and math.isfinite(eta_plus),
            "[eta_minus, eta_plus] with 0 < eta_minus < 1 < eta_plus",
        )
    if "step_sizes" in opt:
        low, high = _pair("optimizer.step_sizes", opt["step_sizes"])
        _check(
            "optimizer.step_sizes",
            list(opt["step_sizes"]),
            lambda _: 0 <= low <= high and math.isfinite(high),
            "[step_min, step_max] with 0 <= step_min <= step_max < inf",
        )
        if target == schema.RPROP_TARGET:
            _check("optimizer.lr", opt["lr"], lambda v: low <= v <= high, f"in [{low}, {high}]")
    if schema.OPTIMIZER_ELEMENTWISE_KEY in opt:
        key = schema.OPTIMIZER_ELEMENTWISE_KEY
        _of_type(f"optimizer.{key}", opt[key], lambda v: isinstance(v, bool), "true or false")
    if "variant" in opt:
        _check(
            "optimizer.variant",
            opt["variant"],
            lambda v: v in schema.RPROP_VARIANTS,
            str(schema.RPROP_VARIANTS),
        )
    if "momentum" in opt:
        _unit_interval("optimizer.momentum", opt["momentum"])
    if "dampening" in opt:
        _unit_interval("optimizer.dampening", opt["dampening"])
    if opt.get("nesterov"):
        _check(
            "optimizer.momentum",
            opt.get("momentum", 0),
            lambda v: v > 0 and not opt.get("dampening"),
            "> 0 (with dampening 0) for Nesterov momentum",
        )
    if "betas" in opt:
        b1, b2 = _pair("optimizer.betas", opt["betas"])
        _check("optimizer.betas", list(opt["betas"]), lambda _: 0 <= b1 < 1 and 0 <= b2 < 1,
               "[beta1, beta2], each in [0, 1)")  # fmt: skip
    if "alpha" in opt:
        _unit_interval("optimizer.alpha", opt["alpha"])
    if "eps" in opt:
        _positive("optimizer.eps", opt["eps"])
    if "weight_decay" in opt:
        _non_negative("optimizer.weight_decay", opt["weight_decay"])
    for key in ("max_iter", "history_size"):
        if key in opt:
            _int_at_least(f"optimizer.{key}", opt[key], 1)
    if opt.get("max_eval") is not None:
        _int_at_least("optimizer.max_eval", opt["max_eval"], 1)
    for key in ("tolerance_grad", "tolerance_change"):
        if key in opt:
            _non_negative(f"optimizer.{key}", opt[key])
    if "line_search_fn" in opt:
        _check("optimizer.line_search_fn", opt["line_search_fn"], lambda v: v in LINE_SEARCHES,
               "null or 'strong_wolfe'")  # fmt: skip
    if target == "torch.optim.LBFGS" and batch_size is not None:
        raise ConfigError(
            f"train.batch_size={batch_size!r} is out of range: must be null (full batch) for L-BFGS"
        )


def validate_train(train: Mapping[str, Any]) -> None:
    """Check the train group."""
    _int_at_least("train.epochs", train["epochs"], 1)
    if train["batch_size"] is not None:
        _int_at_least("train.batch_size", train["batch_size"], 1)
    if train["target_loss"] is not None:
        _non_negative("train.target_loss", train["target_loss"])
    _int_at_least("train.seed", train["seed"], 0)
    _int_at_least("train.num_threads", train["num_threads"], 1)
    _int_at_least("train.log_every", train["log_every"], 1)
    _int_at_least("train.histogram_every", train["histogram_every"], 0)
    vectorize = train.get("vectorize_seeds", False)
    _of_type("train.vectorize_seeds", vectorize, lambda v: isinstance(v, bool), "true or false")
    device = str(train["device"])
    _check("train.device", device, lambda v: v.split(":")[0] in DEVICES, f"one of {DEVICES}")


def validate_problem(problem: Mapping[str, Any]) -> None:
    """Check the problem group's split settings (its name is checked by the pre-flight)."""
    data = problem["data"]
    _int_at_least("problem.data.split_seed", data["split_seed"], 0)
    for key in ("val_fraction", "test_fraction"):
        _of_type(f"problem.data.{key}", data[key], _number, "a number in (0, 1)")
        _check(f"problem.data.{key}", data[key], lambda v: 0 < v < 1, "in (0, 1)")
    total = data["val_fraction"] + data["test_fraction"]
    _check(
        "problem.data.val_fraction + test_fraction", total, lambda v: v < 1, "< 1 (to leave data)"
    )


def validate_model(model: Mapping[str, Any]) -> None:
    """Check the model group (or the problem's default model)."""
    _check("model.kind", model["kind"], lambda v: v in MODEL_KINDS, f"one of {MODEL_KINDS}")
    _check(
        "model.activation",
        model["activation"],
        lambda v: v in ACTIVATIONS,
        f"one of {ACTIVATIONS}",
    )
    hidden = model["hidden"]
    _check(
        "model.hidden",
        hidden,
        lambda v: isinstance(v, list) and all(isinstance(h, int) and h >= 1 for h in v),
        "a list of layer sizes >= 1",
    )
    if model["kind"] == "linear":
        _check("model.hidden", hidden, lambda v: not v, "[] for a linear model")


def validate_tracking(tracking: Mapping[str, Any]) -> None:
    """Check the tracking group."""
    _check(
        "tracking.uri", tracking["uri"], lambda v: isinstance(v, str) and bool(v), "a non-empty URI"
    )
    _check(
        "tracking.experiment",
        tracking["experiment"],
        lambda v: isinstance(v, str) and bool(v),
        "a non-empty name",
    )
    _positive("tracking.flush_seconds", tracking["flush_seconds"])
    _check(
        "tracking.max_batch",
        tracking["max_batch"],
        lambda v: isinstance(v, int) and 1 <= v <= 1000,
        "in [1, 1000] (MLflow's log_batch limit)",
    )
    _positive("tracking.check_timeout_seconds", tracking["check_timeout_seconds"])
    _positive("tracking.retry_seconds", tracking["retry_seconds"])
    _positive("tracking.stale_seconds", tracking["stale_seconds"])
    _int_at_least("tracking.ui_port", tracking["ui_port"], 1)
    host = tracking["ui_host"]
    _of_type(
        "tracking.ui_host", host, lambda v: isinstance(v, str) and bool(v), "a host name or address"
    )


def validate_sweep(sweep: Mapping[str, Any]) -> None:
    """Check the sweep settings (how a sweep treats runs already in the store)."""
    value = sweep["skip_finished"]
    _of_type("sweep.skip_finished", value, lambda v: isinstance(v, bool), "true or false")


def validate(cfg: DictConfig) -> None:
    """Check every group of a composed config; raise :class:`ConfigError` on the first problem."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:  # an interpolation that cannot resolve
        raise ConfigError(f"config cannot be resolved: {str(exc).splitlines()[0]}") from exc
    assert isinstance(plain, dict)
    validate_train(plain["train"])
    validate_optimizer(plain["optimizer"], plain["train"]["batch_size"])
    validate_problem(plain["problem"])
    validate_model(plain["model"])
    validate_tracking(plain["tracking"])
    validate_sweep(plain.get("sweep") or {"skip_finished": True})
