"""The training loop and the step-size diagnostics, on real problems with real optimizers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from harness_helpers import compose
from hydra.utils import instantiate
from lanes import fast_first

from rprop_bench import schema
from rprop_bench.cli.build import optimizer_partial
from rprop_bench.cli.compose import group_options
from rprop_bench.diagnostics import HISTOGRAM_EDGES, StepSizeMonitor, histogram_counts
from rprop_bench.models import build_model
from rprop_bench.optim import Rprop
from rprop_bench.problems import load_problem
from rprop_bench.training import TrainSettings, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _line_setup(seed: int = 0):
    data = load_problem("line", split_seed=0, standardize=False, options={"n_samples": 100})
    torch.manual_seed(seed)
    return data, build_model("linear", 1, 1)


@pytest.mark.parametrize("variant", ["irprop-", "irprop+", "rprop+", "rprop-"])
def test_seed_example_learns_w_2_and_b_3(variant):
    data, model = _line_setup()
    optimizer = Rprop(model.parameters(), lr=0.01, variant=variant)
    result = train(model, data, optimizer, TrainSettings(epochs=200))
    assert result.status == "finished"
    assert abs(model[0].weight.item() - 2) < 0.05
    assert abs(model[0].bias.item() - 3) < 0.05


@pytest.mark.parametrize("optimizer_name", fast_first(group_options("optimizer"), keep=4))
def test_every_optimizer_config_trains_through_a_closure(optimizer_name):
    cfg = compose(f"optimizer={optimizer_name}", "problem=iris")
    data = instantiate(cfg.problem.data)
    torch.manual_seed(0)
    model = instantiate(cfg.model)(n_inputs=data.n_inputs, n_outputs=data.n_outputs)
    optimizer = optimizer_partial(cfg)(model.parameters())
    losses: list[float] = []
    result = train(
        model, data, optimizer, TrainSettings(epochs=15),
        lambda epoch, m, rows: losses.append(m[schema.TRAIN_LOSS]),
    )  # fmt: skip
    assert result.status == "finished"
    assert len(losses) == 15
    assert losses[-1] < losses[0], (optimizer_name, losses)


def test_logged_epochs_metrics_and_finals():
    data = load_problem("iris", split_seed=0)
    torch.manual_seed(0)
    model = build_model("mlp", 4, 3, hidden=[8])
    calls: list[tuple[int, dict, list]] = []
    result = train(
        model, data, Rprop(model.parameters()), TrainSettings(epochs=12, log_every=5),
        lambda epoch, m, rows: calls.append((epoch, m, list(rows))),
    )  # fmt: skip
    assert [c[0] for c in calls] == [5, 10, 12]  # every 5th and the last
    expected = {
        schema.TRAIN_LOSS, schema.VAL_LOSS, schema.VAL_ACCURACY, schema.GRAD_NORM,
        schema.WEIGHT_NORM, schema.LOGIT_MARGIN, schema.WALL_TIME, schema.GRAD_EVALS,
        schema.LOSS_EVALS, schema.SIGN_FLIP_FRACTION,
        schema.AT_MIN_FRACTION, schema.AT_MAX_FRACTION, *schema.STEP_QUANTILES,
    }  # fmt: skip
    assert set(calls[0][1]) == expected
    assert calls[0][1][schema.WALL_TIME] <= calls[-1][1][schema.WALL_TIME]
    assert {schema.TEST_LOSS, schema.TEST_ACCURACY, schema.FINAL_TRAIN_LOSS} <= set(
        result.final_metrics
    )
    assert result.final_metrics[schema.EPOCHS_RUN] == 12
    assert math.isclose(result.final_metrics[schema.FINAL_TRAIN_LOSS], calls[-1][1]["train_loss"])


@pytest.mark.parametrize(("batch_size", "steps_per_epoch"), [(None, 1), (32, 3), (90, 1), (7, 13)])
def test_full_batch_by_default_and_mini_batches(batch_size, steps_per_epoch):
    data = load_problem("iris", split_seed=0)  # 90 training samples
    model = build_model("linear", 4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = []
    original = optimizer.step
    optimizer.step = lambda closure: steps.append(1) or original(closure)  # type: ignore[method-assign]
    train(model, data, optimizer, TrainSettings(epochs=2, batch_size=batch_size))
    assert len(steps) == 2 * steps_per_epoch


def test_time_to_target_is_the_first_epoch_at_or_below_target():
    data, model = _line_setup()
    losses = {}
    target = 0.5
    optimizer = Rprop(model.parameters(), lr=0.01)
    result = train(
        model, data, optimizer, TrainSettings(epochs=60, target_loss=target),
        lambda epoch, m, rows: losses.__setitem__(epoch, m[schema.TRAIN_LOSS]),
    )  # fmt: skip
    first = min(e for e, loss in losses.items() if loss <= target)
    assert result.final_metrics[schema.REACHED_TARGET] == 1.0
    assert result.final_metrics[schema.EPOCHS_TO_TARGET] == first
    assert 0 < result.final_metrics[schema.SECONDS_TO_TARGET] <= result.train_seconds


def test_unreached_target_is_reported_as_such():
    data, model = _line_setup()
    result = train(
        model, data, Rprop(model.parameters()), TrainSettings(epochs=3, target_loss=1e-9)
    )
    assert result.final_metrics[schema.REACHED_TARGET] == 0.0
    assert schema.EPOCHS_TO_TARGET not in result.final_metrics


@pytest.mark.parametrize("lr", [1e10, 1e30])
def test_nan_or_inf_loss_stops_the_run_with_a_reason(lr):
    data, model = _line_setup()
    seen = []
    result = train(
        model, data, torch.optim.SGD(model.parameters(), lr=lr), TrainSettings(epochs=50),
        lambda epoch, m, rows: seen.append(epoch),
    )  # fmt: skip
    assert result.diverged
    assert result.status == "diverged"
    assert result.epochs_run < 50
    assert "train loss became" in (result.reason or "")
    assert any(word in result.reason for word in ("nan", "inf"))
    assert all(e < result.epochs_run for e in seen)


# --- diagnostics ----------------------------------------------------------------------------


def test_rprop_steps_are_the_optimizer_step_sizes():
    data = load_problem("iris", split_seed=0)
    torch.manual_seed(0)
    model = build_model("mlp", 4, 3, hidden=[6])
    optimizer = Rprop(model.parameters(), lr=0.01, step_sizes=(1e-6, 50.0))
    rows_seen: list = []
    metrics_seen: list = []
    train(
        model, data, optimizer, TrainSettings(epochs=30),
        lambda epoch, m, rows: (metrics_seen.append(m), rows_seen.append(rows)),
    )  # fmt: skip
    deltas = np.concatenate(
        [optimizer.state[p]["step_size"].reshape(-1).double().numpy() for p in model.parameters()]
    )
    last = metrics_seen[-1]
    assert math.isclose(last[schema.STEP_MEDIAN], float(np.median(deltas)), rel_tol=1e-6)
    assert math.isclose(last[schema.STEP_MAX], float(deltas.max()), rel_tol=1e-6)
    assert math.isclose(last[schema.AT_MIN_FRACTION], float(np.mean(deltas <= 1e-6 * (1 + 1e-6))))
    # histograms: per layer plus "all"; counts add up to the number of weights
    rows = rows_seen[-1]
    layers = {r.layer for r in rows}
    assert layers == {"0.weight", "0.bias", "2.weight", "2.bias", schema.HISTOGRAM_ALL_LAYERS}
    total = sum(r.count for r in rows if r.layer == schema.HISTOGRAM_ALL_LAYERS)
    assert total == deltas.size
    assert all(r.count > 0 and r.bin_left < r.bin_right for r in rows)


def test_non_rprop_steps_are_the_weight_change_of_the_epoch():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0, 0.5]))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    monitor = StepSizeMonitor([("w", weight)], optimizer)
    for epoch, grad in enumerate([[1.0, 1.0, -1.0, 2.0], [-1.0, 1.0, -1.0, 2.0]], start=1):
        monitor.start_epoch()
        weight.grad = torch.tensor(grad)
        optimizer.step()
        metrics, rows = monitor.end_epoch(epoch)
    # second epoch: |Δθ| = 0.1·|g| = (0.1, 0.1, 0.1, 0.2); one of four gradient signs flipped
    assert math.isclose(metrics[schema.STEP_MIN], 0.1, rel_tol=1e-5)
    assert math.isclose(metrics[schema.STEP_MAX], 0.2, rel_tol=1e-5)
    assert metrics[schema.SIGN_FLIP_FRACTION] == 0.25
    assert schema.AT_MIN_FRACTION not in metrics  # only for the Rprop family
    assert sum(r.count for r in rows if r.layer == "w") == 4


def test_histogram_bins_are_shared_and_clip_out_of_range_steps():
    counts = histogram_counts(np.array([0.0, 1e-20, 1e-3, 1e5]))
    assert counts.sum() == 4
    assert counts[0] == 2
    assert counts[-1] == 1
    assert len(counts) == len(HISTOGRAM_EDGES) - 1


# --- the cost: gradient and loss evaluations ----------------------------------------------


class CountingLBFGS(torch.optim.LBFGS):
    """torch's L-BFGS with its closure calls counted independently of the harness."""

    calls = 0

    def step(self, closure):  # type: ignore[override]
        def counted():
            CountingLBFGS.calls += 1
            return closure()

        return super().step(counted)


