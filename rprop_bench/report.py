"""Render a comparison report of an experiment from what MLflow holds.

``build_report`` reads the runs (:mod:`rprop_bench.results`), computes every number with the
pure functions of :mod:`rprop_bench.analysis`, draws with :mod:`rprop_bench.plotting`, lays
the sections out as blocks of :mod:`rprop_bench.document`, and writes ``<out>/``:

- ``index.html``: self-contained (figures embedded as base64 PNG, inline CSS, no external
  reference); every string read from the store is HTML-escaped;
- ``report.md``;
- ``figures/``: each figure as PDF and PNG (and SVG on request);
- ``tables/``: each table as CSV (numbers) and LaTeX (booktabs, best per problem in bold).

It never trains: a store filled on another machine reports the same, and it never writes to
MLflow itself: :func:`rprop_bench.tracking.log_report_artifacts` logs the folder under the
sweep's parent run (:data:`schema.ARTIFACT_REPORT_DIR`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from rprop_bench import analysis, plotting, results, schema
from rprop_bench.document import (
    DocumentWriter,
    render_html,
    render_md,
    slug,
)

__all__ = [
    "FORMATS",
    "LINE_PROBLEM",
    "LINE_TRUTH",
    "Report",
    "ReportOptions",
    "build_report",
]

FORMATS = ("pdf", "png", "svg")
LINE_PROBLEM = "line"  # the seed example problem y = 2x + 3
LINE_TRUTH = (2.0, 3.0)
_BASELINE_PREFERENCE = ("adam", "sgd", "momentum", "rmsprop", "adamw", "lbfgs")
_FAN_METRICS = list(schema.STEP_QUANTILES)


@dataclass(frozen=True)
class ReportOptions:
    """How to render a report.

    Attributes:
        out: output folder.
        formats: figure files to write, a subset of :data:`FORMATS`.
        sweep: which runs: ``"latest"`` sweep, ``"all"`` runs, or a sweep/parent run id.
        confidence: coverage of the bootstrap intervals.
        n_resamples: bootstrap resamples.
        seed: bootstrap seed (the report repeats exactly with the same seed).
        log_to_mlflow: also log the report under the sweep's parent run.
        progress: show progress bars while reading.
        label_params: params (e.g. ``"train.batch_size"``) whose value joins the optimizer's
            name, so that runs differing only there show apart (``"irprop- batch_size=8"``).
    """

    out: Path
    formats: tuple[str, ...] = ("pdf", "png")
    sweep: str = "latest"
    confidence: float = 0.95
    n_resamples: int = 2000
    seed: int = 0
    log_to_mlflow: bool = True
    progress: bool = True
    label_params: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise results.ResultsError(
                f"report.formats must be a non-empty subset of {list(FORMATS)}, got "
                f"{list(self.formats)}"
            )
        if not 0.0 < self.confidence < 1.0:
            raise results.ResultsError(
                f"report.confidence must be in (0, 1), got {self.confidence}"
            )
        if self.n_resamples < 1:
            raise results.ResultsError(f"report.n_resamples must be >= 1, got {self.n_resamples}")


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    out: Path
    index_html: Path
    markdown: Path
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    logged_to_run: str | None = None
    n_runs: int = 0
    n_failed: int = 0


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.4g}"


def _fmt_miqr(s: analysis.Summary) -> str:
    if s.n == 0:
        return "–"
    return f"{_fmt(s.median)} [{_fmt(s.q25)}, {_fmt(s.q75)}]"


def _fmt_ci(s: analysis.Summary) -> str:
    if s.n == 0:
        return "–"
    return f"({_fmt(s.ci_low)}, {_fmt(s.ci_high)})"


def _score_metric(runs: pd.DataFrame) -> tuple[str, str]:
    """The test metric beside the loss, and its label, from the runs' task."""
    tasks = set(runs["task"]) - {""}
    if tasks == {schema.TASK_REGRESSION}:
        return schema.TEST_R2, "test R²"
    if tasks == {schema.TASK_CLASSIFICATION}:
        return schema.TEST_ACCURACY, "test accuracy"
    if schema.TEST_ACCURACY in runs and runs[schema.TEST_ACCURACY].notna().any():
        return schema.TEST_ACCURACY, "test accuracy"
    return schema.TEST_R2, "test R²"


