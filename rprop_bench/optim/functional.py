"""The maths of one Rprop step: the functional :func:`rprop` and its three implementations.

:func:`rprop` picks an implementation; :func:`_single_tensor_rprop` (a loop over tensors),
:func:`_multi_tensor_rprop` (``torch._foreach_*``) and :func:`_fused_rprop` (one pass of the C
kernel per tensor, :mod:`rprop_bench.optim.fused`) give the same bits. The class
:class:`rprop_bench.optim.Rprop` does the bookkeeping around them (param groups, state,
``state_dict``), as in ``torch.optim``. The rules, with their papers, are in its docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer

from rprop_bench.optim.fused import (
    fused_kernel_available,
    fused_step,
    fused_step_op,
    kernel_covers,
    load_fused_kernel,
)

__all__ = ["BACKTRACKING_VARIANTS", "LOSS_VARIANTS", "RpropHyperparams", "Variant", "rprop"]

Variant = Literal["rprop+", "rprop-", "irprop+", "irprop-"]
#: Variants with weight backtracking, which remember the last weight change.
BACKTRACKING_VARIANTS: frozenset[str] = frozenset({"rprop+", "irprop+"})
#: Variants that need the loss E(t) at every step (passed through ``step(closure)``).
LOSS_VARIANTS: frozenset[str] = frozenset({"irprop+"})


@dataclass(frozen=True)
class RpropHyperparams:
    """The hyperparameters of one param group, validated.

    Attributes:
        eta_minus: factor η- applied to Δ where the gradient sign flipped (0 < η- < 1).
        eta_plus: factor η+ applied to Δ where the gradient kept its sign (η+ > 1).
        step_size_min: floor Δmin of every step size.
        step_size_max: ceiling Δmax of every step size.
        variant: one of :data:`VARIANTS`.
        maximize: ascend instead of descend (the gradient is negated first).
        differentiable: record the step in autograd (single-tensor path only).
        capturable: keep the step free of host syncs, with its state on the param's device
            (accelerators only, as in torch).
    """

    eta_minus: float | Tensor
    eta_plus: float | Tensor
    step_size_min: float | Tensor
    step_size_max: float | Tensor
    variant: Variant
    maximize: bool
    differentiable: bool = False
    capturable: bool = False

    @property
    def members(self) -> int | None:
        """S where any of η±, Δmin, Δmax holds one value per stacked member, else ``None``."""
        for value in (self.eta_minus, self.eta_plus, self.step_size_min, self.step_size_max):
            if isinstance(value, Tensor):
                return value.numel()
        return None

    def member_rows(self) -> Tensor:
        """η-, η+, Δmin and Δmax of every member as a ``(4, S)`` float64 CPU tensor (scalars
        repeated), what the fused kernel reads for a grid."""
        members = self.members
        assert members is not None
        values = (self.eta_minus, self.eta_plus, self.step_size_min, self.step_size_max)
        return torch.stack(
            [
                v.detach().to("cpu", torch.float64).reshape(members)
                if isinstance(v, Tensor)
                else torch.full((members,), float(v), dtype=torch.float64)
                for v in values
            ]
        ).contiguous()

    def kernel_arguments(self) -> dict[str, Any]:
        """The keyword arguments of the fused kernel (the same for every tensor of a group);
        per-member values go as ``member_hypers`` (the scalars are then placeholders)."""

        def scalar(value: float | Tensor) -> float:
            return 0.0 if isinstance(value, Tensor) else float(value)

        return {
            "eta_minus": scalar(self.eta_minus),
            "eta_plus": scalar(self.eta_plus),
            "step_size_min": scalar(self.step_size_min),
            "step_size_max": scalar(self.step_size_max),
            "variant": self.variant,
            "maximize": self.maximize,
            "undo_on_flip": self.variant == "rprop+",
        }


def per_member(value: float | Tensor, like: Tensor) -> float | Tensor:
    """A hyperparameter as ``like`` reads it: a scalar as is; one value per member (shape
    ``(S,)``) as a tensor of ``like``'s dtype shaped ``(S, 1, ..., 1)``, so that it broadcasts
    along the stacked leading dim. Cast so, each value rounds as the scalar would."""
    if not isinstance(value, Tensor):
        return value
    return value.to(like.device, like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def _clamp_step_sizes(sizes: Tensor, hyper: RpropHyperparams) -> None:
    """Δ ← clamp(Δ, Δmin, Δmax) in place, per member where the bounds are."""
    low, high = per_member(hyper.step_size_min, sizes), per_member(hyper.step_size_max, sizes)
    if isinstance(low, Tensor) or isinstance(high, Tensor):
        # clamp takes tensor bounds in pairs; the same max-then-min as the scalar clamp
        sizes.clamp_(
            torch.as_tensor(low, dtype=sizes.dtype, device=sizes.device),
            torch.as_tensor(high, dtype=sizes.dtype, device=sizes.device),
        )
    else:
        sizes.clamp_(low, high)


def _loss_rose(loss: Tensor, prev_loss: Tensor, like: Tensor) -> Tensor:
    """E(t) > E(t−1) as a bool mask that broadcasts against ``like`` (per member if 1-D)."""
    rose = loss.to(prev_loss.device).gt(prev_loss)
    return rose.reshape(-1, *([1] * (like.dim() - 1))) if rose.dim() == 1 else rose


def _default_foreach(params: Sequence[Tensor]) -> bool:
    """torch's rule: the multi-tensor path on accelerators, the single-tensor path on CPU."""
    from torch.optim.optimizer import _default_to_fused_or_foreach

    _, foreach = _default_to_fused_or_foreach(list(params), differentiable=False, use_fused=False)
    return foreach


