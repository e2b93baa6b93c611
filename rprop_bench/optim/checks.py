"""The argument checks of :class:`~rprop_bench.optim.Rprop`: a param group's hyperparameters
and the closure's loss.

Messages begin as torch.optim.Rprop's do ("Invalid learning rate: ...", "Invalid eta
values: ..."), so code written against torch's errors keeps matching, and add the field's name
and allowed range.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from rprop_bench import schema


def lr_value(lr: Any) -> float:
    """The initial step size Δ0 as a float: a number, or a 1-element Tensor (as torch allows)."""
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not (lr.is_floating_point() or lr.dtype in (torch.int32, torch.int64)):
            raise ValueError(f"Invalid learning rate: {lr}; expected a real number (lr)")
        return float(lr.item()) if lr.device.type != "meta" else math.nan
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise ValueError(f"Invalid learning rate: {lr!r}; expected a finite float > 0 (lr)")
    return float(lr)


#: The hyperparameters that may hold one value per stacked member, by their argument names.
MEMBER_ARGUMENTS: tuple[str, ...] = ("lr", "etas[0]", "etas[1]", "step_sizes[0]", "step_sizes[1]")


def _is_per_member(value: Any) -> bool:
    return isinstance(value, Tensor) and value.dim() == 1 and value.numel() > 1


def member_values(group: dict[str, Any]) -> dict[str, Tensor]:
    """The hyperparameters of ``group`` given per member (1-D tensors of S > 1 values), by
    argument name (:data:`MEMBER_ARGUMENTS`)."""
    etas, sizes = tuple(group["etas"]), tuple(group["step_sizes"])
    values = [group["lr"], *etas[:2], *sizes[:2]]
    return {
        name: value
        for name, value in zip(MEMBER_ARGUMENTS, values, strict=False)
        if _is_per_member(value)
    }


def member_count(group: dict[str, Any]) -> int | None:
    """S, the stacked members that ``group``'s per-member hyperparameters are for; ``None``
    where every hyperparameter is one value.

    Raises:
        ValueError: per-member tensors of different lengths, naming both arguments.
    """
    values = member_values(group)
    if not values:
        return None
    (first, reference), *rest = values.items()
    for name, value in rest:
        if value.numel() != reference.numel():
            raise ValueError(
                f"Invalid {name}: {value.numel()} per-member values, but {first} has "
                f"{reference.numel()}; every per-member hyperparameter needs one value per member"
            )
    return reference.numel()


def validate_group(group: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the argument and its allowed range.

    Messages begin as torch.optim.Rprop's do ("Invalid learning rate: ...", "Invalid eta
    values: ..."), so code written against torch's errors keeps matching, and add the field's
    name and allowed range. Per-member hyperparameters (1-D tensors, one value per stacked
    member) are checked member by member, with the member named.
    """
    members = member_count(group)
    if members is None:
        _validate_values(group)
        return
    for name, value in member_values(group).items():
        if not value.is_floating_point():
            raise ValueError(f"Invalid {name}: per-member values must be floating point")
        if value.device.type == "meta":
            raise ValueError(f"Invalid {name}: per-member values on the meta device")
    etas, sizes = tuple(group["etas"]), tuple(group["step_sizes"])
    if len(etas) != 2 or len(sizes) != 2:
        _validate_values(group)  # the shape errors, as for scalars
    for member in range(members):

        def at(value: Any, member: int = member) -> Any:
            return float(value[member]) if _is_per_member(value) else value

        one = {
            **group,
            "lr": at(group["lr"]),
            "etas": tuple(at(e) for e in etas),
            "step_sizes": tuple(at(s) for s in sizes),
        }
        try:
            _validate_values(one)
        except ValueError as error:
            raise ValueError(f"{error} [member {member} of {members}]") from None


