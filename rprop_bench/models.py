"""The models: a linear unit and a multilayer perceptron, built from plain arguments.

A linear model is an MLP with no hidden layer, so both share :func:`build_model`. The config
group ``model`` targets it with ``_partial_: true``; the CLI supplies the sizes that the
problem dictates. This module is a leaf: it imports only torch.

>>> build_model("mlp", 4, 3, hidden=[8], activation="tanh")
Sequential(
  (0): Linear(in_features=4, out_features=8, bias=True)
  (1): Tanh()
  (2): Linear(in_features=8, out_features=3, bias=True)
)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}
MODEL_KINDS = ("linear", "mlp")


def build_model(
    kind: str,
    n_inputs: int,
    n_outputs: int,
    hidden: Sequence[int] = (),
    activation: str = "tanh",
    init_range: float | None = None,
) -> nn.Sequential:
    """Build a ``linear`` model or an ``mlp`` mapping ``n_inputs`` features to ``n_outputs``.

    Args:
        kind: ``"linear"`` (one affine layer; ``hidden`` must be empty) or ``"mlp"``.
        n_inputs: number of input features.
        n_outputs: number of outputs (classes, or 1 for regression).
        hidden: sizes of the hidden layers, input side first.
        activation: the hidden layers' nonlinearity, one of :data:`ACTIVATIONS`.
        init_range: if given, every weight and bias starts uniform in
            ``[-init_range, init_range]``, as in the Rprop papers' experiments; ``None``:
            torch's default initialisation.

    Raises:
        ValueError: for an unknown kind or activation, a non-positive size, or hidden layers
            given to a linear model.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; valid kinds: {', '.join(MODEL_KINDS)}")
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; valid activations: {', '.join(ACTIVATIONS)}"
        )
    sizes = [int(h) for h in hidden]
    if kind == "linear" and sizes:
        raise ValueError(f"a linear model has no hidden layers, got hidden={sizes}")
    if any(s < 1 for s in [n_inputs, n_outputs, *sizes]):
        raise ValueError(f"layer sizes must be >= 1, got {[n_inputs, *sizes, n_outputs]}")
    layers: list[nn.Module] = []
    width = n_inputs
    for size in sizes:
        layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
        width = size
    layers.append(nn.Linear(width, n_outputs))
    model = nn.Sequential(*layers)
    if init_range is not None:
        if not init_range > 0:
            raise ValueError(f"init_range must be > 0, got {init_range}")
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.uniform_(-init_range, init_range)
    return model
