"""Sweeps with ``train.vectorize_seeds=true``: the seeds of a grid point train as one stacked
model, and each seed is still its own MLflow run, as if trained alone.

Real parts only: real ``python -m rprop_bench`` subprocesses, real Hydra composition, real
SQLite stores. The CLI uses seed_batch's batched mode, so results are pinned against the same
sweep without vectorisation within the tolerances of ``tests/test_seed_batch.py``: the Rprop
family's weights are bit-identical there (only losses may differ in their last bits), the
magnitude-based optimizers drift by a few ulps.
"""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import pytest
from harness_helpers import (
    new_store,
    run_cli,
    running_with_curves,
    runs_of_kind,
    start_cli,
    stop_group,
    wait_for,
)
from mlflow import MlflowClient

from rprop_bench import schema

pytestmark = pytest.mark.slow

QUIET = ("tracking.heatmap=false", "tracking.histograms=false")
GRID = ("optimizer=rprop,adam", "problem=iris", "train.seed=0,1,2", "train.epochs=30", *QUIET)
VECTORIZE = "train.vectorize_seeds=true"
#: Relative distance allowed between a stacked and a one-by-one final metric, per optimizer:
#: for Rprop the weights are identical, so only the loss's last bits (float32) may differ.
TOLERANCE = {"rprop": 1e-6, "adam": 1e-5}
#: Tags that differ between any two runs of one grid point (process, time, place, key).
PER_RUN_TAGS = {
    schema.TAG_PID, schema.TAG_PROCESS_START, schema.TAG_HEARTBEAT, schema.TAG_OUTPUT_DIR,
    schema.TAG_RUN_KEY, schema.TAG_SWEEP_ID, schema.TAG_PARENT_RUN_ID, schema.TAG_COMMAND,
    schema.TAG_VECTORIZED, schema.TAG_CREATE_ATTEMPT,
}  # fmt: skip
#: Metrics that are seconds, which differ between any two runs.
SECONDS = {schema.TRAIN_SECONDS, schema.LOGGING_SECONDS, schema.SECONDS_TO_TARGET}


def _by_name(runs: list) -> dict[str, object]:
    return {r.info.run_name: r for r in runs}


def _sweep(tmp_path: Path, uri: str, *args: str) -> str:
    out = run_cli("sweep", *args, f"tracking.uri={uri}", cwd=tmp_path, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_a_vectorised_sweep_records_each_seed_as_the_same_sweep_one_by_one(tmp_path):
    stacked_uri, plain_uri = new_store(tmp_path / "stacked"), new_store(tmp_path / "plain")
    stdout = _sweep(tmp_path, stacked_uri, *GRID, VECTORIZE)
    _sweep(tmp_path, plain_uri, *GRID)
    assert "runs: 6 FINISHED; parent run" in stdout
    assert stdout.count("trained with its seed group in this sweep") == 4

    (parent,) = runs_of_kind(stacked_uri, schema.RUN_KIND_SWEEP)
    stacked, plain = _by_name(runs_of_kind(stacked_uri)), _by_name(runs_of_kind(plain_uri))
    assert len(stacked) == 6
    assert stacked.keys() == plain.keys()
    client = MlflowClient(stacked_uri)
    for name, run in stacked.items():
        alone = plain[name]
        assert run.info.status == "FINISHED"
        tags = run.data.tags
        assert tags[schema.TAG_PARENT_RUN_ID] == parent.info.run_id
        assert tags[schema.TAG_VECTORIZED] == "3"
        assert f"train.seed={tags[schema.TAG_SEED]}" in tags[schema.TAG_COMMAND].split()
        same_tags = {k: v for k, v in tags.items() if k not in PER_RUN_TAGS}
        assert same_tags == {k: v for k, v in alone.data.tags.items() if k not in PER_RUN_TAGS}
        params, alone_params = dict(run.data.params), dict(alone.data.params)
        assert (params.pop("train.vectorize_seeds"), alone_params.pop("train.vectorize_seeds")) == (
            "True",
            "False",
        )
        assert "tracking.uri" not in params  # not a param: it may hold a password
        assert params == alone_params
        assert run.data.metrics.keys() == alone.data.metrics.keys()
        tolerance = TOLERANCE[tags[schema.TAG_OPTIMIZER]]
        for key, value in run.data.metrics.items():
            if key not in SECONDS and key != schema.WALL_TIME:
                assert math.isclose(value, alone.data.metrics[key], rel_tol=tolerance), (name, key)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, schema.TRAIN_LOSS)]
        assert steps == [5, 10, 15, 20, 25, 30]  # the sweep's log_every=5, as alone
        config = client.download_artifacts(run.info.run_id, schema.ARTIFACT_CONFIG, str(tmp_path))
        assert f"seed: {tags[schema.TAG_SEED]}" in Path(config).read_text()


