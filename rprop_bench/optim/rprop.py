"""The Rprop family as a drop-in :class:`torch.optim.Optimizer`.

Three layers, as in ``torch.optim``: the :class:`Rprop` class here does the bookkeeping
(param groups, lazily created per-parameter state, ``state_dict``); in
:mod:`rprop_bench.optim.functional`, :func:`rprop` picks an implementation and the single-,
multi-tensor and fused implementations hold the maths.

References:
    M. Riedmiller and H. Braun. A direct adaptive method for faster backpropagation learning:
    the RPROP algorithm. IEEE International Conference on Neural Networks, 1993.

    C. Igel and M. Hüsken. Improving the Rprop learning algorithm. Second International
    Symposium on Neural Computation (NC 2000), 2000.

    C. Igel and M. Hüsken. Empirical evaluation of the improved Rprop learning algorithms.
    Neurocomputing 50:105-123, 2003.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from rprop_bench import schema
from rprop_bench.optim.checks import (
    check_member_dim,
    check_members,
    loss_tensor,
    lr_value,
    validate_group,
)
from rprop_bench.optim.functional import (
    BACKTRACKING_VARIANTS,
    LOSS_VARIANTS,
    RpropHyperparams,
    Variant,
    check_fusable,
    per_member,
    rprop,
)

__all__ = ["VARIANTS", "Rprop"]

#: The four classic variants, by the names the papers use (defined once, in the contract
#: module, which imports nothing).
VARIANTS: tuple[str, ...] = schema.RPROP_VARIANTS

# Names of the per-parameter state. `step`, `prev` and `step_size` mean what they mean in
# torch.optim.Rprop, so state dicts move between the two for iRprop-.
STATE_STEP = "step"
STATE_PREV = "prev"
STATE_STEP_SIZE = "step_size"
STATE_WEIGHT_CHANGE = "weight_change"  # Rprop+/iRprop+: the last weight change Δw(t-1)
STATE_PREV_LOSS = "prev_loss"  # iRprop+: the loss E(t-1) seen at this parameter's last step


def _scalar_dtype(fused: bool = False) -> torch.dtype:
    """The dtype of the step count, as in torch: float64 under a float64 default dtype, else
    float32, and float32 always with ``fused=True`` (torch's load_state_dict casts it so)."""
    if fused or torch.get_default_dtype() != torch.float64:
        return torch.float32
    return torch.float64


class Rprop(Optimizer):
    r"""Resilient backpropagation, in all four classic variants.

    Every weight :math:`w` has its own step size :math:`\Delta`, adapted from the *sign* of
    successive gradients only. With :math:`g` the gradient (negated when ``maximize``),
    :math:`p` the stored previous gradient and :math:`s = \operatorname{sign}(g \cdot p)`,
    one step does, per weight::

        state before the first step: p = 0, Δ = lr, Δw = 0, E(t-1) = +inf

        if   s > 0: Δ ← min(Δ·η+, Δmax)                # same sign: accelerate
        elif s < 0: Δ ← max(Δ·η-, Δmin)                # sign flip: we jumped over a minimum
        else:       Δ unchanged                        # first step, or a zero gradient

        rprop-   (Riedmiller & Braun 1993, without backtracking):
                    w ← w − sign(g)·Δ;  p ← g
        irprop-  (Igel & Hüsken 2000; what torch.optim.Rprop implements):
                    if s < 0: g ← 0                    # no move on a flip
                    w ← w − sign(g)·Δ;  p ← g
        rprop+   (Riedmiller & Braun 1993, weight backtracking):
                    if s < 0: w ← w − Δw;  Δw ← 0;  p ← 0     # undo the last change
                    else:     Δw ← −sign(g)·Δ;  w ← w + Δw;  p ← g
        irprop+  (Igel & Hüsken 2000):
                    if s < 0: if E(t) > E(t−1): w ← w − Δw    # undo only if the loss rose
                              Δw ← 0;  p ← 0
                    else:     Δw ← −sign(g)·Δ;  w ← w + Δw;  p ← g
                    E(t−1) ← E(t)

    A zero gradient therefore keeps Δ and moves nothing. ``irprop+`` needs the loss
    :math:`E(t)` at the current weights, so its ``step`` must be given a closure that
    re-evaluates the model, calls ``backward()`` and returns the loss; the other variants
    accept a closure and do not need one.

    **Stacked members.** To train S independent copies of a model at once (e.g. S seeds,
    each parameter stacked along a new leading dim of size S), the closure of ``irprop+`` may
    return a 1-D tensor of the S members' losses instead of a scalar. Every parameter then
    needs a leading dim of size S, ``prev_loss`` has shape ``(S,)`` and member k's weights
    are undone only where member k's loss rose: each member follows exactly the trajectory
    it would follow alone (the other variants are elementwise and need nothing extra).
    Stacked members may also differ in their hyperparameters (a grid trained as one stack):
    ``lr``, each of ``etas`` and each of ``step_sizes`` may be a 1-D tensor of S values, one
    per member, and member k then follows exactly the trajectory it would follow alone with
    its own scalars, in every implementation (single, foreach, fused). Give them as float64
    tensors: a value is rounded to the parameter's dtype as a Python float is.

    Per-parameter state uses torch's names where the meaning is the same (``step``,
    ``prev``, ``step_size``): a state dict of ``torch.optim.Rprop`` loads into
    ``Rprop(variant="irprop-")`` and back. The backtracking variants add ``weight_change``
    (Δw) and ``irprop+`` adds ``prev_loss`` (E(t−1)). Complex parameters are treated as torch
    treats them: real and imaginary parts are independent weights.

    Args:
        params: parameters to optimize, or dicts defining param groups (each group may set
            its own hyperparameters, ``variant`` included).
        lr: initial step size Δ0 of every weight, a float or a 1-element Tensor (as torch
            allows, for schedulers and compiled steps); must lie within ``step_sizes``.
        etas: ``(eta_minus, eta_plus)``; Δ is multiplied by ``eta_minus`` where the gradient
            sign flipped and by ``eta_plus`` where it held (0 < eta_minus < 1 < eta_plus).
        step_sizes: ``(step_size_min, step_size_max)``, the bounds Δ is kept within after
            every change. ``step_size_min = 0`` is legal, as in torch and in Igel & Hüsken
            (2003): a Δ that shrinks to 0 then stays 0 (only multiplications change it), and
            its weight moves no more.
        variant: ``"rprop+"``, ``"rprop-"``, ``"irprop+"`` or ``"irprop-"`` (the default,
            the same algorithm as ``torch.optim.Rprop``).
        maximize: maximize the objective instead of minimizing it.
        foreach: use the multi-tensor (``torch._foreach_*``) implementation.
        fused: use the one-pass kernel of :mod:`rprop_bench.optim.fused` (CPU float32/64;
            other tensors take the single-tensor path). With ``foreach`` and ``fused`` both
            ``None``, the fastest path for the parameters is picked: fused on CPU where a C
            compiler is present, else torch's rule (foreach on accelerators). Every path
            gives the same bits, non-finite gradients included (torch's ``sign(NaN) = 0``:
            a NaN product of gradients keeps Δ and moves nothing). Under ``torch.compile``
            the default is torch's rule, and ``fused=True`` runs the kernel as the custom op
            ``rprop_bench::fused_step``. Params on the meta device, or not floating point,
            are refused at ``step`` with ``fused=True``, as torch's fused optimizers do.
        capturable: as in torch: the step count lives on the param's device, and the step
            makes no host sync, so it can be captured in a CUDA graph. CPU params are refused
            at ``step``, as torch refuses them.
        differentiable: record the step in autograd (as torch's ``differentiable``), e.g.
            for meta-learning through the optimizer; the single-tensor path only.

    iRprop+'s E(t−1) stays float64 through ``state_dict``/``load_state_dict`` (torch casts
    the other state to the parameter's dtype), so a resumed bfloat16 run follows the
    uninterrupted one.

    Example:
        >>> import torch
        >>> w = torch.tensor([5.0], dtype=torch.float64, requires_grad=True)
        >>> opt = Rprop([w], lr=0.1, variant="irprop+")
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = (w**2).sum()
        ...     loss.backward()
        ...     return loss
        >>> for _ in range(100):
        ...     _ = opt.step(closure)
        >>> abs(w.item()) < 1e-3
        True
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50.0),
        *,
        variant: Variant = "irprop-",
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "etas": tuple(etas),
            "step_sizes": tuple(step_sizes),
            "variant": variant,
            "maximize": maximize,
            "foreach": foreach,
            "fused": fused,
            "capturable": capturable,
            "differentiable": differentiable,
        }
        validate_group(defaults)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group; its own hyperparameters are validated like the defaults."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["etas"] = tuple(group["etas"])
        group["step_sizes"] = tuple(group["step_sizes"])
        validate_group(group)
        for index, param in enumerate(group["params"]):
            check_member_dim(index, param, group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A state dict saved by torch.optim.Rprop has no `variant`: it is iRprop-.
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("variant", "irprop-")
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("fused", None)
            group.setdefault("capturable", False)
            group.setdefault("differentiable", False)
            # Very old state dicts hold `step` as a number; torch turns it back into a tensor.
            for p in group["params"]:
                p_state = self.state.get(p, {})
                if p_state and not torch.is_tensor(p_state.get(STATE_STEP)):
                    p_state[STATE_STEP] = torch.tensor(
                        float(p_state.get(STATE_STEP, 0)),
                        dtype=_scalar_dtype(bool(group["fused"])),
                        device=p.device if group["capturable"] else None,
                    )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict, keeping iRprop+'s E(t−1) in float64.

        torch's ``Optimizer.load_state_dict`` casts every state tensor but ``step`` to its
        parameter's dtype. E(t−1) is a loss, not a weight: cast to bfloat16 it would round,
        and a resumed run would then undo (or keep) other steps than the uninterrupted one.
        """
        loaded: list[dict[str, Any]] = []

        def capture(optimizer: Optimizer, final: dict[str, Any]) -> None:
            loaded.append(final)  # appended last: the dict after the caller's own pre-hooks

        handle = self.register_load_state_dict_pre_hook(capture)
        try:
            super().load_state_dict(state_dict)
        finally:
            handle.remove()
        final = loaded[-1] if loaded else state_dict
        saved_ids = [i for group in final["param_groups"] for i in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        saved_losses = {
            param: state[STATE_PREV_LOSS]
            for saved_id, param in zip(saved_ids, params, strict=False)
            if isinstance(state := final["state"].get(saved_id), dict)
            and isinstance(state.get(STATE_PREV_LOSS), Tensor)
        }
        for param, loss in saved_losses.items():
            self.state[param][STATE_PREV_LOSS] = loss.detach().to(
                dtype=torch.float64, device=param.device, copy=True
            )

    def _init_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        prevs: list[Tensor],
        step_sizes: list[Tensor],
        state_steps: list[Tensor],
        weight_changes: list[Tensor],
        prev_losses: list[Tensor],
        loss_shape: tuple[int, ...] | None,
    ) -> bool:
        """Collect the tensors of one group, creating state lazily; return has_complex.

        ``loss_shape`` is the shape of the group's E(t) for ``irprop+`` (``()``, or ``(S,)``
        per stacked member). Only the shape: torch.compile runs ``_init_group`` eagerly and
        would bake a tensor passed here into the graph as a constant.
        """
        variant = group["variant"]
        has_complex = False
        for index, p in enumerate(group["params"]):
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(
                    f"Rprop does not support sparse gradients (parameter {index} of its group); "
                    "use dense gradients, e.g. torch.nn.Embedding(..., sparse=False)"
                )
            if group["fused"] and not self.state.get(p):
                # Once, before the state exists, so that a refused step leaves none.
                check_fusable([p])
            state = self.state[p]
            if not state:
                check_member_dim(index, p, group)
            has_complex |= torch.is_complex(p)
            params.append(p)
            grads.append(p.grad)
            self._init_state(state, p, group, index, loss_shape)
            prevs.append(state[STATE_PREV])
            step_sizes.append(state[STATE_STEP_SIZE])
            state_steps.append(state[STATE_STEP])
            if variant in BACKTRACKING_VARIANTS:
                weight_changes.append(state[STATE_WEIGHT_CHANGE])
            if variant in LOSS_VARIANTS:
                prev_losses.append(state[STATE_PREV_LOSS])
        return has_complex

    def _init_state(
        self,
        state: dict[str, Any],
        p: Tensor,
        group: dict[str, Any],
        index: int,
        loss_shape: tuple[int, ...] | None,
    ) -> None:
        """Create the state of parameter ``p`` that its variant needs and it lacks yet.

        A state dict from another variant (or from torch.optim.Rprop) gains only what is
        missing; the E(t-1) of ``irprop+`` must match the closure's loss shape.
        """
        variant = group["variant"]
        if len(state) == 0:
            # Same dtypes and devices as torch.optim.Rprop, so state dicts interchange.
            # capturable: the step count lives beside the param, as torch keeps it.
            state[STATE_STEP] = torch.zeros(
                (),
                dtype=_scalar_dtype(bool(group["fused"])),
                device=p.device if group["capturable"] else None,
            )
            state[STATE_PREV] = torch.zeros_like(p, memory_format=torch.preserve_format)
            lr = group["lr"]
            if isinstance(lr, Tensor) and lr.dim() == 1 and lr.numel() > 1:
                # Δ0 per stacked member: member k's slice starts at lr[k], rounded to the
                # param's dtype as full_like rounds a scalar.
                step_size = torch.zeros_like(p, memory_format=torch.preserve_format)
                real = torch.view_as_real(step_size) if p.is_complex() else step_size
                real.copy_(cast(Tensor, per_member(lr, real)).expand_as(real))
                state[STATE_STEP_SIZE] = step_size
            else:
                if p.is_complex():
                    lr = lr_value(lr)
                    fill: Any = complex(lr, lr)
                else:  # a Tensor lr fills without a host sync, as in torch
                    fill = lr.reshape(()) if isinstance(lr, Tensor) else lr
                state[STATE_STEP_SIZE] = torch.full_like(
                    p, fill, memory_format=torch.preserve_format
                )
        if variant in BACKTRACKING_VARIANTS and STATE_WEIGHT_CHANGE not in state:
            state[STATE_WEIGHT_CHANGE] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if variant in LOSS_VARIANTS:
            assert loss_shape is not None  # step() made it from the closure, or raised
            check_members(index, p, loss_shape)
            if STATE_PREV_LOSS not in state:
                state[STATE_PREV_LOSS] = torch.full(
                    loss_shape, math.inf, dtype=torch.float64, device=p.device
                )
            elif tuple(state[STATE_PREV_LOSS].shape) != loss_shape:
                raise RuntimeError(
                    f"parameter {index} of its group: the closure's loss has shape "
                    f"{loss_shape}, but earlier steps saw "
                    f"{tuple(state[STATE_PREV_LOSS].shape)}"
                )

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step and return the closure's loss (or ``None``).

        Args:
            closure: re-evaluates the model, calls ``backward()`` and returns the loss.
                Required by ``irprop+``, which compares the loss with the previous step's.
        """
        # As torch's optimizers do: autograd records the step only when differentiable.
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return self._step(closure)

    def _step(self, closure: Callable[[], Any] | None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            prevs: list[Tensor] = []
            step_sizes: list[Tensor] = []
            state_steps: list[Tensor] = []
            weight_changes: list[Tensor] = []
            prev_losses: list[Tensor] = []
            variant = group["variant"]
            current_loss = loss_tensor(loss, variant) if variant in LOSS_VARIANTS else None
            has_complex = self._init_group(
                group,
                params,
                grads,
                prevs,
                step_sizes,
                state_steps,
                weight_changes,
                prev_losses,
                tuple(current_loss.shape) if current_loss is not None else None,
            )
            if not params:
                continue
            eta_minus, eta_plus = group["etas"]
            size_min, size_max = group["step_sizes"]
            rprop(
                params,
                grads,
                prevs,
                step_sizes,
                state_steps,
                weight_changes=weight_changes,
                prev_losses=prev_losses,
                loss=current_loss,
                hyper=RpropHyperparams(
                    eta_minus=eta_minus,
                    eta_plus=eta_plus,
                    step_size_min=size_min,
                    step_size_max=size_max,
                    variant=variant,
                    maximize=group["maximize"],
                    differentiable=group["differentiable"],
                    capturable=group["capturable"],
                ),
                foreach=group["foreach"],
                fused=group["fused"],
                has_complex=has_complex,
            )
        return loss