def _column(runs: pd.DataFrame, name: str) -> pd.Series:
    if name in runs:
        return pd.to_numeric(runs[name], errors="coerce").astype(float)
    return pd.Series(np.nan, index=runs.index, dtype=float)


def _check_final_metrics(runs: pd.DataFrame) -> None:
    """Every finished run must have the final metrics the report needs (clear error otherwise)."""
    results.require_metrics(runs, [schema.TEST_LOSS])
    for problem, g in runs.groupby("problem"):
        metric, _ = _score_metric(g)
        try:
            results.require_metrics(g, [metric])
        except results.MissingMetricError as exc:
            raise results.MissingMetricError(f"problem {problem!r}: {exc}") from None


def _check_histories(runs: pd.DataFrame, histories: pd.DataFrame) -> None:
    """Every finished run must have a training-loss history (clear error otherwise)."""
    finished = runs.loc[~runs["failed"], ["run_id", "run_name"]]
    has = set(histories.loc[histories["metric"] == schema.TRAIN_LOSS, "run_id"])
    lacking = finished[~finished["run_id"].isin(has)]
    if len(lacking):
        ex = lacking.iloc[0]
        raise results.MissingMetricError(
            f"{len(lacking)} of {len(finished)} finished runs lack metric history "
            f"{schema.TRAIN_LOSS!r} (e.g. run {ex['run_id']} {ex['run_name']!r})"
        )


def _representative(runs: pd.DataFrame) -> pd.Series | None:
    """The finished run whose test loss is closest to the median (lowest seed on ties)."""
    ok = runs[~runs["failed"]].copy()
    if ok.empty:
        return None
    loss = _column(ok, schema.TEST_LOSS)
    ok["_dist"] = (loss - loss.median()).abs().fillna(np.inf)
    return ok.sort_values(["_dist", "seed", "run_id"]).iloc[0]


def _step_methods(methods: Iterable[str]) -> list[str]:
    """Rprop-family methods plus one baseline to compare their steps with."""
    methods = sorted(methods)
    rprop = [m for m in methods if plotting.is_rprop(m)]
    others = [m for m in methods if not plotting.is_rprop(m)]
    baseline = [m for m in _BASELINE_PREFERENCE if m in others][:1] or others[:1]
    return (rprop + baseline) if rprop else methods[:2]


# ----------------------------------------------------------------------------- sections


