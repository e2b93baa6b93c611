"""The problems and models: shapes, splits, scaling, seeds, and the registry's errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rprop_bench.models import build_model
from rprop_bench.problems import (
    CLASSIFICATION,
    PROBLEMS,
    REGRESSION,
    UnknownProblemError,
    load_problem,
    problem_names,
)

# name, task, n_inputs, n_outputs, n_samples (all splits together)
CASES = [
    ("line", REGRESSION, 1, 1, 200),
    ("iris", CLASSIFICATION, 4, 3, 150),
    ("wine", CLASSIFICATION, 13, 3, 178),
    ("breast_cancer", CLASSIFICATION, 30, 2, 569),
    ("digits", CLASSIFICATION, 64, 10, 1797),
    ("diabetes", REGRESSION, 10, 1, 442),
    ("moons", CLASSIFICATION, 2, 2, 400),
    ("circles", CLASSIFICATION, 2, 2, 400),
    ("two_spirals", CLASSIFICATION, 2, 2, 194),
    ("encoder", CLASSIFICATION, 10, 10, 30),
    ("encoder_10_5_10", CLASSIFICATION, 10, 10, 30),
    ("encoder_8_3_8", CLASSIFICATION, 8, 8, 24),
    ("encoder_12_2_12", CLASSIFICATION, 12, 12, 36),
    ("two_spirals_1988", CLASSIFICATION, 2, 2, 3 * 194),  # train = validation = test
    ("mnist1d", CLASSIFICATION, 40, 10, 5000),
]
# problems whose builder gives the split (mnist1d: the package's test set; its validation
# set is carved from the package's training set by split_seed)
UNSPLIT = (
    "line", "encoder", "encoder_10_5_10", "encoder_8_3_8", "encoder_12_2_12",
    "two_spirals_1988", "mnist1d",
)  # fmt: skip
SPLIT_PROBLEMS = [c[0] for c in CASES if c[0] not in UNSPLIT]


def test_registry_holds_exactly_the_documented_problems():
    assert sorted(PROBLEMS) == sorted(c[0] for c in CASES) == problem_names()


@pytest.mark.parametrize(("name", "task", "n_inputs", "n_outputs", "n_samples"), CASES)
def test_shapes_and_task(name, task, n_inputs, n_outputs, n_samples):
    data = load_problem(name, split_seed=0)
    assert (data.task, data.n_inputs, data.n_outputs) == (task, n_inputs, n_outputs)
    total = len(data.x_train) + len(data.x_val) + len(data.x_test)
    assert total == n_samples
    for x, y in [
        (data.x_train, data.y_train),
        (data.x_val, data.y_val),
        (data.x_test, data.y_test),
    ]:
        assert x.dtype == torch.float32
        assert x.shape[1] == n_inputs
        assert len(x) == len(y)
        if task == CLASSIFICATION:
            assert y.dtype == torch.int64
            assert y.ndim == 1
            assert int(y.max()) < n_outputs
        else:
            assert y.dtype == torch.float32
            assert y.shape[1] == 1


@pytest.mark.parametrize("name", SPLIT_PROBLEMS)
def test_standardised_with_training_statistics_only(name):
    data = load_problem(name, split_seed=0)
    x = data.x_train.double()
    constant = x.std(dim=0, unbiased=False) == 0
    assert torch.allclose(x.mean(dim=0), torch.zeros(x.shape[1], dtype=x.dtype), atol=1e-5)
    assert torch.allclose(
        x.std(dim=0, unbiased=False)[~constant], torch.ones(int((~constant).sum()), dtype=x.dtype),
        atol=1e-4,
    )  # fmt: skip
    # the held-out splits use the training statistics, so they are not exactly standardised
    assert not torch.allclose(data.x_val.double().mean(dim=0), torch.zeros(x.shape[1]).double())


@pytest.mark.parametrize("name", [n for n in SPLIT_PROBLEMS if n != "diabetes"])
def test_classification_splits_are_stratified(name):
    data = load_problem(name, split_seed=3)
    every = torch.cat([data.y_train, data.y_val, data.y_test])
    overall = torch.bincount(every).double() / len(every)
    for y in (data.y_train, data.y_val, data.y_test):
        share = torch.bincount(y, minlength=len(overall)).double() / len(y)
        # stratification: each class within one sample of its overall share
        assert torch.all((share - overall).abs() <= 1.0 / len(y) + 1e-9), (name, share, overall)


@pytest.mark.parametrize("name", [*SPLIT_PROBLEMS, "line", "mnist1d"])
def test_split_seed_decides_the_split_and_nothing_else_does(name):
    a = load_problem(name, split_seed=1)
    b = load_problem(name, split_seed=1)
    c = load_problem(name, split_seed=2)
    assert torch.equal(a.x_train, b.x_train)
    assert torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    # loading data leaves torch's global RNG (which seeds the model) untouched
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    load_problem(name, split_seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_line_is_the_seed_example_unscaled():
    data = load_problem("line", split_seed=0, standardize=False, options={"n_samples": 100})
    assert len(data.x_train) == 100
    residual = data.y_train - (2 * data.x_train + 3)
    assert 0.05 < float(residual.std()) < 0.2  # noise 0.1 · N(0, 1)
    slope, intercept = np.polyfit(data.x_train.numpy().ravel(), data.y_train.numpy().ravel(), 1)
    assert abs(slope - 2) < 0.05
    assert abs(intercept - 3) < 0.05


def test_diabetes_target_scaling_uses_training_statistics():
    data = load_problem("diabetes", split_seed=0, standardize_target=True)
    assert abs(float(data.y_train.mean())) < 1e-5
    assert abs(float(data.y_train.std(unbiased=False)) - 1) < 1e-4
    raw = load_problem("diabetes", split_seed=0)
    assert float(raw.y_train.mean()) > 100  # unscaled disease progression


def test_encoder_maps_each_pattern_onto_itself():
    data = load_problem("encoder", split_seed=0, standardize=False, options={"n": 8})
    assert torch.equal(data.x_train, torch.eye(8))
    assert torch.equal(data.y_train, torch.arange(8))


def test_unknown_problem_lists_the_valid_ones():
    with pytest.raises(UnknownProblemError, match="unknown problem 'mnist'") as info:
        load_problem("mnist")
    for name in problem_names():
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("kind", "hidden", "activation", "n_linear", "act_type"),
    [
        ("linear", [], "tanh", 1, None),
        ("mlp", [8], "tanh", 2, torch.nn.Tanh),
        ("mlp", [8, 4], "sigmoid", 3, torch.nn.Sigmoid),
        ("mlp", [5], "relu", 2, torch.nn.ReLU),
    ],
)
def test_build_model(kind, hidden, activation, n_linear, act_type):
    model = build_model(kind, 3, 2, hidden=hidden, activation=activation)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert len(linears) == n_linear
    assert [m.out_features for m in linears] == [*hidden, 2]
    assert linears[0].in_features == 3
    if act_type is not None:
        assert sum(isinstance(m, act_type) for m in model) == len(hidden)
    assert model(torch.zeros(5, 3)).shape == (5, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "cnn"}, "unknown model kind 'cnn'"),
        ({"kind": "mlp", "activation": "gelu"}, "unknown activation 'gelu'"),
        ({"kind": "linear", "hidden": [4]}, "a linear model has no hidden layers"),
        ({"kind": "mlp", "hidden": [0]}, "layer sizes must be >= 1"),
        ({"kind": "residual_mlp", "hidden": [8, 4]}, "hidden layers of one width"),
        ({"kind": "cnn1d", "hidden": [4, 4], "kernel_sizes": [3]}, "one kernel size per conv"),
        ({"kind": "mlp", "kernel_sizes": [3]}, "are for kind cnn1d, not 'mlp'"),
        ({"kind": "cnn1d", "hidden": [4], "kernel_sizes": [9]}, "leave no samples of the 2"),
    ],
)
def test_build_model_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_model(n_inputs=2, n_outputs=2, **kwargs)


def test_the_spirals_follow_the_1988_formula():
    """194 points: point i of the first spiral at angle iπ/16 and radius 6.5(104 − i)/104, the
    second spiral the first mirrored through the origin (Lang & Witbrock 1988)."""
    data = load_problem("two_spirals_1988", split_seed=0, standardize=False)
    x, y = data.x_train.double().numpy(), data.y_train.numpy()
    assert x.shape == (194, 2)
    for i in (0, 1, 50, 96):
        radius, angle = 6.5 * (104 - i) / 104, i * np.pi / 16
        np.testing.assert_allclose(
            x[i], [radius * np.sin(angle), radius * np.cos(angle)], rtol=1e-6
        )
        np.testing.assert_allclose(x[97 + i], -x[i])
        assert (y[i], y[97 + i]) == (0, 1)
    assert np.abs(x).max() == pytest.approx(6.5)  # radius 6.5: not standardised
    assert torch.equal(data.x_val, data.x_train)  # no split: every point trains
    assert torch.equal(data.x_test, data.x_train)


# --- MNIST-1D and its models -----------------------------------------------------------------


@pytest.mark.slow  # generates MNIST-1D's 5,000 signals (seconds)
def test_mnist1d_is_the_packages_data_with_a_validation_set_carved_from_its_training_set():
    from mnist1d.data import get_dataset_args, make_dataset

    package = make_dataset(get_dataset_args())  # the reference: the package's own generator
    data = load_problem("mnist1d", split_seed=0, standardize=False)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (3600, 400, 1000)
    np.testing.assert_allclose(data.x_test.numpy(), package["x_test"], rtol=1e-6, atol=1e-6)
    assert np.array_equal(data.y_test.numpy(), package["y_test"])
    # train and validation are the package's 4,000 training signals, split without overlap
    ours = np.concatenate([data.x_train.numpy(), data.x_val.numpy()])
    theirs = package["x"].astype(np.float32)
    assert np.array_equal(np.unique(ours, axis=0), np.unique(theirs, axis=0))
    assert len(np.unique(ours, axis=0)) == 4000
    share = torch.bincount(data.y_val).numpy() / np.bincount(package["y"])
    assert np.all(np.abs(share - 0.1) * np.bincount(package["y"]) <= 1)  # stratified: 10 % each
    assert not torch.equal(load_problem("mnist1d", split_seed=1).y_val, data.y_val)


@pytest.mark.slow  # generates MNIST-1D's 5,000 signals (seconds)
def test_mnist1d_is_generated_afresh_to_the_same_signals_and_leaves_global_generators_alone():
    import random

    from rprop_bench import problems

    first = load_problem("mnist1d", split_seed=0)
    problems._mnist1d_arrays.cache_clear()  # generate again, not from the process's cache
    # the package seeds numpy's and Python's global generators (legacy API) with 42
    np.random.seed(7)  # noqa: NPY002
    random.seed(7)
    expected = (np.random.rand(), random.random())  # noqa: NPY002
    np.random.seed(7)  # noqa: NPY002
    random.seed(7)
    second = load_problem("mnist1d", split_seed=0)
    assert (np.random.rand(), random.random()) == expected  # noqa: NPY002
    assert torch.equal(first.x_train, second.x_train)
    assert torch.equal(first.y_test, second.y_test)


# kind, hidden, extra arguments, parameters (the counts the MNIST-1D notebooks print)
MNIST1D_MODELS = [
    ("linear", [], {}, 410),
    ("residual_mlp", [100, 100], {"activation": "relu"}, 15_210),
    ("cnn1d", [25, 25, 25],
     {"kernel_sizes": [5, 3, 3], "stride": 2, "padding": 1, "activation": "relu"}, 5_210),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "hidden", "extra", "n_params"), MNIST1D_MODELS)
def test_the_mnist1d_models_have_the_notebooks_shapes(kind, hidden, extra, n_params):
    model = build_model(kind, 40, 10, hidden=hidden, **extra)
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert model(torch.zeros(7, 40)).shape == (7, 10)


def test_the_residual_mlp_adds_each_later_hidden_layers_input_to_its_output():
    torch.manual_seed(0)
    model = build_model("residual_mlp", 3, 2, hidden=[4, 4, 4], activation="relu")
    x = torch.randn(5, 3)
    h = torch.relu(model.first(x))
    for layer in model.residual:
        h = h + torch.relu(layer(h))
    torch.testing.assert_close(model(x), model.output(h))
    with torch.no_grad():  # zero residual layers: the net is first layer then output
        for layer in model.residual:
            layer.weight.zero_()
            layer.bias.zero_()
    torch.testing.assert_close(model(x), model.output(torch.relu(model.first(x))))


def test_the_cnn_is_its_convolutions_by_hand():
    torch.manual_seed(0)
    model = build_model("cnn1d", 40, 10, hidden=[25, 25, 25], kernel_sizes=[5, 3, 3], stride=2,
                        padding=1, activation="relu")  # fmt: skip
    x = torch.randn(6, 40)
    h = x[:, None, :]
    lengths = []
    for conv in model.convs:
        h = torch.relu(torch.nn.functional.conv1d(h, conv.weight, conv.bias, stride=2, padding=1))
        lengths.append(h.shape[-1])
    assert lengths == [19, 10, 5]  # 25 × 5 = 125 features, as in the notebooks' ConvBase
    torch.testing.assert_close(model(x), model.output(h.reshape(6, 125)))
