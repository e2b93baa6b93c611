"""Benchmark (not a test): MNIST-1D's three models trained by Adam and by iRprop-/iRprop+,
next to the accuracies the ``mnist1d`` package reports.

Each run is the harness's own (the config composed as ``python -m rprop_bench problem=mnist1d
model=M optimizer=O ...`` composes it, built by the CLI's builder, trained by its loop), for
the models of the package's notebooks: ``linear`` (logistic regression), ``mnist1d_mlp`` and
``mnist1d_cnn``. The methods:

* ``adam_batches``: the notebooks' own recipe, Adam at lr 0.01 on batches of 100 for 6,000
  steps (here 167 epochs of the 3,600 training signals: 6,012 steps);
* ``adam_full``, ``irprop_minus``, ``irprop_plus``: full batch, ``--epochs`` epochs (one
  gradient evaluation each), Adam at lr 0.01, the Rprop variants at the harness's defaults.

Reported per model and method, over ``--seeds`` seeds: the final test accuracy (mean ± sd),
the test accuracy at the best validation epoch, the gradient evaluations (passes over the
training set) and the training milliseconds per epoch, with its ratio to ``adam_full`` in
the same run (the machine is noisy; only the ratio compares). Beside them, the package's
README figures (32 %, 68 %, 94 %) and those its classification notebook prints for its own
run (31.5 %, 65.1 %, 92.3 %). Writes ``reports/mnist1d/runs.csv``, ``summary.csv``,
``summary.md`` and ``accuracy.png``.

Usage: ``python experiments/bench_mnist1d.py [--seeds 3] [--epochs 1000]
[--models linear,mnist1d_mlp,mnist1d_cnn]``
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from rprop_bench import schema
from rprop_bench.cli.build import build
from rprop_bench.cli.compose import compose_config
from rprop_bench.training import train

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "reports" / "mnist1d"
MODELS = ("linear", "mnist1d_mlp", "mnist1d_cnn")
#: Test accuracy (%) the package's README reports, and what its classification notebook
#: prints for its own run (github.com/greydanus/mnist1d, notebooks/mnist1d-classification).
PUBLISHED = {"linear": 32.0, "mnist1d_mlp": 68.0, "mnist1d_cnn": 94.0}
NOTEBOOK = {"linear": 31.5, "mnist1d_mlp": 65.1, "mnist1d_cnn": 92.3}
#: 6,000 steps of 100 signals, as in the notebooks, on our 3,600 training signals.
BATCH_EPOCHS = 167
BASELINE = "adam_full"


def methods(epochs: int) -> dict[str, list[str]]:
    """Each method's overrides."""
    return {
        "adam_batches": ["optimizer=adam", "optimizer.lr=0.01", "train.batch_size=100",
                         f"train.epochs={BATCH_EPOCHS}"],
        "adam_full": ["optimizer=adam", "optimizer.lr=0.01", f"train.epochs={epochs}"],
        "irprop_minus": ["optimizer=irprop_minus", f"train.epochs={epochs}"],
        "irprop_plus": ["optimizer=irprop_plus", f"train.epochs={epochs}"],
    }  # fmt: skip


def run_once(model: str, overrides: list[str], seed: int) -> dict[str, float]:
    """One run as the CLI would build and train it (without MLflow); its final metrics."""
    cfg = compose_config(["problem=mnist1d", f"model={model}", f"train.seed={seed}",
                          "train.log_every=10", "train.histogram_every=0", *overrides])  # fmt: skip
    built = build(cfg)
    result = train(built.model, built.data, built.optimizer, built.settings)
    if result.status != "finished":
        raise RuntimeError(f"{model} {overrides} seed {seed}: {result.reason}")
    final = result.final_metrics
    return {
        "test_accuracy": 100 * final[schema.TEST_ACCURACY],
        "test_accuracy_at_best_val": 100 * final[schema.TEST_ACCURACY_AT_BEST_VAL],
        "grad_evals": final[schema.GRAD_EVALS],
        "ms_per_epoch": 1000 * result.train_seconds / result.epochs_run,
    }