def _problem_section(
    w: DocumentWriter,
    problem: str,
    runs: pd.DataFrame,
    wide: pd.DataFrame,
    histograms: pd.DataFrame,
    opts: ReportOptions,
) -> pd.DataFrame:
    """Loss curves, step sizes and the final table of one problem; returns the table's numbers."""
    w.heading(2, f"Problem: {problem}")
    n_failed = int(runs["failed"].sum())
    w.para(
        f"{len(runs)} runs: {runs['method'].nunique()} optimizers × "
        f"{runs['seed'].nunique()} seeds; {n_failed} failed or diverged."
    )
    name = slug(problem)
    # --- loss curves
    w.heading(3, f"{problem}: loss curves")
    data = wide[wide["problem"] == problem]
    bands = {}
    for metric, label in (
        (schema.TRAIN_LOSS, "training loss"),
        (schema.VAL_LOSS, "validation loss"),
    ):
        if metric in data and data[metric].notna().any():
            time = schema.WALL_TIME if schema.WALL_TIME in data else None
            bands[label] = analysis.seed_bands(data, ["method"], metric, time=time)
    if bands:
        fig = plotting.loss_curves(bands, title=problem)
        w.figure(
            fig,
            f"{name}_loss_curves",
            f"{problem}: median loss across seeds with interquartile band, against epoch "
            "(left) and median wall time (right). Diverged values are left out of the band.",
        )
    # --- step sizes
    methods = _step_methods(runs["method"].unique())
    heatmaps, fans, chosen = [], {}, []
    for method in methods:
        rep = _representative(runs[runs["method"] == method])
        if rep is None:
            continue
        chosen.append(f"{method}: seed {rep['seed']}")
        h = histograms[histograms["run_id"] == rep["run_id"]]
        h = h[h["layer"].astype(str) == schema.HISTOGRAM_ALL_LAYERS] if len(h) else h
        if len(h):
            heatmaps.append((method, *analysis.histogram_grid(h)))
        else:
            heatmaps.append((method, np.array([]), np.array([0.0, 1.0]), np.zeros((0, 1))))
        fan_cols = [c for c in _FAN_METRICS if c in data]
        if fan_cols:
            fans[method] = data.loc[data["run_id"] == rep["run_id"], ["step", *fan_cols]]
    if heatmaps and (any(np.size(c) for *_, c in heatmaps) or fans):
        w.heading(3, f"{problem}: step sizes")
        fig = plotting.step_size_panels(heatmaps, fans, title=problem)
        w.figure(
            fig,
            f"{name}_step_sizes",
            f"{problem}: distribution over all weights of the step each weight took per epoch "
            "(Δ for the Rprop family, |Δθ| for the baseline): histogram (left) and quantiles "
            f"(right), for the run with median test loss of each optimizer ({'; '.join(chosen)}).",
        )
    # --- final table
    w.heading(3, f"{problem}: final results")
    score, score_label = _score_metric(runs)
    rows, display = [], []
    for method, g in runs.groupby("method", sort=True):
        ok = g[~g["failed"]]
        loss = analysis.summarize(
            _column(ok, schema.TEST_LOSS),
            confidence=opts.confidence,
            n_resamples=opts.n_resamples,
            random_state=opts.seed,
        )
        sc = analysis.summarize(
            _column(ok, score),
            confidence=opts.confidence,
            n_resamples=opts.n_resamples,
            random_state=opts.seed,
        )
        reached = ok[_column(ok, schema.REACHED_TARGET) == 1.0]
        ep = analysis.summarize(_column(reached, schema.EPOCHS_TO_TARGET), n_resamples=1)
        sec = analysis.summarize(_column(reached, schema.SECONDS_TO_TARGET), n_resamples=1)
        rows.append(
            {
                "problem": problem,
                "method": method,
                "n_runs": len(g),
                "n_failed": int(g["failed"].sum()),
                "test_loss_median": loss.median,
                "test_loss_q25": loss.q25,
                "test_loss_q75": loss.q75,
                "test_loss_ci_low": loss.ci_low,
                "test_loss_ci_high": loss.ci_high,
                f"{score}_median": sc.median,
                f"{score}_q25": sc.q25,
                f"{score}_q75": sc.q75,
                f"{score}_ci_low": sc.ci_low,
                f"{score}_ci_high": sc.ci_high,
                "n_reached_target": len(reached),
                "epochs_to_target_median": ep.median,
                "epochs_to_target_q25": ep.q25,
                "epochs_to_target_q75": ep.q75,
                "seconds_to_target_median": sec.median,
                "seconds_to_target_q25": sec.q25,
                "seconds_to_target_q75": sec.q75,
            }
        )
        display.append(
            {
                "optimizer": method,
                "runs": str(len(g)),
                "failed": str(int(g["failed"].sum())),
                "test loss median [IQR]": _fmt_miqr(loss),
                f"test loss {opts.confidence:.0%} CI": _fmt_ci(loss),
                f"{score_label} median [IQR]": _fmt_miqr(sc),
                f"{score_label} {opts.confidence:.0%} CI": _fmt_ci(sc),
                "reached target": f"{len(reached)}/{len(g)}",
                "epochs to target": _fmt_miqr(ep),
                "seconds to target": _fmt_miqr(sec),
            }
        )
    numbers = pd.DataFrame(rows)
    disp = pd.DataFrame(display)
    bold = pd.DataFrame(False, index=disp.index, columns=disp.columns)
    for col, num, best in (
        ("test loss median [IQR]", "test_loss_median", "min"),
        (f"{score_label} median [IQR]", f"{score}_median", "max"),
        ("epochs to target", "epochs_to_target_median", "min"),
        ("seconds to target", "seconds_to_target_median", "min"),
    ):
        vals = numbers[num].to_numpy(float)
        if np.isfinite(vals).any():
            target = np.nanmin(vals) if best == "min" else np.nanmax(vals)
            bold.loc[vals == target, col] = True
    w.table(
        f"{name}_final",
        f"{problem}: final results over seeds (median [interquartile range] and "
        f"{opts.confidence:.0%} bootstrap CI of the median over finished runs, "
        f"{opts.n_resamples} resamples, seed {opts.seed}); time to target over runs that "
        "reached the target loss. Best per column in bold.",
        numbers,
        disp,
        bold,
    )
    failed = runs[runs["failed"]]
    if len(failed):
        w.para(
            f"Failed or diverged runs ({len(failed)}): "
            + "; ".join(
                f"{r.run_name} (seed {r.seed}, {r.status}"
                + (f": {r.failure_reason}" if r.failure_reason else "")
                + ")"
                for r in failed.itertuples()
            )
        )
    return numbers


