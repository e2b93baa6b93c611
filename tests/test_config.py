"""The config groups, their validation and the pre-flight check, and the MLflow writer.

Everything composes the real ``conf/`` with Hydra's compose API and writes to real SQLite
stores in temporary directories.
"""

from __future__ import annotations

import dataclasses
import platform
import socket
import threading
from pathlib import Path

import pytest
import torch
from harness_helpers import compose, new_store
from hydra.utils import instantiate
from lanes import fast_first
from mlflow import MlflowClient
from omegaconf import OmegaConf

from rprop_bench import optim, schema
from rprop_bench.cli import split_arguments, structured
from rprop_bench.cli.build import optimizer_partial
from rprop_bench.cli.compose import CONF_DIR, GROUPS, group_options, job_overrides, preflight
from rprop_bench.cli.identity import cpu_model, machine_tags, run_key
from rprop_bench.cli.validate import RULE, ConfigError, validate
from rprop_bench.diagnostics import HistogramRow
from rprop_bench.params import flatten
from rprop_bench.problems import problem_names
from rprop_bench.step_figure import step_heatmap
from rprop_bench.store import TrackingError, check_store, resolve_uri, sqlite_path
from rprop_bench.tracking import Tracker, TrackingOptions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# The options of a group are its files in conf/ (a new file is a new option); every problem
# file names a registered problem.
EXPECTED_OPTIONS = {
    "optimizer": sorted(p.stem for p in (CONF_DIR / "optimizer").glob("*.yaml")),
    "problem": sorted(problem_names()),
    "model": ["linear", "mlp", "mnist1d_cnn", "mnist1d_mlp"],
}


@pytest.mark.parametrize(("group", "options"), EXPECTED_OPTIONS.items())
def test_groups_offer_the_documented_options(group, options):
    assert group_options(group) == options


# optimizer config -> (class, variant or None, hyperparameters to find in its param group)
OPTIMIZER_CASES = [
    ("rprop", optim.Rprop, "irprop-", {"lr": 0.01, "etas": (0.5, 1.2)}),
    ("rprop_plus", optim.Rprop, "rprop+", {"step_sizes": (1e-6, 50.0)}),
    ("rprop_minus", optim.Rprop, "rprop-", {}),
    ("irprop_plus", optim.Rprop, "irprop+", {}),
    ("irprop_minus", optim.Rprop, "irprop-", {}),
    ("torch_rprop", torch.optim.Rprop, None, {"lr": 0.01}),
    ("sgd", torch.optim.SGD, None, {"momentum": 0.0, "nesterov": False}),
    ("momentum", torch.optim.SGD, None, {"momentum": 0.9, "nesterov": True}),
    ("adam", torch.optim.Adam, None, {"lr": 0.001, "betas": (0.9, 0.999)}),
    ("adamw", torch.optim.AdamW, None, {"weight_decay": 0.01}),
    ("rmsprop", torch.optim.RMSprop, None, {"alpha": 0.9}),
    ("lbfgs", torch.optim.LBFGS, None, {"line_search_fn": "strong_wolfe", "history_size": 10}),
]


@pytest.mark.parametrize(("name", "cls", "variant", "expected"), OPTIMIZER_CASES)
def test_every_optimizer_config_composes_and_instantiates(
    compose_cfg, name, cls, variant, expected
):
    cfg = compose_cfg(f"optimizer={name}")
    validate(cfg)
    optimizer = optimizer_partial(cfg)([torch.nn.Parameter(torch.ones(3))])
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    if variant is not None:
        assert group["variant"] == variant
    for key, value in expected.items():
        got = group[key]
        assert (tuple(got) if isinstance(got, list | tuple) else got) == value, key


def test_optimizer_hyperparameters_can_be_overridden():
    cfg = compose("optimizer=irprop_plus", "optimizer.lr=0.05", "optimizer.etas=[0.4,1.3]")
    optimizer = optimizer_partial(cfg)([torch.nn.Parameter(torch.ones(2))])
    assert optimizer.param_groups[0]["lr"] == 0.05
    assert tuple(optimizer.param_groups[0]["etas"]) == (0.4, 1.3)


