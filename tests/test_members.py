"""Per-member hyperparameters for baselines: each member of a stacked grid against torch's
optimizer trained alone with that member's scalars (rprop_bench.optim.members)."""

from __future__ import annotations

import pytest
import torch

from rprop_bench.optim import Rprop
from rprop_bench.optim.members import MemberBaselines, MemberGroups, member_optimizer

STEPS = 60

#: (optimizer, the members' kwargs): grids over the elementwise hyperparameters.
GRIDS = [
    pytest.param(
        torch.optim.SGD,
        [{"lr": lr, "momentum": m, "weight_decay": wd}
         for lr in (1e-3, 1e-2) for m in (0.0, 0.9) for wd in (0.0, 1e-3)],
        id="sgd-momentum",
    ),
    pytest.param(
        torch.optim.SGD,
        [{"lr": lr, "momentum": m, "nesterov": True} for lr in (1e-3, 1e-2) for m in (0.5, 0.9)],
        id="sgd-nesterov",
    ),
    pytest.param(
        torch.optim.Adam,
        [{"lr": lr, "betas": (b1, 0.999), "weight_decay": wd}
         for lr in (1e-3, 3e-2) for b1 in (0.5, 0.9) for wd in (0.0, 1e-2)],
        id="adam",
    ),
    pytest.param(
        torch.optim.AdamW,
        [{"lr": lr, "weight_decay": wd, "betas": (0.9, b2)}
         for lr in (1e-3, 1e-2) for wd in (0.01, 0.1) for b2 in (0.99, 0.999)],
        id="adamw",
    ),
    pytest.param(
        torch.optim.RMSprop,
        [{"lr": lr, "alpha": a, "momentum": m} for lr in (1e-3, 1e-2) for a in (0.9, 0.99)
         for m in (0.0, 0.5)],
        id="rmsprop",
    ),
    pytest.param(
        torch.optim.RMSprop,
        [{"lr": lr, "alpha": 0.9, "centered": True, "eps": eps}
         for lr in (1e-3, 1e-2) for eps in (1e-8, 1e-6)],
        id="rmsprop-centered",
    ),
]  # fmt: skip

#: Relative error allowed after STEPS steps in batched mode (MemberBaselines): a product
#: rounded before an add where torch's vector loop fuses them, compounded over the steps.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-3}


def member_loss(w: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """A bumpy objective, different per member."""
    return (torch.sin(3.0 * w) * w**2).sum() * (1 + 0.3 * k) + (b**4).sum()


def train_grid(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], members: int):
    for _ in range(STEPS):

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            losses = torch.stack([member_loss(params[0][k], params[1][k], k)
                                  for k in range(members)])  # fmt: skip
            losses.sum().backward()
            return losses

        optimizer.step(closure)


def solo(kind: type, kwargs: dict, start: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    params = [t[k].clone().requires_grad_() for t in start]
    optimizer = kind(params, **kwargs)
    for _ in range(STEPS):
        optimizer.zero_grad()
        member_loss(*params, k).backward()
        optimizer.step()
    return [p.detach() for p in params]


def start_tensors(members: int, dtype: torch.dtype) -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [torch.randn(members, 23, 3, dtype=dtype), torch.randn(members, 3, dtype=dtype)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("exact", [True, False], ids=["exact", "batched"])
@pytest.mark.parametrize(("kind", "grid"), GRIDS)
def test_each_member_follows_torchs_solo_run(kind, grid, exact, dtype):
    """Exact mode (one param group per member): bit for bit. Batched (one op per tensor for
    all members): within the documented tolerance, and the members really differ."""
    start = start_tensors(len(grid), dtype)
    params = [t.clone().requires_grad_() for t in start]
    optimizer = member_optimizer(kind, params, grid, exact=exact)
    assert isinstance(optimizer, MemberGroups if exact else MemberBaselines)
    train_grid(optimizer, params, len(grid))
    for k, kwargs in enumerate(grid):
        for together, alone in zip(params, solo(kind, kwargs, start, k), strict=True):
            if exact:
                assert torch.equal(together[k].detach(), alone), f"member {k}"
            else:
                torch.testing.assert_close(
                    together[k].detach(), alone, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype]
                )
    # the hyperparameters did something: member 0 and member 1 ended apart
    assert not torch.allclose(params[0][0] / 1.3, params[0][1])


def test_rprop_members_take_tensors_and_equal_their_solo_runs():
    grid = [{"lr": lr, "etas": (em, 1.2), "variant": "rprop+"}
            for lr in (0.01, 0.1) for em in (0.3, 0.5)]  # fmt: skip
    start = start_tensors(len(grid), torch.float64)
    params = [t.clone().requires_grad_() for t in start]
    optimizer = member_optimizer(Rprop, params, grid)
    assert isinstance(optimizer, Rprop)
    assert optimizer.param_groups[0]["lr"].shape == (4,)
    train_grid(optimizer, params, len(grid))
    for k, kwargs in enumerate(grid):
        for together, alone in zip(params, solo(Rprop, kwargs, start, k), strict=True):
            assert torch.equal(together[k].detach(), alone)


def test_members_that_agree_share_one_plain_optimizer():
    params = [torch.zeros(3, 2, requires_grad=True)]
    optimizer = member_optimizer(torch.optim.Adam, params, [{"lr": 0.1}] * 3)
    assert type(optimizer) is torch.optim.Adam


MISUSE = [
    (torch.optim.SGD, [{"lr": 0.1, "nesterov": True, "momentum": 0.9},
                       {"lr": 0.1, "nesterov": False, "momentum": 0.9}],
     r"SGD argument 'nesterov' differs across stacked members \(False, True\)"),
    (Rprop, [{"variant": "rprop+"}, {"variant": "irprop-"}],
     r"Rprop argument 'variant' differs"),
    (torch.optim.Adam, [{"lr": 0.1}, {"lr": 0.2}, {"lr": 0.3}],
     r"3 members' hyperparameters, but parameter 0 has shape \(2, 2\)"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "grid", "message"), MISUSE)
def test_a_grid_that_cannot_stack_is_refused_with_the_argument_named(kind, grid, message):
    params = [torch.zeros(2, 2, requires_grad=True)]
    with pytest.raises(ValueError, match=message):
        member_optimizer(kind, params, grid)