def _validate_values(group: dict[str, Any]) -> None:
    lr = lr_value(group["lr"])
    if not (math.isfinite(lr) and lr > 0.0):
        raise ValueError(
            f"Invalid learning rate: {group['lr']!r}; expected a finite float > 0 (lr)"
        )
    etas = tuple(group["etas"])
    if len(etas) != 2 or not all(isinstance(e, (int, float)) for e in etas):
        raise ValueError(f"Invalid etas: {group['etas']!r}; expected (eta_minus, eta_plus)")
    eta_minus, eta_plus = etas
    if not (0.0 < eta_minus < 1.0 < eta_plus and math.isfinite(eta_plus)):
        raise ValueError(
            f"Invalid eta values: {eta_minus}, {eta_plus}; expected 0 < eta_minus < 1 < "
            "eta_plus < inf (etas)"
        )
    sizes = tuple(group["step_sizes"])
    if len(sizes) != 2 or not all(isinstance(s, (int, float)) for s in sizes):
        raise ValueError(
            f"Invalid step_sizes: {group['step_sizes']!r}; expected (step_size_min, step_size_max)"
        )
    size_min, size_max = sizes
    # Δmin = 0 is legal (torch allows it; Igel & Hüsken 2003 ran with it): a Δ that reaches 0
    # stays 0, since only multiplications change it.
    if not (0.0 <= size_min <= size_max and math.isfinite(size_max)):
        raise ValueError(
            f"Invalid step_sizes: ({size_min}, {size_max}); "
            "expected 0 <= step_size_min <= step_size_max < inf"
        )
    # lr is the initial step size Δ0; outside [Δmin, Δmax] the first step would silently
    # clamp it, so a zero gradient would change Δ.
    if not size_min <= lr <= size_max:
        raise ValueError(
            f"Invalid learning rate: {group['lr']!r}; lr is the initial step size and must lie "
            f"in step_sizes [{size_min}, {size_max}]"
        )
    if group["variant"] not in schema.RPROP_VARIANTS:
        raise ValueError(
            f"Invalid variant: {group['variant']!r}; expected one of "
            + ", ".join(repr(v) for v in schema.RPROP_VARIANTS)
        )
    for flag in ("maximize", "differentiable", "capturable"):
        if not isinstance(group[flag], bool):
            raise ValueError(f"Invalid {flag}: {group[flag]!r}; expected True or False")
    for flag in ("foreach", "fused"):
        if group[flag] not in (None, True, False):
            raise ValueError(f"Invalid {flag}: {group[flag]!r}; expected None, True or False")
    if group["foreach"] and group["fused"]:
        raise ValueError("Invalid foreach=True with fused=True; choose one implementation")
    if group["differentiable"] and (group["foreach"] or group["fused"]):
        chosen = "fused" if group["fused"] else "foreach"
        raise ValueError(
            f"Invalid {chosen}=True with differentiable=True; only the single-tensor path "
            "supports autograd through the step (foreach=False, fused=False)"
        )


def loss_tensor(loss: Any, variant: str) -> Tensor:
    """The loss E(t) as a float64 tensor, 0-dim or 1-D per stacked member (no host sync)."""
    if loss is None:
        raise RuntimeError(
            f"Rprop variant {variant!r} needs the loss at every step: call "
            "optimizer.step(closure) with a closure that re-evaluates the model, calls "
            "backward() and returns the loss"
        )
    if isinstance(loss, Tensor):
        if loss.numel() == 1:
            return loss.detach().reshape(()).to(torch.float64)
        if loss.dim() != 1:
            raise RuntimeError(
                f"Rprop variant {variant!r} needs a scalar loss from the closure, or a 1-D "
                f"tensor of per-member losses for stacked params; got shape {tuple(loss.shape)}"
            )
        return loss.detach().to(torch.float64)
    return torch.tensor(float(loss), dtype=torch.float64)


def check_member_dim(index: int, param: Tensor, group: dict[str, Any]) -> None:
    """Per-member hyperparameters of S members need every parameter stacked along a leading
    dim of size S; the message names the argument and both lengths."""
    members = member_count(group)
    if members is not None and (param.dim() == 0 or param.shape[0] != members):
        name = next(iter(member_values(group)))
        # torch's message first for lr: to torch, a Tensor lr of several values is an error
        lead = "Tensor lr must be 1-element or hold one value per stacked member; " * (name == "lr")
        raise ValueError(
            f"{lead}Invalid {name}: {members} per-member values, but parameter {index} of its "
            f"group has shape {tuple(param.shape)}: per-member hyperparameters need every "
            "parameter "
            f"stacked along a leading dim of size {members}"
        )


def check_members(index: int, param: Tensor, loss_shape: tuple[int, ...]) -> None:
    """A 1-D loss of S members needs every parameter stacked along a leading dim of size S."""
    if len(loss_shape) == 1 and (param.dim() == 0 or param.shape[0] != loss_shape[0]):
        raise RuntimeError(
            f"the closure returned {loss_shape[0]} per-member losses, so every parameter needs "
            f"a leading dim of size {loss_shape[0]}; parameter {index} of its group has shape "
            f"{tuple(param.shape)}"
        )