def rprop(
    params: list[Tensor],
    grads: list[Tensor],
    prevs: list[Tensor],
    step_sizes: list[Tensor],
    state_steps: list[Tensor],
    *,
    weight_changes: list[Tensor],
    prev_losses: list[Tensor],
    loss: Tensor | None,
    hyper: RpropHyperparams,
    foreach: bool | None = None,
    fused: bool | None = None,
    has_complex: bool = False,
) -> None:
    """Functional Rprop step over lists of tensors; see :class:`Rprop` for the rules.

    ``weight_changes`` is used by the backtracking variants (else empty), ``prev_losses`` and
    ``loss`` by ``irprop+`` (else empty and ``None``). Updates every tensor in place.
    """
    # Under torch.compile dynamo marks every group capturable itself, as for torch's optimizers.
    if hyper.capturable and not torch.compiler.is_compiling():
        _check_capturable(params, state_steps)
    if hyper.differentiable:
        fused, foreach = False, False  # only the single-tensor path records autograd
    if fused is None and foreach is None:
        # Under torch.compile the default is torch's rule: the traced ops compile, and every
        # path gives the same bits. fused=True compiles too, as an opaque custom op.
        fused = (
            not torch.compiler.is_compiling()
            and all(p.device.type == "cpu" for p in params)
            and fused_kernel_available()
        )
    if fused:
        implementation = _fused_rprop  # params checked by check_fusable when their state began
    else:
        if foreach is None:
            foreach = _default_foreach(params)
        implementation = _multi_tensor_rprop if foreach else _single_tensor_rprop
    implementation(
        params,
        grads,
        prevs,
        step_sizes,
        state_steps,
        weight_changes,
        prev_losses,
        loss,
        hyper,
        has_complex,
    )


#: Devices whose steps can be captured in a graph (CUDA graphs and their likes), as in torch.
CAPTURABLE_DEVICES: tuple[str, ...] = ("cuda", "xpu", "hpu", "mtia")


