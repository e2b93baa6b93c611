"""Seed-vectorised training against training each seed alone, on real problems and optimizers.

Every case builds its optimizer, model and data from the real composed config (as the CLI does)
and compares :func:`rprop_bench.seed_batch.train_seeds` with :func:`rprop_bench.training.train`
run once per seed.
"""

from __future__ import annotations

import functools

import pytest
import torch
from harness_helpers import compose
from hydra.utils import instantiate
from lanes import fast_first

from rprop_bench import schema
from rprop_bench.cli.build import optimizer_partial
from rprop_bench.cli.compose import group_options
from rprop_bench.seed_batch import SeedBatchError, StackedModel, seeded_models, train_seeds
from rprop_bench.training import TrainResult, TrainSettings, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEEDS = range(3)
EPOCHS = 30
# Every optimizer whose config declares it elementwise, from conf/ (a new one is covered as
# soon as its config exists): the Rprop family (ours and torch's), and the baselines.
ELEMENTWISE = [
    name
    for name in group_options("optimizer")
    if compose(f"optimizer={name}").optimizer.get(schema.OPTIMIZER_ELEMENTWISE_KEY)
]
RPROP_FAMILY = [
    name
    for name in ELEMENTWISE
    if compose(f"optimizer={name}").optimizer._target_
    in (schema.RPROP_TARGET, schema.TORCH_RPROP_TARGET)
]
BASELINES = [name for name in ELEMENTWISE if name not in RPROP_FAMILY]
PROBLEMS = ["iris", "diabetes"]  # classification (cross-entropy), regression (MSE)
#: Seconds differ between the two ways by construction; everything else is compared.
TIMES = {
    schema.WALL_TIME,
    schema.TRAIN_SECONDS,
    schema.SECONDS_TO_TARGET,
    schema.SECONDS_TO_CRITERION,
}


@functools.cache
def _setup(optimizer: str, problem: str):
    """The config's data, model builder, optimizer partial and settings (log every 5th)."""
    cfg = compose(f"optimizer={optimizer}", f"problem={problem}")
    data = instantiate(cfg.problem.data)
    model = instantiate(cfg.model, _convert_="all")
    settings = TrainSettings(epochs=EPOCHS, log_every=5, target_loss=cfg.train.target_loss)
    build = functools.partial(model, n_inputs=data.n_inputs, n_outputs=data.n_outputs)
    return data, build, optimizer_partial(cfg), settings


def _recorder(logs: list):
    return lambda epoch, metrics, rows: logs.append((epoch, metrics, list(rows)))


def _alone(optimizer: str, problem: str, settings: TrainSettings | None = None, edit=None):
    """Each seed trained by itself: (models, results, logs)."""
    data, build, make_optimizer, default_settings = _setup(optimizer, problem)
    models = seeded_models(build, SEEDS)
    if edit is not None:
        edit(models)
    logs: list[list] = [[] for _ in SEEDS]
    results = [
        train(m, data, make_optimizer(m.parameters()), settings or default_settings, _recorder(log))
        for m, log in zip(models, logs, strict=True)
    ]
    return models, results, logs


def _stacked(optimizer: str, problem: str, *, exact: bool, edit=None):
    """The seeds trained as one stacked model: (models, results, logs)."""
    data, build, make_optimizer, settings = _setup(optimizer, problem)
    models = seeded_models(build, SEEDS)
    if edit is not None:
        edit(models)
    logs: list[list] = [[] for _ in SEEDS]
    callbacks = [_recorder(log) for log in logs]
    results = train_seeds(models, data, make_optimizer, settings, callbacks, exact=exact)
    return models, results, logs


def _without_times(metrics: dict[str, float]) -> dict[str, float]:
    """Every metric but the seconds (a target ladder's ``seconds_to_target_k`` included)."""
    rungs = schema.ladder_metric(schema.LADDER_SECONDS, 0)[:-1]
    return {k: v for k, v in metrics.items() if k not in TIMES and not k.startswith(rungs)}


def _max_param_diff(models_a, models_b) -> float:
    return max(
        float((a.detach() - b.detach()).abs().max())
        for ma, mb in zip(models_a, models_b, strict=True)
        for a, b in zip(ma.parameters(), mb.parameters(), strict=True)
    )