@pytest.mark.parametrize("problem", fast_first(sorted(problem_names()), keep=4))
def test_every_problem_config_instantiates_data_and_default_model(compose_cfg, problem):
    cfg = compose_cfg(f"problem={problem}")
    validate(cfg)
    data = instantiate(cfg.problem.data)
    assert data.name == problem
    model = instantiate(cfg.model)(n_inputs=data.n_inputs, n_outputs=data.n_outputs)
    outputs = cfg.model.get("output_units") or data.n_outputs  # 1: a binary problem's one unit
    assert model(data.x_val).shape == (len(data.x_val), outputs)
    assert cfg.model.kind == cfg.problem.default_model.kind  # model: null -> problem's default


@pytest.mark.parametrize(
    ("overrides", "kind", "hidden"),
    [
        (["problem=iris"], "mlp", [16]),
        (["problem=iris", "model=linear"], "linear", []),
        (["problem=line", "model=mlp"], "mlp", [16]),
        (
            ["problem=line", "model=mlp", "model.hidden=[7,3]", "model.activation=relu"],
            "mlp",
            [7, 3],
        ),
    ],
)
def test_model_group_overrides_the_problem_default(overrides, kind, hidden):
    cfg = compose(*overrides)
    assert (cfg.model.kind, list(cfg.model.hidden)) == (kind, hidden)
    model = instantiate(cfg.model, _convert_="all")(n_inputs=2, n_outputs=2)
    assert [m.out_features for m in model if isinstance(m, torch.nn.Linear)] == [*hidden, 2]


def test_train_and_tracking_defaults():
    cfg = compose(shrink=False)
    assert cfg.train.epochs == 200
    assert cfg.train.batch_size is None
    assert cfg.optimizer.lr == 0.01
    assert cfg.optimizer.variant == "irprop-"
    assert cfg.problem.data.name == "line"
    assert cfg.tracking.uri in ("sqlite:///mlflow.db",) or cfg.tracking.uri.startswith("sqlite:")


def test_tracking_uri_follows_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert compose().tracking.uri == "http://tracking.example:5000"
    assert compose("tracking.uri=sqlite:///x.db").tracking.uri == "sqlite:///x.db"


def test_validation_accepts_exactly_the_optimizers_variants():
    for variant in optim.VARIANTS:
        validate(compose(f"optimizer.variant={variant}"))
        optim.Rprop([torch.zeros(1, requires_grad=True)], variant=variant)
    with pytest.raises(ConfigError, match=r"optimizer\.variant='rprop' is out of range"):
        validate(compose("optimizer.variant=rprop"))


