"""Non-finite gradients and losses: every implementation gives torch's bits.

torch's ``sign(NaN)`` is 0, so in torch.optim.Rprop a NaN product of gradients (a NaN
gradient, or ±inf times a stored zero) keeps Δ and moves nothing, and an infinite gradient
moves by ±Δ. The fused kernel once turned such products into NaN step sizes for good; these
tables pin every path (single, foreach, fused, the default, and the fused kernel's stacked
members) to the single-tensor path, and iRprop- to torch.optim.Rprop itself, bit for bit.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rprop_bench.optim import VARIANTS, Rprop

NAN, INF = math.nan, math.inf
DTYPES = [torch.float32, torch.float64]
# Every path must match the single-tensor one; "default" is what fused=None picks (fused on CPU).
PATHS = {
    "single": {"foreach": False, "fused": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
    "default": {},
}

# (name, gradients per step): 6 weights, each column its own situation. Several steps, so
# that NaN and inf also reach the stored previous gradient (prev).
NONFINITE_CASES = [
    ("nan_on_the_first_step", [
        [NAN, 1.0, -1.0, 0.0, NAN, 2.0],
        [1.0, 1.0, 1.0, 1.0, -1.0, 2.0],
    ]),
    ("plus_inf_against_a_zero_prev", [
        [INF, INF, 1.0, 0.0, INF, -1.0],
        [1.0, -1.0, 1.0, 1.0, 0.0, 1.0],
    ]),
    ("minus_inf_against_a_zero_prev", [
        [-INF, -INF, 0.0, 1.0, -INF, 1.0],
        [-1.0, 1.0, 0.0, -1.0, 0.0, 1.0],
    ]),
    ("inf_after_a_flip", [
        [1.0, -1.0, 1.0, 2.0, 1.0, 1.0],
        [-1.0, 1.0, -1.0, -2.0, 1.0, 1.0],
        [INF, -INF, INF, -INF, INF, -INF],
    ]),
    ("inf_after_a_zero_gradient", [
        [0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        [INF, 0.0, -INF, NAN, INF, INF],
    ]),
    ("nan_then_finite_again", [
        [1.0, 1.0, -1.0, 1.0, 1.0, 1.0],
        [NAN, NAN, NAN, 1.0, -1.0, 1.0],
        [1.0, -1.0, 1.0, NAN, 1.0, -1.0],
        [1.0, -1.0, 1.0, 1.0, 1.0, -1.0],
    ]),
    ("mixtures_with_zeros", [
        [0.0, INF, NAN, -INF, 0.0, 1.0],
        [INF, 0.0, 0.0, NAN, -INF, NAN],
        [NAN, -INF, INF, 0.0, 0.0, 0.0],
        [1.0, 1.0, -1.0, -1.0, 1.0, -1.0],
    ]),
]  # fmt: skip
# iRprop+ compares losses; a NaN loss compares false (no undo), an inf one rises or falls.
LOSSES = [3.0, 4.0, NAN, 2.0, INF, 1.0]


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bits of a float tensor, so NaN payloads and signed zeros compare too."""
    return t.detach().contiguous().view(torch.int32 if t.dtype == torch.float32 else torch.int64)


def _state_bits(param: torch.Tensor, state: dict) -> dict[str, torch.Tensor]:
    snapshot = {"param": _bits(param)}
    for key in ("prev", "step_size", "weight_change"):
        if key in state:
            snapshot[key] = _bits(state[key])
    return snapshot


def _trajectory(
    make_optimizer, grads: list[list[float]], dtype: torch.dtype, losses: list[float]
) -> list[dict[str, torch.Tensor]]:
    """Step through given gradients (and losses, for iRprop+); the bits after every step."""
    w = torch.linspace(-1.0, 1.5, len(grads[0]), dtype=dtype).requires_grad_()
    opt = make_optimizer([w])
    out = []
    for step, grad in enumerate(grads):
        loss = torch.tensor(losses[step % len(losses)], dtype=dtype)

        def closure(grad=grad, loss=loss) -> torch.Tensor:
            w.grad = torch.tensor(grad, dtype=dtype)
            return loss

        opt.step(closure)
        out.append(_state_bits(w, opt.state[w]))
    return out


