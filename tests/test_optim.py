"""The Rprop family against independent references: torch.optim.Rprop, the NumPy reference
written from the papers, and hand-computed sign sequences.

Cases are tables, as in torch's common_optimizers.py and optax's tests.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lanes import fast_first
from sklearn.datasets import load_wine
from torch import nn

from rprop_bench.optim import VARIANTS, Rprop
from rprop_bench.optim.reference import (
    SEED_EXAMPLE_FINAL_THETA,
    ReferenceRprop,
    seed_minimal_example,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
BOTH_PATHS = [pytest.param(False, id="single"), pytest.param(True, id="foreach")]
# Keyword arguments selecting each implementation; all must give the same bits.
IMPLEMENTATIONS = [
    pytest.param({"foreach": False, "fused": False}, id="single"),
    pytest.param({"foreach": True}, id="foreach"),
    pytest.param({"fused": True}, id="fused"),
    pytest.param({}, id="default"),
]


def wavy(w: torch.Tensor) -> torch.Tensor:
    """A bumpy objective with many local sign flips of the gradient."""
    return (torch.sin(3.0 * w) * w**2).sum() + 0.1 * (w**2).sum()


def train(
    opt: torch.optim.Optimizer, params: list[torch.Tensor], loss_fn: Callable, steps: int
) -> list[float]:
    """Run ``steps`` closure steps; return the losses."""
    losses = []

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(*params)
        loss.backward()
        return loss

    for _ in range(steps):
        losses.append(opt.step(closure).item())
    return losses


def wine_mlp_data(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_wine(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    return torch.tensor(x, dtype=dtype), torch.tensor(y)


def make_mlp(dtype: torch.dtype, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(13, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


# --------------------------------------------------------------------------- bad input

BAD_HYPERPARAMETERS = [
    ({"lr": 0.0}, r"Invalid learning rate: 0\.0; expected a finite float > 0 \(lr\)"),
    ({"lr": -1e-3}, r"Invalid learning rate: -0\.001; expected a finite float > 0 \(lr\)"),
    ({"lr": math.nan}, r"Invalid learning rate: nan"),
    ({"lr": math.inf}, r"Invalid learning rate: inf"),
    ({"lr": "fast"}, r"Invalid learning rate: 'fast'; expected a finite float > 0 \(lr\)"),
    # a 1-D lr of S > 1 values is one Δ0 per stacked member; any other shape is refused
    ({"lr": torch.tensor([[1e-3, 1e-3]])}, r"Tensor lr must be 1-element"),
    ({"lr": torch.tensor(-1e-3)}, r"Invalid learning rate: tensor\(-0\.0010\)"),
    (
        {"lr": 100.0},
        r"Invalid learning rate: 100\.0; lr is the initial step size and must lie in",
    ),
    ({"etas": (1.0, 0.5)}, r"Invalid eta values: 1\.0, 0\.5"),  # torch's own message
    (
        {"etas": (1.5, 1.2)},
        r"Invalid eta values: 1\.5, 1\.2; expected 0 < eta_minus < 1 < eta_plus < inf \(etas\)",
    ),
    ({"etas": (0.5, 0.9)}, r"Invalid eta values: 0\.5, 0\.9; expected 0 < eta_minus < 1"),
    ({"etas": (0.0, 1.2)}, r"Invalid eta values: 0\.0, 1\.2"),
    ({"etas": (0.5, math.inf)}, r"Invalid eta values: 0\.5, inf"),
    ({"etas": (0.5,)}, r"Invalid etas: \(0\.5,\); expected \(eta_minus, eta_plus\)"),
    (
        {"step_sizes": (-1e-6, 50.0)},
        r"Invalid step_sizes: \(-1e-06, 50\.0\); expected 0 <= step_size_min <= step_size_max",
    ),
    ({"step_sizes": (1.0, 0.5), "lr": 0.7}, r"Invalid step_sizes: \(1\.0, 0\.5\)"),
    ({"step_sizes": (1e-6, math.inf)}, r"Invalid step_sizes: \(1e-06, inf\)"),
    (
        {"variant": "rprop"},
        r"Invalid variant: 'rprop'; expected one of 'rprop\+', 'rprop-', 'irprop\+', 'irprop-'",
    ),
    ({"maximize": "yes"}, r"Invalid maximize: 'yes'"),
    ({"differentiable": 1}, r"Invalid differentiable: 1; expected True or False"),
    ({"capturable": None}, r"Invalid capturable: None; expected True or False"),
    ({"foreach": True, "fused": True}, r"Invalid foreach=True with fused=True"),
    ({"fused": True, "differentiable": True}, r"Invalid fused=True with differentiable=True"),
    ({"foreach": True, "differentiable": True}, r"Invalid foreach=True with differentiable=True"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_raise_value_error_naming_the_field(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        Rprop([torch.zeros(2, requires_grad=True)], **kwargs)


@pytest.mark.parametrize(("kwargs", "message"), BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_in_a_param_group_are_rejected(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        Rprop([{"params": [torch.zeros(2, requires_grad=True)], **kwargs}])


def test_irprop_plus_without_closure_raises_a_clear_error():
    w = torch.ones(3, requires_grad=True)
    opt = Rprop([w], variant="irprop+")
    (w**2).sum().backward()
    with pytest.raises(RuntimeError, match=r"'irprop\+' needs the loss at every step"):
        opt.step()


@pytest.mark.parametrize("variant", ["rprop+", "rprop-", "irprop-"])
def test_other_variants_step_without_closure(variant: str):
    w = torch.ones(3, requires_grad=True)
    opt = Rprop([w], lr=0.25, variant=variant)
    (w**2).sum().backward()
    assert opt.step() is None
    assert torch.equal(w.detach(), torch.full((3,), 0.75))


def test_sparse_gradients_get_a_clear_error():
    emb = nn.Embedding(10, 3, sparse=True)
    opt = Rprop(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        opt.step()


# --------------------------------------------------------------------------- the seed


def test_reference_reproduces_the_seed_minimal_example_exactly():
    assert seed_minimal_example() == SEED_EXAMPLE_FINAL_THETA == 3.868531378265413e-05


@pytest.mark.parametrize("foreach", BOTH_PATHS)
def test_torch_irprop_minus_reproduces_the_seed_minimal_example_exactly(foreach: bool):
    theta = torch.tensor([5.0], dtype=torch.float64, requires_grad=True)
    opt = Rprop([theta], lr=0.1, etas=(0.5, 1.2), step_sizes=(1e-6, 50), foreach=foreach)
    for _ in range(50):
        opt.zero_grad()
        (theta**2).sum().backward()
        opt.step()
    assert theta.item() == 3.868531378265413e-05


def test_seed_pytorch_example_with_our_rprop_matches_torch_bit_for_bit():
    """The seed's y = 2x + 3 example, once with torch.optim.Rprop and once with ours."""
    torch.manual_seed(0)
    x = torch.randn(100, 1)
    y = 2 * x + 3 + 0.1 * torch.randn(100, 1)
    results = []
    for optimizer_class in (torch.optim.Rprop, Rprop):
        torch.manual_seed(1)
        model = nn.Linear(1, 1)
        optimizer = optimizer_class(model.parameters(), lr=0.01)
        for _ in range(200):
            optimizer.zero_grad()
            nn.MSELoss()(model(x), y).backward()
            optimizer.step()
        results.append((model.weight.item(), model.bias.item()))
    assert results[0] == results[1]
    w, b = results[1]
    assert abs(w - 2) < 0.05
    assert abs(b - 3) < 0.05