def _evals_logged(data, model, optimizer, settings) -> tuple[list[float], dict[str, float]]:
    logged: list[float] = []
    result = train(
        model, data, optimizer, settings,
        lambda epoch, m, rows: logged.append((m[schema.GRAD_EVALS], m[schema.LOSS_EVALS])),
    )  # fmt: skip
    assert result.status == "finished"
    return logged, result.final_metrics


# (optimizer, batch size): one closure call per step, so a full batch costs 1 per epoch and a
# mini-batch its fraction; the sum over an epoch's batches is exactly 1.
EVAL_CASES = [
    (lambda p: Rprop(p, variant="irprop+"), None),
    (lambda p: Rprop(p, variant="rprop-"), None),
    (lambda p: torch.optim.SGD(p, lr=0.1), None),
    (lambda p: torch.optim.Adam(p, lr=0.01), 32),  # 120 training samples: 32, 32, 32, 24
    (lambda p: torch.optim.SGD(p, lr=0.1), 7),
]


@pytest.mark.parametrize(("make", "batch_size"), EVAL_CASES)
def test_one_closure_call_per_step_costs_one_pass_per_epoch(make, batch_size):
    data = load_problem("iris", split_seed=0)
    torch.manual_seed(0)
    model = build_model("mlp", data.n_inputs, data.n_outputs, hidden=[8])
    logged, final = _evals_logged(
        data, model, make(model.parameters()), TrainSettings(epochs=6, batch_size=batch_size)
    )
    assert logged == [(float(e), float(e)) for e in range(1, 7)]
    assert (final[schema.GRAD_EVALS], final[schema.LOSS_EVALS]) == (6.0, 6.0)