def _assert_same_bits(got: list[dict], want: list[dict]) -> None:
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.keys() == w.keys()
        for key in g:
            assert torch.equal(g[key], w[key]), f"step {step + 1}: {key} differs"


@pytest.mark.parametrize("path", [p for p in PATHS if p != "single"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("case", "grads"), NONFINITE_CASES)
def test_every_path_gives_the_single_tensor_bits_on_non_finite_gradients(
    case: str, grads: list, variant: str, dtype: torch.dtype, path: str
):
    def make(kwargs):
        return lambda params: Rprop(params, lr=0.25, variant=variant, **kwargs)

    got = _trajectory(make(PATHS[path]), grads, dtype, LOSSES)
    want = _trajectory(make(PATHS["single"]), grads, dtype, LOSSES)
    _assert_same_bits(got, want)
    for snapshot in got:  # Δ never becomes NaN or inf, whatever the gradient
        step_size = snapshot["step_size"].view(dtype)
        assert torch.isfinite(step_size).all(), step_size


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("case", "grads"), NONFINITE_CASES)
def test_irprop_minus_equals_torch_rprop_on_non_finite_gradients(
    case: str, grads: list, dtype: torch.dtype, path: str, maximize: bool
):
    ours = _trajectory(
        lambda p: Rprop(p, lr=0.25, maximize=maximize, **PATHS[path]), grads, dtype, LOSSES
    )
    theirs = _trajectory(
        lambda p: torch.optim.Rprop(p, lr=0.25, maximize=maximize), grads, dtype, LOSSES
    )
    _assert_same_bits(ours, theirs)


def test_the_reported_repro_steps_like_torch():
    """The issue's repro: one +inf gradient on the first step gives 0.99 and Δ = 0.01."""
    for kwargs in PATHS.values():
        p = torch.tensor([1.0], requires_grad=True)
        opt = Rprop([p], **kwargs)
        p.grad = torch.tensor([INF])
        opt.step()
        assert torch.equal(p.detach(), torch.tensor([0.99]))
        assert torch.equal(opt.state[p]["step_size"], torch.tensor([0.01]))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", VARIANTS)
def test_stacked_members_in_the_fused_kernel_match_solo_runs_on_non_finite_gradients(
    variant: str, dtype: torch.dtype
):
    """One stacked call (a leading member dim, per-member losses) = each member alone."""
    members = [np.array(g, dtype=float) for _, g in NONFINITE_CASES[:4]]
    steps = min(len(m) for m in members)
    grads = np.stack([m[:steps] for m in members], axis=1)  # (steps, members, weights)
    losses = np.array(
        [[LOSSES[(s + k) % len(LOSSES)] for k in range(len(members))] for s in range(steps)]
    )
    width = grads.shape[2]
    stacked = torch.linspace(-1.0, 1.5, width, dtype=dtype).repeat(len(members), 1).requires_grad_()
    opt = Rprop([stacked], lr=0.25, variant=variant, fused=True)
    for s in range(steps):

        def closure(s=s) -> torch.Tensor:
            stacked.grad = torch.tensor(grads[s], dtype=dtype)
            return torch.tensor(losses[s], dtype=dtype)  # one loss per member

        opt.step(closure)
    for k in range(len(members)):
        solo = _trajectory(
            lambda p: Rprop(p, lr=0.25, variant=variant, foreach=False, fused=False),
            grads[:, k].tolist(),
            dtype,
            losses[:, k].tolist(),
        )[-1]
        member = {"param": _bits(stacked[k])}
        for key in ("prev", "step_size", "weight_change"):
            if key in opt.state[stacked]:
                member[key] = _bits(opt.state[stacked][key][k])
        _assert_same_bits([member], [solo])


