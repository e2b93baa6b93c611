"""Reading runs back from a real temporary MLflow SQLite store."""

from __future__ import annotations

import pytest
from mlflow_runs import HandRun, finals, standard_runs

from rprop_bench import results, schema


@pytest.mark.parametrize(
    ("optimizer", "variant", "expected"),
    [
        ("irprop_plus", "irprop+", "irprop+"),
        ("rprop", "irprop-", "irprop-"),  # the default config is named by what it runs
        ("torch_rprop", "irprop-", "torch_rprop"),  # torch's stays apart from ours
        ("adam", "adam", "adam"),
        ("sgd", "", "sgd"),
        ("", "", "unknown"),
    ],
)
def test_method_label(optimizer, variant, expected):
    assert results.method_label(optimizer, variant) == expected


def test_load_experiment_keeps_failed_runs(standard_store):
    res = results.load_experiment(standard_store, "exp")
    runs = res.runs
    assert len(runs) == len(standard_runs())  # the sweep parent is not a training run
    assert res.parent_run_id is not None
    assert res.sweep_id == "sw1"
    failed = runs[runs["failed"]]
    assert len(failed) == 1
    assert failed.iloc[0]["status"] == "FAILED"
    assert failed.iloc[0]["failure_reason"] == "loss became nan at epoch 3"
    irprop = runs[(runs["problem"] == "iris") & (runs["method"] == "irprop+")]
    assert sorted(irprop[schema.TEST_LOSS]) == [0.1, 0.2, 0.4]
    assert sorted(irprop["seed"]) == [0, 1, 2]
    assert set(runs["param.optimizer.lr"]) == {"0.01"}


def test_bulk_and_naive_histories_agree(standard_store):
    ids = results.load_experiment(standard_store, "exp").runs["run_id"].tolist()
    bulk = results.load_histories(standard_store, ids, progress=False)
    naive = results.load_histories(standard_store, ids, bulk=False, progress=False)
    assert len(bulk) > 0
    assert bulk.equals(naive)
    one = bulk[bulk["metric"] == schema.TRAIN_LOSS]
    # 11 finished runs with 5 epochs and a failed one with 3 (the last NaN)
    assert len(one) == 11 * 5 + 3
    assert set(one["step"]) == {1, 2, 3, 4, 5}


def test_latest_sweep_is_the_default_and_all_reads_every_sweep(store_factory, tmp_path):
    from mlflow import MlflowClient

    uri = store_factory(
        [HandRun("iris", "adam", "adam", 0, finals(0.3, acc=0.9), [1.0])], experiment="two_sweeps"
    )
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("two_sweeps")
    later = client.create_run(
        exp.experiment_id,
        run_name="sweep 2",
        tags={schema.TAG_RUN_KIND: schema.RUN_KIND_SWEEP, schema.TAG_SWEEP_ID: "sw2"},
    )
    child = client.create_run(
        exp.experiment_id,
        run_name="child",
        tags={
            schema.TAG_RUN_KIND: schema.RUN_KIND_TRAINING,  # as the harness tags its runs
            schema.TAG_PARENT_RUN_ID: later.info.run_id,
            schema.TAG_PROBLEM: "wine",
            schema.TAG_OPTIMIZER: "sgd",
            schema.TAG_SEED: "4",
        },
    )
    client.set_terminated(child.info.run_id)
    latest = results.load_experiment(uri, "two_sweeps")
    assert latest.sweep_id == "sw2"
    assert list(latest.runs["problem"]) == ["wine"]
    first = results.load_experiment(uri, "two_sweeps", sweep="sw1")
    assert list(first.runs["problem"]) == ["iris"]
    everything = results.load_experiment(uri, "two_sweeps", sweep="all")
    assert sorted(everything.runs["problem"]) == ["iris", "wine"]
    with pytest.raises(results.NoRunsError, match="no sweep 'sw9'"):
        results.load_experiment(uri, "two_sweeps", sweep="sw9")


def test_runs_without_a_sweep_are_read(store_factory):
    uri = store_factory(
        [HandRun("wine", "sgd", "sgd", 1, finals(0.5, acc=0.7), [1.0, 0.5])],
        experiment="single",
        sweep=False,
    )
    res = results.load_experiment(uri, "single")
    assert res.parent_run_id is None
    assert len(res.runs) == 1


def test_diverged_final_loss_marks_a_run_failed(store_factory):
    uri = store_factory(
        [HandRun("wine", "sgd", "sgd", 1, finals(float("inf"), acc=0.1), [1.0])],
        experiment="diverged",
    )
    runs = results.load_experiment(uri, "diverged").runs
    assert bool(runs.iloc[0]["failed"])


def test_artifacts(standard_store):
    runs = results.load_experiment(standard_store, "exp").runs
    line_id = runs[runs["problem"] == "line"]["run_id"].iloc[0]
    data = results.load_line_data(standard_store, line_id)
    assert list(data.columns) == ["x", "y"]
    assert len(data) == 20
    assert (data["y"] - (2 * data["x"] + 3)).abs().max() < 1e-12
    iris_id = runs[runs["problem"] == "iris"]["run_id"].iloc[0]
    assert results.load_line_data(standard_store, iris_id) is None
    hist = results.load_step_histograms(standard_store, [iris_id, line_id], progress=False)
    assert list(hist.columns) == ["run_id", *schema.HISTOGRAM_COLUMNS]
    assert set(hist["run_id"]) == {iris_id, line_id}
    assert set(hist["layer"]) == {schema.HISTOGRAM_ALL_LAYERS, "0.weight"}


def test_missing_store_is_not_created(tmp_path):
    db = tmp_path / "missing.db"
    with pytest.raises(results.StoreNotFoundError, match="tracking store not found"):
        results.load_experiment(f"sqlite:///{db}", "exp")
    assert not db.exists()
    with pytest.raises(results.StoreNotFoundError):
        results.connect(str(tmp_path / "no_such_dir"))


def test_require_metrics_ignores_failed_runs(standard_store):
    runs = results.load_experiment(standard_store, "exp").runs
    results.require_metrics(runs, [schema.TEST_LOSS])  # the failed run lacks it: fine
    with pytest.raises(results.MissingMetricError, match="lack metric 'no_such_metric'"):
        results.require_metrics(runs, ["no_such_metric"])


def test_unreachable_tracking_server_is_reported_quickly():
    import time

    start = time.perf_counter()
    with pytest.raises(results.StoreNotFoundError, match="tracking server not reachable"):
        results.connect("http://127.0.0.1:9")  # the discard port: nothing listens
    assert time.perf_counter() - start < 30


def test_tuning_studies_lists_the_studies_parent_runs_oldest_first(store_factory):
    from mlflow import MlflowClient

    uri = store_factory(standard_runs())
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("exp").experiment_id
    made = []
    for study, start in (("tune_b", 2000), ("tune_a", 1000)):
        run = client.create_run(
            experiment,
            start_time=start,
            tags={schema.TAG_RUN_KIND: schema.RUN_KIND_TUNE, schema.TAG_SWEEP_ID: study},
        )
        made.append(run.info.run_id)
    studies = results.tuning_studies(uri, "exp")
    assert studies["study_id"].tolist() == ["tune_a", "tune_b"]  # the sweep parent is no study
    assert studies["run_id"].tolist() == made[::-1]
    with pytest.raises(results.NoRunsError, match="no experiment named 'nope'"):
        results.tuning_studies(uri, "nope")