def _costs(runs: pd.DataFrame, value: pd.Series, problems, methods) -> np.ndarray:
    """(n_problems, n_methods) median cost over seeds; failed/missing runs cost inf."""
    f = runs[["problem", "method"]].copy()
    f["cost"] = np.where(runs["failed"], np.inf, value.fillna(np.inf))
    med = f.groupby(["problem", "method"])["cost"].median()
    out = np.full((len(problems), len(methods)), np.inf)
    for i, p in enumerate(problems):
        for j, m in enumerate(methods):
            if (p, m) in med.index:
                out[i, j] = med.loc[(p, m)]
    return out


def _across_section(w: DocumentWriter, runs: pd.DataFrame) -> None:
    w.heading(2, "Across problems")
    problems = sorted(runs["problem"].unique())
    methods = sorted(runs["method"].unique())
    if len(problems) < 2 or len(methods) < 2:
        w.para(
            "Comparisons across problems need at least two problems and two optimizers; "
            f"this report has {len(problems)} problem(s) and {len(methods)} optimizer(s)."
        )
        return
    loss_cost = _costs(runs, _column(runs, schema.TEST_LOSS), problems, methods)
    tt = np.where(
        _column(runs, schema.REACHED_TARGET) == 1.0, _column(runs, schema.SECONDS_TO_TARGET), np.inf
    )
    time_cost = _costs(runs, pd.Series(tt, index=runs.index), problems, methods)
    epochs = np.where(
        _column(runs, schema.REACHED_TARGET) == 1.0, _column(runs, schema.EPOCHS_TO_TARGET), np.inf
    )
    epoch_cost = _costs(runs, pd.Series(epochs, index=runs.index), problems, methods)
    tiny = np.finfo(float).tiny
    profiles = {}
    for name, cost in (
        ("final test loss", loss_cost),
        ("seconds to target", time_cost),
        ("epochs to target", epoch_cost),
    ):
        c = np.clip(cost, tiny, None)
        taus = analysis.profile_taus(c)
        profiles[name] = (taus, analysis.performance_profile(c, taus))
    w.heading(3, "Performance profiles")
    w.figure(
        plotting.performance_profiles(profiles, methods),
        "performance_profiles",
        "Dolan–Moré performance profiles over problems: the fraction of problems on which an "
        "optimizer's median cost is within a factor τ of the best, for the final test loss, the "
        "seconds and the epochs to the target loss (epochs do not depend on the machine's "
        "load). Failed or never-reaching runs count as ∞.",
    )
    w.heading(3, "Ranks, Friedman test and critical difference")
    criteria = [
        ("final training loss", "final_train_loss", _column(runs, schema.FINAL_TRAIN_LOSS)),
        ("final test loss", "test_loss", _column(runs, schema.TEST_LOSS)),
        ("epochs to target", "epochs_to_target", pd.Series(epochs, index=runs.index)),
    ]
    cd = analysis.nemenyi_critical_difference(len(methods), len(problems))
    w.para(
        f"Average ranks over {len(problems)} problems (1 = best) of each optimizer's median over "
        "seeds, for three criteria; a failed or never-reaching run counts as ∞. The Friedman "
        "test asks whether the optimizers differ at all; the Nemenyi critical difference at "
        f"α = 0.05 for {len(methods)} optimizers and {len(problems)} problems is {cd:.3f}."
    )
    rank_rows, tests = [], []
    disp = pd.DataFrame({"optimizer": methods})
    bold = pd.DataFrame(False, index=disp.index, columns=[])
    for label, key, values in criteria:
        if values.isna().all():
            continue
        fr = analysis.friedman_test(_costs(runs, values, problems, methods))
        tests.append(f"{label}: χ² = {_fmt(fr.statistic)}, p = {_fmt(fr.pvalue)}")
        for m, r in zip(methods, fr.average_ranks, strict=True):
            rank_rows.append(
                {
                    "criterion": label,
                    "method": m,
                    "average_rank": r,
                    "friedman_chi2": fr.statistic,
                    "friedman_p": fr.pvalue,
                    "nemenyi_cd": cd,
                }
            )
        disp[label] = [f"{r:.2f}" for r in fr.average_ranks]
        bold[label] = fr.average_ranks == fr.average_ranks.min()
        w.figure(
            plotting.cd_diagram(
                fr.average_ranks,
                methods,
                cd,
                analysis.cd_cliques(fr.average_ranks, cd),
                title=f"average rank: {label}",
            ),
            f"cd_diagram_{key}",
            f"Critical-difference diagram on {label}: optimizers joined by a bar are not "
            f"significantly different (Nemenyi, α = 0.05). Friedman χ² = {_fmt(fr.statistic)}, "
            f"p = {_fmt(fr.pvalue)}.",
        )
    bold.insert(0, "optimizer", False)
    w.table(
        "ranks",
        "Average ranks per criterion (best in bold). Friedman tests: " + "; ".join(tests) + ".",
        pd.DataFrame(rank_rows),
        disp,
        bold[disp.columns],
    )
    w.heading(3, "Probability of improvement")
    for label, key, values in criteria[1:]:
        frame = runs[["problem", "method"]].copy()
        frame["value"] = np.where(runs["failed"], np.nan, values)
        matrix = analysis.improvement_matrix(frame, methods=methods)
        suffix = "" if key == "test_loss" else f"_{key}"
        w.figure(
            plotting.improvement_heatmap(matrix, title=label),
            f"probability_of_improvement{suffix}",
            f"P(X beats Y) on {label}: the probability that a run of X does better (lower) than "
            "a run of Y on the same problem, averaged over problems (a failed run loses).",
        )
        num = matrix.reset_index(names="method")
        shown = num.copy()
        for c in methods:
            shown[c] = [_fmt(v) for v in num[c]]
        shown = shown.rename(columns={"method": "X \\ Y"})
        w.table(
            f"probability_of_improvement{suffix}",
            f"P(row beats column) on {label}.",
            num,
            shown,
        )