def test_lbfgs_counts_every_closure_call_its_line_search_included():
    data = load_problem("iris", split_seed=0)
    torch.manual_seed(0)
    model = build_model("mlp", data.n_inputs, data.n_outputs, hidden=[8])
    optimizer = CountingLBFGS(model.parameters(), lr=1, max_iter=20, line_search_fn="strong_wolfe")
    CountingLBFGS.calls = 0
    logged, final = _evals_logged(data, model, optimizer, TrainSettings(epochs=3))
    assert CountingLBFGS.calls > 3  # more than one evaluation per epoch
    assert final[schema.GRAD_EVALS] == float(CountingLBFGS.calls)
    assert logged[-1][0] == float(CountingLBFGS.calls)


def test_evaluations_to_target_are_those_spent_by_the_first_epoch_at_the_target():
    data, model = _line_setup()
    optimizer = Rprop(model.parameters(), lr=0.01)
    result = train(model, data, optimizer, TrainSettings(epochs=200, target_loss=0.02))
    final = result.final_metrics
    assert final[schema.REACHED_TARGET] == 1.0
    assert final[schema.GRAD_EVALS_TO_TARGET] == final[schema.EPOCHS_TO_TARGET]  # full batch


def test_the_generalisation_track_keeps_the_best_validation_epoch_and_its_test_metrics():
    """Hand-checked against the logged validation losses, and a run stopped at that epoch."""
    data = load_problem("iris", split_seed=0)
    logged: dict[int, float] = {}

    def fresh():
        torch.manual_seed(0)
        model = build_model("mlp", data.n_inputs, data.n_outputs, hidden=[8])
        return model, Rprop(model.parameters())  # on iris it overfits after about 60 epochs

    model, optimizer = fresh()

    def log(epoch: int, metrics: dict[str, float], rows: object) -> None:
        logged[epoch] = metrics[schema.VAL_LOSS]

    result = train(model, data, optimizer, TrainSettings(epochs=300, log_every=3), log)
    final = result.final_metrics
    best_epoch = min(logged, key=logged.__getitem__)
    assert best_epoch < 300  # not the last: the track differs from the final metrics
    assert final[schema.BEST_VAL_EPOCH] == best_epoch
    assert final[schema.BEST_VAL_LOSS] == logged[best_epoch]
    model, optimizer = fresh()  # the same run, stopped at the best epoch: its final test metrics
    stopped = train(model, data, optimizer, TrainSettings(epochs=best_epoch)).final_metrics
    assert final[schema.TEST_LOSS_AT_BEST_VAL] == stopped[schema.TEST_LOSS]
    assert final[schema.TEST_ACCURACY_AT_BEST_VAL] == stopped[schema.TEST_ACCURACY]


