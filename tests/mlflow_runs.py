"""Write hand-chosen runs into a real temporary MLflow SQLite store (for the report tests).

The runs follow :mod:`rprop_bench.schema` exactly as the harness writes them (a sweep parent,
nested children, per-epoch metrics at step = epoch, final metrics at step 0, the step-size
histogram CSV and the ``line`` data CSV), so the reader is tested against a real store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rprop_bench import schema


@dataclass
class HandRun:
    """One training run to write: its finals, per-epoch losses and how it ended."""

    problem: str
    optimizer: str
    variant: str
    seed: int
    finals: dict[str, float]
    train_loss: list[float]
    status: str = "FINISHED"
    failure_reason: str = ""
    run_name: str = ""
    task: str = schema.TASK_CLASSIFICATION
    extra_histories: dict[str, list[float]] = field(default_factory=dict)
    git_commit: str = "0123456789abcdef0123"
    run_key: str = ""  # the config's hash; default: one per problem, optimizer, variant, seed
    params: dict[str, str] = field(default_factory=lambda: {"optimizer.lr": "0.01"})


def write_store(root: Path, experiment: str, runs: list[HandRun], *, sweep: bool = True) -> str:
    """Write ``runs`` (as children of one sweep parent) into ``root/mlflow.db``; return the URI."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp_id = client.create_experiment(experiment, artifact_location=(root / "artifacts").as_uri())
    parent_id = None
    if sweep:
        parent = client.create_run(
            exp_id,
            run_name="sweep",
            tags={schema.TAG_RUN_KIND: schema.RUN_KIND_SWEEP, schema.TAG_SWEEP_ID: "sw1"},
        )
        parent_id = parent.info.run_id
    now = int(time.time() * 1000)
    tmp = root / "tmp_artifacts"
    (tmp / "step_sizes").mkdir(parents=True, exist_ok=True)
    (tmp / "problem").mkdir(parents=True, exist_ok=True)
    for r in runs:
        tags = {
            schema.TAG_RUN_KIND: schema.RUN_KIND_TRAINING,
            schema.TAG_OPTIMIZER: r.optimizer,
            schema.TAG_VARIANT: r.variant,
            schema.TAG_PROBLEM: r.problem,
            schema.TAG_TASK: r.task,
            schema.TAG_MODEL: "mlp",
            schema.TAG_SEED: str(r.seed),
            schema.TAG_SWEEP_ID: "sw1",
            schema.TAG_GIT_COMMIT: r.git_commit,
            schema.TAG_RUN_KEY: r.run_key or f"key-{r.problem}-{r.optimizer}-{r.variant}-{r.seed}",
        }
        if parent_id:
            tags[schema.TAG_PARENT_RUN_ID] = parent_id
        if r.failure_reason:
            tags[schema.TAG_FAILURE_REASON] = r.failure_reason
        name = r.run_name or f"{r.variant} s{r.seed} · {r.problem}"
        run = client.create_run(exp_id, run_name=name, tags=tags)
        rid = run.info.run_id
        metrics = []
        n = len(r.train_loss)
        for epoch, loss in enumerate(r.train_loss, start=1):
            metrics += [
                Metric(schema.TRAIN_LOSS, loss, now, epoch),
                Metric(schema.VAL_LOSS, loss * 1.1, now, epoch),
                Metric(schema.WALL_TIME, 0.01 * epoch, now, epoch),
            ]
            for q, level in schema.STEP_QUANTILES.items():
                metrics.append(Metric(q, 1e-3 * (1 + level) * 1.2**epoch, now, epoch))
        for key, values in r.extra_histories.items():
            metrics += [Metric(key, v, now, e) for e, v in enumerate(values, start=1)]
        metrics += [Metric(k, v, now, 0) for k, v in r.finals.items()]
        client.log_batch(rid, metrics=metrics, params=[Param(k, v) for k, v in r.params.items()])
        # step-size histograms: a shared grid, zero bins left out, layer "all" and one layer
        rows = []
        for epoch in range(1, n + 1):
            for layer in (schema.HISTOGRAM_ALL_LAYERS, "0.weight"):
                for k in range(3):
                    lo = 10.0 ** (-4 + k + (epoch % 2))
                    rows.append((epoch, layer, lo, lo * 10, 5 + k + epoch))
        pd.DataFrame(rows, columns=list(schema.HISTOGRAM_COLUMNS)).to_csv(
            tmp / "step_sizes" / "histograms.csv", index=False
        )
        client.log_artifact(rid, str(tmp / "step_sizes" / "histograms.csv"), "step_sizes")
        if r.problem == "line":
            x = np.linspace(-2, 2, 20)
            pd.DataFrame({"x": x, "y": 2 * x + 3}).to_csv(
                tmp / "problem" / "line_data.csv", index=False
            )
            client.log_artifact(rid, str(tmp / "problem" / "line_data.csv"), "problem")
        client.set_terminated(rid, status=r.status)
    if parent_id:
        client.set_terminated(parent_id)
    return uri