def _line_section(w: DocumentWriter, runs: pd.DataFrame, tracking_uri: str) -> None:
    line = runs[runs["problem"] == LINE_PROBLEM]
    if line.empty:
        return
    w.heading(2, "Seed example: y = 2x + 3")
    fits = pd.DataFrame(
        {
            "method": line["method"],
            "seed": line["seed"],
            "w": np.where(line["failed"], np.nan, _column(line, schema.LINE_WEIGHT)),
            "b": np.where(line["failed"], np.nan, _column(line, schema.LINE_BIAS)),
        }
    )
    rep = _representative(line)
    data = results.load_line_data(tracking_uri, rep["run_id"]) if rep is not None else None
    w.figure(
        plotting.line_example(data, fits, truth=LINE_TRUTH),
        "line_seed_example",
        "The seed example: the training data"
        + ("" if data is not None else " (not logged)")
        + ", the true line and each optimizer's median fitted line (left); every run's "
        "learned w, b against the truth (2, 3) (right).",
    )
    g = fits.groupby("method", sort=True)
    numbers = pd.DataFrame(
        {
            "method": list(g.groups),
            "w_median": g["w"].median().to_numpy(),
            "b_median": g["b"].median().to_numpy(),
            "abs_w_error_median": g["w"]
            .apply(lambda s: (s - LINE_TRUTH[0]).abs().median())
            .to_numpy(),
            "abs_b_error_median": g["b"]
            .apply(lambda s: (s - LINE_TRUTH[1]).abs().median())
            .to_numpy(),
            "n_runs": g.size().to_numpy(),
        }
    )
    disp = pd.DataFrame(
        {
            "optimizer": numbers["method"],
            "w (median)": [_fmt(v) for v in numbers["w_median"]],
            "b (median)": [_fmt(v) for v in numbers["b_median"]],
            "|w − 2|": [_fmt(v) for v in numbers["abs_w_error_median"]],
            "|b − 3|": [_fmt(v) for v in numbers["abs_b_error_median"]],
            "runs": [str(n) for n in numbers["n_runs"]],
        }
    )
    bold = pd.DataFrame(False, index=disp.index, columns=disp.columns)
    for col, num in (("|w − 2|", "abs_w_error_median"), ("|b − 3|", "abs_b_error_median")):
        v = numbers[num].to_numpy(float)
        if np.isfinite(v).any():
            bold.loc[v == np.nanmin(v), col] = True
    w.table(
        "line_fit",
        "Learned w and b against the truth (2, 3), median over seeds.",
        numbers,
        disp,
        bold,
    )