# --- precision and loss as config ---------------------------------------------------------


@pytest.mark.parametrize("optimizer_name", fast_first(group_options("optimizer"), keep=4))
def test_every_optimizer_trains_in_float64(optimizer_name):
    from rprop_bench.cli.build import build

    cfg = compose(f"optimizer={optimizer_name}", "problem=iris", "train.dtype=float64")
    built = build(cfg)
    assert built.data.x_train.dtype == torch.float64
    assert built.data.y_train.dtype == torch.int64  # class labels stay labels
    assert {p.dtype for p in built.model.parameters()} == {torch.float64}
    result = train(built.model, built.data, built.optimizer, TrainSettings(epochs=3))
    assert result.status == "finished"
    states = [t for s in built.optimizer.state.values() for t in s.values()]
    floating = [t for t in states if torch.is_tensor(t) and t.dim() > 0 and t.is_floating_point()]
    assert {t.dtype for t in floating} <= {torch.float64}  # SGD without momentum keeps none


def test_float64_starts_from_the_float32_runs_weights():
    from rprop_bench.cli.build import build

    single = build(compose("problem=iris"))
    double = build(compose("problem=iris", "train.dtype=float64"))
    for a, b in zip(single.model.parameters(), double.model.parameters(), strict=True):
        assert torch.equal(a.double(), b)


def test_mse_sigmoid_is_the_mean_squared_error_of_sigmoid_outputs_against_one_hot():
    from rprop_bench.metrics import loss_function

    out = torch.tensor([[0.0, 2.0], [-1.0, 1.0]])
    y = torch.tensor([1, 0])
    s = torch.sigmoid(out)
    by_hand = (
        (s[0, 0] - 0) ** 2 + (s[0, 1] - 1) ** 2 + (s[1, 0] - 1) ** 2 + (s[1, 1] - 0) ** 2
    ) / 4
    assert loss_function("classification", "mse_sigmoid")(out, y) == pytest.approx(by_hand)


def test_sse_sigmoid_is_riedmiller_and_brauns_half_sum_of_squares():
    from rprop_bench.metrics import loss_function

    out = torch.tensor([[0.0, 2.0], [-1.0, 1.0]])
    y = torch.tensor([1, 0])
    s = torch.sigmoid(out)
    by_hand = 0.5 * (
        (s[0, 0] - 0) ** 2 + (s[0, 1] - 1) ** 2 + (s[1, 0] - 1) ** 2 + (s[1, 1] - 0) ** 2
    )
    assert loss_function("classification", "sse_sigmoid")(out, y) == pytest.approx(by_hand)
    # P = 2 patterns, O = 2 outputs: E = mean · P·O/2, which is what maps backprop's ε onto lr
    mean = loss_function("classification", "mse_sigmoid")(out, y)
    assert loss_function("classification", "sse_sigmoid")(out, y) == pytest.approx(2 * mean)