def summarise(rows: list[dict]) -> list[dict]:
    """Mean ± sd per model and method, with the time ratio to the baseline method."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        cells = {m: [r for r in rows if r["model"] == model and r["method"] == m]
                 for m in dict.fromkeys(r["method"] for r in rows)}  # fmt: skip
        base = statistics.median(r["ms_per_epoch"] for r in cells[BASELINE])
        for method, runs in cells.items():
            acc = [r["test_accuracy"] for r in runs]
            ms = statistics.median(r["ms_per_epoch"] for r in runs)
            out.append({
                "model": model, "method": method, "seeds": len(runs),
                "test_accuracy_mean": statistics.mean(acc),
                "test_accuracy_sd": statistics.stdev(acc) if len(acc) > 1 else float("nan"),
                "test_accuracy_at_best_val_mean": statistics.mean(
                    r["test_accuracy_at_best_val"] for r in runs),
                "grad_evals": runs[0]["grad_evals"],
                "ms_per_epoch": ms, "time_per_epoch_vs_adam_full": ms / base,
                "package_readme": PUBLISHED[model], "package_notebook": NOTEBOOK[model],
            })  # fmt: skip
    return out


def write_markdown(summary: list[dict], path: Path, seeds: int, epochs: int) -> None:
    lines = [
        f"# MNIST-1D: test accuracy (%), {seeds} seeds, mean ± sd",
        "",
        f"Full-batch methods: {epochs} epochs. adam_batches: Adam lr 0.01, batches of 100, "
        f"{BATCH_EPOCHS} epochs (the notebooks' 6,000 steps). Package: its README / what its "
        "notebook prints for its own run.",
        "",
        "| model | method | test acc. | at best val. | grad evals | ms/epoch | × adam_full "
        "| package |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['model']} | {s['method']} | {s['test_accuracy_mean']:.1f} ± "
            f"{s['test_accuracy_sd']:.1f} | {s['test_accuracy_at_best_val_mean']:.1f} | "
            f"{s['grad_evals']:.0f} | {s['ms_per_epoch']:.1f} | "
            f"{s['time_per_epoch_vs_adam_full']:.2f} | {s['package_readme']:.0f} / "
            f"{s['package_notebook']:.1f} |"
        )
    path.write_text("\n".join(lines) + "\n")


def plot(summary: list[dict], path: Path) -> None:
    models = list(dict.fromkeys(s["model"] for s in summary))
    names = list(dict.fromkeys(s["method"] for s in summary))
    fig, ax = plt.subplots(figsize=(7.5, 3.6), layout="constrained")
    width = 0.8 / len(names)
    for j, method in enumerate(names):
        cells = [next(s for s in summary if s["model"] == m and s["method"] == method)
                 for m in models]  # fmt: skip
        xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(models))]
        ax.bar(xs, [c["test_accuracy_mean"] for c in cells], width,
               yerr=[c["test_accuracy_sd"] for c in cells], capsize=2, label=method)  # fmt: skip
    for i, model in enumerate(models):
        ax.hlines(PUBLISHED[model], i - 0.45, i + 0.45, colors="k", linestyles="--",
                  label="package README" if i == 0 else None)  # fmt: skip
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncols=3, loc="upper left")
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    rows = []
    plan = [
        (model, method, overrides, seed)
        for model in args.models.split(",")
        for method, overrides in methods(args.epochs).items()
        for seed in range(args.seeds)
    ]
    started = time.perf_counter()
    for i, (model, method, overrides, seed) in enumerate(plan, 1):
        found = run_once(model, overrides, seed)
        rows.append({"model": model, "method": method, "seed": seed, **found})
        print(f"[{i}/{len(plan)}, {time.perf_counter() - started:.0f} s] {model} {method} "
              f"seed {seed}: test accuracy {found['test_accuracy']:.1f} %, "
              f"{found['ms_per_epoch']:.1f} ms/epoch", flush=True)  # fmt: skip
    with (OUT_DIR / "runs.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = summarise(rows)
    with (OUT_DIR / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    write_markdown(summary, OUT_DIR / "summary.md", args.seeds, args.epochs)
    plot(summary, OUT_DIR / "accuracy.png")
    print((OUT_DIR / "summary.md").read_text())


if __name__ == "__main__":
    main()