def _assert_same_run(a: TrainResult, b: TrainResult) -> None:
    assert (a.status, a.epochs_run, a.reason) == (b.status, b.epochs_run, b.reason)
    assert _without_times(a.final_metrics) == _without_times(b.final_metrics)
    assert set(a.final_metrics) == set(b.final_metrics)


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("optimizer", fast_first(RPROP_FAMILY + BASELINES, keep=4))
def test_exact_mode_equals_training_each_seed_alone_bit_for_bit(optimizer, problem):
    """``exact=True``: weights, every logged metric (step-size diagnostics and gradient norm
    included), every histogram row and every final metric equal the one-by-one run's bits.

    Each member runs a single model's very operations (same kernels, same reduction order),
    the optimizer update is elementwise (the same arithmetic per weight on a stacked tensor),
    and the gradient of the summed losses w.r.t. member k is member k's own gradient.
    """
    alone_models, alone_results, alone_logs = _alone(optimizer, problem)
    models, results, logs = _stacked(optimizer, problem, exact=True)
    assert _max_param_diff(alone_models, models) == 0.0
    for a, b in zip(alone_results, results, strict=True):
        _assert_same_run(a, b)
    for log_a, log_b in zip(alone_logs, logs, strict=True):
        assert [e for e, _, _ in log_a] == [e for e, _, _ in log_b] == [5, 10, 15, 20, 25, 30]
        for (_, metrics_a, rows_a), (_, metrics_b, rows_b) in zip(log_a, log_b, strict=True):
            assert _without_times(metrics_a) == _without_times(metrics_b)
            assert set(metrics_a) == set(metrics_b)
            assert rows_a == rows_b


#: Batched mode: (optimizer, problem) -> (max |Δweight| after 30 epochs, max relative
#: difference of any logged loss). 0.0 means the same bits. Observed on this machine (MKL,
#: AVX-512): Rprop weights 0; baseline weights <= 6e-8; diabetes losses <= 1e-7 relative.
BATCHED_TOLERANCE = {
    **{(o, "iris"): (0.0, 0.0) for o in RPROP_FAMILY},
    **{(o, "diabetes"): (0.0, 1e-6) for o in RPROP_FAMILY},
    **{(o, "iris"): (1e-6, 1e-6) for o in BASELINES},
    **{(o, "diabetes"): (1e-6, 1e-6) for o in BASELINES},
}
LOSSES = (schema.TRAIN_LOSS, schema.VAL_LOSS)


@pytest.mark.parametrize(("optimizer", "problem"), fast_first(list(BATCHED_TOLERANCE), keep=4))
def test_batched_mode_stays_within_its_pinned_distance_of_training_alone(optimizer, problem):
    """Batched mode (the default): how close each seed stays to its one-by-one run, and why.

    Each ``nn.Linear`` of the S members is one ``baddbmm`` (after the first layer, which is one
    product of the shared input with the members' weights side by side). Its backward pass
    reduces over the samples in another order than the single model's ``addmm`` backward, so
    gradients differ in their last bits; on ``diabetes`` (one output) the forward product of
    the last layer does too, so losses differ by about 1e-7 relative.

    * The Rprop family reads only the signs of gradients (Riedmiller & Braun 1993; Igel &
      Hüsken 2000), so its weights stay bit-identical unless a gradient component lies within
      rounding of zero, and iRprop+ compares losses that are computed per member exactly as
      alone (a loop of the loss function), so its backtracking decisions agree too.
    * SGD, momentum, Adam, AdamW and RMSprop scale the gradient, so their weights drift by a
      few ulps (observed <= 6e-8 absolute after 30 epochs).
    """
    weight_tol, loss_rtol = BATCHED_TOLERANCE[(optimizer, problem)]
    alone_models, alone_results, alone_logs = _alone(optimizer, problem)
    models, results, logs = _stacked(optimizer, problem, exact=False)
    diff = _max_param_diff(alone_models, models)
    assert diff <= weight_tol, diff
    if weight_tol == 0.0:
        assert all(
            torch.equal(a, b)
            for ma, mb in zip(alone_models, models, strict=True)
            for a, b in zip(ma.parameters(), mb.parameters(), strict=True)
        )
    for a, b in zip(alone_results, results, strict=True):
        assert (a.status, a.epochs_run) == (b.status, b.epochs_run)
        assert a.final_metrics.keys() == b.final_metrics.keys()
        for key in (schema.FINAL_TRAIN_LOSS, schema.TEST_LOSS):
            assert b.final_metrics[key] == pytest.approx(a.final_metrics[key], rel=loss_rtol)
    for log_a, log_b in zip(alone_logs, logs, strict=True):
        for (ea, metrics_a, rows_a), (eb, metrics_b, rows_b) in zip(log_a, log_b, strict=True):
            assert ea == eb
            assert metrics_a.keys() == metrics_b.keys()
            for key in LOSSES:
                assert metrics_b[key] == pytest.approx(metrics_a[key], rel=loss_rtol)
            if weight_tol == 0.0:  # same weights, same step sizes: the same diagnostics
                assert rows_a == rows_b
                assert metrics_a[schema.STEP_MEDIAN] == metrics_b[schema.STEP_MEDIAN]