# --------------------------------------------------------------------------- vs torch.optim.Rprop

TORCH_EQUIVALENCE = [
    pytest.param(dtype, torch_foreach, ours_foreach, maximize, id=f"{name}-{tf}-{of}-max{mx}")
    for dtype, name in ((torch.float32, "f32"), (torch.float64, "f64"))
    for torch_foreach, tf in ((False, "torch_single"), (True, "torch_foreach"))
    for ours_foreach, of in ((False, "ours_single"), (True, "ours_foreach"))
    for maximize, mx in ((False, 0), (True, 1))
]


@pytest.mark.parametrize(
    ("dtype", "torch_foreach", "ours_foreach", "maximize"), fast_first(TORCH_EQUIVALENCE)
)
def test_irprop_minus_equals_torch_rprop_on_an_mlp_bit_for_bit(
    dtype: torch.dtype, torch_foreach: bool, ours_foreach: bool, maximize: bool
):
    x, y = wine_mlp_data(dtype)
    sign = -1.0 if maximize else 1.0

    models = [make_mlp(dtype), make_mlp(dtype)]

    def groups(model: nn.Module) -> list[dict]:
        # Two param groups with their own hyperparameters.
        return [
            {"params": model[0].parameters(), "lr": 0.02, "etas": (0.4, 1.3)},
            {"params": model[2].parameters()},
        ]

    initial = nn.functional.cross_entropy(models[0](x), y).item()
    ours = Rprop(groups(models[0]), lr=0.01, foreach=ours_foreach, maximize=maximize)
    theirs = torch.optim.Rprop(groups(models[1]), lr=0.01, foreach=torch_foreach, maximize=maximize)
    for step in range(300):
        for model, opt in zip(models, (ours, theirs), strict=True):
            opt.zero_grad()
            loss = sign * nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        if step % 50 == 49:
            for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
                assert torch.equal(a, b), f"diverged by step {step}"
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.equal(a, b)
        assert torch.equal(ours.state[a]["step_size"], theirs.state[b]["step_size"])
        assert torch.equal(ours.state[a]["prev"], theirs.state[b]["prev"])
    # The run really trained: maximizing −CE minimizes CE, so both cases must fit the data.
    final = nn.functional.cross_entropy(models[0](x), y).item()
    assert final < initial / 10


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "dtype", fast_first([torch.float32, torch.float64, torch.bfloat16, torch.complex64])
)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_irprop_minus_equals_torch_rprop_on_random_tensors(
    device: str, dtype: torch.dtype, implementation: dict
):
    torch.manual_seed(0)
    shapes = [(7,), (3, 5), (2, 3, 4), (), (70_000,)]
    ours_params = [torch.randn(s, dtype=dtype, device=device, requires_grad=True) for s in shapes]
    torch_params = [p.detach().clone().requires_grad_() for p in ours_params]
    ours = Rprop(ours_params, lr=0.05, **implementation)
    torch_foreach = bool(implementation.get("foreach"))
    theirs = torch.optim.Rprop(torch_params, lr=0.05, foreach=torch_foreach)
    generator = torch.Generator(device="cpu").manual_seed(1)
    for _ in range(100):
        for p_ours, p_torch in zip(ours_params, torch_params, strict=True):
            grad = torch.randn(p_ours.shape, generator=generator, dtype=torch.float64)
            if dtype.is_complex:
                grad = torch.complex(grad, grad.flip(-1) if grad.dim() else -grad)
            # Zero some entries so the zero-gradient branch is exercised too.
            grad = grad * (torch.rand(p_ours.shape, generator=generator) > 0.1)
            p_ours.grad = grad.to(device=device, dtype=dtype)
            p_torch.grad = p_ours.grad.clone()
        ours.step()
        theirs.step()
    for a, b in zip(ours_params, torch_params, strict=True):
        assert torch.equal(a, b)
        assert torch.equal(ours.state[a]["step_size"], theirs.state[b]["step_size"])