def _runs_table(w: DocumentWriter, runs: pd.DataFrame) -> None:
    w.heading(2, "All runs")
    cols = [
        "run_id",
        "run_name",
        "problem",
        "method",
        "optimizer",
        "seed",
        "status",
        "failed",
        "failure_reason",
    ]
    numbers = runs[cols].assign(
        test_loss=_column(runs, schema.TEST_LOSS),
        epochs_run=_column(runs, schema.EPOCHS_RUN),
    )
    disp = pd.DataFrame(
        {
            "run": runs["run_name"],
            "problem": runs["problem"],
            "optimizer": runs["method"],
            "seed": runs["seed"].astype(str),
            "status": np.where(runs["failed"], "FAILED", runs["status"]),
            "reason": runs["failure_reason"],
            "test loss": [_fmt(v) for v in numbers["test_loss"]],
        }
    )
    w.table(
        "runs",
        f"All {len(runs)} runs read from MLflow (failed ones marked).",
        numbers,
        disp,
        details=True,
    )


# ----------------------------------------------------------------------------- entry points


def _label_by_params(runs: pd.DataFrame, params: Sequence[str]) -> pd.DataFrame:
    """Append ``name=value`` of each param in ``params`` to the runs' method labels."""
    if not params:
        return runs
    runs = runs.copy()
    for param in params:
        col = f"param.{param}"
        if col not in runs:
            raise results.MissingMetricError(f"no run has param {param!r} (report.label_params)")
        values = runs[col].fillna("None").astype(str).replace({"None": "full", "null": "full"})
        runs["method"] = runs["method"] + " " + param.rsplit(".", 1)[-1] + "=" + values
    return runs


