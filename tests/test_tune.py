"""The ``tune`` command end to end: real Hydra composition, a real SQLite MLflow store, the CLI
in its own process.

Bad input is one line and exit 2 before any trial. A small study checks the protocol from
what the store holds: the same trial count for every optimizer, Sobol trials reproducible
from the seed, the winner the lowest median over the tuning seeds, a boundary flagged and
widened, reruns on fresh seeds only, nesting and tags, the report's tuning section, resume
after kill -9, and Optuna's TPE when chosen.
"""

from __future__ import annotations

import signal
import statistics
from collections import Counter
from pathlib import Path

import pytest
from harness_helpers import run_cli, start_cli, stop_group, wait_for
from lanes import fast_first
from mlflow import MlflowClient

from rprop_bench import schema
from rprop_bench.tuning import SearchSpace, sobol_points

EXPERIMENT = "tune_test"
QUIET = ("tracking.histograms=false", "tracking.heatmap=false", "train.histogram_every=0")

#: (overrides, a fragment of the one line it must print): refused before any trial.
BAD_INPUT = [
    (("optimizer=adam", "optimizer.search.lr.low=2.0"),
     "optimizer=adam: optimizer.search.lr: low=2.0 >= high=1.0, the range is empty or inverted"),
    (("optimizer=adam", "tune.objective=val_accuracy"),
     "tune.objective='val_accuracy' is out of range: must be one of train_evals_to_target, "
     "best_val_loss"),
    (("optimizer=adam,sgd,momentum", "tune.total_trials=2"),
     "tune.total_trials=2 is out of range: must be >= 3 (the number of optimizers × 1 trial)"),
    (("optimizer=adam,sgd", "tune.total_trials=5"),
     "tune.total_trials=5 does not split equally among 2 optimizers"),
    (("optimizer=adam", "tune.rerun_seeds=[100,1,2,3,4,5,6,7,8,9]"),
     "tune.rerun_seeds=[100, 1, 2, 3, 4, 5, 6, 7, 8, 9] is out of range: must be disjoint "
     "from tune.seeds (shared: [100])"),
    (("optimizer=adam", "tune.seeds=[1,2]"),
     "tune.seeds=[1, 2] is out of range: must be at least 3 distinct seeds"),
    (("optimizer=adam", "tune.sampler=tpe", "tune.extend_on_boundary=true"),
     "tune.extend_on_boundary=true needs tune.sampler=sobol"),
    (("optimizer=adam", "tune.sampler=grid"), "tune.sampler='grid' is out of range"),
    (("optimizer=adam", "train.target_loss=null"),
     "tune.objective=train_evals_to_target needs a training target: problem line"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "message"), fast_first(BAD_INPUT, keep=2), ids=[m[:36] for _, m in BAD_INPUT]
)
def test_bad_tuning_input_is_one_line_and_exit_2_before_any_trial(
    tmp_path, store_uri, overrides, message
):
    out = run_cli("tune", "problem=line", *overrides, f"tracking.uri={store_uri}", cwd=tmp_path)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert message in out.stderr
    assert out.stderr.count("\n") == 1
    assert "Traceback" not in out.stderr
    client = MlflowClient(store_uri)
    assert [e.name for e in client.search_experiments()] == ["Default"]  # nothing ran


def _runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id], max_results=5000)


def _of(runs: list, kind: str, role: str | None = None) -> list:
    return [
        r
        for r in runs
        if r.data.tags.get(schema.TAG_RUN_KIND) == kind
        and (role is None or r.data.tags.get(schema.TAG_TUNE_ROLE) == role)
    ]


def _table(uri: str, run_id: str, path: str, tmp: Path) -> list[dict[str, str]]:
    import csv

    local = MlflowClient(uri).download_artifacts(run_id, path, str(tmp))
    with open(local, encoding="utf-8") as f:
        return list(csv.DictReader(f))


#: A small study: SGD and momentum searched in a learning-rate range too low to learn in 8
#: epochs (their winners sit on the high bound, are flagged and widened once); 8 trials × 3
#: tuning seeds per cell.
LOW_RANGE = ("optimizer.search.lr.low=1.0e-6", "optimizer.search.lr.high=1.0e-5")
STUDY = (
    "tune", "optimizer=sgd,momentum", "problem=line", "train.epochs=8", *LOW_RANGE,
    "tune.trials=8", "tune.boundary_fraction=0.2", "tune.extend_on_boundary=true",
    "tune.objective=[train_evals_to_target,best_val_loss]", "train.vectorize_seeds=true",
    f"tracking.experiment={EXPERIMENT}", *QUIET,
)  # fmt: skip


