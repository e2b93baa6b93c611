"""End to end: real ``python -m rprop_bench`` subprocesses writing real SQLite stores."""

from __future__ import annotations

import io
import json
import shlex
import socket
from pathlib import Path
from unittest.mock import ANY

import pandas as pd
import pytest
from harness_helpers import new_store, run_cli, runs_of_kind
from mlflow import MlflowClient

from rprop_bench import schema

pytestmark = pytest.mark.slow


def _artifact_text(client: MlflowClient, run_id: str, path: str, tmp: Path) -> str:
    return Path(client.download_artifacts(run_id, path, str(tmp))).read_text()


def test_run_on_line_records_everything_and_learns_the_line(tmp_path, store_uri):
    uri = store_uri
    out = run_cli("run", "problem=line", f"tracking.uri={uri}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "FINISHED: irprop- s0 · line" in out.stdout
    assert "python -m rprop_bench ui" in out.stdout
    (run,) = runs_of_kind(uri, None)
    client = MlflowClient(uri)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "irprop- s0 · line"
    # params: the flattened resolved config
    params = run.data.params
    assert params["optimizer.lr"] == "0.01"
    assert params["optimizer.variant"] == "irprop-"
    assert params["train.epochs"] == "200"
    assert params["problem.data.name"] == "line"
    # tags
    tags = run.data.tags
    expected = {
        schema.TAG_OPTIMIZER: "rprop", schema.TAG_VARIANT: "irprop-", schema.TAG_PROBLEM: "line",
        schema.TAG_MODEL: "linear", schema.TAG_SEED: "0", schema.TAG_TASK: "regression",
        schema.TAG_RUN_KIND: schema.RUN_KIND_TRAINING,
    }  # fmt: skip
    assert {k: tags.get(k) for k in expected} == expected
    assert tags[schema.TAG_COMMAND].startswith("python -m rprop_bench run")
    assert Path(tags[schema.TAG_OUTPUT_DIR]).is_dir()
    assert tags[schema.TAG_GIT_COMMIT]
    # the machine, since float32 results differ in their last digits from one CPU to another
    import torch

    assert tags[schema.TAG_TORCH_VERSION] == torch.__version__
    assert tags[schema.TAG_CPU]
    assert tags[schema.TAG_PLATFORM]
    # MLflow's own columns: Source (name, type, commit) and Dataset (the three splits)
    assert tags[schema.TAG_SOURCE_NAME] == "rprop_bench"
    assert tags[schema.TAG_SOURCE_TYPE] == "LOCAL"
    if tags[schema.TAG_GIT_COMMIT] != "unknown":
        assert tags[schema.TAG_GIT_COMMIT].startswith(tags[schema.TAG_SOURCE_COMMIT])
    splits = {
        d.dataset.name: ({t.key: t.value for t in d.tags}, json.loads(d.dataset.profile))
        for d in client.get_run(run.info.run_id).inputs.dataset_inputs
    }
    assert splits == {
        "line/train": ({"mlflow.data.context": "train"}, ANY),
        "line/validation": ({"mlflow.data.context": "validation"}, ANY),
        "line/test": ({"mlflow.data.context": "test"}, ANY),
    }
    assert splits["line/train"][1]["features_shape"] == [100, 1]
    # the experiment opens in the MLflow UI's model-training view, not the GenAI one
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert schema.TAG_PARENT_RUN_ID not in tags
    # metric histories: one value per epoch
    for key in (schema.TRAIN_LOSS, schema.VAL_LOSS, schema.VAL_R2, schema.GRAD_NORM,
                schema.WALL_TIME, schema.STEP_MEDIAN, schema.AT_MIN_FRACTION):  # fmt: skip
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert steps == list(range(1, 201)), key
    # the seed example's answer
    assert abs(run.data.metrics[schema.LINE_WEIGHT] - 2) < 0.05
    assert abs(run.data.metrics[schema.LINE_BIAS] - 3) < 0.05
    assert run.data.metrics[schema.REACHED_TARGET] == 1.0
    # artifacts
    run_id = run.info.run_id
    hist = pd.read_csv(
        io.StringIO(_artifact_text(client, run_id, schema.ARTIFACT_STEP_HISTOGRAMS, tmp_path))
    )
    assert tuple(hist.columns) == schema.HISTOGRAM_COLUMNS
    assert set(hist["layer"]) == {"0.weight", "0.bias", schema.HISTOGRAM_ALL_LAYERS}
    assert hist.groupby(["epoch", "layer"])["count"].sum().loc[(200, "all")] == 2
    heatmap = client.download_artifacts(
        run.info.run_id, schema.ARTIFACT_STEP_HEATMAP, str(tmp_path)
    )
    assert Path(heatmap).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = _artifact_text(client, run.info.run_id, schema.ARTIFACT_CONFIG, tmp_path)
    assert "variant: irprop-" in config
    assert "epochs: 200" in config
    line = pd.read_csv(
        io.StringIO(_artifact_text(client, run.info.run_id, schema.ARTIFACT_LINE_DATA, tmp_path))
    )
    assert list(line.columns) == ["x", "y"]
    assert len(line) == 100


GRID = ("problem=line,iris", "train.seed=0,1", "optimizer.lr=0.01,0.1", "train.epochs=5")


def _assert_one_parent_with_children(uri: str, n_children: int) -> None:
    runs = runs_of_kind(uri, None)
    parents = [r for r in runs if r.data.tags.get(schema.TAG_RUN_KIND) == schema.RUN_KIND_SWEEP]
    children = [r for r in runs if r.data.tags.get(schema.TAG_RUN_KIND) == "training"]
    assert len(parents) == 1
    (parent,) = parents
    assert parent.info.status == "FINISHED"
    assert len(children) == n_children
    assert all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags[schema.TAG_PARENT_RUN_ID] for c in children} == {parent.info.run_id}
    assert {c.data.tags[schema.TAG_SWEEP_ID] for c in children} == {
        parent.data.tags[schema.TAG_SWEEP_ID]
    }
    combos = {
        (
            c.data.tags[schema.TAG_PROBLEM],
            c.data.tags[schema.TAG_SEED],
            c.data.params["optimizer.lr"],
        )
        for c in children
    }
    assert len(combos) == n_children
    assert {c.data.tags[schema.TAG_OPTIMIZER] for c in children} == {"rprop"}