BAD_VALUES = [
    (["optimizer.lr=-1"], "optimizer.lr=-1 is out of range: must be > 0"),
    (["optimizer.lr=100"], "optimizer.lr=100 is out of range: must be in [1e-06, 50.0]"),
    (["optimizer.etas=[0.5,0.9]"], "optimizer.etas=[0.5, 0.9] is out of range"),
    (["optimizer.step_sizes=[1.0,0.1]"], "optimizer.step_sizes=[1.0, 0.1] is out of range"),
    (["optimizer.variant=rprop*"], "optimizer.variant='rprop*' is out of range"),
    (["optimizer=momentum", "optimizer.momentum=1.5"], "optimizer.momentum=1.5 is out of range"),
    (["optimizer=adam", "optimizer.betas=[0.9,1.0]"], "optimizer.betas=[0.9, 1.0] is out of"),
    (["optimizer=adam", "optimizer.eps=0"], "optimizer.eps=0 is out of range: must be > 0"),
    (["optimizer=rmsprop", "optimizer.alpha=1"], "optimizer.alpha=1 is out of range"),
    (["optimizer=lbfgs", "optimizer.history_size=0"], "optimizer.history_size=0 is out"),
    (["optimizer=lbfgs", "train.batch_size=16"], "must be null (full batch) for L-BFGS"),
    (["train.epochs=0"], "train.epochs=0 is out of range: must be >= 1"),
    (["train.batch_size=0"], "train.batch_size=0 is out of range: must be >= 1"),
    (["train.log_every=0"], "train.log_every=0 is out of range"),
    (["train.device=tpu"], "train.device='tpu' is out of range"),
    (["problem.data.val_fraction=1.5"], "problem.data.val_fraction=1.5 is out of range"),
    (
        ["problem=iris", "problem.data.val_fraction=0.5", "problem.data.test_fraction=0.5"],
        "val_fraction + test_fraction=1.0 is out of range",
    ),
    (["model=mlp", "model.activation=gelu"], "model.activation='gelu' is out of range"),
    (["model=mlp", "model.hidden=[0]"], "model.hidden=[0] is out of range"),
    (["model=linear", "model.hidden=[4]"], "must be [] for a linear model"),
    (
        ["model=mnist1d_cnn", "model.kernel_sizes=[5,3]"],
        "model.kernel_sizes=[5, 3] is out of "
        "range: must be 3 kernel sizes >= 1 (one per convolution of model.hidden)",
    ),
    (["model=mnist1d_cnn", "model.stride=0"], "model.stride=0 is out of range: must be >= 1"),
    (["model=mnist1d_mlp", "model.hidden=[100,50]"], "hidden layers of one width"),
    (["model=mlp", "+model.padding=1"], "model.padding=1 is out of range: must be absent unless"),
    (
        ["problem=two_spirals_1988", "problem.loss=null"],
        "model.output_units=1 needs problem.loss="
        "'mse_sigmoid', 'sse_sigmoid' or 'cross_entropy' (a single sigmoid output), not None",
    ),
    (["tracking.max_batch=5000"], "tracking.max_batch=5000 is out of range: must be in [1, 1000]"),
    (["problem.loss=hinge"], "problem.loss='hinge' is out of range: must be one of ('cross_en"),
    (["train.dtype=float16"], "train.dtype='float16' is out of range: must be one of ('float32'"),
    (["problem.targets=[0.1,0.5]"], "problem.targets=[0.1, 0.5] is out of range: must be > 0, s"),
    (["problem.targets=[0.5,-1]"], "strictly decreasing (easiest first)"),
]


@pytest.mark.parametrize(("overrides", "message"), fast_first(BAD_VALUES, keep=8))
def test_out_of_range_values_name_the_field_and_range(overrides, message):
    with pytest.raises(ConfigError) as info:
        validate(compose(*overrides))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# Every field of the structured configs that has a rule, at its dotted path, derived from the
# schema: a new field is covered without a new line here.
SCHEMA_NODES = {
    "train": structured.TrainConfig,
    "problem.data": structured.DataConfig,
    "problem": structured.ProblemConfig,
    "tracking": structured.TrackingConfig,
    "sweep": structured.SweepConfig,
}
RULED_FIELDS = [
    (f"{path}.{field.name}", field.metadata[RULE])
    for path, node_type in SCHEMA_NODES.items()
    for field in dataclasses.fields(node_type)
    if RULE in field.metadata and field.type not in ("str", "str | None")  # any text is a str
]


@pytest.mark.parametrize(
    ("key", "rule"), fast_first(RULED_FIELDS, every=4), ids=[key for key, _ in RULED_FIELDS]
)
def test_a_value_of_the_wrong_type_names_the_field_and_what_it_must_be(key, rule):
    """Typed fields fail when OmegaConf converts the override; ``Any`` fields at the rule."""
    with pytest.raises(ConfigError) as info:
        preflight([f"{key}=abc"], sweep=False)
    assert str(info.value) == f"{key}='abc' has the wrong type: must be {rule.expected}"


def test_every_schema_field_has_its_value_in_the_packages_yaml():
    """The YAML files hold the defaults (the schema's fields are MISSING): none is left out."""
    for problem in group_options("problem"):
        cfg = compose(f"problem={problem}", shrink=False)
        assert OmegaConf.missing_keys(cfg) == set(), problem
        for path, node_type in SCHEMA_NODES.items():
            assert OmegaConf.get_type(OmegaConf.select(cfg, path)) is node_type, path


def test_numbers_of_the_run_key_keep_the_type_they_were_given():
    """``Any`` rather than ``float`` for these fields: an integer stays an integer, so the run
    key of a run made with ``train.target_loss=1`` is the key it had before the schema."""
    cfg = compose("train.target_loss=1", "problem.data.val_fraction=0.25")
    assert type(cfg.train.target_loss) is int
    assert type(cfg.problem.data.val_fraction) is float
    assert run_key(cfg) != run_key(compose("train.target_loss=1.0"))


