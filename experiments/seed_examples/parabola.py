"""The seed's first example: minimise f(θ) = θ² from θ = 5 with the seed's settings.

Settings (from the seed document's NumPy script): Δ0 = 0.1, η- = 0.5, η+ = 1.2,
Δ ∈ [1e-6, 50], 50 iterations. The seed's loop zeroes the gradient on a sign flip, which is
iRprop-.

For each of our four variants (``rprop_bench.optim.Rprop``, float64) and torch's
``torch.optim.Rprop`` this records θ, f(θ) and Δ at every iteration, checks our optimizer
against the NumPy reference (``rprop_bench.optim.reference``, written from the papers and
sharing no code) and writes:

- ``<out>/trajectories.csv``: columns optimizer, iteration, theta, loss, step_size;
- ``<out>/parabola.pdf`` and ``.png``: |θ| and Δ against the iteration, log scale.

Run: ``python experiments/seed_examples/parabola.py [--out reports/seed_examples/parabola]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from rprop_bench import plotting
from rprop_bench.optim import Rprop
from rprop_bench.optim.reference import SEED_EXAMPLE_FINAL_THETA, ReferenceRprop

THETA0 = 5.0
SETTINGS = {"lr": 0.1, "etas": (0.5, 1.2), "step_sizes": (1e-6, 50.0)}
ITERATIONS = 50
VARIANTS = ("rprop+", "rprop-", "irprop+", "irprop-")


def run_torch(make_optimizer, label: str) -> pd.DataFrame:
    """θ, f(θ) per iteration of a torch optimizer on f(θ) = θ² (float64)."""
    theta = torch.tensor([THETA0], dtype=torch.float64, requires_grad=True)
    opt = make_optimizer([theta])

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (theta**2).sum()
        loss.backward()
        return loss

    rows = [(label, 0, THETA0, THETA0**2)]
    for t in range(1, ITERATIONS + 1):
        opt.step(closure)
        value = float(theta.detach()[0])
        rows.append((label, t, value, value**2))
    return pd.DataFrame(rows, columns=["optimizer", "iteration", "theta", "loss"])


def run_reference(variant: str) -> pd.DataFrame:
    """The NumPy reference's θ, f(θ), Δ per iteration."""
    ref = ReferenceRprop(np.array([THETA0]), variant=variant, **SETTINGS)
    rows = [(variant, 0, THETA0, THETA0**2, SETTINGS["lr"])]
    for t in range(1, ITERATIONS + 1):
        theta = ref.theta
        ref.step(2 * theta, float(theta @ theta))
        value = float(ref.theta[0])
        rows.append((variant, t, value, value**2, float(ref.state.step_size[0])))
    return pd.DataFrame(rows, columns=["optimizer", "iteration", "theta", "loss", "step_size"])


def trajectories() -> pd.DataFrame:
    """All five trajectories; raises if ours differs from the reference."""
    frames = []
    for variant in VARIANTS:
        ours = run_torch(lambda p, v=variant: Rprop(p, variant=v, **SETTINGS), variant)
        ref = run_reference(variant)
        gap = float(np.max(np.abs(ours["theta"].to_numpy() - ref["theta"].to_numpy())))
        if gap > 1e-12:
            raise AssertionError(f"{variant}: ours differs from the reference by {gap:g}")
        frames.append(ours.assign(step_size=ref["step_size"]))
    frames.append(
        run_torch(lambda p: torch.optim.Rprop(p, **SETTINGS), "torch_rprop").assign(
            step_size=np.nan
        )
    )
    return pd.concat(frames, ignore_index=True)


def figure(traj: pd.DataFrame) -> Figure:
    """|θ| (left) and Δ (right) against the iteration, one colour per optimizer."""
    with mpl.rc_context(plotting.RC):
        fig = Figure(figsize=(plotting.TWO_COLUMN, 2.3), layout="constrained")
        ax_t, ax_d = fig.subplots(1, 2)
        for name, g in traj.groupby("optimizer", sort=True):
            style = {
                "color": plotting.method_color(name),
                "linestyle": plotting.method_linestyle(name),
            }
            if name == "torch_rprop":
                style["linestyle"] = ":"
            ax_t.plot(g["iteration"], g["theta"].abs().clip(lower=1e-12), label=name, **style)
            if g["step_size"].notna().any():
                ax_d.plot(g["iteration"], g["step_size"], label=name, **style)
        ax_t.axhline(abs(SEED_EXAMPLE_FINAL_THETA), color="#888888", linewidth=0.6)
        ax_t.set_yscale("log")
        ax_d.set_yscale("log")
        ax_t.set_xlabel("iteration")
        ax_d.set_xlabel("iteration")
        ax_t.set_ylabel("|θ|  (f(θ) = θ², θ0 = 5)")
        ax_d.set_ylabel("step size Δ")
        ax_t.legend(loc="lower left", ncols=2)
        return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/seed_examples/parabola"))
    args = parser.parse_args()
    traj = trajectories()
    args.out.mkdir(parents=True, exist_ok=True)
    traj.to_csv(args.out / "trajectories.csv", index=False)
    fig = figure(traj)
    with mpl.rc_context(plotting.RC):
        for fmt in ("pdf", "png"):
            fig.savefig(args.out / f"parabola.{fmt}")
    final = traj[traj["iteration"] == ITERATIONS].set_index("optimizer")["theta"]
    print(
        f"final θ after {ITERATIONS} iterations (seed's NumPy script: "
        f"{SEED_EXAMPLE_FINAL_THETA:.6g}):"
    )
    for name, value in final.items():
        print(f"  {name:12s} {value: .6g}")
    print(f"wrote {args.out / 'trajectories.csv'} and {args.out / 'parabola.pdf'}")


if __name__ == "__main__":
    main()