# --------------------------------------------------------------------------- vs NumPy reference

REFERENCE_CASES = [
    pytest.param(variant, maximize, implementation, id=f"{variant}-max{int(maximize)}-{fid}")
    for variant in VARIANTS
    for maximize in (False, True)
    for implementation, fid in (
        ({"foreach": False, "fused": False}, "single"),
        ({"foreach": True}, "foreach"),
        ({"fused": True}, "fused"),
    )
]


@pytest.mark.parametrize(
    ("variant", "maximize", "implementation"), fast_first(REFERENCE_CASES, every=6)
)
def test_every_variant_equals_the_numpy_reference_bit_for_bit(
    variant: str, maximize: bool, implementation: dict
):
    torch.manual_seed(3)
    w = torch.randn(64, dtype=torch.float64, requires_grad=True)
    sign = -1.0 if maximize else 1.0
    hyper = {"lr": 0.05, "etas": (0.5, 1.2), "step_sizes": (1e-6, 1.0)}
    reference = ReferenceRprop(
        w.detach().numpy().copy(), variant=variant, maximize=maximize, **hyper
    )
    opt = Rprop([w], variant=variant, maximize=maximize, **implementation, **hyper)
    flips = 0
    previous_grad = np.zeros(64)
    for step in range(400):

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = sign * wavy(w)
            loss.backward()
            return loss

        loss = opt.step(closure)
        grad = w.grad.numpy().copy()
        flips += int(np.sum(grad * previous_grad < 0))
        previous_grad = grad
        reference.step(grad, loss.item())
        np.testing.assert_array_equal(reference.theta, w.detach().numpy(), err_msg=f"step {step}")
    np.testing.assert_array_equal(reference.state.step_size, opt.state[w]["step_size"].numpy())
    assert flips > 500, "the objective must exercise the sign-flip branch"


# --------------------------------------------------------------------------- hand-made sequences
# η = (0.5, 2) and powers-of-two step sizes keep every value exact in binary.
EXACT = {"lr": 1.0, "etas": (0.5, 2.0), "step_sizes": (0.25, 4.0)}


def run_gradient_sequence(
    variant: str, grads: list[float], losses: list[float] | None, implementation: dict
) -> tuple[list[float], list[float]]:
    """Feed scalar gradients; return the weights and step sizes after each step."""
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = Rprop([w], variant=variant, **implementation, **EXACT)
    weights, deltas = [], []
    for t, g in enumerate(grads):
        w.grad = torch.tensor([g], dtype=torch.float64)
        loss = None if losses is None else losses[t]
        opt.step((lambda value=loss: value) if loss is not None else None)
        weights.append(w.item())
        deltas.append(opt.state[w]["step_size"].item())
    return weights, deltas


HAND_SEQUENCES = [
    # (variant, grads, losses, expected weights, expected Δ)
    pytest.param(
        "irprop-",
        [1, 1, 1, 1, 1],
        None,
        [-1, -3, -7, -11, -15],
        [1, 2, 4, 4, 4],
        id="growth-to-max",
    ),
    pytest.param(
        "rprop-",
        [1, -1, 1, -1, 1],
        None,
        [-1, -0.5, -0.75, -0.5, -0.75],
        [1, 0.5, 0.25, 0.25, 0.25],
        id="rprop-minus-shrink-to-min",
    ),
    pytest.param(
        "irprop-",
        [1, -1, -1, 1, 1],
        None,
        [-1, -1, -0.5, -0.5, -0.75],
        [1, 0.5, 0.5, 0.25, 0.25],
        id="irprop-minus-no-move-on-flip",
    ),
    pytest.param(
        "rprop+",
        [1, 1, -1, -1, -1],
        None,
        [-1, -3, -1, 0, 2],
        [1, 2, 1, 1, 2],
        id="rprop-plus-backtracks",
    ),
    pytest.param(
        "irprop+",
        [1, 1, -1, -1],
        [3.0, 2.0, 2.5, 1.0],
        [-1, -3, -1, 0],
        [1, 2, 1, 1],
        id="irprop-plus-loss-up-backtracks",
    ),
    pytest.param(
        "irprop+",
        [1, 1, -1, -1],
        [3.0, 2.0, 1.0, 0.5],
        [-1, -3, -3, -2],
        [1, 2, 1, 1],
        id="irprop-plus-loss-down-stays",
    ),
    pytest.param(
        "irprop+",
        [1, 1, -1, -1],
        [3.0, 2.0, 2.0, 0.5],
        [-1, -3, -3, -2],
        [1, 2, 1, 1],
        id="irprop-plus-equal-loss-stays",
    ),
]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS[:3])
@pytest.mark.parametrize(("variant", "grads", "losses", "weights", "deltas"), HAND_SEQUENCES)
def test_hand_computed_sign_sequences(
    variant: str,
    grads: list[float],
    losses: list[float] | None,
    weights: list[float],
    deltas: list[float],
    implementation: dict,
):
    got_weights, got_deltas = run_gradient_sequence(variant, grads, losses, implementation)
    assert got_weights == weights
    assert got_deltas == deltas
    # The NumPy reference agrees with the hand computation too.
    ref = ReferenceRprop(np.zeros(1), variant=variant, **EXACT)
    for t, g in enumerate(grads):
        ref.step([g], None if losses is None else losses[t])
    assert ref.theta[0] == weights[-1]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS[:3])