def test_a_users_train_config_that_misses_a_field_is_one_line(tmp_path):
    """A train option of the user's own must give every field (the schema has no defaults)."""
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "short.yaml").write_text("epochs: 3\n")
    with pytest.raises(ConfigError) as info:
        preflight(["train=short"], sweep=False, extra_dirs=[str(tmp_path)])
    assert "\n" not in str(info.value)
    assert "train.batch_size" in str(info.value)


PREFLIGHT_BAD = [
    (["optimizer=rmsprob"], "unknown optimizer 'rmsprob'; valid optimizers: adam, adamw"),
    (["problem=mnist"], "unknown problem 'mnist'; valid problems: breast_cancer"),
    (["optimizer=rprop,adamm"], "unknown optimizer 'adamm'"),
    (["model=cnn"], "unknown model 'cnn'; valid models: linear, mlp"),
    (["optimizer.lrr=1"], "optimizer.lrr: no such key; did you mean optimizer.lr?"),
    (["train.epoch=3"], "train.epoch: no such key; did you mean train.epochs?"),
    (["optimiser=adam"], "optimiser: no such key; did you mean optimizer?"),
    (["train.zzz=1"], "train.zzz: no such key; the keys under train: epochs, batch_size,"),
    (["problem=iris", "model.hidden=[32]"], "choose model=mlp or model=linear"),
    (["optimizer.lr=0.01,-0.5"], "optimizer.lr=-0.5 is out of range"),
    (["train.epochs=="], "invalid override"),
    (["problem.data.name=foo"], "problem.data.name='foo' is not a problem; valid problems: "),
    (["problem.data.name=../../etc/passwd"], "problem.data.name='../../etc/passwd' is not a"),
]


@pytest.mark.parametrize(
    ("overrides", "message", "sweep"),
    [
        (overrides, message, sweep)
        for overrides, message in PREFLIGHT_BAD
        for sweep in (True, False)
        if sweep or not any("," in o for o in overrides)  # a comma list is a sweep
    ],
)
def test_preflight_rejects_bad_input_in_one_line(overrides, message, sweep):
    with pytest.raises(ConfigError) as info:
        preflight(overrides, sweep=sweep)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "n_jobs", "fixed"),
    [
        (["sweep=default", "optimizer=rprop"], 30, {"optimizer=rprop"}),
        (["sweep=default", "optimizer=rprop", "problem=line,iris", "train.seed=0,1"], 4, set()),
        (
            ["sweep=default", "optimizer=rprop", "problem=line,iris", "train.seed=0,1",
             "optimizer.lr=0.01,0.1"],
            8, set(),
        ),
        (["sweep=default"], 12 * 10 * 3, set()),
        (["optimizer=adam,sgd"], 2, set()),  # --multirun without the grid
    ],
)  # fmt: skip
def test_sweep_jobs_combine_the_grid_with_the_command_line(overrides, n_jobs, fixed):
    jobs = job_overrides(overrides, sweep=True)
    assert len(jobs) == n_jobs
    assert len({tuple(sorted(j)) for j in jobs}) == n_jobs  # all distinct
    for job in jobs:
        assert fixed <= set(job)


@pytest.mark.parametrize(
    ("argv", "command", "flags", "overrides"),
    [
        ([], "run", [], []),
        (["optimizer=rprop", "sweep"], "sweep", [], ["optimizer=rprop"]),
        (["ui", "tracking.ui_port=5001"], "ui", [], ["tracking.ui_port=5001"]),
        (["--cfg", "job", "problem=iris"], "run", ["--cfg", "job"], ["problem=iris"]),
        (["-m", "optimizer=adam,sgd", "run"], "run", ["-m"], ["optimizer=adam,sgd"]),
        (["hydra/launcher=joblib", "sweep"], "sweep", [], ["hydra/launcher=joblib"]),
    ],
)
def test_command_word_may_stand_anywhere(argv, command, flags, overrides):
    assert split_arguments(argv) == (command, flags, overrides)


