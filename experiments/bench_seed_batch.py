"""Benchmark (not a test): seed-vectorised training against training the seeds one by one.

For each optimizer, trains 10 seeds of the harness's iris setup (the real config composed as
``python -m rprop_bench optimizer=NAME problem=iris sweep`` composes it: the problem's default
MLP, 200 epochs, the sweep's ``train.log_every=5``, the problem's target loss, one torch
thread) three ways, in the same process and interleaved, so that the ratios compare like with
like on a busy machine:

* ``one_by_one``: :func:`rprop_bench.training.train` once per seed (what a sweep does);
* ``exact``: :func:`rprop_bench.seed_batch.train_seeds` with ``exact=True`` (bit-identical);
* ``batched``: ``train_seeds`` with the default batched forward pass.

Every way builds its models and optimizers inside the timed region and hands a callback to
every seed that keeps the metrics and histogram rows, as the MLflow recorder would (the
MLflow writes themselves are left out: they are the same per run either way). Each way is
timed ``--repeats`` times (garbage collection off while timed, as in ``timeit``); the
median is reported as runs per second, with the ratio to
one-by-one. Writes ``reports/bench/seed_batch.csv`` and ``reports/bench/seed_batch.png``.

Usage: ``python experiments/bench_seed_batch.py [--optimizers irprop_minus,irprop_plus,adam]
[--seeds 10] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import csv
import gc
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from hydra.utils import instantiate

from rprop_bench.cli.build import optimizer_partial
from rprop_bench.cli.compose import compose_config
from rprop_bench.seed_batch import seeded_models, train_seeds
from rprop_bench.training import TrainSettings, train

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "reports" / "bench"
WAYS = ("one_by_one", "exact", "batched")
DEFAULT_OPTIMIZERS = "irprop_minus,irprop_plus,rprop_plus,adam,sgd"


def _setup(optimizer: str) -> tuple:
    """The config's data, model builder, optimizer partial and settings for iris."""
    cfg = compose_config([f"optimizer={optimizer}", "problem=iris", "train.log_every=5"])
    torch.set_num_threads(int(cfg.train.num_threads))
    data = instantiate(cfg.problem.data)
    model_partial = instantiate(cfg.model, _convert_="all")
    make_optimizer = optimizer_partial(cfg)
    settings = TrainSettings(
        epochs=int(cfg.train.epochs),
        batch_size=cfg.train.batch_size,
        target_loss=cfg.train.target_loss,
        log_every=int(cfg.train.log_every),
        histogram_every=int(cfg.train.histogram_every),
    )

    def build() -> torch.nn.Module:
        return model_partial(n_inputs=data.n_inputs, n_outputs=data.n_outputs)

    return data, build, make_optimizer, settings


def _way(name: str, setup: tuple, seeds: range) -> Callable[[], None]:
    data, build, make_optimizer, settings = setup

    def run() -> None:
        kept: list[list] = [[] for _ in seeds]
        callbacks = [
            lambda e, m, rows, k=k: kept[k].append((e, m, rows)) for k in range(len(seeds))
        ]
        models = seeded_models(build, seeds)
        if name == "one_by_one":
            for model, callback in zip(models, callbacks, strict=True):
                train(model, data, make_optimizer(model.parameters()), settings, callback)
        else:
            train_seeds(models, data, make_optimizer, settings, callbacks, exact=name == "exact")

    return run


def measure(optimizer: str, n_seeds: int, repeats: int) -> dict[str, float]:
    """Median seconds of each way for ``n_seeds`` seeds, the ways interleaved per repeat."""
    setup = _setup(optimizer)
    runs = {way: _way(way, setup, range(n_seeds)) for way in WAYS}
    for run in runs.values():  # warm-up: kernels compiled, caches filled
        run()
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(repeats):
        for way, run in runs.items():
            # As timeit does: a full collection before, none during. Otherwise a generation-2
            # collection (~0.2 s, set off by whichever way allocates past the threshold) lands
            # in one way's timing at random and swamps a 0.25 s run.
            gc.collect()
            gc.disable()
            try:
                started = time.perf_counter()
                run()
                times[way].append(time.perf_counter() - started)
            finally:
                gc.enable()
    return {way: statistics.median(t) for way, t in times.items()}


def figure(rows: list[dict]) -> plt.Figure:
    """Runs per second of each way, per optimizer (grouped bars, ratio to one-by-one above)."""
    fig, ax = plt.subplots(figsize=(6.75, 3.0), layout="constrained")
    width = 0.8 / len(WAYS)
    optimizers = list(dict.fromkeys(r["optimizer"] for r in rows))
    for j, way in enumerate(WAYS):
        values = [
            next(r for r in rows if r["optimizer"] == o and r["way"] == way) for o in optimizers
        ]
        xs = [i + (j - 1) * width for i in range(len(optimizers))]
        bars = ax.bar(xs, [v["runs_per_s"] for v in values], width, label=way.replace("_", "-"))
        if way != "one_by_one":
            labels = [f"{v['ratio']:.1f}×" for v in values]
            ax.bar_label(bars, labels=labels, fontsize=7)
    ax.set_xticks(range(len(optimizers)), optimizers)
    ax.set_ylabel("runs / s")
    ax.set_title("10 seeds of the iris MLP, 200 epochs: one by one vs stacked", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", default=DEFAULT_OPTIMIZERS)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for optimizer in args.optimizers.split(","):
        medians = measure(optimizer, args.seeds, args.repeats)
        for way in WAYS:
            rows.append({
                "optimizer": optimizer, "way": way, "seeds": args.seeds,
                "median_seconds": medians[way], "runs_per_s": args.seeds / medians[way],
                "ratio": medians["one_by_one"] / medians[way],
            })  # fmt: skip
            print(f"{optimizer:13s} {way:10s} {medians[way]:7.3f} s  "
                  f"{args.seeds / medians[way]:6.1f} runs/s  "
                  f"{medians['one_by_one'] / medians[way]:4.1f}×", flush=True)  # fmt: skip
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with (OUT_DIR / "seed_batch.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    figure(rows).savefig(OUT_DIR / "seed_batch.png", dpi=150)
    print(f"wrote {OUT_DIR / 'seed_batch.csv'} and {OUT_DIR / 'seed_batch.png'}")


if __name__ == "__main__":
    main()
