"""A float64 NumPy reference of the four Rprop variants, written from the papers' rules.

It shares no code with :mod:`rprop_bench.optim.rprop`: the tests feed both the same gradients
and require the same bits. The rules, per weight, with g the gradient and p the previous one
(Riedmiller & Braun 1993; Igel & Hüsken 2000, 2003):

* Δ grows (×η+, at most Δmax) where g·p > 0, shrinks (×η-, at least Δmin) where g·p < 0,
  and stays where g·p = 0.
* Rprop-: w ← w − sign(g)·Δ, p ← g.
* iRprop-: as Rprop-, with g ← 0 where g·p < 0 (no move on a sign flip).
* Rprop+: where g·p < 0, undo the last weight change and set p ← 0; elsewhere apply and
  remember Δw = −sign(g)·Δ.
* iRprop+: as Rprop+, but undo only where the loss went up, E(t) > E(t−1).

Run as a script, it reproduces the seed document's minimal example (f(θ) = θ² from θ = 5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rprop_bench.schema import RPROP_VARIANTS as _VARIANTS

__all__ = [
    "SEED_EXAMPLE_FINAL_THETA",
    "ReferenceRprop",
    "ReferenceState",
    "minimize",
    "seed_minimal_example",
]

#: The final θ the seed document's NumPy script prints after 50 iterations.
SEED_EXAMPLE_FINAL_THETA = 3.868531378265413e-05


@dataclass
class ReferenceState:
    """Everything one weight vector carries between steps."""

    prev_grad: NDArray[np.float64]
    step_size: NDArray[np.float64]
    weight_change: NDArray[np.float64]
    prev_loss: float = float("inf")
    steps: int = 0


@dataclass
class ReferenceRprop:
    """One Rprop variant over a float64 weight vector.

    Args:
        theta: initial weights (copied to a float64 array).
        lr: initial step size Δ0.
        etas: (η-, η+).
        step_sizes: (Δmin, Δmax).
        variant: "rprop+", "rprop-", "irprop+" or "irprop-".
        maximize: ascend instead of descend.
    """

    theta: NDArray[np.float64]
    lr: float = 0.01
    etas: tuple[float, float] = (0.5, 1.2)
    step_sizes: tuple[float, float] = (1e-6, 50.0)
    variant: str = "irprop-"
    maximize: bool = False
    state: ReferenceState = field(init=False)

    def __post_init__(self) -> None:
        if self.variant not in _VARIANTS:
            raise ValueError(f"Invalid variant: {self.variant!r}; expected one of {_VARIANTS}")
        self.theta = np.array(self.theta, dtype=np.float64)
        shape = self.theta.shape
        self.state = ReferenceState(
            prev_grad=np.zeros(shape),
            step_size=np.full(shape, float(self.lr)),
            weight_change=np.zeros(shape),
        )

    def step(self, grad: ArrayLike, loss: float | None = None) -> NDArray[np.float64]:
        """Apply one step with gradient ``grad`` (and loss E(t) for iRprop+); return θ."""
        # Work on flat copies so 0-d weights index like any other shape.
        shape = self.theta.shape
        g = np.array(grad, dtype=np.float64).reshape(-1)
        if self.maximize:
            g = -g
        if self.variant == "irprop+" and loss is None:
            raise ValueError("irprop+ needs the loss at every step")
        eta_minus, eta_plus = self.etas
        delta_min, delta_max = self.step_sizes
        st = self.state
        product = g * st.prev_grad.reshape(-1)
        same_sign = product > 0
        sign_flip = product < 0

        delta = st.step_size.reshape(-1).copy()
        delta[same_sign] = np.minimum(delta[same_sign] * eta_plus, delta_max)
        delta[sign_flip] = np.maximum(delta[sign_flip] * eta_minus, delta_min)

        theta = self.theta.reshape(-1).copy()
        prev = g.copy()
        last_change = st.weight_change.reshape(-1)
        change = last_change.copy()

        if self.variant == "rprop-":
            theta = theta - np.sign(g) * delta
        elif self.variant == "irprop-":
            g_used = np.where(sign_flip, 0.0, g)
            theta = theta - np.sign(g_used) * delta
            prev = g_used
        else:
            keep = ~sign_flip
            new_change = -(np.sign(g) * delta)
            theta[keep] = theta[keep] + new_change[keep]
            if self.variant == "irprop+" and loss is None:
                raise ValueError("irprop+ needs the loss E(t) at every step")
            loss_went_up = self.variant == "rprop+" or float(loss) > st.prev_loss  # type: ignore[arg-type]
            if loss_went_up:
                theta[sign_flip] = theta[sign_flip] - last_change[sign_flip]
            change[keep] = new_change[keep]
            change[sign_flip] = 0.0
            prev[sign_flip] = 0.0

        self.theta = theta.reshape(shape)
        self.state = ReferenceState(
            prev_grad=prev.reshape(shape),
            step_size=delta.reshape(shape),
            weight_change=change.reshape(shape),
            prev_loss=float(loss) if loss is not None else st.prev_loss,
            steps=st.steps + 1,
        )
        return theta


def minimize(
    loss_and_grad: Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64]]],
    theta0: ArrayLike,
    n_steps: int,
    **hyperparameters: object,
) -> list[NDArray[np.float64]]:
    """Run ``n_steps`` steps from ``theta0``; return the trajectory θ0, θ1, ..., θn."""
    optimizer = ReferenceRprop(np.array(theta0, dtype=np.float64), **hyperparameters)  # type: ignore[arg-type]
    trajectory = [optimizer.theta.copy()]
    for _ in range(n_steps):
        loss, grad = loss_and_grad(optimizer.theta)
        trajectory.append(optimizer.step(grad, loss).copy())
    return trajectory


def seed_minimal_example(n_steps: int = 50, verbose: bool = False) -> float:
    """The seed's example: f(θ) = θ² from θ = 5, Δ0 = 0.1, η = (0.5, 1.2), Δ ∈ [1e-6, 50].

    The seed's loop sets g = 0 on a sign flip, which is iRprop-. Returns the final θ.
    """

    def parabola(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        return float(theta @ theta), 2 * theta

    optimizer = ReferenceRprop(
        np.array([5.0]), lr=0.1, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0), variant="irprop-"
    )
    for t in range(n_steps):
        loss, grad = parabola(optimizer.theta)
        optimizer.step(grad, loss)
        if verbose:
            print(f"Iteration {t + 1}: theta = {optimizer.theta[0]:.6f}")
    return float(optimizer.theta[0])


if __name__ == "__main__":
    final_theta = seed_minimal_example(verbose=True)
    print("Optimized parameter:", np.array([final_theta]))
    print(f"final theta = {final_theta!r} (seed: {SEED_EXAMPLE_FINAL_THETA!r})")