def test_help_lists_commands_and_group_options():
    from rprop_bench.cli import help_text

    text = help_text()
    for word in ("run", "sweep", "ui", "report", *GROUPS, *EXPECTED_OPTIONS["optimizer"]):
        assert word in text


# --- the MLflow writer ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("sqlite:///mlflow.db", Path("mlflow.db")),
        ("sqlite:////abs/x.db", Path("/abs/x.db")),
        ("sqlite:///rel.db?timeout=5", Path("rel.db")),
        ("sqlite:////data/my%20runs.db", Path("/data/my runs.db")),  # as SQLAlchemy decodes it
        ("sqlite://", None),  # in memory
        ("sqlite:///:memory:", None),
        ("http://127.0.0.1:5000", None),
        ("file:///tmp/mlruns", None),
    ],
)
def test_the_one_sqlite_path_parser_reads_uris_as_sqlalchemy_does(uri, path):
    assert sqlite_path(uri) == path


def test_relative_sqlite_paths_resolve_against_the_working_directory(tmp_path):
    assert resolve_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    assert resolve_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert resolve_uri("http://h:5000", tmp_path) == "http://h:5000"


def test_store_checks(tmp_path):
    check_store(f"sqlite:///{tmp_path}/sub/mlflow.db")  # a new directory is fine
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(TrackingError, match="cannot write the MLflow store"):
        check_store(f"sqlite:///{blocker}/mlflow.db")
    with pytest.raises(TrackingError, match="is a directory"):
        check_store(f"sqlite:///{tmp_path}")
    with pytest.raises(TrackingError, match="file store"):
        check_store(f"file://{tmp_path}/mlruns")
    with pytest.raises(TrackingError, match="not reachable"):
        check_store(f"http://127.0.0.1:{_free_port()}", timeout=1.0)


def test_flatten_makes_dotted_params():
    assert flatten({"a": {"b": {"c": 1}, "d": [1, 2]}, "e": None}) == {
        "a.b.c": "1",
        "a.d": "[1, 2]",
        "e": "None",
    }


@pytest.mark.parametrize(("batch_logging", "max_batch"), [(True, 1000), (True, 7), (False, 1000)])
def test_recorder_writes_every_metric_in_batches(store_uri, batch_logging, max_batch):
    uri = store_uri
    tracker = Tracker(
        TrackingOptions(uri=uri, experiment="t", batch_logging=batch_logging, max_batch=max_batch)
    )
    recorder = tracker.start_run(
        "r", {schema.TAG_PROBLEM: "iris"}, {"train.epochs": "30"}, draw_heatmap=step_heatmap
    )
    rows = [HistogramRow(e, schema.HISTOGRAM_ALL_LAYERS, 1e-3, 1.8e-3, 4) for e in range(1, 31)]
    for epoch in range(1, 31):
        recorder.on_epoch(epoch, {schema.TRAIN_LOSS: 1.0 / epoch, schema.VAL_LOSS: 2.0}, rows[:1])
    recorder.finish({schema.TEST_LOSS: 0.5})
    client = MlflowClient(uri)
    run = client.get_run(recorder.run_id)
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(recorder.run_id, schema.TRAIN_LOSS)
    assert sorted(m.step for m in history) == list(range(1, 31))
    assert {m.step: m.value for m in history}[4] == 0.25
    assert run.data.metrics[schema.TEST_LOSS] == 0.5
    assert run.data.metrics[schema.LOGGING_SECONDS] > 0
    assert run.data.params == {"train.epochs": "30"}
    paths = {a.path for a in client.list_artifacts(recorder.run_id, "step_sizes")}
    assert paths == {schema.ARTIFACT_STEP_HISTOGRAMS, schema.ARTIFACT_STEP_HEATMAP}


#: (how the run ends, its status): a run with ``curves`` keeps every metric's last value
CURVES_ENDINGS = [("finish", "FINISHED"), ("fail", "FAILED"), ("kill", "KILLED")]


