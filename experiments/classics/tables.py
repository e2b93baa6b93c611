"""The study ``classics``'s tables and figures, from what is in MLflow (and, for the MNIST-1D
package's recipe, from ``reports/mnist1d/runs.csv``, the runs of
``experiments/bench_mnist1d.py``).

Writes, under ``reports/classics/``:

* ``tables/rb1993_vs_published.{csv,tex}``: Riedmiller & Braun (1993) cell by cell;
* ``tables/rb1993_cells.csv``: every cell of part 1 (success rate, mean ± sd, median epochs);
* ``tables/differences.{csv,tex}``: what differs from the paper, with measured effects;
* ``tables/ih2003_vs_published.{csv,tex}``: the variants' order per problem and budget;
* ``tables/mnist1d_vs_published.{csv,tex}``: the package's accuracies and ours;
* ``tables/mnist1d_tuned.{csv,tex}``: every optimizer tuned on MNIST-1D (the studies of
  ``experiment=classics_mnist1d``), both tracks and the defaults, the package's accuracy
  placed beside them; ``tables/mnist1d_tests.{csv,tex}``: the Rprop variants against each
  other optimizer (Wilcoxon paired by seed, Holm);
* ``figures/rb1993_working_range.png``, ``figures/ih2003_curves.png`` and
  ``figures/mnist1d_tuned.png``;
* ``summary.md``: the three tables' verdicts, counted.

Usage: ``python experiments/classics/tables.py [--tracking-uri URI]``
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from rprop_bench import analysis, comparison, plot_style, schema, side_by_side
from rprop_bench.document import Table, table_latex
from rprop_bench.published import PUBLISHED, published_for
from rprop_bench.results import (
    NoRunsError,
    ResultsError,
    StoreNotFoundError,
    load_experiment,
    load_histories,
    load_tuning,
    tuning_studies,
)

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "reports" / "classics"
MNIST1D_RUNS = ROOT / "reports" / "mnist1d" / "runs.csv"
DEFAULT_URI = "sqlite:///mlflow.db"
VARIANTS = ("irprop+", "irprop-", "rprop+", "rprop-")
IMPROVED = {"irprop+", "irprop-"}
BUDGET_SHARES = (0.05, 0.1, 0.3, 1.0)  # of the 2,000 evaluations: 100, 200, 600, 2,000
ROPE = comparison.Rope(relative=1e-3, absolute=1e-12)  # float noise is a tie, not a result


# ------------------------------------------------------------------------------ cells


def cell_method(runs: pd.DataFrame) -> pd.Series:
    """The learning rule of each run: ``rprop+`` (…), ``backprop`` or ``backprop+momentum``."""
    momentum = pd.to_numeric(runs.get("param.optimizer.momentum"), errors="coerce").fillna(0)
    sgd = runs["optimizer"].isin(["sgd", "momentum"])
    named = np.where(momentum > 0, "backprop+momentum", "backprop")
    return pd.Series(np.where(sgd, named, runs["method"]), index=runs.index)


def with_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with the columns that tell cells apart."""
    return runs.assign(
        cell=cell_method(runs),
        lr=pd.to_numeric(runs["param.optimizer.lr"], errors="coerce"),
        dtype=runs["param.train.dtype"],
        loss=runs["param.problem.loss"],
        init_range=pd.to_numeric(runs["param.model.init_range"], errors="coerce"),
    )


def select(runs: pd.DataFrame, **where: object) -> pd.DataFrame:
    """The runs whose columns equal ``where`` (floats compared to a relative 1e-9)."""
    mask = pd.Series(True, index=runs.index)
    for column, value in where.items():
        if isinstance(value, float):
            mask &= np.isclose(runs[column].astype(float), value, rtol=1e-9, atol=0)
        else:
            mask &= runs[column] == value
    return runs[mask]


def epochs_of(trials: pd.DataFrame) -> np.ndarray:
    """Epochs to the criterion per trial, ``inf`` where it was not met (or the run failed)."""
    met = (trials["criterion_met"].fillna(0) > 0) & ~trials["failed"]
    return np.where(met, trials["epochs_to_criterion"].astype(float), np.inf)


def estimates(trials: pd.DataFrame) -> dict[str, side_by_side.Estimate]:
    """Each quantity of a cell with its 95 % interval (:mod:`rprop_bench.side_by_side`):
    the success rate; mean and sd of the epochs over the successes, as the papers report
    them; the median over every trial, ∞ for a miss."""
    epochs = epochs_of(trials)
    hits = int(np.isfinite(epochs).sum())
    return {
        "success_rate": side_by_side.success_estimate(hits, len(epochs)),
        "mean_epochs": side_by_side.mean_estimate(epochs),
        "sd_epochs": side_by_side.sd_estimate(epochs),
        "median_epochs": side_by_side.median_estimate(epochs),
    }


def cell_summary(trials: pd.DataFrame) -> dict[str, float]:
    """A cell's trials, successes, and the values of :func:`estimates`."""
    values = {name: e.value for name, e in estimates(trials).items()}
    successes = int(np.isfinite(epochs_of(trials)).sum())
    return {"trials": len(trials), "successes": successes, **values}