def _check_capturable(params: list[Tensor], state_steps: list[Tensor]) -> None:
    """capturable=True needs params and step counts together on a capturable device."""
    for index, (param, step) in enumerate(zip(params, state_steps, strict=True)):
        if param.device.type not in CAPTURABLE_DEVICES or step.device != param.device:
            raise RuntimeError(
                "If capturable=True, params and state_steps must be on supported devices: "
                f"{list(CAPTURABLE_DEVICES)}; parameter {index} is on {param.device} and its "
                f"step on {step.device}"
            )


def check_fusable(params: list[Tensor]) -> None:
    """fused=True needs floating-point tensors with real storage (as torch's fused optimizers)."""
    for index, param in enumerate(params):
        if not (param.is_floating_point() or param.is_complex()) or param.device.type == "meta":
            raise RuntimeError(
                "`fused=True` requires all the params to be floating point Tensors of "
                f"supported devices (any but meta); parameter {index} is {param.dtype} on "
                f"{param.device}"
            )


def _step_size_factors(signs: Tensor, hyper: RpropHyperparams) -> Tensor:
    """Turn sign(g·p) into Δ's factor in place: η+ where > 0, η- where < 0, 1 where 0.

    The same masked writes as torch.optim.Rprop, in the parameter's dtype, so Δ·factor rounds
    exactly as torch's does (bfloat16 included). η± > 0, so the order of writes is safe.
    """
    eta_plus, eta_minus = per_member(hyper.eta_plus, signs), per_member(hyper.eta_minus, signs)
    if isinstance(eta_plus, Tensor) or isinstance(eta_minus, Tensor):
        # One value per member: the same values written, through where() (masked_fill takes
        # one value); η± cast to the dtype first, as masked_fill casts its scalar.
        factors = torch.where(signs.lt(0), eta_minus, torch.ones((), dtype=signs.dtype))
        return signs.copy_(torch.where(signs.gt(0), eta_plus, factors))
    signs.masked_fill_(signs.gt(0), eta_plus)
    signs.masked_fill_(signs.lt(0), eta_minus)
    signs.masked_fill_(signs.eq(0), 1)
    return signs


def _single_tensor_rprop(
    params: list[Tensor],
    grads: list[Tensor],
    prevs: list[Tensor],
    step_sizes: list[Tensor],
    state_steps: list[Tensor],
    weight_changes: list[Tensor],
    prev_losses: list[Tensor],
    loss: Tensor | None,
    hyper: RpropHyperparams,
    has_complex: bool,
) -> None:
    backtracking = hyper.variant in BACKTRACKING_VARIANTS
    for i, param in enumerate(params):
        grad = grads[i]
        prev = prevs[i]
        step_size = step_sizes[i]
        weight_change = weight_changes[i] if backtracking else None
        state_steps[i] += 1
        if torch.is_complex(param):
            param = torch.view_as_real(param)
            grad = torch.view_as_real(grad)
            prev = torch.view_as_real(prev)
            step_size = torch.view_as_real(step_size)
            if weight_change is not None:
                weight_change = torch.view_as_real(weight_change)
        if hyper.maximize:
            grad = grad.neg()

        # differentiable: prev is overwritten below, so the product must not save it itself.
        signs = grad.mul(prev.clone() if hyper.differentiable else prev).sign_()
        flipped = signs.lt(0)
        _clamp_step_sizes(step_size.mul_(_step_size_factors(signs, hyper)), hyper)

        if hyper.variant == "rprop-":
            param.addcmul_(grad.sign(), step_size, value=-1)
            prev.copy_(grad)
            continue

        grad = grad.masked_fill(flipped, 0)
        if hyper.variant == "irprop-":
            param.addcmul_(grad.sign(), step_size, value=-1)
            prev.copy_(grad)
            continue

        assert weight_change is not None
        change = grad.sign().mul_(step_size).neg_()
        if hyper.variant == "rprop+":
            undo = flipped
        else:
            assert loss is not None
            # Not in place: `grad.masked_fill(flipped, 0)` saved the mask for autograd.
            undo = flipped.logical_and(_loss_rose(loss, prev_losses[i], flipped))
            prev_losses[i].copy_(loss)
        # Where we undo, the change applied this step is −Δw(t−1); elsewhere on a flip it is 0.
        param.add_(torch.where(undo, weight_change.neg(), change))
        weight_change.copy_(change)
        prev.copy_(grad)


