"""Sweeps with ``train.vectorize=grid``: the jobs that differ in seeds and in the optimizer's
elementwise hyperparameters train as one stacked model, each member its own MLflow run.

Real parts only: real ``python -m rprop_bench`` subprocesses, real Hydra composition, real
SQLite stores. Each grid is pinned against the same grid one Hydra job per run, within the
tolerances of stacked seeds: the per-member optimizers themselves follow each member's solo
run (bit for bit for our Rprop, ``tests/test_optim.py``; within last-bit tolerances for the
batched baselines, ``tests/test_members.py``).
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
GRID = "train.vectorize=grid"
#: Relative distance allowed between a grid member's and its own job's final metric, as for
#: stacked seeds (tests/test_vectorized_sweep.py): the batched forward pass rounds losses and
#: gradients in their last bits; Rprop's weights stay identical, Adam's drift by a few ulps.
TOLERANCE = {"rprop": 1e-6, "adam": 1e-5}
#: The same for the step-size quantiles. A baseline's step is the difference of two float32
#: weights over an epoch, so a few ulps of drift in the weights are ulp(w) / Δw ≈ 6e-8 / 1e-4
#: of it (3e-5 seen for Adam's smallest step); Rprop's Δ is its own state, identical.
STEP_TOLERANCE = {"rprop": 1e-6, "adam": 2e-3}
SECONDS = {schema.TRAIN_SECONDS, schema.LOGGING_SECONDS, schema.SECONDS_TO_TARGET, schema.WALL_TIME}
#: name → (the sweep's overrides, the hyperparameter params that tell its runs apart)
CASES = {
    "rprop": (
        ("optimizer=rprop", "optimizer.lr=0.003,0.1", "optimizer.etas=[0.5,1.2],[0.3,1.5]"),
        ("optimizer.lr", "optimizer.etas"),
    ),
    "adam": (
        ("optimizer=adam", "optimizer.lr=0.001,0.03", "optimizer.betas=[0.9,0.999],[0.5,0.99]"),
        ("optimizer.lr", "optimizer.betas"),
    ),
}


def _sweep(tmp_path: Path, uri: str, *args: str) -> str:
    out = run_cli("sweep", *args, f"tracking.uri={uri}", cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _by_point(runs: list, paths: tuple[str, ...]) -> dict[tuple[str, ...], object]:
    by = {(*(r.data.params[p] for p in paths), r.data.params["train.seed"]): r for r in runs}
    assert len(by) == len(runs)  # every grid point once
    return by


@pytest.mark.parametrize("case", list(CASES))
def test_a_grid_sweep_records_each_run_as_one_job_per_run_does(tmp_path, case):
    overrides, paths = CASES[case]
    args = (*overrides, "problem=iris", "train.seed=0,1", "train.epochs=30", *QUIET)
    grid_uri, plain_uri = new_store(tmp_path / "grid"), new_store(tmp_path / "plain")
    stdout = _sweep(tmp_path, grid_uri, *args, GRID)
    _sweep(tmp_path, plain_uri, *args)
    assert "8 trained, 0 reused; runs: 8 FINISHED" in stdout
    assert "Launching 1 jobs" in stdout  # only the stack's first job: the others never start
    grid, plain = runs_of_kind(grid_uri), runs_of_kind(plain_uri)
    stacked, alone = _by_point(grid, paths), _by_point(plain, paths)
    assert stacked.keys() == alone.keys()
    keys = {r.data.tags[schema.TAG_RUN_KEY] for r in grid}
    assert len(keys) == 8  # one run key per member, none shared with the one-by-one runs
    assert not keys & {r.data.tags[schema.TAG_RUN_KEY] for r in plain}
    for point, run in stacked.items():
        single = alone[point]
        assert run.info.status == "FINISHED"
        assert run.data.tags[schema.TAG_VECTORIZED] == "8"
        params, single_params = dict(run.data.params), dict(single.data.params)
        assert (params.pop("train.vectorize"), single_params.pop("train.vectorize")) == (
            "grid",
            "None",
        )
        assert params == single_params  # each member's own hyperparameters
        for key, value in run.data.metrics.items():
            if key not in SECONDS:
                expected = single.data.metrics[key]
                tolerance = (STEP_TOLERANCE if key in schema.STEP_QUANTILES else TOLERANCE)[case]
                assert math.isclose(value, expected, rel_tol=tolerance), (point, key)
        assert os.path.isdir(run.data.tags[schema.TAG_OUTPUT_DIR])
    # tracking.grid_curves=report: the report's curves in full, the other metrics' last values
    point, run = next(iter(stacked.items()))
    histories = {
        which: {key: len(MlflowClient(uri).get_metric_history(found.info.run_id, key))
                for key in (schema.TRAIN_LOSS, schema.GRAD_NORM)}
        for which, uri, found in (("grid", grid_uri, run), ("plain", plain_uri, alone[point]))
    }  # fmt: skip
    assert histories == {"grid": {schema.TRAIN_LOSS: 6, schema.GRAD_NORM: 1},  # every 5th epoch
                         "plain": {schema.TRAIN_LOSS: 6, schema.GRAD_NORM: 6}}  # fmt: skip
    # a second sweep finds every member done, and trains nothing
    again = _sweep(tmp_path, grid_uri, *args, GRID)
    assert "0 trained, 8 reused" in again
    assert len(runs_of_kind(grid_uri)) == 8


def test_a_resumed_grid_redoes_only_its_members_not_finished(tmp_path, store_uri):
    args = ("optimizer=rprop", "problem=iris", "optimizer.lr=0.003,0.1", "train.seed=0,1",
            "train.epochs=10", *QUIET, GRID)  # fmt: skip
    _sweep(tmp_path, store_uri, *args)
    first = {r.info.run_id: r for r in runs_of_kind(store_uri)}
    # the stack's first job (lr 0.003, seed 0) stays FINISHED; two members have no job of
    # their own, so it must train them again
    client = MlflowClient(store_uri)
    lost = [
        r.info.run_id
        for r in first.values()
        if (r.data.params["optimizer.lr"], r.data.params["train.seed"])
        in {("0.1", "0"), ("0.003", "1")}
    ]
    client.set_terminated(lost[0], status="KILLED")
    client.set_terminated(lost[1], status="FAILED")
    stdout = _sweep(tmp_path, store_uri, *args)
    assert "SKIPPED irprop- s0 · iris: already FINISHED" in stdout
    assert "2 trained, 2 reused" in stdout
    runs = runs_of_kind(store_uri)
    assert len(runs) == 6
    redone = [r for r in runs if r.info.run_id not in first]
    assert {r.data.tags[schema.TAG_VECTORIZED] for r in redone} == {"2"}  # trained together
    assert sorted((r.data.params["optimizer.lr"], r.data.params["train.seed"]) for r in redone) == [
        ("0.003", "1"),
        ("0.1", "0"),
    ]


def test_a_grid_killed_mid_stack_is_redone_by_the_next_sweep(tmp_path, store_uri):
    args = ("sweep", "optimizer=rprop", "problem=iris", "optimizer.lr=0.003,0.1",
            "train.seed=0,1", "train.epochs=4000", "tracking.flush_seconds=0.05", *QUIET, GRID,
            f"tracking.uri={store_uri}")  # fmt: skip
    process = start_cli(*args, cwd=tmp_path)
    try:
        killed = wait_for(lambda: running_with_curves(store_uri, 4), 120, "the stack's runs")
        os.killpg(process.pid, signal.SIGKILL)  # kill -9: nothing is marked on the way out
        process.wait(timeout=30)
    finally:
        stop_group(process)
    client = MlflowClient(store_uri)
    assert {client.get_run(i).info.status for i in killed} == {"RUNNING"}
    out = run_cli(*args, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("left RUNNING by a dead process: marked KILLED") == 4
    assert {client.get_run(i).info.status for i in killed} == {"KILLED"}
    runs = runs_of_kind(store_uri)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len(runs) == 8
    assert len(finished) == 4
    assert {r.data.tags[schema.TAG_VECTORIZED] for r in finished} == {"4"}


def test_a_grid_cut_into_stacks_trains_them_in_parallel_workers(tmp_path, store_uri):
    stdout = _sweep(
        tmp_path, store_uri, "optimizer=rprop", "problem=iris", "optimizer.lr=0.003,0.1",
        "optimizer.etas=[0.5,1.2],[0.3,1.5]", "train.seed=0,1", "train.epochs=10", *QUIET,
        GRID, "sweep.max_stack=3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
    )  # fmt: skip
    assert "8 trained, 0 reused; runs: 8 FINISHED" in stdout
    runs = runs_of_kind(store_uri)
    folders = [r.data.tags[schema.TAG_OUTPUT_DIR] for r in runs]
    assert all(os.path.isdir(folder) for folder in folders)
    assert sum("members" not in Path(f).parts for f in folders) == 3  # a job per stack
    sizes = sorted(r.data.tags[schema.TAG_VECTORIZED] for r in runs)
    assert sizes == ["2", "2", "3", "3", "3", "3", "3", "3"]
    assert len({r.data.tags[schema.TAG_RUN_KEY] for r in runs}) == 8
    # not part of the run key: the same grid in one stack finds every run done
    again = _sweep(tmp_path, store_uri, "optimizer=rprop", "problem=iris",
                   "optimizer.lr=0.003,0.1", "optimizer.etas=[0.5,1.2],[0.3,1.5]",
                   "train.seed=0,1", "train.epochs=10", *QUIET, GRID)  # fmt: skip
    assert "0 trained, 8 reused" in again


def test_a_diverging_member_fails_alone(tmp_path, store_uri):
    stdout = _sweep(
        tmp_path, store_uri, "optimizer=sgd", "problem=line", "optimizer.lr=0.01,1e30",
        "train.seed=0,1", "train.epochs=20", *QUIET, GRID,
    )  # fmt: skip
    assert "runs: 2 FAILED, 2 FINISHED" in stdout
    for run in runs_of_kind(store_uri):
        diverged = run.data.params["optimizer.lr"] == "1e+30"
        assert run.info.status == ("FAILED" if diverged else "FINISHED")
        assert run.data.tags[schema.TAG_VECTORIZED] == "4"
        if not diverged:  # its final loss is that of its own job, not touched by the NaNs
            assert math.isfinite(run.data.metrics[schema.TEST_LOSS])


def test_a_grid_over_what_cannot_stack_says_so_in_one_line(tmp_path, store_uri):
    stdout = _sweep(
        tmp_path, store_uri, "optimizer=rprop,lbfgs", "problem=iris", "model=mlp",
        "model.hidden=[4],[8]", "optimizer.lr=0.01,0.1", "train.seed=0", "train.epochs=5", *QUIET,
        GRID,
    )  # fmt: skip
    lines = [s for s in stdout.splitlines() if s.startswith("train.vectorize=grid")]
    assert lines == [
        "train.vectorize=grid: 4 runs train one by one: LBFGS cannot train seeds stacked: "
        "L-BFGS couples all weights through its line search and its curvature pairs, so "
        "stacked seeds would share one step length and one search direction",
        "train.vectorize=grid: 2 stacks, not one: the jobs differ in model.hidden, which "
        "members of one stack cannot (only the optimizer's elementwise hyperparameters can, "
        "e.g. Rprop's lr, etas and step_sizes)",
    ]
    assert "runs: 8 FINISHED" in stdout
    vectorized = [r.data.tags.get(schema.TAG_VECTORIZED) for r in runs_of_kind(store_uri)]
    assert sorted(v or "-" for v in vectorized) == ["-"] * 4 + ["2"] * 4
