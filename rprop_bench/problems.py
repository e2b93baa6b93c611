"""The benchmark problems: small, offline datasets split into train, validation and test.

Every problem is built by a function in :data:`PROBLEMS`, keyed by the name users type
(``problem=iris``). A builder returns the raw arrays; :func:`load_problem` then splits them
with its own ``split_seed`` (apart from the seed that initialises the model), stratified for
classification, and standardises the features with statistics of the training split only.

This module is a leaf: it imports only numpy, torch and scikit-learn (and the ``mnist1d``
package, which generates MNIST-1D, when that problem is built).

>>> data = load_problem("iris", split_seed=0)
>>> data.task, data.n_inputs, data.n_outputs, len(data.x_train)
('classification', 4, 3, 90)
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn import datasets
from sklearn.model_selection import train_test_split

CLASSIFICATION = "classification"
REGRESSION = "regression"


@dataclass(frozen=True)
class RawData:
    """What a problem builder returns, before splitting.

    ``y`` holds class indices (int) for classification and targets of shape ``(n, 1)`` for
    regression. A builder that already knows its split (``line``, ``encoder``) fills the
    ``val``/``test`` fields itself; :func:`load_problem` then does not split.
    """

    x: np.ndarray
    y: np.ndarray
    task: str
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


@dataclass(frozen=True)
class ProblemData:
    """A problem ready to train on: float32 features, targets and the task.

    Targets are int64 class indices of shape ``(n,)`` for classification and float32 of shape
    ``(n, 1)`` for regression.
    """

    name: str
    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_inputs: int
    n_outputs: int

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> ProblemData:
        """Return a copy with every tensor on ``device``, and the floating ones (features,
        regression targets) in ``dtype`` if given; class labels stay int64."""

        def move(tensor: torch.Tensor) -> torch.Tensor:
            cast = dtype if dtype is not None and tensor.is_floating_point() else None
            return tensor.to(device=device, dtype=cast)

        moved = {
            field: move(getattr(self, field))
            for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
        }
        return ProblemData(
            name=self.name,
            task=self.task,
            n_inputs=self.n_inputs,
            n_outputs=self.n_outputs,
            **moved,
        )


class UnknownProblemError(ValueError):
    """Raised for a problem name that is not in :data:`PROBLEMS`."""


class BadDataError(ValueError):
    """A problem's data cannot be trained on: an empty split, NaN or infinite values, or an
    option its builder does not take. Raised before training, so that it is never taken for
    the optimizer's divergence."""


def check_data(data: ProblemData) -> None:
    """Raise :class:`BadDataError` if a split of ``data`` is empty or holds a NaN or an
    infinity (a builder option such as ``noise=nan``, or a user's data file)."""
    for split in ("train", "val", "test"):
        for part in ("x", "y"):
            tensor = getattr(data, f"{part}_{split}")
            if tensor.shape[0] == 0:
                raise BadDataError(f"problem {data.name!r} has no {split} samples")
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise BadDataError(
                    f"problem {data.name!r}: {bad} NaN or infinite values in {part}_{split}"
                )


def builder_options(name: str) -> list[str]:
    """The options (keyword arguments) that problem ``name``'s builder takes."""
    import inspect

    parameters = list(inspect.signature(PROBLEMS[name]).parameters.values())[1:]  # not seed
    return [p.name for p in parameters if p.kind is not p.VAR_KEYWORD]


# --- builders -------------------------------------------------------------------------------


def _line(seed: int, n_samples: int = 100, noise: float = 0.1) -> RawData:
    """The seed example: ``y = 2x + 3 + noise·N(0, 1)`` with ``x ~ N(0, 1)``.

    The training set is ``n_samples`` points, as in the seed; validation and test are fresh
    draws of half that size each from the same distribution.
    """
    rng = np.random.default_rng(seed)
    n_held_out = max(n_samples // 2, 1)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, 1))
        return x, 2.0 * x + 3.0 + noise * rng.standard_normal((n, 1))

    x, y = draw(n_samples)
    x_val, y_val = draw(n_held_out)
    x_test, y_test = draw(n_held_out)
    return RawData(x, y, REGRESSION, x_val, y_val, x_test, y_test)


def _sklearn_bundled(loader: Callable[..., Any], task: str) -> Callable[[int], RawData]:
    """A builder for one of scikit-learn's bundled (offline) datasets."""

    def build(seed: int) -> RawData:
        del seed  # the data is fixed; only the split depends on the seed
        x, y = loader(return_X_y=True)
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y)
        return RawData(x, y if task == CLASSIFICATION else y.reshape(-1, 1), task)

    build.__doc__ = f"scikit-learn's bundled ``{loader.__name__}`` ({task})."
    return build