def _multi_tensor_rprop(
    params: list[Tensor],
    grads: list[Tensor],
    prevs: list[Tensor],
    step_sizes: list[Tensor],
    state_steps: list[Tensor],
    weight_changes: list[Tensor],
    prev_losses: list[Tensor],
    loss: Tensor | None,
    hyper: RpropHyperparams,
    has_complex: bool,
) -> None:
    backtracking = hyper.variant in BACKTRACKING_VARIANTS
    tensor_lists: list[list[Tensor]] = [params, grads, prevs, step_sizes, state_steps]
    if backtracking:
        tensor_lists.append(weight_changes)
    if hyper.variant in LOSS_VARIANTS:
        tensor_lists.append(prev_losses)
    grouped = Optimizer._group_tensors_by_device_and_dtype(tensor_lists)  # type: ignore[arg-type]
    for group_lists, _ in grouped.values():
        group_params, group_grads, group_prevs, group_sizes, group_steps = (
            cast(list[Tensor], t) for t in group_lists[:5]
        )
        group_changes = cast(list[Tensor], group_lists[5]) if backtracking else []
        group_prev_losses = cast(list[Tensor], group_lists[-1]) if loss is not None else []

        if group_steps[0].is_cpu:
            # Wrap the 1 once; a Python scalar would be wrapped per tensor on CPU.
            torch._foreach_add_(group_steps, torch.tensor(1.0), alpha=1.0)
        else:
            torch._foreach_add_(group_steps, 1)

        if has_complex:
            group_params, group_grads, group_prevs, group_sizes, group_changes = (
                [torch.view_as_real(t) if torch.is_complex(t) else t for t in tensors]
                for tensors in (group_params, group_grads, group_prevs, group_sizes, group_changes)
            )
        if hyper.maximize:
            group_grads = list(torch._foreach_neg(group_grads))

        flipped = _foreach_adapt_step_sizes(group_grads, group_prevs, group_sizes, hyper)
        if hyper.variant != "rprop-":
            group_grads = [g.masked_fill(f, 0) for g, f in zip(group_grads, flipped, strict=True)]
        grad_signs = torch._foreach_sign(group_grads)

        if not backtracking:
            torch._foreach_addcmul_(group_params, grad_signs, group_sizes, value=-1)
            torch._foreach_copy_(group_prevs, group_grads)
            continue

        _foreach_backtracking_step(
            group_params, grad_signs, group_sizes, group_changes, flipped,
            group_prev_losses, loss, hyper,
        )  # fmt: skip
        torch._foreach_copy_(group_prevs, group_grads)


def _foreach_adapt_step_sizes(
    grads: list[Tensor], prevs: list[Tensor], sizes: list[Tensor], hyper: RpropHyperparams
) -> list[Tensor]:
    """Δ ← clamp(Δ · factor(sign(g·prev)), Δmin, Δmax) for every tensor; return where the
    gradient's sign flipped (g·prev < 0)."""
    signs = torch._foreach_mul(grads, prevs)
    torch._foreach_sign_(signs)
    flipped = [s.lt(0) for s in signs]
    for s in signs:
        _step_size_factors(s, hyper)
    torch._foreach_mul_(sizes, signs)
    if hyper.members is None:
        torch._foreach_clamp_min_(sizes, cast(float, hyper.step_size_min))
        torch._foreach_clamp_max_(sizes, cast(float, hyper.step_size_max))
    else:  # bounds per member broadcast along dim 0: one clamp per tensor
        for size in sizes:
            _clamp_step_sizes(size, hyper)
    return flipped


