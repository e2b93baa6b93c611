"""Benchmark: Rprop step throughput against torch.optim.Rprop and the memory roofline.

Every figure is measured in the same run: torch.optim.Rprop (foreach and single-tensor), our
paths (fused, foreach, single) and the copy bandwidth that bounds a memory-bound step. An
Rprop step must read param, grad, prev and Δ and write param, prev and Δ: 7 values per weight
(28 bytes in float32), so the roofline is copy bandwidth / 28 B weights per second.

    python experiments/bench_optimizer.py [--quick] [--device cpu|cuda]

Writes reports/bench/optimizer.csv and reports/bench/optimizer.png and prints a table of
weights/s, the ratio to torch.optim.Rprop(foreach=True) and the % of the measured roofline.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from rprop_bench.optim import Rprop

VALUES_PER_WEIGHT = 7  # read param, grad, prev, Δ; write param, prev, Δ

OPTIMIZERS: dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]] = {
    "torch_foreach": lambda ps: torch.optim.Rprop(ps, foreach=True),
    "torch_single": lambda ps: torch.optim.Rprop(ps, foreach=False),
    "ours_fused": lambda ps: Rprop(ps, fused=True),
    "ours_foreach": lambda ps: Rprop(ps, foreach=True),
    "ours_single": lambda ps: Rprop(ps, foreach=False),
    "ours_fused_irprop+": lambda ps: Rprop(ps, fused=True, variant="irprop+"),
}


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_per_call(fn: Callable[[], object], device: str, min_seconds: float) -> float:
    """Median-free robust timing: best of 5 batches, each running at least min_seconds / 5."""
    fn()
    synchronize(device)
    best = float("inf")
    for _ in range(5):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            synchronize(device)
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds / 5:
                break
        best = min(best, elapsed / calls)
    return best


def copy_bandwidth(device: str, n: int = 10_000_000) -> float:
    """Bytes per second of a large float32 copy (one read + one write per value)."""
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    seconds = time_per_call(lambda: dst.copy_(src), device, 1.0)
    return 2 * n * 4 / seconds


def step_time(name: str, total: int, tensors: int, device: str, min_seconds: float) -> float:
    params = [
        torch.randn(total // tensors, device=device, requires_grad=True) for _ in range(tensors)
    ]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = OPTIMIZERS[name](params)
    loss = torch.tensor(1.0)

    def one_step() -> None:
        # Flip half the gradients' signs each call so every branch of the step runs.
        for p in params:
            p.grad.neg_()
        opt.step(lambda: loss)

    return time_per_call(one_step, device, min_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes, shorter timings")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    args = parser.parse_args()
    sizes = [10**3, 10**5, 10**7] if args.quick else [10**3, 10**4, 10**5, 10**6, 10**7]
    min_seconds = 0.3 if args.quick else 1.0

    bandwidth = copy_bandwidth(args.device)
    roofline = bandwidth / (VALUES_PER_WEIGHT * 4)
    print(f"device {args.device}, threads {torch.get_num_threads()}")
    print(f"copy bandwidth {bandwidth / 1e9:.1f} GB/s -> roofline {roofline / 1e6:.0f} M weights/s")

    rows = []
    for total in sizes:
        for tensors in (1, 100):
            if total // tensors < 10:
                continue
            baseline = step_time("torch_foreach", total, tensors, args.device, min_seconds)
            for name in OPTIMIZERS:
                seconds = (
                    baseline
                    if name == "torch_foreach"
                    else step_time(name, total, tensors, args.device, min_seconds)
                )
                rows.append(
                    {
                        "device": args.device,
                        "weights": total,
                        "tensors": tensors,
                        "optimizer": name,
                        "seconds_per_step": seconds,
                        "weights_per_second": total / seconds,
                        "speedup_vs_torch_foreach": baseline / seconds,
                        "percent_of_roofline": 100 * total / seconds / roofline,
                        "copy_bandwidth_gb_s": bandwidth / 1e9,
                    }
                )
                print(
                    f"{total:>9,} w in {tensors:>3} tensors  {name:<18} "
                    f"{total / seconds / 1e6:9.1f} Mw/s  x{baseline / seconds:5.2f} vs torch "
                    f"{100 * total / seconds / roofline:6.1f}% roofline"
                )
    frame = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "optimizer.csv", index=False)
    figure = plot(frame, roofline)
    figure.savefig(args.out / "optimizer.png", dpi=150, bbox_inches="tight")
    print(f"wrote {args.out / 'optimizer.csv'} and {args.out / 'optimizer.png'}")


def plot(frame: pd.DataFrame, roofline: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(6.75, 2.6), sharey=True, layout="constrained")
    for ax, tensors in zip(axes, (1, 100), strict=True):
        part = frame[frame["tensors"] == tensors]
        for name, curve in part.groupby("optimizer", sort=False):
            ax.plot(curve["weights"], curve["weights_per_second"], marker="o", label=name)
        ax.axhline(roofline, color="black", linestyle="--", linewidth=1, label="roofline")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("weights per step")
        ax.set_title(f"{tensors} tensor{'s' if tensors > 1 else ''}")
    axes[0].set_ylabel("weights / s")
    axes[1].legend(fontsize=6, loc="lower right")
    return fig


if __name__ == "__main__":
    main()