@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_gradient_keeps_step_size_and_moves_nothing(variant: str, implementation: dict):
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = Rprop([w], variant=variant, **implementation, **EXACT)
    w.grad = torch.tensor([1.0, 1.0], dtype=torch.float64)
    opt.step(lambda: 1.0)
    w.grad = torch.tensor([1.0, 1.0], dtype=torch.float64)
    opt.step(lambda: 0.5)  # Δ grows to 2
    before = w.detach().clone()
    for loss in (0.4, 0.3, 0.2):
        w.grad = torch.zeros(2, dtype=torch.float64)
        opt.step(lambda value=loss: value)
        assert torch.equal(w.detach(), before)
        assert opt.state[w]["step_size"].tolist() == [2.0, 2.0]
        assert opt.state[w]["prev"].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("variant", VARIANTS)
def test_step_returns_the_closure_loss(variant: str):
    w = torch.ones(2, requires_grad=True)
    opt = Rprop([w], variant=variant)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 2.0


# --------------------------------------------------------------------------- paths agree

PATH_DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.complex128]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS[1:])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", fast_first(PATH_DTYPES))
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_implementation_matches_single_tensor(
    variant: str, dtype: torch.dtype, device: str, implementation: dict
):
    torch.manual_seed(0)
    # A large tensor (crosses the kernel's threading threshold), a transposed
    # (non-contiguous) one, small ones and a scalar.
    shapes = [(300, 300), (3, 5), (8,), (2, 2, 2), ()]
    start = [torch.randn(s, dtype=dtype, device=device) for s in shapes]
    finals = []
    for kwargs in ({"foreach": False, "fused": False}, implementation):
        params = [p.clone().requires_grad_() for p in start]
        params[1] = start[1].clone().t().detach().requires_grad_()  # non-contiguous
        assert not params[1].is_contiguous()
        opt = Rprop(params, lr=0.03, variant=variant, **kwargs)

        def loss_fn(*ps: torch.Tensor) -> torch.Tensor:
            return sum(wavy(torch.view_as_real(p) if p.is_complex() else p.float()) for p in ps)

        train(opt, params, loss_fn, 60)
        finals.append((params, opt))
    (single, opt_single), (multi, opt_multi) = finals
    for a, b in zip(single, multi, strict=True):
        assert torch.equal(a, b)
        for key, value in opt_single.state[a].items():
            assert torch.equal(value, opt_multi.state[b][key]), key