def finals(
    loss: float,
    acc: float | None = None,
    r2: float | None = None,
    *,
    epochs_to_target: float | None = None,
    seconds_to_target: float | None = None,
    w: float | None = None,
    b: float | None = None,
) -> dict[str, float]:
    """Final metrics dict in schema names (``None`` values are not logged)."""
    out = {
        schema.TEST_LOSS: loss,
        schema.FINAL_TRAIN_LOSS: loss,
        schema.EPOCHS_RUN: 5.0,
        schema.TRAIN_SECONDS: 0.05,
        schema.REACHED_TARGET: 1.0 if epochs_to_target is not None else 0.0,
    }
    optional = {
        schema.TEST_ACCURACY: acc,
        schema.TEST_R2: r2,
        schema.EPOCHS_TO_TARGET: epochs_to_target,
        schema.SECONDS_TO_TARGET: seconds_to_target,
        schema.LINE_WEIGHT: w,
        schema.LINE_BIAS: b,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    return out


XSS_NAME = '<script>alert("x")</script> adam s2 · iris'

# iris: irprop+ test losses 0.1, 0.2, 0.4 (median 0.2, IQR [0.15, 0.3]);
#       adam 0.3, 0.5 and one FAILED run (NaN loss) with an XSS run name.
# line: irprop+ losses 0.01, 0.02, 0.03; adam 0.05, 0.04, 0.06; learned w, b near (2, 3).
IRIS_IRPROP = [0.1, 0.2, 0.4]
IRIS_ADAM = [0.3, 0.5]


def standard_runs() -> list[HandRun]:
    """The hand-chosen runs the report tests check against."""
    runs = []
    for seed, loss in enumerate(IRIS_IRPROP):
        runs.append(
            HandRun(
                "iris",
                "irprop_plus",
                "irprop+",
                seed,
                finals(
                    loss,
                    acc=0.9 + 0.02 * seed,
                    epochs_to_target=3 + seed,
                    seconds_to_target=0.03 + 0.01 * seed,
                ),
                [1.0, 0.5, 0.3, 0.2, loss],
            )
        )
    for seed, loss in enumerate(IRIS_ADAM):
        runs.append(
            HandRun(
                "iris",
                "adam",
                "adam",
                seed,
                finals(loss, acc=0.8 + 0.01 * seed),
                [1.0, 0.8, 0.6, 0.5, loss],
            )
        )
    runs.append(
        HandRun(
            "iris",
            "adam",
            "adam",
            2,
            {},
            [1.0, 3.0, float("nan")],
            status="FAILED",
            failure_reason="loss became nan at epoch 3",
            run_name=XSS_NAME,
        )
    )
    for seed, (li, la) in enumerate(zip([0.01, 0.02, 0.03], [0.05, 0.04, 0.06], strict=True)):
        runs.append(
            HandRun(
                "line",
                "irprop_plus",
                "irprop+",
                seed,
                finals(
                    li,
                    r2=0.99,
                    epochs_to_target=10 + seed,
                    seconds_to_target=0.1,
                    w=2.0 + 0.01 * seed,
                    b=3.0 - 0.01 * seed,
                ),
                [5.0, 1.0, 0.1, 0.05, li],
                task=schema.TASK_REGRESSION,
            )
        )
        runs.append(
            HandRun(
                "line",
                "adam",
                "adam",
                seed,
                finals(la, r2=0.95, w=1.9, b=2.8 + 0.01 * seed),
                [5.0, 3.0, 1.0, 0.5, la],
                task=schema.TASK_REGRESSION,
            )
        )
    return runs


def make_store_factory(tmp_path_factory) -> Callable[..., str]:
    """``factory(runs, experiment="exp", sweep=True) -> uri``, each store in a fresh folder."""

    def make(runs: list[HandRun], experiment: str = "exp", sweep: bool = True) -> str:
        return write_store(tmp_path_factory.mktemp("store"), experiment, runs, sweep=sweep)

    return make