def _moons(seed: int, n_samples: int = 400, noise: float = 0.2) -> RawData:
    """Two interleaving half circles (``sklearn.datasets.make_moons``)."""
    x, y = datasets.make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    return RawData(x, y, CLASSIFICATION)


def _circles(seed: int, n_samples: int = 400, noise: float = 0.1, factor: float = 0.5) -> RawData:
    """A small circle inside a large one (``sklearn.datasets.make_circles``)."""
    x, y = datasets.make_circles(n_samples=n_samples, noise=noise, factor=factor, random_state=seed)
    return RawData(x, y, CLASSIFICATION)


def _two_spirals(seed: int, points_per_spiral: int = 97, noise: float = 0.0) -> RawData:
    """The two-spirals benchmark of Lang & Witbrock (1988), 97 points per spiral by default.

    Point ``i`` of the first spiral lies at angle ``i·π/16`` and radius ``6.5·(104 − i)/104``;
    the second spiral is the first one mirrored through the origin.
    """
    rng = np.random.default_rng(seed)
    i = np.arange(points_per_spiral)
    angle = i * np.pi / 16.0
    radius = 6.5 * (104 - i) / 104.0
    first = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1)
    x = np.concatenate([first, -first])
    if noise > 0:
        x = x + noise * rng.standard_normal(x.shape)
    y = np.concatenate([np.zeros(points_per_spiral), np.ones(points_per_spiral)]).astype(int)
    return RawData(x, y, CLASSIFICATION)


def _two_spirals_1988(seed: int, points_per_spiral: int = 97, noise: float = 0.0) -> RawData:
    """The two spirals as Lang & Witbrock (1988) trained them: every point is a training
    point (no split: train = validation = test, the 194 points), not standardised."""
    raw = _two_spirals(seed, points_per_spiral, noise)
    return RawData(raw.x, raw.y, CLASSIFICATION, raw.x, raw.y, raw.x, raw.y)