@pytest.mark.parametrize("foreach", BOTH_PATHS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_complex_params_are_pairs_of_real_weights(variant: str, foreach: bool):
    torch.manual_seed(0)
    z = torch.randn(6, dtype=torch.complex128, requires_grad=True)
    r = torch.view_as_real(z.detach()).clone().requires_grad_()
    opt_z = Rprop([z], lr=0.05, variant=variant, foreach=foreach)
    opt_r = Rprop([r], lr=0.05, variant=variant, foreach=foreach)
    train(opt_z, [z], lambda p: wavy(torch.view_as_real(p)), 100)
    train(opt_r, [r], wavy, 100)
    assert torch.equal(torch.view_as_real(z.detach()), r.detach())


@pytest.mark.parametrize("variant", VARIANTS)
def test_param_groups_behave_like_separate_optimizers(variant: str):
    torch.manual_seed(0)
    a, b = torch.randn(10, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    a1, b1 = a.clone().requires_grad_(), b.clone().requires_grad_()
    grouped = Rprop(
        [{"params": [a1]}, {"params": [b1], "lr": 0.1, "variant": "rprop-", "etas": (0.3, 1.5)}],
        lr=0.02,
        variant=variant,
    )
    a2, b2 = a.clone().requires_grad_(), b.clone().requires_grad_()
    alone_a = Rprop([a2], lr=0.02, variant=variant)
    alone_b = Rprop([b2], lr=0.1, variant="rprop-", etas=(0.3, 1.5))
    for _ in range(100):
        for params, opts in (((a1, b1), (grouped,)), ((a2, b2), (alone_a, alone_b))):

            def closure(params=params, opts=opts) -> torch.Tensor:
                for opt in opts:
                    opt.zero_grad()
                loss = wavy(params[0]) + wavy(params[1])
                loss.backward()
                return loss

            loss = closure()
            for opt in opts:
                opt.step(lambda loss=loss: loss)
    assert torch.equal(a1, a2)
    assert torch.equal(b1, b2)


# --------------------------------------------------------------------------- stacked members

MEMBERS = 3
STACKED_SHAPES = [(MEMBERS, 4, 3), (MEMBERS, 5), (MEMBERS,)]


def member_loss(k: int, *params: torch.Tensor) -> torch.Tensor:
    """Member k's objective: bumpy, and different per member, so their flips and rises differ."""
    return sum(wavy(p * (1.0 + 0.5 * k)) for p in params)


@pytest.mark.parametrize("implementation", fast_first(IMPLEMENTATIONS, keep=2))
@pytest.mark.parametrize("variant", VARIANTS)
def test_stacked_members_follow_their_own_trajectories_bit_for_bit(
    variant: str, implementation: dict
):
    """S models stacked along dim 0, one loss each: member k moves exactly as it would alone.

    For irprop+ this pins the per-member "did the loss rise" test: a shared scalar loss would
    undo every member's weights when only one member's loss rose.
    """
    torch.manual_seed(0)
    start = [torch.randn(shape, dtype=torch.float64) for shape in STACKED_SHAPES]
    stacked = [t.clone().requires_grad_() for t in start]
    opt = Rprop(stacked, lr=0.3, variant=variant, **implementation)

    def stacked_closure() -> torch.Tensor:
        opt.zero_grad()
        losses = torch.stack([member_loss(k, *(p[k] for p in stacked)) for k in range(MEMBERS)])
        losses.sum().backward()
        return losses

    alone = []
    for k in range(MEMBERS):
        params = [t[k].clone().requires_grad_() for t in start]
        alone.append((params, Rprop(params, lr=0.3, variant=variant, **implementation)))
    rises = 0
    for _ in range(60):
        losses = opt.step(stacked_closure)
        for k, (params, alone_opt) in enumerate(alone):

            def closure(k=k, params=params, alone_opt=alone_opt) -> torch.Tensor:
                alone_opt.zero_grad()
                loss = member_loss(k, *params)
                loss.backward()
                return loss

            assert alone_opt.step(closure).item() == losses[k].item()
        rises += int(losses.max() > losses.min())  # members disagree: the case that matters
    for k, (params, _) in enumerate(alone):
        for together, by_itself in zip(stacked, params, strict=True):
            assert torch.equal(together[k], by_itself)
    assert rises > 0
    if variant == "irprop+":
        assert opt.state[stacked[0]]["prev_loss"].shape == (MEMBERS,)


STACKED_MISUSE = [
    ([(MEMBERS + 1, 2)], torch.zeros(MEMBERS), "leading dim of size 3"),
    ([()], torch.zeros(MEMBERS), "leading dim of size 3"),
    ([(MEMBERS, 2)], torch.zeros(MEMBERS, 2), "1-D tensor of per-member losses"),
]


@pytest.mark.parametrize(("shapes", "loss", "message"), STACKED_MISUSE)
def test_per_member_losses_that_do_not_fit_the_params_raise(shapes, loss, message):
    params = [torch.zeros(shape, requires_grad=True) for shape in shapes]
    opt = Rprop(params, variant="irprop+")
    for p in params:
        p.grad = torch.ones_like(p)
    with pytest.raises(RuntimeError, match=message):
        opt.step(lambda: loss)


def test_a_changed_loss_shape_is_rejected():
    w = torch.zeros(MEMBERS, 2, requires_grad=True)
    opt = Rprop([w], variant="irprop+")
    w.grad = torch.ones_like(w)
    opt.step(lambda: torch.tensor(1.0))
    with pytest.raises(RuntimeError, match="earlier steps saw"):
        opt.step(lambda: torch.zeros(MEMBERS))


# ---------------------------------------------------------------- per-member hyperparameters

GRID_MEMBERS = 5
#: Five members' Δ0, η-, η+, Δmin, Δmax: Δmin = 0 and a tight Δmax, so the bounds bite.
MEMBER_HYPERS = {
    "lr": [0.01, 0.05, 0.1, 0.001, 0.2],
    "eta_minus": [0.3, 0.5, 0.6, 0.45, 0.7],
    "eta_plus": [1.1, 1.2, 1.5, 1.3, 2.0],
    "step_size_min": [1e-6, 0.0, 1e-3, 1e-5, 1e-4],
    "step_size_max": [50.0, 1.0, 0.2, 5.0, 0.25],
}


def member_kwargs(k: int | None) -> dict:
    """The Rprop arguments of member ``k`` (floats), or of all members (float64 tensors)."""

    def value(name: str) -> float | torch.Tensor:
        values = MEMBER_HYPERS[name]
        return float(values[k]) if k is not None else torch.tensor(values, dtype=torch.float64)

    return {
        "lr": value("lr"),
        "etas": (value("eta_minus"), value("eta_plus")),
        "step_sizes": (value("step_size_min"), value("step_size_max")),
    }


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS[:3])
@pytest.mark.parametrize("variant", VARIANTS)
def test_per_member_hyperparameters_follow_each_members_solo_run_bit_for_bit(
    variant: str, implementation: dict, dtype: torch.dtype
):
    """A grid of five members (Δ0, η±, Δmin, Δmax each a (5,) tensor): member k's weights,
    after 60 steps, equal those of member k trained alone with its scalars, in every
    implementation (fused: one kernel call for all five)."""
    torch.manual_seed(1)
    start = [torch.randn(GRID_MEMBERS, *shape, dtype=dtype) for shape in [(4, 3), (5,), ()]]
    stacked = [t.clone().requires_grad_() for t in start]
    opt = Rprop(stacked, variant=variant, **member_kwargs(None), **implementation)

    def stacked_closure() -> torch.Tensor:
        opt.zero_grad()
        losses = torch.stack(
            [member_loss(k, *(p[k] for p in stacked)) for k in range(GRID_MEMBERS)]
        )
        losses.sum().backward()
        return losses

    for _ in range(60):
        opt.step(stacked_closure)
    differ = 0
    for k in range(GRID_MEMBERS):
        params = [t[k].clone().requires_grad_() for t in start]
        alone = Rprop(params, variant=variant, **member_kwargs(k), **implementation)

        def closure(k=k, params=params, alone=alone) -> torch.Tensor:
            alone.zero_grad()
            loss = member_loss(k, *params)
            loss.backward()
            return loss

        for _ in range(60):
            alone.step(closure)
        for together, by_itself in zip(stacked, params, strict=True):
            assert torch.equal(together[k].detach(), by_itself.detach()), f"member {k}"
        # the members' hyperparameters matter: member k alone with member 0's differs
        differ += not torch.equal(stacked[0][k].detach(), stacked[0][0].detach())
    assert differ == GRID_MEMBERS - 1


PER_MEMBER_MISUSE = [
    (
        {"lr": torch.full((4,), 0.1, dtype=torch.float64)},
        r"Tensor lr must be 1-element .*; Invalid lr: 4 per-member values, but parameter 0 of "
        r"its group has shape \(5, 2\)",
    ),
    (
        {"etas": (torch.full((5,), 0.5), torch.full((3,), 1.2))},
        r"Invalid etas\[1\]: 3 per-member values, but etas\[0\] has 5",
    ),
    (
        {"etas": (torch.tensor([0.5, 0.5, 1.5, 0.5, 0.5]), 1.2)},
        r"Invalid eta values: 1.5, 1.2; .* \[member 2 of 5\]",
    ),
    (
        {"lr": torch.tensor([0.1, 0.1, 0.1, 0.1, 80.0], dtype=torch.float64)},
        r"lr is the initial step size .* \[member 4 of 5\]",
    ),
    (
        {"step_sizes": (torch.zeros(5, dtype=torch.int64), 50.0)},
        r"Invalid step_sizes\[0\]: per-member values must be floating point",
    ),
]


@pytest.mark.parametrize(("kwargs", "message"), PER_MEMBER_MISUSE)
def test_bad_per_member_hyperparameters_name_the_argument_and_both_lengths(kwargs, message):
    """Refused at construction, where the params are known."""
    w = torch.zeros(GRID_MEMBERS, 2, requires_grad=True)
    with pytest.raises(ValueError, match=message):
        Rprop([w], **kwargs)


# --------------------------------------------------------------------------- state dicts


@pytest.mark.parametrize("foreach", BOTH_PATHS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_resume_from_state_dict_follows_the_uninterrupted_trajectory(variant: str, foreach: bool):
    x, y = wine_mlp_data(torch.float32)

    def loss_fn(model: nn.Module) -> torch.Tensor:
        return nn.functional.cross_entropy(model(x), y)

    def run(model: nn.Module, opt: Rprop, steps: int) -> None:
        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = loss_fn(model)
            loss.backward()
            return loss

        for _ in range(steps):
            opt.step(closure)

    straight = make_mlp(torch.float32)
    opt_straight = Rprop(straight.parameters(), variant=variant, foreach=foreach)
    run(straight, opt_straight, 120)

    first = make_mlp(torch.float32)
    opt_first = Rprop(first.parameters(), variant=variant, foreach=foreach)
    run(first, opt_first, 70)
    saved_model = copy.deepcopy(first.state_dict())
    saved_opt = copy.deepcopy(opt_first.state_dict())

    resumed = make_mlp(torch.float32, seed=99)  # different init: everything must come from disk
    resumed.load_state_dict(saved_model)
    opt_resumed = Rprop(resumed.parameters(), variant=variant, foreach=foreach)
    opt_resumed.load_state_dict(saved_opt)
    run(resumed, opt_resumed, 50)
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    names = set(saved_opt["state"][0])
    expected = {"step", "prev", "step_size"}
    if variant in ("rprop+", "irprop+"):
        expected.add("weight_change")
    if variant == "irprop+":
        expected.add("prev_loss")
    assert names == expected


@pytest.mark.parametrize("direction", ["torch_to_ours", "ours_to_torch"])
def test_state_dicts_interchange_with_torch_rprop(direction: str):
    x, y = wine_mlp_data(torch.float64)
    model_a = make_mlp(torch.float64)
    model_b = make_mlp(torch.float64)
    first_cls, second_cls = (
        (torch.optim.Rprop, Rprop) if direction == "torch_to_ours" else (Rprop, torch.optim.Rprop)
    )

    def steps(model: nn.Module, opt: torch.optim.Optimizer, n: int) -> None:
        for _ in range(n):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    opt_a = first_cls(model_a.parameters(), lr=0.02)
    steps(model_a, opt_a, 60)
    model_b.load_state_dict(model_a.state_dict())
    opt_b = second_cls(model_b.parameters(), lr=0.02)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    steps(model_a, opt_a, 60)
    steps(model_b, opt_b, 60)
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    variant=st.sampled_from(VARIANTS),
    shape=st.lists(st.integers(1, 5), min_size=0, max_size=3),
    eta_minus=st.floats(0.05, 0.95),
    eta_plus=st.floats(1.05, 3.0),
    lr=st.floats(1e-4, 1.0),
    maximize=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_float64_equals_reference_and_paths_agree(
    variant: str,
    shape: list[int],
    eta_minus: float,
    eta_plus: float,
    lr: float,
    maximize: bool,
    seed: int,
):
    rng = np.random.default_rng(seed)
    theta0 = rng.normal(size=shape)
    hyper = {"lr": lr, "etas": (eta_minus, eta_plus), "step_sizes": (1e-6, 2.0)}
    reference = ReferenceRprop(theta0.copy(), variant=variant, maximize=maximize, **hyper)
    params = [torch.tensor(theta0, requires_grad=True) for _ in range(2)]
    opts = [
        Rprop([p], variant=variant, maximize=maximize, foreach=fe, **hyper)
        for p, fe in zip(params, (False, True), strict=True)
    ]
    for _ in range(25):
        grad = rng.normal(size=shape) * (rng.random(size=shape) > 0.2)
        loss = float(rng.normal())
        reference.step(grad, loss)
        for p, opt in zip(params, opts, strict=True):
            p.grad = torch.tensor(grad)
            opt.step(lambda loss=loss: loss)
        for p, opt in zip(params, opts, strict=True):
            np.testing.assert_array_equal(p.detach().numpy(), reference.theta)
            delta = opt.state[p]["step_size"]
            assert bool(((delta >= 1e-6) & (delta <= 2.0)).all())


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float64]),
    n=st.integers(1, 200),
    lr=st.sampled_from([1e-3, 0.01, 0.1]),
    maximize=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_irprop_minus_equals_torch_in_every_dtype(
    dtype: torch.dtype, n: int, lr: float, maximize: bool, seed: int
):
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(n, generator=generator).to(dtype)
    ours_p, torch_p = start.clone().requires_grad_(), start.clone().requires_grad_()
    ours = Rprop([ours_p], lr=lr, maximize=maximize)
    theirs = torch.optim.Rprop([torch_p], lr=lr, maximize=maximize)
    for _ in range(30):
        grad = torch.randn(n, generator=generator).to(dtype)
        ours_p.grad, torch_p.grad = grad.clone(), grad.clone()
        ours.step()
        theirs.step()
    assert torch.equal(ours_p, torch_p)