def _wide(runs: pd.DataFrame, histories: pd.DataFrame) -> pd.DataFrame:
    """The metric histories one row per (run, step), a column per metric, with run columns."""
    wide = (
        histories.pivot_table(
            index=["run_id", "step"], columns="metric", values="value", aggfunc="last"
        )
        .reset_index()
        .rename_axis(columns=None)
    )
    return wide.merge(runs[["run_id", "problem", "method", "seed", "failed"]], on="run_id")


def _step_figure_runs(runs: pd.DataFrame, problems: Sequence[str]) -> list[str]:
    """The ids of the runs the step-size figures show: only their histograms are read."""
    wanted = []
    for p in problems:
        pr = runs[runs["problem"] == p]
        for m in _step_methods(pr["method"].unique()):
            rep = _representative(pr[pr["method"] == m])
            if rep is not None:
                wanted.append(rep["run_id"])
    return wanted


def _meta(
    tracking_uri: str, experiment: str, res: results.ExperimentResults, runs: pd.DataFrame
) -> list[str]:
    """The report's header lines: where the runs come from, how many, when."""
    n_failed = int(runs["failed"].sum())
    methods = sorted(runs["method"].unique())
    return [
        f"Tracking store: {tracking_uri}; experiment {experiment} (id {res.experiment_id})",
        f"Sweep parent run: {res.parent_run_id or 'none'}"
        + (f" (sweep id {res.sweep_id})" if res.sweep_id else ""),
        f"{len(runs)} runs ({n_failed} failed), {len(runs['problem'].unique())} problems, "
        f"{runs['method'].nunique()} optimizers: {', '.join(methods)}",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} from MLflow only "
        "(no re-training).",
    ]


def build_report(tracking_uri: str, experiment: str, options: ReportOptions) -> Report:
    """Read an experiment's runs from MLflow and write the report folder.

    Args:
        tracking_uri: the MLflow store (``sqlite:///mlflow.db``, a server URL, ...).
        experiment: the MLflow experiment name.
        options: :class:`ReportOptions`.

    Returns:
        :class:`Report` with the paths written.

    Raises:
        results.ResultsError: the store, the experiment or a metric is missing (one-line
            message).
    """
    res = results.load_experiment(tracking_uri, experiment, sweep=options.sweep)
    runs = _label_by_params(res.runs, options.label_params)
    _check_final_metrics(runs)
    histories = results.load_histories(
        tracking_uri, runs["run_id"].tolist(), progress=options.progress
    )
    _check_histories(runs, histories)
    wide = _wide(runs, histories)
    problems = sorted(runs["problem"].unique())
    histograms = results.load_step_histograms(
        tracking_uri, _step_figure_runs(runs, problems), progress=options.progress
    )

    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    w = DocumentWriter(out, options.formats)
    finals = [
        _problem_section(w, p, runs[runs["problem"] == p], wide, histograms, options)
        for p in problems
    ]
    combined = pd.concat(finals, ignore_index=True)
    w.table(
        "final_all_problems",
        "Final results of every problem (numbers of the per-problem tables).",
        combined,
        combined.map(lambda v: _fmt(v) if isinstance(v, float) else str(v)),
        show=False,  # a CSV/LaTeX file only
    )
    _across_section(w, runs)
    _line_section(w, runs, tracking_uri)
    _runs_table(w, runs)

    title = f"rprop-bench report: {experiment}"
    n_failed = int(runs["failed"].sum())
    meta = _meta(tracking_uri, experiment, res, runs)
    index = out / "index.html"
    index.write_text(render_html(title, meta, w.blocks), encoding="utf-8")
    md = out / "report.md"
    shown = next(f for f in ("png", "svg", "pdf") if f in options.formats)
    md.write_text(render_md(title, meta, w.blocks, shown), encoding="utf-8")
    report = Report(out, index, md, w.figures, w.tables, None, len(runs), n_failed)
    if options.log_to_mlflow and res.parent_run_id:
        from rprop_bench.tracking import log_report_artifacts  # the one writer to MLflow

        log_report_artifacts(tracking_uri, res.parent_run_id, out)
        report.logged_to_run = res.parent_run_id
    return report