@pytest.mark.parametrize(
    ("task", "name", "message"),
    [
        ("classification", "hinge", "problem.loss='hinge' is not a loss; valid losses: "),
        ("regression", "mse_sigmoid", "does not fit a regression problem; valid: mse"),
        ("classification", "mse", "does not fit a classification problem; valid: cross_entropy"),
    ],
)
def test_a_loss_that_does_not_exist_or_fit_names_the_valid_ones(task, name, message):
    from rprop_bench.metrics import loss_function

    with pytest.raises(ValueError, match=message):
        loss_function(task, name)


def test_a_run_trains_with_the_problems_loss():
    data = load_problem("iris", split_seed=0)
    torch.manual_seed(0)
    model = build_model("mlp", data.n_inputs, data.n_outputs, hidden=[8], activation="sigmoid")
    settings = TrainSettings(epochs=40, loss="mse_sigmoid")
    result = train(model, data, Rprop(model.parameters()), settings)
    from rprop_bench.metrics import SigmoidMSE

    with torch.no_grad():
        expected = float(SigmoidMSE()(model(data.x_train), data.y_train))
    assert result.final_metrics[schema.FINAL_TRAIN_LOSS] == expected


# --- the encoder of Riedmiller & Braun (1993): its criterion ---------------------------------


@pytest.mark.parametrize(
    ("logits", "within", "met"),
    [
        ([[2.0, -2.0], [-2.0, 2.0]], 0.4, True),  # sigmoid 0.88 / 0.12: 0.12 from each target
        ([[2.0, -2.0], [-2.0, 0.3]], 0.4, False),  # sigmoid(0.3) = 0.57: 0.43 from its 1
        ([[0.1, -0.1], [-0.1, 0.1]], 0.5, True),  # every pattern on the right side of 0.5
        ([[0.1, 0.2], [-0.1, 0.1]], 0.5, False),  # sigmoid(0.2) = 0.55 where the target is 0
    ],
)
def test_the_criterion_on_hand_made_outputs(logits, within, met):
    from rprop_bench.metrics import all_within

    assert all_within(torch.tensor(logits), torch.tensor([0, 1]), within) is met


def _encoder_run(epochs: int, **overrides: str):
    from rprop_bench.cli.build import build, train_settings

    cfg = compose("problem=encoder_10_5_10", "optimizer=rprop_plus", "optimizer.lr=0.1",
                  f"train.epochs={epochs}", *(f"{k}={v}" for k, v in overrides.items()),
                  shrink=False)  # fmt: skip
    built = build(cfg)
    return built, train(built.model, built.data, built.optimizer, train_settings(cfg))


def test_epochs_to_criterion_is_the_first_epoch_whose_outputs_meet_it():
    from rprop_bench.metrics import all_within

    _, result = _encoder_run(100)
    final = result.final_metrics
    assert final[schema.CRITERION_MET] == 1.0
    first = int(final[schema.EPOCHS_TO_CRITERION])
    assert final[schema.GRAD_EVALS_TO_CRITERION] == first  # full batch: one pass an epoch
    for epochs, met in ((first, True), (first - 1, False)):  # the same run, stopped there
        built, _ = _encoder_run(epochs)
        with torch.no_grad():
            out = built.model(built.data.x_train)
        assert all_within(out, built.data.y_train, 0.4) is met


def test_a_criterion_never_met_is_recorded_as_such():
    _, result = _encoder_run(3)
    assert result.final_metrics[schema.CRITERION_MET] == 0.0
    assert schema.EPOCHS_TO_CRITERION not in result.final_metrics


def test_the_initialisation_range_bounds_every_weight_and_bias():
    torch.manual_seed(0)
    model = build_model("mlp", 10, 10, hidden=[5], activation="sigmoid", init_range=0.3)
    values = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert values.abs().max() <= 0.3
    assert values.abs().max() > 0.25  # uniform over the range, not torch's default (±1/√10)