# --------------------------------------------------------------------------- it optimises


def rosenbrock(w: torch.Tensor) -> torch.Tensor:
    return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2


def parabola(w: torch.Tensor) -> torch.Tensor:
    return ((w - torch.tensor([1.0, -2.0], dtype=w.dtype)) ** 2).sum()


MINIMISATION_CASES = [
    pytest.param(parabola, [5.0, 5.0], [1.0, -2.0], 200, 1e-4, torch.float32, id="parabola-f32"),
    pytest.param(parabola, [5.0, 5.0], [1.0, -2.0], 200, 1e-4, torch.float64, id="parabola-f64"),
    # Rprop creeps along Rosenbrock's curved valley: every variant is within 2e-3 of the
    # minimum after 10,000 steps from the standard start (measured: 5e-4 to 1.2e-3).
    pytest.param(
        rosenbrock,
        [-1.2, 1.0],
        [1.0, 1.0],
        10_000,
        2e-3,
        torch.float64,
        id="rosenbrock",
        marks=pytest.mark.slow,  # 10,000 steps: the full lane
    ),
]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("fn", "start", "minimum", "steps", "tol", "dtype"), MINIMISATION_CASES)
def test_every_variant_reaches_the_minimum(
    fn: Callable,
    start: list[float],
    minimum: list[float],
    steps: int,
    tol: float,
    dtype: torch.dtype,
    variant: str,
):
    w = torch.tensor(start, dtype=dtype, requires_grad=True)
    opt = Rprop([w], lr=0.01, variant=variant)
    losses = train(opt, [w], fn, steps)
    assert losses[-1] < losses[0]
    assert torch.allclose(w.detach(), torch.tensor(minimum, dtype=dtype), atol=tol)