def _encoder(seed: int, n: int = 10) -> RawData:
    """The n-m-n encoder (Riedmiller & Braun 1993): map each one-hot pattern onto itself.

    There are only ``n`` patterns, so train, validation and test are all the same set; the
    task is to classify each one-hot input as its own index through a narrow hidden layer.
    """
    del seed
    x = np.eye(n)
    y = np.arange(n)
    return RawData(x, y, CLASSIFICATION, x, y, x, y)


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST-1D as its package generates it with its default arguments: 4,000 training and
    1,000 test signals of 40 samples, 10 classes (about 1 s, so kept once per process)."""
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset seeds numpy's and Python's global generators (with the package's own seed,
    # 42); put them back, so building the data does not change any other random stream
    numpy_state, python_state = np.random.get_state(), random.getstate()  # noqa: NPY002 (its legacy state)
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(numpy_state)  # noqa: NPY002
        random.setstate(python_state)
    arrays = (data["x"], data["y"], data["x_test"], data["y_test"])
    return tuple(np.asarray(a) for a in arrays)  # type: ignore[return-value]


def _mnist1d(seed: int, validation_share: float = 0.1) -> RawData:
    """MNIST-1D (Greydanus & Kobak 2024, "Scaling down deep learning with MNIST-1D", ICML;
    arXiv 2011.14439), generated offline by ``mnist1d.data.make_dataset`` with the package's
    default arguments (no download; the same signals as the published ``mnist1d_data.pkl``).

    The package's 1,000 test signals are the test set. ``validation_share`` of its 4,000
    training signals, drawn with ``seed`` (the problem's ``split_seed``) and stratified by
    class, are the validation set; the rest (3,600 by default) are the training set. The
    package already centres and scales the whole set, so the problem is not standardised.
    """
    if not 0 < validation_share < 1:
        raise ValueError(f"validation_share must be in (0, 1), got {validation_share}")
    x, y, x_test, y_test = _mnist1d_arrays()
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=validation_share, random_state=seed, stratify=y
    )
    return RawData(x_train, y_train, CLASSIFICATION, x_val, y_val, x_test, y_test)


ProblemBuilder = Callable[..., RawData]

#: The registry: problem name -> builder ``(seed, **options) -> RawData``.
PROBLEMS: dict[str, ProblemBuilder] = {
    "line": _line,
    "iris": _sklearn_bundled(datasets.load_iris, CLASSIFICATION),
    "wine": _sklearn_bundled(datasets.load_wine, CLASSIFICATION),
    "breast_cancer": _sklearn_bundled(datasets.load_breast_cancer, CLASSIFICATION),
    "digits": _sklearn_bundled(datasets.load_digits, CLASSIFICATION),
    "diabetes": _sklearn_bundled(datasets.load_diabetes, REGRESSION),
    "moons": _moons,
    "circles": _circles,
    "two_spirals": _two_spirals,
    "encoder": _encoder,
    # the same patterns, under names of their own: their configs are the 1993 form (sigmoid
    # outputs, squared error, the 0.4 criterion), so studies never mix them with `encoder`
    "encoder_10_5_10": _encoder,
    "encoder_8_3_8": functools.partial(_encoder, n=8),
    "encoder_12_2_12": functools.partial(_encoder, n=12),
    "two_spirals_1988": _two_spirals_1988,
    "mnist1d": _mnist1d,
}


# --- splitting and scaling ------------------------------------------------------------------


def _standardise(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Scale every array by the mean and standard deviation of ``train`` (constant columns: 1)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return tuple((a - mean) / std for a in (train, *others))


def _split(
    raw: RawData, split_seed: int, val_fraction: float, test_fraction: float
) -> tuple[np.ndarray, ...]:
    """Split into train/val/test, stratified by class for classification."""
    stratify = raw.y if raw.task == CLASSIFICATION else None
    x_rest, x_test, y_rest, y_test = train_test_split(
        raw.x, raw.y, test_size=test_fraction, random_state=split_seed, stratify=stratify
    )
    val_of_rest = val_fraction / (1.0 - test_fraction)
    stratify = y_rest if raw.task == CLASSIFICATION else None
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_of_rest, random_state=split_seed, stratify=stratify
    )
    return x_train, y_train, x_val, y_val, x_test, y_test


def problem_names() -> list[str]:
    """The valid problem names, sorted."""
    return sorted(PROBLEMS)


def load_problem(
    name: str,
    *,
    split_seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    standardize: bool = True,
    standardize_target: bool = False,
    options: dict[str, object] | None = None,
) -> ProblemData:
    """Build problem ``name`` and return it split, scaled and as tensors.

    Args:
        name: a key of :data:`PROBLEMS`.
        split_seed: seeds the data generation and the train/validation/test split; it is
            independent of the seed that initialises the model.
        val_fraction: share of all samples held out for validation.
        test_fraction: share of all samples held out for testing.
        standardize: scale features to zero mean and unit variance using the training split's
            statistics only.
        standardize_target: for regression, scale the target the same way (training stats).
        options: keyword arguments for the problem's builder (e.g. ``n_samples``, ``noise``).

    Raises:
        UnknownProblemError: if ``name`` is not a registered problem; the message lists them.
        BadDataError: an option the problem's builder does not take.
    """
    if name not in PROBLEMS:
        raise UnknownProblemError(
            f"unknown problem {name!r}; valid problems: {', '.join(problem_names())}"
        )
    valid = builder_options(name)
    unknown = sorted(set(options or {}) - set(valid))
    if unknown:
        raise BadDataError(
            f"problem.data.options.{unknown[0]}: problem {name!r} has no such option; its "
            f"options: {', '.join(valid) or 'none'}"
        )
    raw = PROBLEMS[name](split_seed, **(options or {}))
    return prepare(
        raw,
        name,
        split_seed=split_seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        standardize=standardize,
        standardize_target=standardize_target,
    )


def prepare(
    raw: RawData,
    name: str,
    *,
    split_seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    standardize: bool = True,
    standardize_target: bool = False,
) -> ProblemData:
    """Split, scale and convert a builder's :class:`RawData` as :func:`load_problem` does.

    Public so that a data function of the user's (a problem config's ``data._target_``) can
    hand its arrays to the harness the way the built-in problems do.
    """
    if raw.x_val is None or raw.x_test is None:
        x_train, y_train, x_val, y_val, x_test, y_test = _split(
            raw, split_seed, val_fraction, test_fraction
        )
    else:
        assert raw.y_val is not None  # given with x_val
        assert raw.y_test is not None
        x_train, y_train = raw.x, raw.y
        x_val, y_val, x_test, y_test = raw.x_val, raw.y_val, raw.x_test, raw.y_test
    if standardize:
        x_train, x_val, x_test = _standardise(x_train, x_val, x_test)
    if raw.task == REGRESSION and standardize_target:
        y_train, y_val, y_test = _standardise(y_train, y_val, y_test)

    def features(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float32))

    def targets(a: np.ndarray) -> torch.Tensor:
        if raw.task == CLASSIFICATION:
            return torch.as_tensor(np.asarray(a, dtype=np.int64))
        return torch.as_tensor(np.asarray(a, dtype=np.float32).reshape(-1, 1))

    n_outputs = int(np.max(raw.y)) + 1 if raw.task == CLASSIFICATION else 1
    return ProblemData(
        name=name,
        task=raw.task,
        x_train=features(x_train),
        y_train=targets(y_train),
        x_val=features(x_val),
        y_val=targets(y_val),
        x_test=features(x_test),
        y_test=targets(y_test),
        n_inputs=int(raw.x.shape[1]),
        n_outputs=n_outputs,
    )