def test_sweep_makes_one_parent_and_nested_children(tmp_path, store_uri):
    uri = store_uri
    out = run_cli("optimizer=rprop", "sweep", *GRID, f"tracking.uri={uri}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "sweep: 8 runs" in out.stdout
    assert "sweep done: 8 trained, 0 reused; runs: 8 FINISHED; parent run" in out.stdout
    _assert_one_parent_with_children(uri, 8)
    # the parent's description in the UI: its command and its grid
    (parent,) = runs_of_kind(uri, schema.RUN_KIND_SWEEP)
    note = parent.data.tags[schema.TAG_NOTE]
    assert "Sweep of 8 runs, started with" in note
    assert "python -m rprop_bench sweep optimizer=rprop problem=line,iris" in note
    assert "- `problem`: line, iris" in note
    assert "- `optimizer.lr`: 0.01, 0.1" in note
    assert "- `optimizer`: rprop" in note
    assert note.endswith("Fixed: `train.epochs=5`")  # where the runs are stored is not listed
    # run again: every run is reused, none trained, and the console says so
    again = run_cli("optimizer=rprop", "sweep", *GRID, f"tracking.uri={uri}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "sweep done: 0 trained, 8 reused; runs: 8 FINISHED; parent run" in again.stdout
    # a child's command tag trains that one run again: not a sweep, the same run key
    child = next(r for r in runs_of_kind(uri, "training") if r.data.tags[schema.TAG_SEED] == "1")
    command = shlex.split(child.data.tags[schema.TAG_COMMAND])
    assert command[:4] == ["python", "-m", "rprop_bench", "run"]
    assert not any(word.startswith("sweep") for word in command)
    rerun = run_cli(*command[3:], cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "sweep done" not in rerun.stdout
    assert "parent run" not in rerun.stdout
    keys = [r.data.tags[schema.TAG_RUN_KEY] for r in runs_of_kind(uri, "training")]
    assert keys.count(child.data.tags[schema.TAG_RUN_KEY]) == 2
    assert len(runs_of_kind(uri, schema.RUN_KIND_SWEEP)) == 1


def test_sweep_through_the_joblib_launcher(tmp_path, store_uri):
    uri = store_uri
    out = run_cli(
        "optimizer=rprop", "sweep", *GRID, f"tracking.uri={uri}",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Joblib" in out.stdout + out.stderr
    _assert_one_parent_with_children(uri, 8)
    (sweep_dir,) = tmp_path.glob("multirun/*/*")
    assert (sweep_dir / "multirun.yaml").is_file()
    assert not list(sweep_dir.glob(".rprop_bench_configs_*"))  # the shared compositions: gone


def test_diverging_run_fails_with_reason_and_the_sweep_goes_on(tmp_path, store_uri):
    uri = store_uri
    out = run_cli(
        "sweep", "optimizer=sgd", "problem=line", "train.seed=0", "optimizer.lr=1e30,0.05",
        "train.epochs=20", f"tracking.uri={uri}", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    children = {
        r.data.params["optimizer.lr"]: r
        for r in runs_of_kind(uri, None)
        if r.data.tags.get(schema.TAG_RUN_KIND) == "training"
    }
    assert set(children) == {"1e+30", "0.05"}
    failed, fine = children["1e+30"], children["0.05"]
    assert failed.info.status == "FAILED"
    reason = failed.data.tags[schema.TAG_FAILURE_REASON]
    assert "train loss became" in reason
    assert "nan" in reason or "inf" in reason
    assert fine.info.status == "FINISHED"
    assert "runs: 1 FAILED, 1 FINISHED; parent run" in out.stdout
    assert failed.data.tags[schema.TAG_FAILURE_KIND] == schema.FAILURE_DIVERGED

    # a divergence is deterministic: the same sweep again trains neither point ...
    args = ("sweep", "optimizer=sgd", "problem=line", "train.seed=0", "optimizer.lr=1e30,0.05",
            "train.epochs=20", f"tracking.uri={uri}")  # fmt: skip
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already FAILED (its loss diverged; sweep.retry_failed=true trains it again)" in (
        again.stdout
    )
    training = [r for r in runs_of_kind(uri, None)
                if r.data.tags.get(schema.TAG_RUN_KIND) == "training"]  # fmt: skip
    assert len(training) == 2
    # ... unless asked to
    retried = run_cli(*args, "sweep.retry_failed=true", cwd=tmp_path)
    assert retried.returncode == 0, retried.stderr
    lrs = sorted(r.data.params["optimizer.lr"] for r in runs_of_kind(uri, None)
                 if r.data.tags.get(schema.TAG_RUN_KIND) == "training")  # fmt: skip
    assert lrs == ["0.05", "1e+30", "1e+30"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


BAD_INPUT = [
    (["optimizer=adamm"], "unknown optimizer 'adamm'; valid optimizers: adam, adamw, irprop_minus"),
    (["problem=mnist", "sweep"], "unknown problem 'mnist'; valid problems: breast_cancer, circles"),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1 is out of range: must be > 0"),
    (["optimizer=adam", "optimizer.betas=[0.9,1.5]"], "optimizer.betas=[0.9, 1.5] is out of range"),
    (
        ["train.epochs=0", "sweep", "problem=line,iris"],
        "train.epochs=0 is out of range: must be >= 1",
    ),
    (
        ["optimizer=lbfgs", "train.vectorize_seeds=true"],
        "train.vectorize_seeds=true: LBFGS cannot train seeds stacked",
    ),
    (["train.vectorize_seeds=maybe"], "train.vectorize_seeds='maybe' has the wrong type"),
    (["sweep.max_stack=1", "sweep"], "sweep.max_stack=1 is out of range: must be >= 2"),
    (
        ["train.vectorize=grids", "sweep"],
        "train.vectorize='grids' is out of range: must be one of ('seeds', 'grid') (or null)",
    ),
    (
        ["optimizer=lbfgs", "train.vectorize=grid"],
        "train.vectorize=grid: LBFGS cannot train seeds stacked",
    ),
    (["tracking.uri=http://127.0.0.1:PORT"], "MLflow tracking server not reachable at http://127"),
    (["tracking.uri=sqlite:///BLOCKER/mlflow.db"], "cannot write the MLflow store"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_one_line_and_starts_nothing(tmp_path, args, message):
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("a file, so nothing can be created below it")
    args = [a.replace("PORT", str(_free_port())).replace("BLOCKER", str(blocker)) for a in args]
    out = run_cli(*args, cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in out.stderr + out.stdout
    assert not (tmp_path / "mlflow.db").exists()  # no store, no training
    assert not (tmp_path / "outputs").exists()
    assert not (tmp_path / "multirun").exists()


def test_a_loss_that_does_not_fit_the_problem_is_one_line_before_training(tmp_path):
    """The task is known once the data is: the job refuses it before any run is created."""
    uri = new_store(tmp_path / "store")
    out = run_cli("problem=diabetes", "problem.loss=mse_sigmoid", f"tracking.uri={uri}",
                  cwd=tmp_path, timeout=120)  # fmt: skip
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.strip().splitlines() if not line.startswith("20")]
    assert lines == [
        "error: problem.loss='mse_sigmoid' does not fit a regression problem; valid: mse "
        "(problem 'diabetes')"
    ]
    assert runs_of_kind(uri) == []


def test_tracking_uri_from_the_environment(tmp_path):
    uri = new_store(tmp_path / "env_store")
    out = run_cli("train.epochs=2", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 0, out.stderr
    assert len(runs_of_kind(uri, None)) == 1
    assert not (tmp_path / "mlflow.db").exists()


def test_default_store_lands_in_the_working_directory_and_hydra_flags_work(tmp_path):
    out = run_cli("--cfg", "job", "optimizer=adam", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "_target_: torch.optim.Adam" in out.stdout
    assert not (tmp_path / "mlflow.db").exists()  # printing the config trains nothing
    out = run_cli("train.epochs=2", "problem=iris", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(runs_of_kind(f"sqlite:///{tmp_path / 'mlflow.db'}", None)) == 1
    assert (tmp_path / "mlruns").is_dir()  # artifacts beside the database


def test_help_lists_commands_and_groups(tmp_path):
    out = run_cli("--help", cwd=tmp_path)
    assert out.returncode == 0
    for word in ("sweep", "ui", "optimizer", "irprop_plus", "two_spirals", "hydra/launcher=joblib"):
        assert word in out.stdout