@pytest.mark.slow
def test_a_tuning_study_follows_the_protocol_and_resumes_without_redoing_a_trial(
    tmp_path, store_uri
):
    out = run_cli(*STUDY, f"tracking.uri={store_uri}", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = _runs(store_uri)
    trials = _of(runs, schema.RUN_KIND_TRAINING, "trial")

    # the same budget: 8 trials on 3 tuning seeds per optimizer, and one widened round of 8
    # more for each (both winners sat on the high bound of the low range)
    per_cell = Counter(
        (r.data.tags[schema.TAG_OPTIMIZER], r.data.tags[schema.TAG_TUNE_TRIAL]) for r in trials
    )
    assert set(per_cell.values()) == {3}
    assert Counter(optimizer for optimizer, _ in per_cell) == {"sgd": 16, "momentum": 16}
    assert {int(r.data.tags[schema.TAG_SEED]) for r in trials} == {100, 101, 102}

    # Sobol trials are reproducible from the seed: trial k is point k of the seeded sequence
    from harness_helpers import compose

    space = SearchSpace.parse(compose("optimizer=momentum", *LOW_RANGE).optimizer.search, "s")
    expected = [space.values(p) for p in sobol_points(2, 8, seed=0)]
    for run in trials:
        trial = int(run.data.tags[schema.TAG_TUNE_TRIAL])
        if run.data.tags[schema.TAG_OPTIMIZER] != "momentum" or trial >= 8:
            continue
        assert float(run.data.params["optimizer.lr"]) == expected[trial]["lr"]
        assert float(run.data.params["optimizer.momentum"]) == expected[trial]["momentum"]

    # the winner is the lowest median over the tuning seeds, recomputed from the store
    (study,) = _of(runs, schema.RUN_KIND_TUNE)
    assert study.info.status == "FINISHED"
    selection = _table(store_uri, study.info.run_id, schema.ARTIFACT_TUNE_SELECTION, tmp_path)
    for row in selection:
        if row["objective"] != "best_val_loss":
            continue
        mine = [r for r in trials if r.data.tags[schema.TAG_OPTIMIZER] == row["optimizer"]]
        by_trial: dict[int, list[float]] = {}
        for r in mine:
            by_trial.setdefault(int(r.data.tags[schema.TAG_TUNE_TRIAL]), []).append(
                r.data.metrics[schema.BEST_VAL_LOSS]
            )
        medians = {t: statistics.median(v) for t, v in by_trial.items()}
        assert int(row["trial"]) == min(medians, key=lambda t: (medians[t], t))
        assert float(row["tuning_score"]) == pytest.approx(medians[int(row["trial"])])
    for row in selection:
        assert row["on_boundary_first"].startswith("lr at high (1e-05)"), row
        assert row["widened"] == "True"
        assert row["space"].startswith("lr ∈ [1e-06, 3.162e-05] (log)")

    # only fresh seeds are scored: every rerun is on tune.rerun_seeds, disjoint from tuning's
    tuned = _of(runs, schema.RUN_KIND_TRAINING, "tuned")
    defaults = _of(runs, schema.RUN_KIND_TRAINING, "default")
    for reruns in (tuned, defaults):
        assert {int(r.data.tags[schema.TAG_SEED]) for r in reruns} == set(range(10))
    assert len(defaults) == 20
    chosen = {k: v for k, v in study.data.tags.items() if k.startswith("rprop_bench.tune.chosen.")}
    assert len(chosen) == 4  # two objectives × two optimizers
    for run in tuned:
        assert run.data.params["optimizer.lr"] in {
            v.split(",")[0].removeprefix("lr=") for v in chosen.values()
        }
    assert set(_of(runs, schema.RUN_KIND_TRAINING)) >= set(tuned)
    assert len({r.data.tags[schema.TAG_RUN_KEY] for r in tuned}) <= 40

    # nesting: study → phases (sweeps) → runs
    phases = {r.data.tags[schema.TAG_SWEEP_ID]: r for r in _of(runs, schema.RUN_KIND_SWEEP)}
    study_id = study.data.tags[schema.TAG_SWEEP_ID]
    assert set(phases) >= {f"{study_id}.trials", f"{study_id}.trials1", f"{study_id}.defaults",
                           f"{study_id}.tuned_best_val_loss"}  # fmt: skip
    for phase in phases.values():
        assert phase.data.tags[schema.TAG_PARENT_RUN_ID] == study.info.run_id
    from rprop_bench.results import tuning_studies

    listed = tuning_studies(store_uri, EXPERIMENT)
    assert listed[["study_id", "run_id"]].values.tolist() == [[study_id, study.info.run_id]]
    first = phases[f"{study_id}.trials"].info.run_id
    assert all(
        r.data.tags[schema.TAG_PARENT_RUN_ID] in {first, phases[f"{study_id}.trials1"].info.run_id}
        for r in trials
    )

    # the report on a tuned phase shows how it was tuned
    report = run_cli(
        "report", f"tracking.uri={store_uri}", f"tracking.experiment={EXPERIMENT}",
        f"report.sweep={study_id}.tuned_best_val_loss", f"report.out={tmp_path / 'report'}",
        "report.progress=false", "report.log_to_mlflow=false", cwd=tmp_path,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-3000:]
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Tuning" in text
    assert "winners by" not in text or study_id in text
    assert (tmp_path / "report" / "tables" / "tuning_selection.csv").exists()
    assert (tmp_path / "report" / "tables" / "tuning_trials.csv").exists()
    assert (tmp_path / "report" / "figures" / "tuning_gain_best_val_loss.png").exists()

    # the same command again redoes nothing
    again = run_cli(*STUDY, f"tracking.uri={store_uri}", cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(_of(_runs(store_uri), schema.RUN_KIND_TRAINING)) == len(
        _of(runs, schema.RUN_KIND_TRAINING)
    )


#: A study whose runs take a few seconds each: long enough to be killed in the middle.
SLOW_STUDY = (
    "tune", "optimizer=irprop_minus", "problem=line", "train.epochs=1500", "tune.trials=2",
    "train.log_every=50", "tracking.flush_seconds=0.2", f"tracking.experiment={EXPERIMENT}",
    *QUIET,
)  # fmt: skip


def _finished_trials(uri: str) -> int:
    try:
        runs = _runs(uri)
    except AttributeError:  # the experiment does not exist yet
        return 0
    trials = _of(runs, schema.RUN_KIND_TRAINING, "trial")
    done = [r for r in trials if r.info.status == "FINISHED"]
    running = [r for r in trials if r.info.status == "RUNNING"]
    return len(done) if done and running else 0


@pytest.mark.slow
def test_a_study_killed_mid_trial_resumes_with_no_finished_trial_redone(tmp_path, store_uri):
    args = (*SLOW_STUDY, f"tracking.uri={store_uri}")
    study = start_cli(*args, cwd=tmp_path)
    try:
        wait_for(lambda: _finished_trials(store_uri) >= 2, 300, "two finished trials")
    finally:
        stop_group(study, signal.SIGKILL)
    before = {
        r.info.run_id: r.data.tags[schema.TAG_RUN_KEY]
        for r in _of(_runs(store_uri), schema.RUN_KIND_TRAINING, "trial")
        if r.info.status == "FINISHED"
    }
    resumed = run_cli(*args, cwd=tmp_path, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    runs = _of(_runs(store_uri), schema.RUN_KIND_TRAINING)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    keys = Counter(r.data.tags[schema.TAG_RUN_KEY] for r in finished)
    assert set(keys.values()) == {1}  # none duplicated
    still = {r.info.run_id for r in finished}
    assert set(before) <= still  # every trial finished before the kill is the same run
    assert len([r for r in runs if r.info.status == "KILLED"]) >= 1  # the one cut short
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert len([r for r in finished if r.data.tags[schema.TAG_TUNE_ROLE] == "trial"]) == 6


@pytest.mark.slow
def test_optunas_tpe_sampler_runs_when_chosen_with_its_journal_beside_the_store(
    tmp_path, store_uri
):
    out = run_cli(
        "tune", "optimizer=adam", "problem=line", "train.epochs=5", "tune.sampler=tpe",
        "tune.trials=3", "tune.batch=2", "tune.rerun_defaults=false",
        f"tracking.experiment={EXPERIMENT}", f"tracking.uri={store_uri}", *QUIET,
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "phase tpe0: 6 runs" in out.stdout
    assert "phase tpe1: 3 runs" in out.stdout
    (journal,) = (Path(store_uri.removeprefix("sqlite:///")).parent / "optuna").iterdir()
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(journal)))
    (summary,) = optuna.get_all_study_summaries(storage)
    assert summary.n_trials == 3
    trials = _of(_runs(store_uri), schema.RUN_KIND_TRAINING, "trial")
    assert len(trials) == 9  # 3 trials × 3 tuning seeds
    assert len({r.data.params["optimizer.lr"] for r in trials}) == 3


@pytest.mark.slow
def test_a_sweep_reuses_finished_runs_of_an_earlier_one_and_reports_its_whole_grid(
    tmp_path, store_uri
):
    common = ("problem=line", "train.epochs=3", "train.seed=0,1", f"tracking.uri={store_uri}",
              f"tracking.experiment={EXPERIMENT}", *QUIET)  # fmt: skip
    first = run_cli("sweep", "optimizer=rprop", *common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli("sweep", "optimizer=rprop,adam", *common, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "2 trained, 2 reused; runs: 4 FINISHED;" in second.stdout
    report = run_cli(
        "report", f"tracking.uri={store_uri}", f"tracking.experiment={EXPERIMENT}",
        f"report.out={tmp_path / 'report'}", "report.progress=false", "report.log_to_mlflow=false",
        cwd=tmp_path,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-3000:]
    assert "report on 4 runs" in report.stdout  # the latest sweep: its 2 new runs and 2 reused
    runs = _of(_runs(store_uri), schema.RUN_KIND_TRAINING)
    assert len(runs) == 4  # nothing trained twice
    reused = [r for r in runs if r.data.tags.get(schema.TAG_SWEEPS)]
    assert len(reused) == 2
    assert {r.data.tags[schema.TAG_OPTIMIZER] for r in reused} == {"rprop"}