@pytest.mark.slow
def test_fused_path_without_a_compiler_warns_once_and_falls_back(tmp_path):
    """No C compiler: one warning line, and the same bits as the single-tensor path."""
    script = """
import warnings, torch
from rprop_bench.optim import Rprop
w = torch.linspace(-2, 2, 101, dtype=torch.float64, requires_grad=True)
ref = w.detach().clone().requires_grad_()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    fused, single = Rprop([w], fused=True), Rprop([ref], foreach=False, fused=False)
    for _ in range(40):
        for p, opt in ((w, fused), (ref, single)):
            opt.zero_grad(); (torch.sin(3 * p) * p**2).sum().backward(); opt.step()
messages = [str(c.message) for c in caught]
assert len(messages) == 1, messages
assert "no C compiler" in messages[0] and len(messages[0].splitlines()) == 1, messages
assert torch.equal(w, ref)
print("fallback ok")
"""
    env = {
        "PATH": str(tmp_path),  # no compiler on PATH
        "CC": "no-such-compiler",
        "RPROP_BENCH_CACHE": str(tmp_path / "cache"),
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "fallback ok" in result.stdout


@pytest.mark.slow
def test_fused_kernel_is_built_once_and_reused(tmp_path):
    env = {**os.environ, "RPROP_BENCH_CACHE": str(tmp_path)}
    code = "from rprop_bench.optim.fused import load_fused_kernel as k; print(k()._name)"
    runs = [
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        for _ in range(2)
    ]
    assert all(run.returncode == 0 for run in runs), runs[0].stderr
    built = list(tmp_path.glob("fused_rprop-*.so"))
    assert len(built) == 1
    assert runs[0].stdout.strip() == runs[1].stdout.strip() == str(built[0])


# --------------------------------------------------------------------------- torch's arguments


@pytest.mark.parametrize("implementation", fast_first(IMPLEMENTATIONS[:3]))
@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_step_size_min_is_legal_and_a_zero_step_size_stays_zero(
    variant: str, implementation: dict
):
    """Δmin = 0 (Igel & Hüsken 2003): repeated flips drive Δ to 0, and η+ cannot lift it."""
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = Rprop([w], lr=1.0, step_sizes=(0.0, 50.0), variant=variant, **implementation)
    flips = [1.0, -1.0] * 1100 + [1.0] * 20  # Δ halves at least once a pair: 0 by 2**-1075
    for g in flips:

        def closure(g=g) -> torch.Tensor:
            w.grad = torch.tensor([g], dtype=torch.float64)
            return torch.tensor(float(g))

        opt.step(closure)
    assert opt.state[w]["step_size"].item() == 0.0
    moved_before = w.detach().clone()
    opt.step(lambda: (setattr(w, "grad", torch.ones(1, dtype=torch.float64)), torch.tensor(1.0))[1])
    assert torch.equal(w.detach(), moved_before)  # Δ = 0 moves nothing


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_a_tensor_lr_gives_the_float_lr_bits(implementation: dict):
    x, y = wine_mlp_data(torch.float32)
    models = [make_mlp(torch.float32), make_mlp(torch.float32)]
    opts = [
        Rprop(models[0].parameters(), lr=torch.tensor(0.003), **implementation),
        Rprop(models[1].parameters(), lr=float(torch.tensor(0.003)), **implementation),
    ]
    for _ in range(15):
        for model, opt in zip(models, opts, strict=True):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.equal(a, b)


def _one_differentiable_step(optimizer_cls, kwargs, p, grad, prev, step_size):
    """One step on clones, as torch's differentiable-optimizer tests do; outputs for gradcheck."""
    p = p.clone()
    p.grad = grad
    opt = optimizer_cls([p], differentiable=True, **kwargs)
    opt.state[p].update(
        {"step": torch.tensor(3.0), "prev": prev.clone(), "step_size": step_size.clone()}
    )
    opt.step()
    return p, opt.state[p]["prev"], opt.state[p]["step_size"]


def test_differentiable_step_matches_torch_and_passes_gradcheck():
    torch.manual_seed(0)
    p, grad, prev = (torch.randn(8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    step_size = torch.rand(8, dtype=torch.float64, requires_grad=True)
    kwargs = {"lr": 0.9, "step_sizes": (1e-6, 50.0)}
    ours = _one_differentiable_step(Rprop, kwargs, p, grad, prev, step_size)
    theirs = _one_differentiable_step(torch.optim.Rprop, kwargs, p, grad, prev, step_size)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
    # The step is recorded: d(new p)/d(step size) is -sign(g) where the sign held.
    (d_step_size,) = torch.autograd.grad(ours[0].sum(), step_size, retain_graph=True)
    (d_torch,) = torch.autograd.grad(theirs[0].sum(), step_size)
    assert torch.equal(d_step_size, d_torch)
    assert torch.autograd.gradcheck(
        lambda *t: _one_differentiable_step(Rprop, kwargs, *t), (p, grad, prev, step_size)
    )


def test_fused_on_meta_params_raises_at_step_and_works_on_real_ones():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Linear(3, 1))
    opt = Rprop(model.parameters(), fused=True)  # constructing is fine, as in torch
    for p in model.parameters():
        p.grad = torch.rand_like(p)
    with pytest.raises(RuntimeError, match="`fused=True` requires all the params to be floating"):
        opt.step()
    assert len(opt.state) == 0  # refused before any state was made
    model.to_empty(device="cpu")
    opt = Rprop(model.parameters(), fused=True)
    for p in model.parameters():
        p.grad = torch.rand_like(p)
    opt.step()
    assert all(opt.state[p]["step"].item() == 1.0 for p in model.parameters())


def test_capturable_on_cpu_is_refused_at_step_naming_the_devices():
    w = torch.ones(2, requires_grad=True)
    opt = Rprop([w], capturable=True)
    w.grad = torch.ones(2)
    with pytest.raises(RuntimeError, match=r"If capturable=True, params and state_steps must"):
        opt.step()


@pytest.mark.slow
def test_fused_path_without_the_kernel_source_warns_once_and_falls_back(tmp_path):
    """An install that lacks _fused_rprop.c: one warning line, and the single-tensor bits."""
    script = """
import warnings, pathlib, torch
import rprop_bench.optim.fused as fused
from rprop_bench.optim import Rprop
fused._SOURCE = pathlib.Path("/nonexistent/_fused_rprop.c")
w = torch.linspace(-2, 2, 101, dtype=torch.float64, requires_grad=True)
ref = w.detach().clone().requires_grad_()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ours, single = Rprop([w], fused=True), Rprop([ref], foreach=False, fused=False)
    for _ in range(40):
        for p, opt in ((w, ours), (ref, single)):
            opt.zero_grad(); (torch.sin(3 * p) * p**2).sum().backward(); opt.step()
messages = [str(c.message) for c in caught]
assert len(messages) == 1, messages
assert "could not build the fused Rprop kernel" in messages[0], messages
assert len(messages[0].splitlines()) == 1, messages
assert torch.equal(w, ref)
print("fallback ok")
"""
    env = {**os.environ, "RPROP_BENCH_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "fallback ok" in result.stdout
