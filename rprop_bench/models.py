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
MODEL_KINDS = ("linear", "mlp", "shortcut")


class ShortcutNet(nn.Module):
    """A multilayer network with shortcut connections: each hidden layer sees the input and
    every earlier hidden layer, and so does the output layer (Lang & Witbrock 1988, whose
    2-5-5-5-1 network of this shape learned the two spirals)."""

    def __init__(self, n_inputs: int, n_outputs: int, hidden: Sequence[int], activation: str):
        super().__init__()
        widths = [n_inputs]
        self.hidden = nn.ModuleList()
        for size in hidden:
            self.hidden.append(nn.Linear(sum(widths), size))
            widths.append(size)
        self.output = nn.Linear(sum(widths), n_outputs)
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seen = [x]
        for layer in self.hidden:
            seen.append(self.activation(layer(torch.cat(seen, dim=-1))))
        return self.output(torch.cat(seen, dim=-1))


def build_model(
    kind: str,
    n_inputs: int,
    n_outputs: int,
    hidden: Sequence[int] = (),
    activation: str = "tanh",
    init_range: float | None = None,
    output_units: int | None = None,
) -> nn.Module:
    """Build a ``linear`` model, an ``mlp`` or a ``shortcut`` network (:class:`ShortcutNet`)
    mapping ``n_inputs`` features to ``n_outputs``.

    Args:
        kind: ``"linear"`` (one affine layer; ``hidden`` must be empty) or ``"mlp"``.
        n_inputs: number of input features.
        n_outputs: number of outputs (classes, or 1 for regression).
        hidden: sizes of the hidden layers, input side first.
        activation: the hidden layers' nonlinearity, one of :data:`ACTIVATIONS`.
        output_units: the number of output units if not ``n_outputs``: 1 gives a binary
            problem one sigmoid output, as in the two-spirals network of Lang & Witbrock
            (1988) (its loss must then be ``mse_sigmoid``).
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
    if output_units is not None:
        if not (output_units == 1 and n_outputs == 2):
            raise ValueError(
                f"output_units={output_units} is for a binary problem's one output (1), "
                f"not {n_outputs} outputs"
            )
        n_outputs = output_units
    model: nn.Module
    if kind == "shortcut":
        model = ShortcutNet(n_inputs, n_outputs, sizes, activation)
    else:
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