def _blow_up_seed_1(models) -> None:
    """Seed 1's output layer gets huge weights: its squared error overflows float32 to inf."""
    with torch.no_grad():
        models[1][-1].weight.mul_(1e19)


@pytest.mark.parametrize("exact", [True, False])
def test_a_diverging_seed_is_reported_and_leaves_the_others_untouched(exact):
    """Seed 1 diverges: it is reported as alone (same epoch, same reason), its callback stops,
    and seeds 0 and 2 go on to the end with exactly their one-by-one weights (no NaN leaks
    through the stacked forward, backward, update or diagnostics)."""
    alone_models, alone_results, alone_logs = _alone("sgd", "diabetes", edit=_blow_up_seed_1)
    models, results, logs = _stacked("sgd", "diabetes", exact=exact, edit=_blow_up_seed_1)
    assert alone_results[1].diverged
    assert "train loss became" in (alone_results[1].reason or "")
    _assert_same_run_status = (results[1].status, results[1].epochs_run, results[1].reason)
    assert _assert_same_run_status == (
        "diverged",
        alone_results[1].epochs_run,
        alone_results[1].reason,
    )
    assert [e for e, _, _ in logs[1]] == [e for e, _, _ in alone_logs[1]]
    for k in (0, 2):
        assert results[k].status == "finished"
        assert results[k].epochs_run == EPOCHS
        for a, b in zip(alone_models[k].parameters(), models[k].parameters(), strict=True):
            assert torch.isfinite(b).all()
            if exact:
                assert torch.equal(a, b)
            else:
                assert torch.allclose(a, b, rtol=0, atol=1e-6)
        if exact:
            _assert_same_run(alone_results[k], results[k])


def test_l_bfgs_is_refused_with_the_reason():
    data, build, _, settings = _setup("irprop_minus", "iris")
    cfg = compose("optimizer=lbfgs", "problem=iris")
    lbfgs = optimizer_partial(cfg)
    with pytest.raises(SeedBatchError, match="LBFGS cannot train seeds stacked: L-BFGS couples"):
        train_seeds(seeded_models(build, SEEDS), data, lbfgs, settings)


@pytest.mark.parametrize("batch_size", [16, 89])
def test_mini_batches_are_refused(batch_size):
    data, build, make_optimizer, _ = _setup("irprop_minus", "iris")  # 90 samples
    mini = TrainSettings(epochs=2, batch_size=batch_size)
    with pytest.raises(SeedBatchError, match="full batch only"):
        train_seeds(seeded_models(build, SEEDS), data, make_optimizer, mini)


@pytest.mark.parametrize("batch_size", [None, 90, 500])
def test_a_batch_of_the_whole_training_set_is_full_batch(batch_size):
    data, build, make_optimizer, _ = _setup("irprop_minus", "iris")
    results = train_seeds(
        seeded_models(build, SEEDS),
        data,
        make_optimizer,
        TrainSettings(epochs=2, batch_size=batch_size),
    )
    assert [r.status for r in results] == ["finished"] * len(SEEDS)


def test_models_of_different_architectures_are_refused():
    data, build, make_optimizer, settings = _setup("irprop_minus", "iris")
    wider = instantiate(compose("problem=iris", "model=mlp", "model.hidden=[8]").model)
    models = [build(), wider(n_inputs=data.n_inputs, n_outputs=data.n_outputs)]
    with pytest.raises(SeedBatchError, match="one architecture"):
        train_seeds(models, data, make_optimizer, settings)