def test_the_shortcut_network_feeds_every_layer_the_input_and_every_earlier_layer():
    """2-5-5-5-1 (Lang & Witbrock 1988): fan-ins 2, 2+5, 2+5+5 and, at the output, 2+5+5+5."""
    from rprop_bench.models import ShortcutNet

    model = build_model("shortcut", 2, 2, hidden=[5, 5, 5], activation="sigmoid", output_units=1)
    assert isinstance(model, ShortcutNet)
    assert [layer.in_features for layer in model.hidden] == [2, 7, 12]
    assert (model.output.in_features, model.output.out_features) == (17, 1)
    x = torch.randn(4, 2)
    with torch.no_grad():  # by hand: each layer on the concatenation of all before it
        h1 = torch.sigmoid(model.hidden[0](x))
        h2 = torch.sigmoid(model.hidden[1](torch.cat([x, h1], 1)))
        h3 = torch.sigmoid(model.hidden[2](torch.cat([x, h1, h2], 1)))
        expected = model.output(torch.cat([x, h1, h2, h3], 1))
        assert torch.equal(model(x), expected)


def test_one_output_unit_is_for_a_binary_problem_only():
    with pytest.raises(ValueError, match="output_units=1 is for a binary problem"):
        build_model("mlp", 2, 3, hidden=[4], output_units=1)


def test_a_single_sigmoid_output_classifies_by_its_side_of_one_half():
    from rprop_bench.metrics import SigmoidMSE, all_within, output_metrics

    out = torch.tensor([[2.0], [-1.0], [0.5]])
    y = torch.tensor([1, 0, 0])
    assert output_metrics(out, y, "classification", SigmoidMSE())["accuracy"] == pytest.approx(
        2 / 3
    )
    assert all_within(out[:2], y[:2], 0.5)
    assert not all_within(out, y, 0.5)
    s = torch.sigmoid(out[:, 0])
    by_hand = ((s[0] - 1) ** 2 + s[1] ** 2 + s[2] ** 2) / 3
    assert SigmoidMSE()(out, y) == pytest.approx(by_hand)


def test_cross_entropy_of_one_output_unit_is_the_binary_cross_entropy_of_its_sigmoid():
    from rprop_bench.metrics import loss_function

    out = torch.tensor([[2.0], [-1.0], [0.5]])
    y = torch.tensor([1, 0, 0])
    s = torch.sigmoid(out[:, 0])
    by_hand = -(torch.log(s[0]) + torch.log(1 - s[1]) + torch.log(1 - s[2])) / 3
    loss = loss_function("classification", "cross_entropy")
    assert float(loss(out, y)) == pytest.approx(float(by_hand), rel=1e-6)
    # the same loss as the softmax over the two logits (0, z)
    two = torch.cat([torch.zeros_like(out), out], dim=1)
    assert float(loss(out, y)) == pytest.approx(float(loss(two, y)), rel=1e-6)
    # several outputs: exactly torch's cross-entropy, to the bit
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2, 1, 1, 0])
    assert torch.equal(loss(logits, labels), torch.nn.functional.cross_entropy(logits, labels))


# --- the ladder of targets ----------------------------------------------------------------


def test_each_rung_of_the_ladder_is_the_first_epoch_at_or_below_it():
    """Hand-checked against the training loss of every epoch (logged every epoch here)."""
    data, model = _line_setup()
    losses: dict[int, tuple[float, float]] = {}

    def log(epoch: int, metrics: dict[str, float], rows: object) -> None:
        losses[epoch] = (metrics[schema.TRAIN_LOSS], metrics[schema.GRAD_EVALS])

    ladder = (1.0, 0.1, 0.02, 1e-9)  # the last is never reached
    settings = TrainSettings(epochs=120, targets=ladder)
    final = train(model, data, Rprop(model.parameters()), settings, log).final_metrics
    for k, target in enumerate(ladder):
        reached = [e for e, (loss, _) in sorted(losses.items()) if loss <= target]
        assert final[schema.ladder_metric(schema.LADDER_REACHED, k)] == float(bool(reached))
        if reached:
            first = reached[0]
            assert final[schema.ladder_metric(schema.LADDER_EPOCHS, k)] == first
            assert final[schema.ladder_metric(schema.LADDER_GRAD_EVALS, k)] == losses[first][1]
        else:  # never reached: no number at all, not a sentinel
            assert schema.ladder_metric(schema.LADDER_EPOCHS, k) not in final
            assert schema.ladder_metric(schema.LADDER_GRAD_EVALS, k) not in final


