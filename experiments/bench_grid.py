"""Benchmark (not a test): a hyperparameter grid as one stacked model (``train.vectorize=grid``)
against one Hydra job per run (the peer way), tracked in MLflow both ways.

Cases (real ``python -m rprop_bench sweep`` commands, each into a fresh SQLite store):

* ``rprop``: our Rprop (iRprop-) on iris (MLP, 200 epochs), a grid of ``--axis`` values of
  Δ0 (lr, log-spaced 1e-4 … 1) × η+ (1.05 … 2) × η- (0.1 … 0.8) × ``--seeds`` seeds; with the
  defaults 8 × 8 × 8 × 10 = 5,120 runs;
* ``adam``: Adam, lr (1e-4 … 0.3) × β1 (0.5 … 0.99), ``--axis`` each, × ``--seeds`` seeds.

For each, the grid runs once vectorised (one stack per case), and about ``--peer-sample``
of its runs (its corners: 2 values an axis, and seeds) run one Hydra job per run: the peer's
runs/s, measured in the same invocation, is what the ratio is against (a 5,120-job peer sweep
would take half an hour; its runs/s is steady after the first few jobs,
``reports/bench/sweep_summary.csv``). Both use the sweep defaults (metrics every 5th epoch,
histogram CSV artifacts); the per-run heatmap is off for grid members by default
(``tracking.grid_heatmap``), so the peer is measured both with its default heatmap and
without it (``peer_noheatmap``), and the ratio is given against both.

Columns (``reports/bench_grid/grid.csv``): ``runs``, ``wall_s``, ``runs_per_s``,
``tracking_share`` (the runs' summed ``logging_seconds`` / wall: every MLflow write of the
runs, artifacts included), ``train_share`` (training seconds / wall: the stack's, once, for a
grid; the runs' sum for the peer), ``outside_training_share`` ((``span_s`` - training
seconds) / wall: from the first run's start to the last one's end, all but training, which is
MLflow's writes and look-ups and per-run set-up: an upper bound of tracking's share, since
``logging_seconds`` is logged before a run's last write and misses it), ``ratio_vs_peer`` and
``ratio_vs_peer_noheatmap``.

``--spirals N``: also the two spirals of Lang & Witbrock (1988) as Riedmiller & Braun trained
them (``problem=two_spirals_1988``: the 2-5-5-5-1 shortcut network, Rprop+ at Δ0 = 0.1,
Δmax = 50, float64), N trials × ``--spirals-epochs`` epochs as one stack: its wall time.

``--workers W``: both ways in W joblib worker processes, the grid cut into W stacks
(``sweep.max_stack``), into ``grid_W_workers.csv``.

Usage: ``python experiments/bench_grid.py [--axis 8] [--seeds 10] [--peer-sample 32]
[--cases rprop,adam] [--spirals 100] [--workers 1]``
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sweep import _template, time_sweep

from rprop_bench import schema

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "bench_grid"
COMMON = ["problem=iris", "model=mlp", "train.epochs=200"]


def _values(low: float, high: float, count: int, log: bool = False) -> list[float]:
    grid = np.geomspace(low, high, count) if log else np.linspace(low, high, count)
    return [float(f"{v:.4g}") for v in grid]


def axes(case: str, count: int) -> list[list[str]]:
    """The override lists of ``case`` whose product is its grid, ``count`` values an axis."""
    if case == "rprop":
        etas = [
            f"[{em},{ep}]" for ep in _values(1.05, 2.0, count) for em in _values(0.1, 0.8, count)
        ]
        return [
            [str(v) for v in _values(1e-4, 1.0, count, log=True)],
            etas,
        ]
    return [
        [str(v) for v in _values(1e-4, 0.3, count, log=True)],
        [f"[{b1},0.999]" for b1 in _values(0.5, 0.99, count)],
    ]


#: Each case's optimizer and the config paths of its axes.
CASES = {
    "rprop": ("optimizer=rprop", ("optimizer.lr", "optimizer.etas")),
    "adam": ("optimizer=adam", ("optimizer.lr", "optimizer.betas")),
}


def _sweep(paths: tuple[str, ...], values: list[list[str]], seeds: range) -> list[str]:
    return [
        *(f"{path}=" + ",".join(vals) for path, vals in zip(paths, values, strict=True)),
        "train.seed=" + ",".join(map(str, seeds)),
    ]


def _run(args: list[str], work: Path, template: Path) -> dict[str, float]:
    work.mkdir(parents=True)
    shutil.copy(template, work / "mlflow.db")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    times, finished = time_sweep(args, uri, work, timeout=3600)  # 5,120 runs: ~15 min
    trains = [r.data.metrics.get(schema.TRAIN_SECONDS, 0.0) for r in finished]
    times["train_stack_s"] = max(trains) if trains else 0.0
    return times


def _workers(count: int) -> list[str]:
    """Overrides for ``count`` joblib worker processes (none for 1: the basic launcher)."""
    return [] if count == 1 else ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={count}"]


def measure_case(
    name: str, count: int, seeds: int, sample: int, work: Path, template: Path, workers: int = 1
) -> list[dict]:
    """The grid vectorised, then a corner sub-grid of about ``sample`` runs one job each;
    with ``workers`` > 1, both ways in that many joblib workers (the grid cut into as many
    stacks, ``sweep.max_stack``)."""
    optimizer, paths = CASES[name]
    values = axes(name, count)
    configs = int(np.prod([len(v) for v in values]))
    print(f"{name}: {configs} configurations × {seeds} seeds, vectorised ...", flush=True)
    rows = []
    stacks = [f"sweep.max_stack={-(-configs * seeds // workers)}"] if workers > 1 else []
    grid = _run(
        [optimizer, *COMMON, *_sweep(paths, values, range(seeds)), "train.vectorize=grid",
         *_workers(workers), *stacks],
        work / f"{name}_grid",
        template,
    )  # fmt: skip
    grid["train_s"] = grid["train_stack_s"]
    rows.append({"case": name, "way": "grid", **grid})
    # the peer: one Hydra job per run, on the grid's corners (2 values an axis) and seeds
    corners = [[v[0], v[-1]] for v in axes(name, 2)]
    peer_seeds = range(max(1, sample // int(np.prod([len(c) for c in corners]))))
    for way, extra in (("peer", []), ("peer_noheatmap", ["tracking.heatmap=false"])):
        print(f"{name}: one Hydra job per run ({way}) ...", flush=True)
        peer = _run(
            [optimizer, *COMMON, *_sweep(paths, corners, peer_seeds), *extra, *_workers(workers)],
            work / f"{name}_{way}",
            template,
        )
        rows.append({"case": name, "way": way, **peer})
    for row in rows:
        row["workers"] = workers
        row["configurations"] = configs if row["way"] == "grid" else None
        row["runs_per_s"] = row["runs"] / row["wall_s"]
        row["tracking_share"] = row["logging_s"] / row["wall_s"]
        row["train_share"] = row["train_s"] / row["wall_s"]
        row["outside_training_share"] = (row["span_s"] - row["train_s"]) / row["wall_s"]
    peers = {r["way"]: r["runs_per_s"] for r in rows if r["way"] != "grid"}
    for row in rows:
        row["ratio_vs_peer"] = row["runs_per_s"] / peers["peer"]
        row["ratio_vs_peer_noheatmap"] = row["runs_per_s"] / peers["peer_noheatmap"]
    return rows


def spirals(trials: int, epochs: int, work: Path, template: Path) -> dict:
    """Rprop+ on the 1988 two spirals, ``trials`` seeds stacked: wall time and successes."""
    print(f"two_spirals_1988: {trials} trials × {epochs} epochs, stacked ...", flush=True)
    args = [
        "optimizer=rprop_plus", "problem=two_spirals_1988", "optimizer.lr=0.1",
        "optimizer.step_sizes=[1e-6,50.0]", "train.dtype=float64", f"train.epochs={epochs}",
        "train.log_every=100", "train.histogram_every=0",
        "train.seed=" + ",".join(map(str, range(trials))), "train.vectorize=seeds",
    ]  # fmt: skip
    times = _run(args, work / "spirals", template)
    return {
        "case": "two_spirals_1988",
        "way": "seeds",
        **times,
        "runs_per_s": times["runs"] / times["wall_s"],
        "tracking_share": times["logging_s"] / times["wall_s"],
        "train_share": times["train_stack_s"] / times["wall_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--axis", type=int, default=8, help="values per hyperparameter axis")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--peer-sample", type=int, default=32, help="peer runs measured")
    parser.add_argument("--cases", default="rprop,adam")
    parser.add_argument("--spirals", type=int, default=0, help="two-spirals trials (0: none)")
    parser.add_argument("--spirals-epochs", type=int, default=10_000)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="joblib workers for both ways (>1: the grid in as many stacks)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_grid_") as tmp:
        work = Path(tmp)
        template = _template(work)
        for name in args.cases.split(","):
            if name:
                rows += measure_case(name, args.axis, args.seeds, args.peer_sample, work,
                                     template, args.workers)  # fmt: skip
        if args.spirals:
            rows.append(spirals(args.spirals, args.spirals_epochs, work, template))
    fields = list(dict.fromkeys(key for row in rows for key in row))
    path = args.out / ("grid.csv" if args.workers == 1 else f"grid_{args.workers}_workers.csv")
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{'case':18} {'way':15} {'runs':>5} {'wall s':>8} {'runs/s':>7} {'tracking':>8} "
          f"{'train':>6} {'not train':>9} {'× peer':>7} {'× peer, no heatmap':>18}")  # fmt: skip
    for r in rows:
        print(f"{r['case']:18} {r['way']:15} {r['runs']:5d} {r['wall_s']:8.1f} "
              f"{r['runs_per_s']:7.2f} {r['tracking_share']:8.0%} {r['train_share']:6.0%} "
              f"{r.get('outside_training_share', float('nan')):9.0%} "
              f"{r.get('ratio_vs_peer', float('nan')):7.1f} "
              f"{r.get('ratio_vs_peer_noheatmap', float('nan')):18.1f}")  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