class _Residual(torch.nn.Module):
    """Not an nn.Sequential: the batched forward pass does not know it, the exact one does."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = torch.nn.Linear(4, 4)
        self.out = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x + torch.tanh(self.inner(x)))


def test_other_architectures_need_exact_mode_and_then_match_alone():
    data, _, make_optimizer, settings = _setup("irprop_plus", "iris")
    with pytest.raises(SeedBatchError, match="use exact=True"):
        StackedModel(seeded_models(_Residual, SEEDS))
    alone = seeded_models(_Residual, SEEDS)
    for m in alone:
        train(m, data, make_optimizer(m.parameters()), settings)
    stacked = seeded_models(_Residual, SEEDS)
    train_seeds(stacked, data, make_optimizer, settings, exact=True)
    assert _max_param_diff(alone, stacked) == 0.0


# One epoch loop: divergence and target cases land on the same epoch with the same reason,
# alone and stacked. (optimizer, lr, log_every, target_loss); SGD at lr 1.5 on `line` blows up.
DIVERGENCE_AND_TARGET_CASES = [
    pytest.param("sgd", 1.5, 10, None, id="sgd-diverges-no-target-log-10"),
    pytest.param("sgd", 1.5, 10, 1e-3, id="sgd-diverges-target-log-10"),
    pytest.param("sgd", 1.5, 1, None, id="sgd-diverges-no-target-log-1"),
    pytest.param("sgd", 1.5, 1, 1e-3, id="sgd-diverges-target-log-1"),
    pytest.param("sgd", 0.05, 7, 0.5, id="sgd-reaches-target-log-7"),
    pytest.param("irprop_minus", 0.01, 10, 1e-2, id="irprop-reaches-target-log-10"),
    pytest.param("irprop_plus", 0.01, 4, 1e-12, id="irprop-plus-misses-target-log-4"),
]


@pytest.mark.parametrize(
    ("optimizer", "lr", "log_every", "target"), fast_first(DIVERGENCE_AND_TARGET_CASES, keep=3)
)
def test_alone_and_stacked_agree_on_divergence_and_target(optimizer, lr, log_every, target):
    cfg = compose(f"optimizer={optimizer}", "problem=line", f"optimizer.lr={lr}")
    data = instantiate(cfg.problem.data)
    build = functools.partial(
        instantiate(cfg.model, _convert_="all"), n_inputs=data.n_inputs, n_outputs=data.n_outputs
    )
    make_optimizer = optimizer_partial(cfg)
    settings = TrainSettings(epochs=120, log_every=log_every, target_loss=target)
    alone = [
        train(m, data, make_optimizer(m.parameters()), settings)
        for m in seeded_models(build, SEEDS)
    ]
    stacked = train_seeds(seeded_models(build, SEEDS), data, make_optimizer, settings, exact=True)
    for a, b in zip(alone, stacked, strict=True):
        assert (a.status, a.epochs_run, a.reason) == (b.status, b.epochs_run, b.reason)
        assert _without_times(a.final_metrics) == _without_times(b.final_metrics)
    if optimizer == "sgd" and lr > 1:
        assert all(r.diverged for r in alone), [r.reason for r in alone]
    elif target is not None:
        reached = [r.final_metrics[schema.REACHED_TARGET] for r in alone]
        assert reached == [float(target > 1e-11)] * len(alone)


def test_stacked_and_alone_meet_the_criterion_at_the_same_epoch_with_the_same_counts():
    """The criterion and the evaluation counts of a stacked run are each member's alone."""
    from rprop_bench.cli.build import build, model_builder, train_settings

    cfg = compose("problem=encoder_10_5_10", "optimizer=rprop_plus", "optimizer.lr=0.1",
                  "train.epochs=60", shrink=False)  # fmt: skip
    settings = train_settings(cfg)
    alone = []
    for seed in (0, 1):
        cfg.train.seed = seed
        built = build(cfg)
        alone.append(train(built.model, built.data, built.optimizer, settings).final_metrics)
    models = seeded_models(model_builder(cfg, built.data), [0, 1])
    stacked = train_seeds(models, built.data, optimizer_partial(cfg), settings, exact=True)
    for a, b in zip(alone, stacked, strict=True):
        assert a[schema.CRITERION_MET] == 1.0
        assert _without_times(a) == _without_times(b.final_metrics)


@pytest.mark.parametrize(
    ("kind", "batched"), [("mlp", True), ("linear", True), ("shortcut", False)]
)
def test_batchable_says_which_models_the_batched_pass_stacks(kind, batched):
    """The CLI's seed groups stack the others in exact mode (a shortcut network, say)."""
    from rprop_bench.models import build_model
    from rprop_bench.seed_batch import batchable

    hidden = [] if kind == "linear" else [3, 3]
    model = build_model(kind, 2, 2, hidden=hidden)
    assert batchable(model) is batched
    if not batched:
        with pytest.raises(SeedBatchError, match="use exact=True"):
            StackedModel(seeded_models(lambda: build_model(kind, 2, 2, hidden=hidden), SEEDS))