# --------------------------------------------------------------------- part 1: R&B 1993

#: The cells of the table: (problem, method, where). Every cell is float64 on the paper's error
#: with weights in ±1 unless its ``where`` says otherwise. Δ0 = 0.1 is the paper's default;
#: Δ0 = 2.0 (10-5-10) and 1.0 (12-2-12) are where its table reports Rprop (30 trials each,
#: from the working range's grid).
PAPER_FORM = {"dtype": "float64", "loss": "sse_sigmoid", "init_range": 1.0}
RB_CELLS = (
    ("encoder_10_5_10", "rprop+", {"lr": 0.1}),
    ("encoder_10_5_10", "rprop+", {"lr": 2.0}),
    ("encoder_10_5_10", "backprop", {"lr": 1.9}),
    ("encoder_10_5_10", "backprop+momentum", {"lr": 0.19}),
    ("encoder_10_5_10", "backprop+momentum", {"lr": 0.03}),  # its best ε on the range
    ("encoder_12_2_12", "rprop+", {"lr": 0.1}),
    ("encoder_12_2_12", "rprop+", {"lr": 1.0}),
    ("encoder_12_2_12", "backprop", {"lr": 1.9}),
    ("encoder_12_2_12", "backprop+momentum", {"lr": 0.19}),
    ("two_spirals_1988", "rprop+", {"lr": 0.1}),
    ("two_spirals_1988", "backprop+momentum", {"lr": 0.001}),
)
#: The working ranges: (problem, method, the parameter's name), over seeds 0 … 29.
RANGES = (
    ("encoder_10_5_10", "rprop+", "Δ0"),
    ("encoder_12_2_12", "rprop+", "Δ0"),
    ("encoder_10_5_10", "backprop", "ε"),
    ("encoder_10_5_10", "backprop+momentum", "ε (μ = 0.9)"),
)
RANGE_SEEDS = 30
#: Fewer successful trials than this: a mean or sd is shown, not judged (its interval would
#: be too wide to disagree with anything).
MIN_TRIALS = 5
#: The harness's optimizer behind each learning rule (for its colour in figures).
HARNESS_NAME = {"rprop+": "rprop+", "backprop": "sgd", "backprop+momentum": "momentum"}


def _row(part, problem, method, quantity, estimate, published, **extra) -> dict:
    """One side-by-side row: the published value, ours with its interval, the verdict."""
    value = published.value if published is not None else math.nan
    return {
        "part": part,
        "problem": problem,
        "method": method,
        "quantity": quantity,
        "published": value,
        "ours": estimate.value,
        "ci_low": estimate.low,
        "ci_high": estimate.high,
        "n": estimate.n,
        "difference": estimate.value - value if math.isfinite(value) else math.nan,
        "verdict": side_by_side.agreement(value, estimate.low, estimate.high)
        if estimate.n >= MIN_TRIALS
        or quantity not in ("mean_epochs", "sd_epochs")
        or not math.isfinite(value)
        else f"too few successes to judge ({estimate.n})",
        **extra,
        "source": published.source if published else "",
        "location": published.location if published else "",
        "verified": published.verified if published else "",
        "note": published.note if published else "",
    }


def range_rules(summaries: pd.DataFrame) -> dict[str, pd.Series]:
    """Which grid values are inside the working range, by two rules (one row per value of
    ``summaries``, from :func:`cell_summary`):

    * ``every trial``: every trial met the criterion within the budget;
    * ``90 %, 2× best``: at least 90 % of the trials met it, in a mean of at most twice the
      grid's best mean. This rule was chosen after the first rule's ranges were seen to be
      far wider than the paper's, so an agreement under it is weak evidence.
    """
    best = summaries["mean_epochs"].min()
    return {
        "every trial": summaries["success_rate"] >= 1.0,
        "90 %, 2× best": (summaries["success_rate"] >= 0.9)
        & (summaries["mean_epochs"] <= 2 * best),
    }


def _judged(row: dict, published, lr: float) -> dict:
    """A row whose published value holds at another parameter: shown, not judged."""
    if published is not None and published.at is not None and not math.isclose(published.at, lr):
        row["verdict"] = f"published at lr = {published.at:g}: not judged"
    return row


