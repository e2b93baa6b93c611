"""Optimizers whose hyperparameters differ per stacked member: a grid trained as one stack.

A hyperparameter grid trains as one stacked model (:mod:`rprop_bench.seed_batch`): every
parameter carries the S members along a leading dim, and member k must follow the trajectory
it would follow alone, with its own hyperparameters. :func:`member_optimizer` builds that
optimizer from the S members' keyword arguments:

- our :class:`~rprop_bench.optim.Rprop` takes Δ0, η±, Δmin and Δmax as ``(S,)`` tensors
  natively (one kernel call per tensor for every member, in the fused path);
- torch's optimizers take one value per param group, so :class:`MemberGroups` gives each
  member its own param group over views of the stack (``p.detach()[k]``, which shares the
  stack's storage) and hands each view its slice of the stack's gradient before every step.
  The arithmetic is torch's own, member by member, so each member equals its solo run bit for
  bit whenever its gradients do (``tests/test_members.py``). The price is torch's
  per-param-group loop: S groups step one after another (``experiments/bench_grid.py``
  measures it against one optimizer over the whole stack).

Arguments that are not elementwise numbers (booleans such as ``nesterov``, ``amsgrad``,
``centered``, ``variant``) must be equal across members: they change which operations run.

This module is a leaf like the rest of :mod:`rprop_bench.optim`: no Hydra, no MLflow.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer

from rprop_bench.optim.rprop import Rprop

__all__ = [
    "MemberBaselines",
    "MemberGroups",
    "grid_arguments",
    "member_optimizer",
    "varying_arguments",
]


class MemberGroups(Optimizer):
    """A torch optimizer with one param group per stacked member, over views of the stack.

    Args:
        params: the stacked parameters (every one with leading dim S).
        kind: the torch optimizer class (SGD, Adam, AdamW, RMSprop, torch's Rprop ...).
        member_kwargs: S dicts, member k's keyword arguments for ``kind``.

    ``zero_grad`` and the closure act on the stack; ``step`` gives each member's views their
    slice of the stack's gradients, then steps the inner optimizer once (every group).
    """

    def __init__(
        self, params: Sequence[Tensor], kind: type[Optimizer], member_kwargs: Sequence[dict]
    ) -> None:
        self.stacked = list(params)
        members = len(member_kwargs)
        for index, param in enumerate(self.stacked):
            if param.dim() == 0 or param.shape[0] != members:
                raise ValueError(
                    f"{members} members' hyperparameters, but parameter {index} has shape "
                    f"{tuple(param.shape)}: every parameter needs a leading dim of size {members}"
                )
        super().__init__(self.stacked, {})
        self.views = [[p.detach()[k] for p in self.stacked] for k in range(members)]
        groups = zip(self.views, member_kwargs, strict=True)
        self.inner = kind([{"params": views, **kwargs} for views, kwargs in groups])  # type: ignore[call-arg]

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Evaluate the closure (if any) on the stack, then step every member's group."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for k, views in enumerate(self.views):
            for view, param in zip(views, self.stacked, strict=True):
                view.grad = param.grad[k] if param.grad is not None else None
        self.inner.step()
        return loss


class MemberBaselines(Optimizer):
    """SGD (with momentum), Adam, AdamW and RMSprop with hyperparameters per stacked member.

    torch's single-tensor arithmetic (``torch.optim._functional``'s order of operations), with
    each member's hyperparameter as a ``(S, 1, ..., 1)`` tensor where torch has a scalar, and
    the step-dependent scalars (Adam's bias corrections) computed per member in Python floats
    as torch computes them. A handful of ops per tensor for all S members, where
    :class:`MemberGroups` loops over S param groups. Two of torch's ops fuse a product into an
    add with one rounding (``add(x, alpha=a)`` is an FMA in its vector loop); a per-member
    factor cannot be passed so, and the product is rounded first. A member may thus differ from
    its solo run in the last bit of a step, as a batched forward pass does: the harness uses
    this class in batched mode and :class:`MemberGroups` in exact mode, and
    ``tests/test_members.py`` pins the tolerances.

    Supported: SGD (``lr, momentum, dampening, weight_decay``; ``nesterov`` shared), Adam and
    AdamW (``lr, betas, eps, weight_decay``; ``amsgrad=False``), RMSprop (``lr, alpha, eps,
    weight_decay, momentum``; ``centered`` shared). ``maximize`` and ``foreach``/``fused``
    flags must be left at their defaults.
    """

    SUPPORTED: ClassVar[dict[type[Optimizer], tuple[str, ...]]] = {
        torch.optim.SGD: ("lr", "momentum", "dampening", "weight_decay"),
        torch.optim.Adam: ("lr", "betas.0", "betas.1", "eps", "weight_decay"),
        torch.optim.AdamW: ("lr", "betas.0", "betas.1", "eps", "weight_decay"),
        torch.optim.RMSprop: ("lr", "alpha", "eps", "weight_decay", "momentum"),
    }
    #: Flags that must be the same for every member, with the value this class implements
    #: (``None``: any, but equal).
    SHARED_FLAGS: ClassVar[dict[str, Any]] = {
        "nesterov": None,
        "centered": None,
        "amsgrad": False,
        "maximize": False,
        "foreach": None,
        "fused": None,
        "differentiable": False,
        "capturable": False,
    }

    def __init__(
        self, params: Sequence[Tensor], kind: type[Optimizer], member_kwargs: Sequence[dict]
    ) -> None:
        if kind not in self.SUPPORTED:
            raise ValueError(f"no per-member version of {kind.__name__}")
        members = len(member_kwargs)
        self.kind = kind
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(kind).parameters.items()
            if parameter.default is not inspect.Parameter.empty
        }
        flat = [_flatten({**defaults, **kwargs}) for kwargs in member_kwargs]
        for flag, wanted in self.SHARED_FLAGS.items():
            if flag in flat[0] and wanted is not None and flat[0][flag] != wanted:
                raise ValueError(f"{kind.__name__}({flag}={flat[0][flag]!r}) has no per-member "
                                 f"version here; {flag}={wanted!r} only")  # fmt: skip
        self.flags = {f: flat[0].get(f) for f in self.SHARED_FLAGS}
        self.values = {name: [float(one[name]) for one in flat] for name in self.SUPPORTED[kind]}
        self.members = members
        for index, param in enumerate(params):
            if param.dim() == 0 or param.shape[0] != members:
                raise ValueError(
                    f"{members} members' hyperparameters, but parameter {index} has shape "
                    f"{tuple(param.shape)}: every parameter needs a leading dim of size {members}"
                )
        super().__init__(list(params), {})
        self._steps = 0

    def _column(self, values: Sequence[float], like: Tensor) -> Tensor:
        return (
            torch.tensor(values, dtype=torch.float64)
            .to(like.device, like.dtype)
            .reshape(-1, *([1] * (like.dim() - 1)))
        )

    def _per_member(self, name: str, like: Tensor) -> Tensor:
        return self._column(self.values[name], like)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One step of every member (the closure, if any, is evaluated first on the stack)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._steps += 1
        update = {
            torch.optim.SGD: self._sgd,
            torch.optim.Adam: self._adam,
            torch.optim.AdamW: self._adam,
            torch.optim.RMSprop: self._rmsprop,
        }[self.kind]
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    update(param, param.grad, self.state[param])
        return loss

    def _weight_decay(self, param: Tensor, grad: Tensor) -> Tensor:
        if any(self.values["weight_decay"]):
            return grad.add(param * self._per_member("weight_decay", param))
        return grad

    def _sgd(self, param: Tensor, grad: Tensor, state: dict) -> None:
        grad = self._weight_decay(param, grad)
        if any(self.values["momentum"]):
            momentum = self._per_member("momentum", param)
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.clone(grad).detach()
            else:
                buf = state["momentum_buffer"].mul_(momentum)
                if any(self.values["dampening"]):
                    buf.add_(grad * self._column([1 - d for d in self.values["dampening"]], grad))
                else:
                    buf.add_(grad)
            buf = state["momentum_buffer"]
            # a member without momentum steps on its own gradient, as torch's SGD does
            plain = torch.tensor([m == 0 for m in self.values["momentum"]], device=grad.device)
            plain = plain.reshape(-1, *([1] * (grad.dim() - 1)))
            moved = grad.add(buf * momentum) if self.flags["nesterov"] else buf
            grad = torch.where(plain, grad, moved)
        param.add_(grad * self._column([-lr for lr in self.values["lr"]], param))

    def _adam(self, param: Tensor, grad: Tensor, state: dict) -> None:
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["step"] += 1
        step = state["step"]
        lrs, beta1, beta2 = self.values["lr"], self.values["betas.0"], self.values["betas.1"]
        if self.kind is torch.optim.AdamW:
            if any(self.values["weight_decay"]):
                decays = zip(lrs, self.values["weight_decay"], strict=True)
                param.mul_(self._column([1 - lr * wd for lr, wd in decays], param))
        else:
            grad = self._weight_decay(param, grad)
        state["exp_avg"].lerp_(grad, self._column([1 - b for b in beta1], param))
        state["exp_avg_sq"].mul_(self._column(beta2, param)).add_(
            grad * self._column([1 - b for b in beta2], param) * grad
        )
        # per member in Python floats, as torch computes its scalars
        step_sizes = [lr / (1 - b**step) for lr, b in zip(lrs, beta1, strict=True)]
        correction2_sqrt = [(1 - b**step) ** 0.5 for b in beta2]
        denom = (state["exp_avg_sq"].sqrt() / self._column(correction2_sqrt, param)).add_(
            self._per_member("eps", param)
        )
        param.add_(state["exp_avg"] * self._column([-s for s in step_sizes], param) / denom)

    def _rmsprop(self, param: Tensor, grad: Tensor, state: dict) -> None:
        if not state:
            state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            if any(self.values["momentum"]):
                state["momentum_buffer"] = torch.zeros_like(param)
            if self.flags["centered"]:
                state["grad_avg"] = torch.zeros_like(param)
        grad = self._weight_decay(param, grad)
        alpha = self.values["alpha"]
        square_avg = state["square_avg"].mul_(self._column(alpha, param))
        square_avg.add_(grad * self._column([1 - a for a in alpha], param) * grad)
        if self.flags["centered"]:
            grad_avg = state["grad_avg"].lerp_(grad, self._column([1 - a for a in alpha], param))
            avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
        else:
            avg = square_avg.sqrt()
        avg = avg.add_(self._per_member("eps", param))
        neg_lr = self._column([-lr for lr in self.values["lr"]], param)
        if any(self.values["momentum"]):
            buf = state["momentum_buffer"].mul_(self._per_member("momentum", param))
            buf.add_(grad / avg)
            plain = torch.tensor([m == 0 for m in self.values["momentum"]], device=grad.device)
            plain = plain.reshape(-1, *([1] * (grad.dim() - 1)))
            param.add_(torch.where(plain, neg_lr * grad / avg, buf * neg_lr))
        else:
            param.add_(neg_lr * grad / avg)


#: The keyword arguments (top level; a pair counts as one) that may differ per member of a
#: stack, by optimizer class: what :func:`member_optimizer` takes per member. Exact classes
#: only: a subclass may use them otherwise.
_GRID_ARGUMENTS: dict[type[Optimizer], tuple[str, ...]] = {
    Rprop: ("lr", "etas", "step_sizes"),
    torch.optim.Rprop: ("lr", "etas", "step_sizes"),
    **{
        kind: tuple(dict.fromkeys(name.split(".")[0] for name in names))
        for kind, names in MemberBaselines.SUPPORTED.items()
    },
}


def grid_arguments(kind: type) -> tuple[str, ...]:
    """The keyword arguments of optimizer class ``kind`` that stacked members may differ in
    (``()`` for a class without per-member support: only its seeds stack)."""
    return _GRID_ARGUMENTS.get(kind, ())


def varying_arguments(member_kwargs: Sequence[dict]) -> dict[str, list[Any]]:
    """The keyword arguments whose values differ across members (a tuple's items apart:
    ``etas.1``), each with its S values."""
    flat = [_flatten(kwargs) for kwargs in member_kwargs]
    keys = {key for one in flat for key in one}
    varying = {}
    for key in sorted(keys):
        values = [one.get(key) for one in flat]
        if any(v != values[0] for v in values[1:]):
            varying[key] = values
    return varying


def _flatten(kwargs: dict) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in kwargs.items():
        if isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                flat[f"{key}.{i}"] = item
        else:
            flat[key] = value
    return flat


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def member_optimizer(
    kind: type[Optimizer],
    params: Sequence[Tensor],
    member_kwargs: Sequence[dict],
    *,
    exact: bool = False,
) -> Optimizer:
    """One optimizer over the stacked ``params`` in which member k has ``member_kwargs[k]``.

    Members that agree on every argument share one optimizer of ``kind`` (what seed stacking
    does); our Rprop takes the differing numbers as ``(S,)`` float64 tensors (bit-exact);
    SGD, Adam, AdamW and RMSprop get :class:`MemberBaselines` (last-bit tolerances), or with
    ``exact`` :class:`MemberGroups` (bit-exact, slower), as do other optimizers.

    Raises:
        ValueError: a non-numeric argument (a flag, a variant) that differs across members,
            named with its values.
    """
    varying = varying_arguments(member_kwargs)
    for key, values in varying.items():
        if not all(_is_number(v) for v in values):
            shown = sorted({repr(v) for v in values})
            raise ValueError(
                f"{kind.__name__} argument {key!r} differs across stacked members "
                f"({', '.join(shown)}), but only numbers can differ per member: it changes "
                "which operations run"
            )
    if not varying:
        return kind(list(params), **member_kwargs[0])
    if kind is Rprop:
        return Rprop(list(params), **_rprop_member_kwargs(member_kwargs, varying))
    if not exact and kind in MemberBaselines.SUPPORTED:
        try:
            return MemberBaselines(params, kind, member_kwargs)
        except ValueError:  # a flag it has no version of (amsgrad, maximize ...): torch's own
            pass
    return MemberGroups(params, kind, member_kwargs)


def _rprop_member_kwargs(member_kwargs: Sequence[dict], varying: dict[str, list[Any]]) -> dict:
    """Our Rprop's arguments with every differing number as a ``(S,)`` float64 tensor."""
    kwargs = dict(member_kwargs[0])

    def value(key: str, fallback: Any) -> Any:
        if key in varying:
            return torch.tensor([float(v) for v in varying[key]], dtype=torch.float64)
        return fallback

    for name in ("etas", "step_sizes"):
        if name in kwargs or any(f"{name}.{i}" in varying for i in (0, 1)):
            pair = tuple(kwargs.get(name, inspect.signature(Rprop).parameters[name].default))
            kwargs[name] = tuple(value(f"{name}.{i}", pair[i]) for i in (0, 1))
    if "lr" in varying:
        kwargs["lr"] = value("lr", None)
    unknown = set(varying) - {"lr", "etas.0", "etas.1", "step_sizes.0", "step_sizes.1"}
    if unknown:
        raise ValueError(
            f"Rprop arguments {sorted(unknown)} cannot differ per stacked member; only lr, "
            "etas and step_sizes can"
        )
    return kwargs