@pytest.mark.parametrize(("ending", "status"), CURVES_ENDINGS)
def test_a_recorder_with_curves_keeps_histories_of_those_and_last_values_of_the_rest(
    store_uri, ending, status
):
    tracker = Tracker(TrackingOptions(uri=store_uri, experiment="t"))
    recorder = tracker.start_run("r", {}, {}, curves=[schema.TRAIN_LOSS])
    for epoch in (5, 10, 15):
        recorder.on_epoch(epoch, {schema.TRAIN_LOSS: 1.0 / epoch, schema.GRAD_NORM: epoch}, [])
    {"finish": lambda: recorder.finish({schema.TEST_LOSS: 0.5}),
     "fail": lambda: recorder.fail("diverged"),
     "kill": lambda: recorder.kill("interrupted (SIGINT)")}[ending]()  # fmt: skip
    client = MlflowClient(store_uri)
    run = client.get_run(recorder.run_id)
    assert run.info.status == status
    assert [m.step for m in client.get_metric_history(run.info.run_id, schema.TRAIN_LOSS)] == [
        5, 10, 15
    ]  # fmt: skip
    norm = client.get_metric_history(run.info.run_id, schema.GRAD_NORM)
    assert [(m.step, m.value) for m in norm] == [(15, 15.0)]  # the last value, at its epoch


def test_failed_run_keeps_its_reason(store_uri):
    uri = store_uri
    tracker = Tracker(TrackingOptions(uri=uri, experiment="t"))
    recorder = tracker.start_run("r", {}, {})
    recorder.on_epoch(1, {schema.TRAIN_LOSS: 1.0}, [])
    recorder.fail("train loss became nan in epoch 2")
    run = MlflowClient(uri).get_run(recorder.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[schema.TAG_FAILURE_REASON] == "train loss became nan in epoch 2"
    assert run.data.metrics[schema.TRAIN_LOSS] == 1.0  # what was logged before is kept


def test_sweep_parent_creation_is_race_free(tmp_path):
    uri = new_store(tmp_path / "store")
    found: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            tracker = Tracker(TrackingOptions(uri=uri, experiment="race"))
            found.append(tracker.ensure_sweep_parent("sw", tmp_path / "sweep", "sweep sw", {}))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(found)) == 1
    assert len(found) == 4
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("race")
    parents = client.search_runs(
        [experiment.experiment_id], f"tags.`{schema.TAG_RUN_KIND}` = '{schema.RUN_KIND_SWEEP}'"
    )
    assert [p.info.run_id for p in parents] == found[:1]
    assert Path(tmp_path / "sweep").is_dir()


@pytest.mark.parametrize("experiment", fast_first(group_options("experiment")))
def test_every_experiment_composes_into_valid_sweep_jobs(experiment):
    jobs = job_overrides([f"experiment={experiment}", "sweep=default"], sweep=True)
    assert len(jobs) >= 1
    for job in jobs[:: max(1, len(jobs) // 5)]:  # a spread of the grid, each one validated
        cfg = compose(*job)
        validate(cfg)
        assert cfg.tracking.experiment == experiment


def test_a_job_run_without_the_preflight_reports_an_unknown_problem_as_a_config_error():
    from rprop_bench.cli.build import build_data

    with pytest.raises(ConfigError, match="unknown problem 'foo'; valid problems: breast_cancer"):
        build_data(compose("problem.data.name=foo"))


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (
            "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654\n",
            "AMD EPYC 9654",
        ),
        (
            "processor\t: 0\nmodel name\t: Intel Xeon\nprocessor\t: 1\nmodel name\t: Intel Xeon\n",
            "Intel Xeon",
        ),
        ("processor\t: 0\nmodel name\t:   \n", None),  # blank: fall back to the platform
        (None, None),  # no such file (not Linux): fall back to the platform
    ],
)
def test_the_cpu_model_is_read_from_cpuinfo_or_else_the_platform(tmp_path, cpuinfo, expected):
    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:
        path.write_text(cpuinfo)
    found = cpu_model(path)
    assert found == (expected or platform.processor() or platform.machine() or "unknown")


def test_a_run_is_tagged_with_the_torch_build_it_ran_on():
    tags = machine_tags()
    assert tags[schema.TAG_TORCH_VERSION] == torch.__version__
    assert tags[schema.TAG_CPU] == cpu_model()
    assert tags[schema.TAG_PLATFORM] == platform.platform()