def rb1993_tables(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The side-by-side rows (one per cell and quantity) and every cell's summary."""
    rows, cells = [], []
    for problem, method, where in RB_CELLS:
        trials = select(runs, problem=problem, cell=method, **PAPER_FORM, **where)
        if trials.empty:
            continue
        cells.append({"problem": problem, "method": method, **where, **cell_summary(trials)})
        for quantity, estimate in estimates(trials).items():
            published = published_for("rb1993", problem, method, quantity)
            row = _row(
                "rb1993",
                problem,
                method,
                quantity,
                estimate,
                published,
                setting=f"lr = {where['lr']:g}",
            )
            rows.append(_judged(row, published, where["lr"]))
    for problem, method, name in RANGES:
        grid = select(runs, problem=problem, cell=method, **PAPER_FORM)
        grid = grid[grid["seed"] < RANGE_SEEDS]
        if grid["lr"].nunique() < 3:
            continue
        summaries = grid.groupby("lr").apply(lambda g: pd.Series(cell_summary(g)))
        for rule, inside in range_rules(summaries).items():
            ends = side_by_side.working_range_ends(summaries.index.to_numpy(), inside.to_numpy())
            for quantity, value, bracket in (
                ("working_range_low", ends.low, ends.low_bracket),
                ("working_range_high", ends.high, ends.high_bracket),
            ):
                estimate = side_by_side.Estimate(value, *bracket, RANGE_SEEDS)
                published = published_for("rb1993", problem, method, quantity)
                setting = f"{name}, {len(summaries)} values, rule: {rule}"
                if not ends.contiguous and math.isfinite(ends.low):
                    setting += " (with a hole)"
                rows.append(
                    _row("rb1993", problem, method, quantity, estimate, published, setting=setting)
                )
    return pd.DataFrame(rows), pd.DataFrame(cells)


#: What differs from the paper, measured: the 10-5-10 Rprop+ cell rerun with one thing changed.
DIFFERENCES = (
    ("precision", "float64 (the paper's double precision)", "float32", {"dtype": "float32"}),
    (
        "error measure",
        "½ Σ (t − o)² (sse_sigmoid)",
        "its mean (mse_sigmoid)",
        {"loss": "mse_sigmoid"},
    ),
    ("initialisation", "weights and biases uniform in ±1", "uniform in ±0.5", {"init_range": 0.5}),
)
NOT_MEASURABLE = (
    (
        "data",
        "the encoders and the spirals are generated exactly as defined",
        "-",
        "nothing to measure: the same patterns (the spirals' 194 points by Lang & Witbrock's "
        "formula)",
    ),
    (
        "stopping rule",
        "a trial's epochs are the first epoch at which the criterion holds",
        "-",
        "nothing to measure: full-batch training is deterministic, so stopping there or "
        "training on changes nothing before that epoch",
    ),
    (
        "the paper's initialisation",
        "±1 here",
        "-",
        "not measurable here: the paper's own weight range could not be checked offline; the "
        "±0.5 row bounds the effect of the choice",
    ),
    (
        "SuperSAB, Quickprop",
        "not in the harness",
        "-",
        "not measurable here: the harness implements neither, and imitating them would not be "
        "the paper's rules",
    ),
)


def differences_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Each measurable difference: the cell with it changed against the cell as the paper
    ran it, paired by seed (Wilcoxon signed-rank on epochs, a miss ranking last)."""
    base = select(runs, problem="encoder_10_5_10", cell="rprop+", lr=0.1, **PAPER_FORM)
    rows = []
    for what, ours, changed, change in DIFFERENCES:
        other = select(
            runs, problem="encoder_10_5_10", cell="rprop+", lr=0.1, **{**PAPER_FORM, **change}
        )
        if base.empty or other.empty:
            continue
        a = pd.Series(epochs_of(base), index=base["seed"].to_numpy())
        b = pd.Series(epochs_of(other), index=other["seed"].to_numpy())
        test = comparison.pair_test(b, a)
        sa, sb = cell_summary(base), cell_summary(other)
        paired = a.sort_index().to_numpy(), b.reindex(a.sort_index().index).to_numpy()
        differing = int(np.sum(paired[0] != paired[1]))
        identical = differing == 0
        rows.append(
            {
                "difference": what,
                "ours": ours,
                "changed to": changed,
                "mean epochs (ours)": sa["mean_epochs"],
                "mean epochs (changed)": sb["mean_epochs"],
                "success (ours)": sa["success_rate"],
                "success (changed)": sb["success_rate"],
                "identical trials": identical,
                "trials that differ": differing,
                "test": test.test,
                "p": test.pvalue,
                "effect": "none: every trial's epochs identical"
                if identical
                else (
                    f"{differing} of {len(a)} trials differ; mean "
                    f"{sb['mean_epochs'] - sa['mean_epochs']:+.2f} epochs, success "
                    f"{sa['success_rate']:.0%} → {sb['success_rate']:.0%}, "
                    f"p = {test.pvalue:.2g}"
                ),
            }
        )
    for what, ours, changed, effect in NOT_MEASURABLE:
        rows.append({"difference": what, "ours": ours, "changed to": changed, "effect": effect})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------- part 2: I&H 2003


def ih2003_table(runs: pd.DataFrame, tracking_uri: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per problem and budget: each variant's median training loss, the Holm-corrected
    pairwise Wilcoxon tests (paired by seed), the order they support, and the verdict.

    The verdict: :func:`rprop_bench.side_by_side.ordering_verdict` on the pairs that differ
    at Holm-adjusted p < 0.05 (and by more than float noise, :data:`ROPE`).
    """
    runs = runs[runs["method"].isin(VARIANTS)]
    histories = load_histories(tracking_uri, runs["run_id"].tolist(), [schema.TRAIN_LOSS])
    curves = histories.merge(runs[["run_id", "problem", "method", "seed"]], on="run_id")
    epochs = int(pd.to_numeric(runs["param.train.epochs"]).max())
    rows = []
    for problem, group in curves.groupby("problem"):
        for share in BUDGET_SHARES:
            budget = round(share * epochs)
            at = group[group["step"] <= budget].sort_values("step").groupby("run_id").tail(1)
            values = {m: at[at["method"] == m].set_index("seed")["value"] for m in VARIANTS}
            pairs = list(itertools.combinations(VARIANTS, 2))
            tests = [comparison.pair_test(values[a], values[b], ROPE) for a, b in pairs]
            adjusted = comparison.holm([t.pvalue for t in tests])
            medians = {m: float(np.median(v)) for m, v in values.items() if len(v)}
            significant = []
            for (a, b), p in zip(pairs, adjusted, strict=True):
                if p < 0.05 and not ROPE.tied(medians[a], medians[b]):
                    better, worse = (a, b) if medians[a] < medians[b] else (b, a)
                    significant.append((better, worse, float(p)))
            verdict = side_by_side.ordering_verdict([(b, w) for b, w, _ in significant], IMPROVED)
            rows.append(
                {
                    "problem": problem,
                    "budget (grad evals)": budget,
                    **{f"median {m}": medians.get(m, math.nan) for m in VARIANTS},
                    "order by median": tied_order(medians),
                    "significant (Holm)": "; ".join(
                        f"{w} < {lo} (p = {p:.2g})" for w, lo, p in significant
                    )
                    or "none",
                    "irprop+ beaten by": ", ".join(w for w, lo, _ in significant if lo == "irprop+")
                    or "none",
                    "n seeds": min(len(v) for v in values.values()),
                    "published": PUBLISHED_ORDER,
                    "verdict": verdict,
                }
            )
    return pd.DataFrame(rows), curves


def tied_order(medians: dict[str, float]) -> str:
    """The methods by median, best first, ``=`` between practically equal neighbours
    (:data:`ROPE`) and ``<`` elsewhere."""
    ranked = sorted(medians, key=medians.get)
    text = ranked[0]
    for before, after in itertools.pairwise(ranked):
        text += (" = " if ROPE.tied(medians[before], medians[after]) else " < ") + after
    return text


PUBLISHED_ORDER = next(p.claim for p in PUBLISHED if p.part == "ih2003")


# ---------------------------------------------------------------------- part 3: MNIST-1D


def mnist1d_table(path: Path = MNIST1D_RUNS) -> pd.DataFrame:
    """The package's test accuracy of each model against ours with its recipe (Adam, batches
    of 100), and where the full-batch Rprop variants and Adam land on the same models."""
    runs = pd.read_csv(path)
    rows = []
    for (model, method), group in runs.groupby(["model", "method"], sort=False):
        accuracy = group["test_accuracy"].to_numpy(float) / 100.0
        published = published_for("mnist1d", "mnist1d", model, "test_accuracy")
        recipe = method == "adam_batches"
        estimate = side_by_side.prediction_estimate(accuracy, rounding=0.01 if recipe else 0.0)
        row = _row(
            "mnist1d", model, method, "test_accuracy", estimate, published if recipe else None
        )
        if not recipe:  # placed next to the package's number, not judged against it
            row.update(
                published=published.value if published else math.nan,
                difference=estimate.value - (published.value if published else math.nan),
                verdict="placed (another optimizer, not the paper's)",
            )
        rows.append(row)
    return pd.DataFrame(rows)


MNIST1D_EXPERIMENT = "classics_mnist1d"
#: The scored phases of a tuning study, and the track each stands for.
TRACKS = {
    "tuned_train_evals_to_target": "optimisation",
    "tuned_best_val_loss": "generalisation",
    "defaults": "defaults",
}
RPROP_METHODS = ("irprop-", "irprop+")
#: A run's model tag is the model's kind; the package's models are named by their configs.
MNIST1D_MODELS = {"linear": "linear", "residual_mlp": "mnist1d_mlp", "cnn1d": "mnist1d_cnn"}
TEST_ERROR = "test_error_at_best_val"  # 1 − test accuracy at the best validation epoch
#: What each track's pairs are tested on: the quantity tuned for, then the one reported.
TESTED = {
    "optimisation": (schema.GRAD_EVALS_TO_TARGET,),
    "generalisation": (schema.BEST_VAL_LOSS, TEST_ERROR),
}


def mnist1d_tuned_runs(tracking_uri: str) -> pd.DataFrame | None:
    """The scored runs of the MNIST-1D tuning studies (one per model): each track's winners
    and every optimizer's defaults on the fresh seeds, with ``track``, ``study`` and
    ``chosen`` (the winner's hyperparameters as the study's selection table gives them).
    Where a model has more than one study (its config changed), only the newest counts.
    ``None`` when the experiment has no study yet."""
    try:
        studies = tuning_studies(tracking_uri, MNIST1D_EXPERIMENT)
    except NoRunsError as error:
        print(f"skipped {MNIST1D_EXPERIMENT}: {error}", file=sys.stderr)
        return None
    frames = []
    for study in studies.itertuples():
        for phase, track in TRACKS.items():
            try:
                results = load_experiment(
                    tracking_uri, MNIST1D_EXPERIMENT, f"{study.study_id}.{phase}"
                )
            except NoRunsError:
                continue  # a phase not run yet
            runs = results.runs.assign(
                track=track, study=study.study_id, study_start=study.start_time, chosen="defaults"
            )
            if track != "defaults":
                chosen = pd.Series(dtype=object)
                tuning = load_tuning(tracking_uri, results.parent_run_id)
                if tuning is not None:
                    picked = tuning.selection[tuning.selection["objective"] == tuning.objective]
                    chosen = picked.set_index("optimizer")["chosen"]
                runs["chosen"] = runs["optimizer"].map(chosen).fillna("")
            frames.append(runs)
    if not frames:
        return None
    runs = pd.concat(frames, ignore_index=True)
    runs["model"] = runs["model"].map(MNIST1D_MODELS).fillna(runs["model"])
    return with_test_error(newest_studies(runs))


def with_test_error(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with :data:`TEST_ERROR`, lower is better as every tested quantity."""
    accuracy = pd.to_numeric(runs[schema.TEST_ACCURACY_AT_BEST_VAL], errors="coerce")
    return runs.assign(**{TEST_ERROR: 1.0 - accuracy})


def newest_studies(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of each model's newest study (by ``study_start``): a study rerun after a
    change of config is a new study, and its runs must not pool with the old one's."""
    newest = runs.groupby("model")["study_start"].transform("max")
    return runs[runs["study_start"] == newest]


def run_costs(runs: pd.DataFrame, metric: str) -> pd.Series:
    """Each run's ``metric`` by seed, lower is better: ``inf`` where the run failed or never
    logged it (a target not reached: the column is absent where no run reached it), as the
    tuning objective counts them."""
    if metric not in runs:
        return pd.Series(np.inf, index=runs["seed"].to_numpy())
    values = pd.to_numeric(runs[metric], errors="coerce").to_numpy(float)
    values = np.where(runs["failed"].to_numpy(bool) | ~np.isfinite(values), np.inf, values)
    return pd.Series(values, index=runs["seed"].to_numpy())


def mnist1d_tuned_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per model, track and optimizer: the chosen hyperparameters, the quantities
    of both tracks (medians with order-statistic intervals, the test accuracy as a mean with
    its t interval) and the package's accuracy placed beside them. The accuracy is over the
    runs that have one (``n accuracy``): a run that diverged logs no final metrics."""
    rows = []
    for (model, track, method), group in runs.groupby(["model", "track", "method"], sort=True):
        evals = run_costs(group, schema.GRAD_EVALS_TO_TARGET)
        to_target = side_by_side.median_estimate(evals)
        loss = side_by_side.median_estimate(run_costs(group, schema.FINAL_TRAIN_LOSS))
        val = side_by_side.median_estimate(run_costs(group, schema.BEST_VAL_LOSS))
        accuracy = side_by_side.mean_estimate(
            pd.to_numeric(group[schema.TEST_ACCURACY_AT_BEST_VAL], errors="coerce")
        )
        published = published_for("mnist1d", "mnist1d", model, "test_accuracy")
        rows.append(
            {
                "model": model,
                "track": track,
                "method": method,
                "chosen": group["chosen"].iloc[0],
                "n": len(group),
                "reached target": f"{int(np.isfinite(evals).sum())}/{len(group)}",
                "median evals to target": to_target.value,
                "evals ci_low": to_target.low,
                "evals ci_high": to_target.high,
                "median final train loss": loss.value,
                "train loss ci_low": loss.low,
                "train loss ci_high": loss.high,
                "median best val loss": val.value,
                "val loss ci_low": val.low,
                "val loss ci_high": val.high,
                "test accuracy at best val": accuracy.value,
                "accuracy ci_low": accuracy.low,
                "accuracy ci_high": accuracy.high,
                "n accuracy": accuracy.n,
                "package (placed)": published.value if published else math.nan,
            }
        )
    return pd.DataFrame(rows)


def tested_metric(metric: str, a: pd.Series, b: pd.Series) -> str:
    """The optimisation track tests evaluations to the target, or, where neither method
    reached it in any run, the final training loss (the tuning's tie-break)."""
    if metric == schema.GRAD_EVALS_TO_TARGET and not (np.isfinite(a).any() or np.isfinite(b).any()):
        return schema.FINAL_TRAIN_LOSS
    return metric


def _rprop_order(method: str) -> int:
    """Where ``method`` stands among :data:`RPROP_METHODS` (after them if a baseline), so
    that the two variants are paired once."""
    return RPROP_METHODS.index(method) if method in RPROP_METHODS else len(RPROP_METHODS)


def mnist1d_tests(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model, tuned track and quantity: each Rprop variant against every other optimizer,
    Wilcoxon signed-rank paired by seed (the reruns share seeds), Holm over the pairs."""
    rows = []
    for (model, track), group in runs[runs["track"] != "defaults"].groupby(["model", "track"]):
        methods = sorted(group["method"].unique())
        pairs = [
            (a, b)
            for a in RPROP_METHODS
            for b in methods
            if a in methods and b != a and RPROP_METHODS.index(a) < _rprop_order(b)
        ]
        by_method = {m: group[group["method"] == m] for m in methods}
        for metric in TESTED[track]:
            found = []
            for a, b in pairs:
                va, vb = run_costs(by_method[a], metric), run_costs(by_method[b], metric)
                tested = tested_metric(metric, va, vb)
                if tested != metric:
                    va, vb = run_costs(by_method[a], tested), run_costs(by_method[b], tested)
                found.append((a, b, tested, va, vb, comparison.pair_test(va, vb, ROPE)))
            adjusted = comparison.holm([t.pvalue for *_, t in found])
            for (a, b, tested, va, vb, test), p in zip(found, adjusted, strict=True):
                ma, mb = float(np.median(va)), float(np.median(vb))
                better = a if ma < mb else b
                differs = p < 0.05 and not ROPE.tied(ma, mb)
                rows.append(
                    {
                        "model": model,
                        "track": track,
                        "quantity": tested,
                        "rprop": a,
                        "other": b,
                        "median rprop": ma,
                        "median other": mb,
                        "test": test.test,
                        "n": test.n,
                        "p (Holm)": float(p),
                        "verdict": f"{better} better" if differs else "no difference",
                    }
                )
    return pd.DataFrame(rows)


def mnist1d_tuned_figure(table: pd.DataFrame, recipe: pd.DataFrame) -> None:
    """Per model: the generalisation track's test accuracy (mean, 95 % t interval) and the
    optimisation track's evaluations to the target (median, order-statistic interval; the
    final training loss where no run reached the target) of every tuned optimizer, the
    package's accuracy and our run of its recipe (Adam, batches of 100) marked."""
    import matplotlib as mpl

    models = sorted(table["model"].unique())
    generalisation = ("test accuracy at best val", "accuracy", "test accuracy at best val.")
    to_target = ("median evals to target", "evals", "grad. evaluations to the target")
    final_loss = ("median final train loss", "train loss", "final training loss")
    with mpl.rc_context(plot_style.RC):
        fig = plot_style.new_figure(plot_style.TWO_COLUMN, 2.0 * len(models) + 0.7)
        axes = fig.subplots(len(models), 2, squeeze=False)
        for i, model in enumerate(models):
            for j, track in enumerate(("generalisation", "optimisation")):
                ax = axes[i, j]
                cells = table[(table["model"] == model) & (table["track"] == track)]
                # the optimisation track's quantity, or its tie-break where no run reached
                reached = np.isfinite(cells["median evals to target"]).any()
                shown = generalisation if j == 0 else to_target if reached else final_loss
                column, interval, label = shown
                values = cells[column].to_numpy(float)
                errors = [
                    values - cells[f"{interval} ci_low"],
                    cells[f"{interval} ci_high"] - values,
                ]
                for x, method in enumerate(cells["method"]):
                    color = plot_style.method_color(method)
                    if not np.isfinite(values[x]):  # the median run never reached the target
                        where = ("data", "axes fraction")
                        ax.annotate("median\nnot\nreached", (x, 0.5), xycoords=where,
                                    ha="center", fontsize="x-small")  # fmt: skip
                        continue
                    low, high = errors[0].iloc[x], errors[1].iloc[x]
                    open_above = not np.isfinite(high)  # too few reached: no upper bound
                    ax.errorbar(
                        [x], [values[x]], yerr=[[low], [0.0 if open_above else high]],
                        fmt="o", capsize=2, markersize=4, color=color,
                    )  # fmt: skip
                    if open_above:
                        ax.annotate("↑ open", (x, values[x]), xytext=(5, -3),
                                    textcoords="offset points", ha="left",
                                    fontsize="x-small", color=color)  # fmt: skip
                ax.set_xticks(range(len(cells)), cells["method"], rotation=30, ha="right")
                ax.set_title(f"{model}, {track} track", fontsize="medium")
                ax.set_ylabel(label)
                if track == "optimisation":
                    finite = values[np.isfinite(values)]
                    if finite.size and finite.max() > 10 * finite.min():
                        ax.set_yscale("log")
                    else:
                        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
                    continue
                package = cells["package (placed)"].iloc[0] if len(cells) else math.nan
                ax.axhline(package, color="k", linestyle="--", linewidth=0.8, label="package")
                ours = recipe[(recipe["problem"] == model) & (recipe["method"] == "adam_batches")]
                if len(ours):
                    ax.axhline(float(ours["ours"].iloc[0]), color="grey", linestyle=":",
                               linewidth=0.8, label="its recipe (final), our 3 seeds")  # fmt: skip
                # keep both reference lines in view (axhline does not widen the limits)
                low, high = ax.get_ylim()
                marks = [package, *ours["ours"].astype(float)]
                pad = 0.05 * (max(high, *marks) - min(low, *marks))
                ax.set_ylim(min(low, min(marks) - pad), max(high, max(marks) + pad))
                ax.legend(fontsize="x-small", loc="best")
        fig.suptitle(
            "MNIST-1D, full batch, 1,000 epochs: each optimizer tuned (16 trials × 3 seeds)\n"
            "and rerun on 10 fresh seeds; 95 % intervals",
            fontsize="medium",
        )
        save(fig, "mnist1d_tuned")


# ---------------------------------------------------------------------------- writing


def _fmt(value: object) -> str:
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:.4g}"
    return str(value)


def write_table(frame: pd.DataFrame, name: str, caption: str, columns: list[str]) -> None:
    """``tables/NAME.csv`` (every column, full precision) and ``tables/NAME.tex``."""
    folder = OUT / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / f"{name}.csv", index=False)
    shown = frame[[c for c in columns if c in frame]].map(_fmt)
    bold = shown.map(lambda _: False)
    if "verdict" in shown:
        bold["verdict"] = frame["verdict"] == "agrees"
    (folder / f"{name}.tex").write_text(table_latex(Table(name, caption, shown, bold)))


def working_range_figure(runs: pd.DataFrame) -> None:
    """Success rate and mean epochs over Δ0 (Rprop+) and ε (backprop), the published
    working ranges shaded."""
    import matplotlib as mpl

    with mpl.rc_context(plot_style.RC):
        fig = plot_style.new_figure(plot_style.TWO_COLUMN, 3.6)
        axes = fig.subplots(2, len(RANGES), sharex="col", squeeze=False)
        for j, (problem, method, name) in enumerate(RANGES):
            grid = select(runs, problem=problem, cell=method, **PAPER_FORM)
            grid = grid[grid["seed"] < RANGE_SEEDS]
            top, bottom = axes[0, j], axes[1, j]
            top.set_title(f"{problem.replace('encoder_', '').replace('_', '-')}: {method}")
            bottom.set_xlabel(name)
            if grid["lr"].nunique() < 3:  # not run (yet): an empty panel says so
                top.text(0.5, 0.5, "not run", transform=top.transAxes, ha="center")
                continue
            stats = grid.groupby("lr").apply(lambda g: pd.Series(cell_summary(g)))
            color = plot_style.method_color(HARNESS_NAME[method])
            top.plot(stats.index, stats["success_rate"], "o-", color=color, markersize=3)
            top.set_ylim(-0.05, 1.05)
            bottom.plot(stats.index, stats["mean_epochs"], "o-", color=color, markersize=3)
            bottom.set_xscale("log")
            if (stats["mean_epochs"] > 0).any():
                bottom.set_yscale("log")
            low = published_for("rb1993", problem, method, "working_range_low")
            high = published_for("rb1993", problem, method, "working_range_high")
            if low and high:
                for ax in (top, bottom):
                    ax.axvspan(low.value, high.value, alpha=0.15, color="grey", linewidth=0)
        axes[0, 0].set_ylabel("success rate")
        axes[1, 0].set_ylabel("mean epochs\n(over successes)")
        fig.suptitle(
            "Working ranges (30 trials a point, float64); grey: the published range,\n"
            "Riedmiller & Braun 1993 (the team's transcription, unverified)"
        )
    save(fig, "rb1993_working_range")


def ih2003_figure(curves: pd.DataFrame) -> None:
    """Training loss against gradient evaluations: median and quartile band over seeds."""
    import matplotlib as mpl

    problems = sorted(curves["problem"].unique())
    cols = min(4, len(problems))
    rows = math.ceil(len(problems) / cols)
    with mpl.rc_context(plot_style.RC):
        _ih2003_panels(curves, problems, rows, cols)


def _ih2003_panels(curves: pd.DataFrame, problems: list[str], rows: int, cols: int) -> None:
    fig = plot_style.new_figure(plot_style.TWO_COLUMN, 1.8 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False)
    bands = analysis.seed_bands(curves, ["problem", "method"], "value")
    for ax, problem in zip(axes.flat, problems, strict=False):
        for method in VARIANTS:
            q = bands[(bands["problem"] == problem) & (bands["method"] == method)]
            if q.empty:
                continue
            color = plot_style.method_color(method)
            ax.plot(q["step"], q["median"], label=method, color=color)
            ax.fill_between(q["step"], q["q25"], q["q75"], alpha=0.2, color=color, linewidth=0)
        ax.set(title=problem, xscale="log", yscale="log", xlabel="gradient evaluations")
        ax.set_ylim(bottom=max(ax.get_ylim()[0], 1e-16))  # below: float64 noise, not progress
    for ax in axes.flat[len(problems) :]:
        ax.axis("off")
    axes.flat[0].set_ylabel("training loss (MSE, sigmoid)")
    plot_style.legend_below(fig, axes, list(VARIANTS))
    fig.suptitle(
        "Igel & Hüsken (2003) setting: median and quartiles over 50 seeds (axis cut at 1e-16)"
    )
    save(fig, "ih2003_curves")


def save(fig, name: str) -> None:
    """``figures/NAME.png`` and ``.pdf``, under the harness's figure settings."""
    import matplotlib as mpl

    (OUT / "figures").mkdir(parents=True, exist_ok=True)
    with mpl.rc_context(plot_style.RC):
        for suffix in ("png", "pdf"):
            fig.savefig(OUT / "figures" / f"{name}.{suffix}")


def verdict_counts(frame: pd.DataFrame) -> str:
    counts = frame["verdict"].value_counts()
    return ", ".join(f"{k}: {v}" for k, v in counts.items())


SIDE = [
    "problem",
    "method",
    "quantity",
    "setting",
    "published",
    "ours",
    "ci_low",
    "ci_high",
    "n",
    "difference",
    "verdict",
    "location",
    "verified",
]


TUNED = [
    "model",
    "track",
    "method",
    "chosen",
    "reached target",
    "median final train loss",
    "median best val loss",
    "test accuracy at best val",
    "accuracy ci_low",
    "accuracy ci_high",
    "n accuracy",
    "package (placed)",
]
TESTS = [
    "model",
    "track",
    "quantity",
    "rprop",
    "other",
    "median rprop",
    "median other",
    "p (Holm)",
    "verdict",
]


def test_counts(tests: pd.DataFrame) -> str:
    """How often each Rprop variant is better, worse or not told apart, over the pairs."""
    won = tests["verdict"] == tests["rprop"] + " better"
    lost = tests["verdict"] == tests["other"] + " better"
    return (
        f"{int(won.sum())} of {len(tests)} pairs the Rprop variant better, {int(lost.sum())} "
        f"the other better, {int((~won & ~lost).sum())} no difference (Wilcoxon, Holm)"
    )


def _runs_or_none(tracking_uri: str, experiment: str) -> pd.DataFrame | None:
    """The experiment's runs, or ``None`` (and a line saying so) when it has none yet. A
    store that does not exist raises :class:`StoreNotFoundError`: a mistyped URI must not
    overwrite the committed tables with empty ones."""
    try:
        return load_experiment(tracking_uri, experiment, sweep="all").runs
    except StoreNotFoundError:
        raise
    except ResultsError as error:
        print(f"skipped {experiment}: {error}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default=DEFAULT_URI)
    args = parser.parse_args(argv)
    summary = ["# Study `classics`: verdicts against the published tables", ""]
    try:
        rb = _runs_or_none(args.tracking_uri, "classics_rb1993")
    except StoreNotFoundError as error:
        print(f"error: {error}; nothing written", file=sys.stderr)
        return 2
    if rb is not None:
        rb = with_cells(rb)
        side, cells = rb1993_tables(rb)
        write_table(
            side,
            "rb1993_vs_published",
            "Riedmiller & Braun (1993) side by side (published values unverified)",
            SIDE,
        )
        cells.to_csv(OUT / "tables" / "rb1993_cells.csv", index=False)
        differences = differences_table(rb)
        write_table(
            differences,
            "differences",
            "What differs from the paper, and its effect",
            ["difference", "ours", "changed to", "effect"],
        )
        working_range_figure(rb)
        judged = side[side["verdict"].isin(["agrees", "disagrees"])]
        summary.append(
            f"- Riedmiller & Braun (1993): {verdict_counts(judged)} (of "
            f"{len(side)} rows; the rest not judged: no published value, another setting "
            "or too few successes)"
        )
    ih = _runs_or_none(args.tracking_uri, "classics_ih2003")
    if ih is not None:
        order, curves = ih2003_table(ih, args.tracking_uri)
        write_table(
            order,
            "ih2003_vs_published",
            "Igel & Hüsken (2003): the order of the variants",
            [
                "problem",
                "budget (grad evals)",
                "order by median",
                "significant (Holm)",
                "irprop+ beaten by",
                "verdict",
            ],
        )
        ih2003_figure(curves)
        summary.append(f"- Igel & Hüsken (2003): {verdict_counts(order)} (problem × budget)")
    mnist = mnist1d_table()
    write_table(
        mnist,
        "mnist1d_vs_published",
        "MNIST-1D: the package's accuracies and ours",
        [c for c in SIDE if c not in ("quantity", "setting", "location", "verified")],
    )
    summary += [f"- MNIST-1D: {verdict_counts(mnist)}"]
    tuned = mnist1d_tuned_runs(args.tracking_uri)
    if tuned is not None:
        table, tests = mnist1d_tuned_table(tuned), mnist1d_tests(tuned)
        write_table(
            table, "mnist1d_tuned", "MNIST-1D: every optimizer tuned, on both tracks", TUNED
        )
        write_table(
            tests, "mnist1d_tests", "MNIST-1D: the Rprop variants against the others", TESTS
        )
        mnist1d_tuned_figure(table, mnist)
        summary.append(f"- MNIST-1D, tuned: {test_counts(tests)}")
    summary.append("")
    (OUT / "summary.md").write_text("\n".join(summary))
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
