"""Benchmark: the per-step cost of Rprop on a small model, where overhead and not memory rules.

The harness's problems train MLPs of a few hundred weights in four tensors, so what a step
costs there is Python and dispatch overhead, not bandwidth (that is
``experiments/bench_optimizer.py``'s subject). This times ``step()`` alone and ``step(closure)``
with the forward and backward pass of the iris-sized MLP (4-16-3, full batch of 90), for
``torch.optim.Rprop`` (the baseline, measured in the same run) and our implementations, on one
thread as the harness runs. Each figure is the median of ``--repeats`` timings.

    python experiments/bench_step_overhead.py [--steps 2000] [--repeats 5]

Writes reports/bench/step_overhead.csv and prints microseconds per step and the speed-up over
torch.optim.Rprop.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from rprop_bench.optim import Rprop

OUT = Path(__file__).resolve().parents[1] / "reports" / "bench" / "step_overhead.csv"

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "torch_rprop": lambda ps: torch.optim.Rprop(ps),
    "ours_default": lambda ps: Rprop(ps),
    "ours_foreach": lambda ps: Rprop(ps, foreach=True),
    "ours_single": lambda ps: Rprop(ps, foreach=False, fused=False),
    "ours_default_irprop+": lambda ps: Rprop(ps, variant="irprop+"),
}


def time_steps(make: Callable[..., torch.optim.Optimizer], steps: int) -> tuple[float, float]:
    """Seconds per ``step(closure)`` and per bare ``step()`` on the iris-sized MLP."""
    torch.manual_seed(0)
    x, y = torch.randn(90, 4), torch.randint(0, 3, (90,))
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))
    optimizer = make(model.parameters())
    loss_fn = nn.CrossEntropyLoss()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    for _ in range(50):  # warm-up: lazy state, the fused kernel's first load
        optimizer.step(closure)
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.step(closure)
    with_closure = (time.perf_counter() - started) / steps
    loss = closure()  # gradients stay; the bare step reuses them (irprop+ gets the loss)
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.step(lambda: loss)
    return with_closure, (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in OPTIMIZERS}
    for _ in range(args.repeats):  # interleaved, so drifting load hits every optimizer alike
        for name, make in OPTIMIZERS.items():
            timings[name].append(time_steps(make, args.steps))
    rows = []
    for name, runs in timings.items():
        closure_s = statistics.median(t[0] for t in runs)
        step_s = statistics.median(t[1] for t in runs)
        rows.append({"optimizer": name, "us_per_step_with_closure": 1e6 * closure_s,
                     "us_per_step": 1e6 * step_s})  # fmt: skip
    table = pd.DataFrame(rows)
    base = table.set_index("optimizer").loc["torch_rprop"]
    table["speedup_step"] = base["us_per_step"] / table["us_per_step"]
    table["speedup_with_closure"] = (
        base["us_per_step_with_closure"] / table["us_per_step_with_closure"]
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT, index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"written: {OUT}")


if __name__ == "__main__":
    main()