# Floats of every kind, non-finite ones included, at the dtype's own width.
def _float_lists(width: int):
    value = st.floats(allow_nan=True, allow_infinity=True, width=width)
    special = st.sampled_from([0.0, -0.0, NAN, INF, -INF, 1.0, -1.0])
    return st.lists(st.one_of(value, special), min_size=3, max_size=3)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    variant=st.sampled_from(VARIANTS),
    dtype=st.sampled_from(DTYPES),
    maximize=st.booleans(),
    steps=st.integers(1, 5),
)
def test_property_paths_agree_bit_for_bit_on_any_gradients(data, variant, dtype, maximize, steps):
    width = 32 if dtype == torch.float32 else 64
    grads = [data.draw(_float_lists(width)) for _ in range(steps)]
    losses = data.draw(
        st.lists(st.floats(allow_nan=True, width=width), min_size=steps, max_size=steps)
    )

    def make(kwargs):
        return lambda p: Rprop(p, lr=0.25, variant=variant, maximize=maximize, **kwargs)

    want = _trajectory(make(PATHS["single"]), grads, dtype, losses)
    for path in ("foreach", "fused"):
        _assert_same_bits(_trajectory(make(PATHS[path]), grads, dtype, losses), want)
    if variant == "irprop-":
        theirs = _trajectory(
            lambda p: torch.optim.Rprop(p, lr=0.25, maximize=maximize), grads, dtype, losses
        )
        _assert_same_bits(want, theirs)


# --------------------------------------------------------------------------- prev_loss


def _irprop_plus_bf16(resume_every_step: bool, steps: int = 120) -> list[torch.Tensor]:
    """iRprop+ on bfloat16 weights with a float32 loss; optionally resumed at every step."""
    torch.manual_seed(0)
    target = torch.randn(64)
    w = torch.zeros(64, dtype=torch.bfloat16, requires_grad=True)
    opt = Rprop([w], lr=0.05, variant="irprop+")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        # float32 losses, most of which bfloat16 cannot hold: the cast would round E(t−1)
        loss = ((w.float() - target) ** 2).sum() + torch.sin(20 * w.float()).sum()
        loss.backward()
        return loss

    seen = []
    for _ in range(steps):
        opt.step(closure)
        seen.append(w.detach().clone())
        if resume_every_step:
            saved = copy.deepcopy(opt.state_dict())
            opt = Rprop([w], lr=0.05, variant="irprop+")
            opt.load_state_dict(saved)
    return seen


def test_a_resumed_bf16_irprop_plus_run_follows_the_uninterrupted_trajectory():
    uninterrupted = _irprop_plus_bf16(resume_every_step=False)
    resumed = _irprop_plus_bf16(resume_every_step=True)
    for step, (a, b) in enumerate(zip(uninterrupted, resumed, strict=True)):
        assert torch.equal(a, b), f"the resumed run left the trajectory at step {step + 1}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
def test_prev_loss_keeps_float64_across_a_state_dict_round_trip(dtype: torch.dtype):
    w = torch.ones(3, dtype=dtype, requires_grad=True)
    opt = Rprop([w], variant="irprop+")
    loss_value = 1.0 + 2.0**-30  # exact in float64, not in any of the param dtypes

    def closure() -> torch.Tensor:
        opt.zero_grad()
        (w.float() ** 2).sum().backward()
        return torch.tensor(loss_value, dtype=torch.float64)

    opt.step(closure)
    restored = Rprop([w], variant="irprop+")
    restored.load_state_dict(copy.deepcopy(opt.state_dict()))
    prev_loss = restored.state[w]["prev_loss"]
    assert prev_loss.dtype == torch.float64
    assert prev_loss.item() == loss_value
    # the other state still follows torch's rule: cast to the parameter's dtype
    assert restored.state[w]["step_size"].dtype == dtype