def test_the_ladder_is_checked_every_epoch_not_only_on_logged_ones():
    data, model = _line_setup()
    every = train(model, data, Rprop(model.parameters()), TrainSettings(epochs=60, targets=(0.1,)))
    data, model = _line_setup()
    sparse = train(model, data, Rprop(model.parameters()),
                   TrainSettings(epochs=60, targets=(0.1,), log_every=25))  # fmt: skip
    key = schema.ladder_metric(schema.LADDER_EPOCHS, 0)
    assert every.final_metrics[key] == sparse.final_metrics[key]
    assert sparse.final_metrics[key] % 25 != 0  # not rounded to a logged epoch


# --- divergence diagnostics: the weight norm and the mean logit margin ---------------------


@pytest.mark.parametrize(
    ("logits", "labels", "margin"),
    [
        ([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0]], [0, 2], (1.5 + (1.0 - 3.0)) / 2),
        ([[1.0, 1.0]], [1], 0.0),  # a tie: margin 0
        ([[2.5], [-0.5], [0.25]], [1, 0, 0], (2.5 + 0.5 - 0.25) / 3),  # one output: (2y-1)z
    ],
)
def test_the_logit_margin_on_hand_made_outputs(logits, labels, margin):
    from rprop_bench.metrics import logit_margin

    out, y = torch.tensor(logits), torch.tensor(labels)
    assert logit_margin(out, y) == pytest.approx(margin, abs=1e-7)


def test_each_logged_epoch_reports_the_weight_norm_and_margin_of_the_model_then():
    data = load_problem("iris", split_seed=0)
    torch.manual_seed(0)
    model = build_model("mlp", 4, 3, hidden=[6])
    seen: list[tuple[dict, float, float]] = []

    def callback(epoch, metrics, rows):
        with torch.no_grad():  # recomputed independently from the model as it is now
            weights = torch.cat([p.flatten() for p in model.parameters()])
            out = model(data.x_train)
        top2 = out.topk(2, dim=1).values
        true = out[torch.arange(len(out)), data.y_train]
        other = torch.where(true == top2[:, 0], top2[:, 1], top2[:, 0])
        seen.append((metrics, float(weights.norm()), float((true - other).mean())))

    train(model, data, Rprop(model.parameters()), TrainSettings(epochs=9, log_every=3), callback)
    assert len(seen) == 3
    for metrics, norm, margin in seen:
        assert metrics[schema.WEIGHT_NORM] == pytest.approx(norm, rel=1e-6)
        assert metrics[schema.LOGIT_MARGIN] == pytest.approx(margin, rel=1e-5, abs=1e-6)


def test_a_regression_run_has_a_weight_norm_and_no_margin():
    data, model = _line_setup()
    logged: list[dict] = []
    train(model, data, Rprop(model.parameters()), TrainSettings(epochs=3),
          lambda e, m, r: logged.append(m))  # fmt: skip
    assert all(schema.WEIGHT_NORM in m and schema.LOGIT_MARGIN not in m for m in logged)


def test_sign_steps_on_separable_data_grow_the_weights_and_the_margin():
    # Linearly separable classes: cross-entropy has no minimiser, and the sign steps keep
    # growing (Δ up to Δmax) while the loss underflows: what the diagnostics are there to show.
    x = torch.tensor([[-2.0, -1.0], [-1.0, -2.0], [1.0, 2.0], [2.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])
    from rprop_bench.problems import CLASSIFICATION, ProblemData

    data = ProblemData("separable", CLASSIFICATION, x, y, x, y, x, y, 2, 2)
    torch.manual_seed(0)
    model = build_model("linear", 2, 2)
    logged: list[dict] = []
    train(model, data, Rprop(model.parameters(), variant="irprop-"),
          TrainSettings(epochs=60, log_every=10), lambda e, m, r: logged.append(m))  # fmt: skip
    norms = [m[schema.WEIGHT_NORM] for m in logged]
    margins = [m[schema.LOGIT_MARGIN] for m in logged]
    assert norms == sorted(norms)
    assert norms[-1] > 10 * norms[0]
    assert margins == sorted(margins)
    assert margins[-1] > 20