def test_a_resumed_vectorised_sweep_redoes_only_the_runs_not_finished(tmp_path, store_uri):
    args = ("optimizer=rprop", "problem=iris", "train.seed=0,1,2", "train.epochs=10", *QUIET,
            VECTORIZE)  # fmt: skip
    _sweep(tmp_path, store_uri, *args)
    client = MlflowClient(store_uri)
    first = _by_name(runs_of_kind(store_uri))
    lost = {"irprop- s1 · iris": "KILLED", "irprop- s2 · iris": "FAILED"}
    for name, status in lost.items():
        client.set_terminated(first[name].info.run_id, status=status)

    stdout = _sweep(tmp_path, store_uri, *args)
    assert "SKIPPED irprop- s0 · iris: already FINISHED" in stdout
    runs = runs_of_kind(store_uri)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert sorted(r.info.run_name for r in finished) == sorted(first)  # one result per seed
    redone = [r for r in finished if r.info.run_id != first["irprop- s0 · iris"].info.run_id]
    assert {r.info.run_name for r in redone} == set(lost)
    assert {r.data.tags[schema.TAG_VECTORIZED] for r in redone} == {"2"}  # trained together
    assert len(runs) == 5


def test_diverged_seeds_fail_alone_and_l_bfgs_trains_one_by_one(tmp_path, store_uri):
    stdout = _sweep(
        tmp_path, store_uri, "optimizer=sgd,lbfgs", "problem=line", "optimizer.lr=1e30",
        "train.seed=0,1", "train.epochs=20", *QUIET, VECTORIZE,
    )  # fmt: skip
    (line,) = [s for s in stdout.splitlines() if "train one by one" in s]
    assert line.startswith("train.vectorize_seeds: 2 runs train one by one: LBFGS cannot")
    assert "runs: 4 FAILED; parent run" in stdout
    runs = runs_of_kind(store_uri)
    assert len(runs) == 4  # a diverged seed's own job did not train it again
    for run in runs:
        assert run.info.status == "FAILED"
        assert "train loss became" in run.data.tags[schema.TAG_FAILURE_REASON]
    stacked = {r.data.tags[schema.TAG_OPTIMIZER]: r.data.tags.get(schema.TAG_VECTORIZED)
               for r in runs}  # fmt: skip
    assert stacked == {"lbfgs": None, "sgd": "2"}


def test_sigterm_marks_every_run_of_the_group_killed(tmp_path, store_uri):
    process = start_cli(
        "sweep", "optimizer=rprop", "problem=iris", "train.seed=0,1,2",
        "train.epochs=10000000", "tracking.flush_seconds=0.2", *QUIET, VECTORIZE,
        f"tracking.uri={store_uri}", cwd=tmp_path,
    )  # fmt: skip
    try:
        run_ids = wait_for(lambda: running_with_curves(store_uri, 3), 120, "the group's runs")
        os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        stop_group(process)
    assert process.returncode == 143
    assert "Traceback" not in stderr
    client = MlflowClient(store_uri)
    for run_id in run_ids:
        run = client.get_run(run_id)
        assert run.info.status == "KILLED"
        assert run.data.tags[schema.TAG_FAILURE_REASON] == "interrupted (SIGTERM)"
        assert f"run {run_id} KILLED" in stderr