def _foreach_backtracking_step(
    params: list[Tensor],
    grad_signs: tuple[Tensor, ...],
    sizes: list[Tensor],
    last_changes: list[Tensor],
    flipped: list[Tensor],
    prev_losses: list[Tensor],
    loss: Tensor | None,
    hyper: RpropHyperparams,
) -> None:
    """Rprop+ and iRprop+: step by −sign(g)·Δ, except where the step is undone: there the
    weight goes back by Δw(t−1) (Rprop+ on every flip; iRprop+ on a flip when E rose)."""
    changes = torch._foreach_mul(grad_signs, sizes)
    torch._foreach_neg_(changes)
    if hyper.variant == "rprop+":
        undo = flipped
    else:
        assert loss is not None
        undo = [
            f.logical_and_(_loss_rose(loss, prev_loss, f))
            for f, prev_loss in zip(flipped, prev_losses, strict=True)
        ]
        for prev_loss in prev_losses:
            prev_loss.copy_(loss)
    applied = [
        torch.where(u, last.neg(), change)
        for u, last, change in zip(undo, last_changes, changes, strict=True)
    ]
    torch._foreach_add_(params, applied)
    torch._foreach_copy_(last_changes, changes)


def _fused_rprop(
    params: list[Tensor],
    grads: list[Tensor],
    prevs: list[Tensor],
    step_sizes: list[Tensor],
    state_steps: list[Tensor],
    weight_changes: list[Tensor],
    prev_losses: list[Tensor],
    loss: Tensor | None,
    hyper: RpropHyperparams,
    has_complex: bool,
) -> None:
    """One kernel call per tensor; tensors the kernel does not cover take the single path.

    Under torch.compile the kernel is called through the custom op ``rprop_bench::fused_step``
    (opaque to the compiler, in place), so a compiled step needs no graph break for it.
    """
    compiling = torch.compiler.is_compiling()
    kernel = None if compiling else load_fused_kernel()
    available = fused_kernel_available() if compiling else kernel is not None
    backtracking = hyper.variant in BACKTRACKING_VARIANTS
    hyperparameters = hyper.kernel_arguments()  # the same for every tensor: built once
    member_hypers = hyper.member_rows() if hyper.members is not None else None
    for i, param in enumerate(params):
        tensors = [param, grads[i], prevs[i], step_sizes[i]]
        if backtracking:
            tensors.append(weight_changes[i])
        if torch.is_complex(param):
            tensors = [torch.view_as_real(t) for t in tensors]
        if not available or not kernel_covers(*tensors):
            changes = [weight_changes[i]] if backtracking else []
            losses = [prev_losses[i]] if loss is not None else []
            one = ([param], [grads[i]], [prevs[i]], [step_sizes[i]], [state_steps[i]])
            _single_tensor_rprop(*one, changes, losses, loss, hyper, has_complex)
            continue
        state_steps[i] += 1
        undo_per_member = None
        if hyper.variant == "irprop+":
            assert loss is not None
            # One flag per member (a 1-D loss), read by the kernel from the bool tensor itself:
            # one call for every member, and no host sync. A 0-dim loss is one member.
            undo_per_member = loss.gt(prev_losses[i]).reshape(-1).to("cpu")
            prev_losses[i].copy_(loss)
        weight_change = tensors[4] if backtracking else None
        if compiling:
            fused_step_op(
                *tensors[:4], weight_change, undo_per_member, member_hypers, **hyperparameters
            )
        else:
            assert kernel is not None
            param_, grad_, prev_, size_ = tensors[:4]
            fused_step(kernel, param_, grad_, prev_, size_, weight_change,
                       undo_per_member=undo_per_member, member_hypers=member_hypers,
                       **hyperparameters)  # fmt: skip
