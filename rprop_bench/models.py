"""The models, built from plain arguments by :func:`build_model`: a linear unit, a multilayer
perceptron, a shortcut network (Lang & Witbrock 1988), and the residual MLP and the small 1-D
CNN of MNIST-1D (Greydanus & Kobak 2024).

A linear model is an MLP with no hidden layer, so all share :func:`build_model`. The config
group ``model`` targets it with ``_partial_: true``; the CLI supplies the sizes that the
problem dictates. This module imports only torch and :mod:`rprop_bench.schema`.

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

from rprop_bench import schema

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}
assert tuple(ACTIVATIONS) == schema.ACTIVATIONS
MODEL_KINDS = schema.MODEL_KINDS


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


class ResidualMLP(nn.Module):
    """An MLP whose hidden layers after the first add their input to their output,
    ``h ← h + act(W h + b)``: the MLP of MNIST-1D (``MLPBase`` in the notebooks of Greydanus &
    Kobak 2024, "Scaling down deep learning with MNIST-1D", ICML; arXiv 2011.14439), there
    40-100-100-10 with ReLU, 15,210 parameters. The hidden layers must have one width."""

    def __init__(self, n_inputs: int, n_outputs: int, hidden: Sequence[int], activation: str):
        super().__init__()
        if not hidden or len(set(hidden)) != 1:
            raise ValueError(f"a residual MLP needs hidden layers of one width, got {list(hidden)}")
        width = hidden[0]
        self.first = nn.Linear(n_inputs, width)
        self.residual = nn.ModuleList(nn.Linear(width, width) for _ in hidden[1:])
        self.output = nn.Linear(width, n_outputs)
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.activation(self.first(x))
        for layer in self.residual:
            h = h + self.activation(layer(h))
        return self.output(h)


class Conv1dNet(nn.Module):
    """A small 1-D CNN over the input read as one channel of ``n_inputs`` samples: convolutions
    of ``channels[i]`` filters of width ``kernel_sizes[i]`` (each followed by the activation),
    then one linear layer on the flattened features.

    The MNIST-1D CNN (``ConvBase`` in the notebooks of Greydanus & Kobak 2024) is three
    convolutions of 25 channels, kernels 5, 3, 3, stride 2, padding 1, ReLU: on the 40-sample
    signals the features are 25 × 5 = 125, and the net has 5,210 parameters.
    """

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int,
        channels: Sequence[int],
        kernel_sizes: Sequence[int],
        stride: int,
        padding: int,
        activation: str,
    ):
        super().__init__()
        if not channels or len(kernel_sizes) != len(channels):
            raise ValueError(
                f"a 1-D CNN needs one kernel size per convolution, got channels={list(channels)}"
                f" and kernel_sizes={list(kernel_sizes)}"
            )
        self.convs = nn.ModuleList()
        length, width = n_inputs, 1
        for size, kernel in zip(channels, kernel_sizes, strict=True):
            self.convs.append(nn.Conv1d(width, size, kernel, stride=stride, padding=padding))
            length, width = (length + 2 * padding - kernel) // stride + 1, size
            if length < 1:
                raise ValueError(f"the convolutions leave no samples of the {n_inputs} inputs")
        self.output = nn.Linear(width * length, n_outputs)
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(-2)  # (n, 1, n_inputs): one channel
        for conv in self.convs:
            h = self.activation(conv(h))
        return self.output(h.flatten(start_dim=-2))


def build_model(
    kind: str,
    n_inputs: int,
    n_outputs: int,
    hidden: Sequence[int] = (),
    activation: str = "tanh",
    init_range: float | None = None,
    output_units: int | None = None,
    kernel_sizes: Sequence[int] = (),
    stride: int = 1,
    padding: int = 0,
) -> nn.Module:
    """Build a model of one of :data:`MODEL_KINDS` mapping ``n_inputs`` features to
    ``n_outputs``.

    Args:
        kind: ``"linear"`` (one affine layer; ``hidden`` must be empty), ``"mlp"``,
            ``"shortcut"`` (:class:`ShortcutNet`), ``"residual_mlp"`` (:class:`ResidualMLP`)
            or ``"cnn1d"`` (:class:`Conv1dNet`).
        n_inputs: number of input features.
        n_outputs: number of outputs (classes, or 1 for regression).
        hidden: sizes of the hidden layers, input side first; for ``cnn1d``, the channels of
            each convolution.
        activation: the hidden layers' nonlinearity, one of :data:`ACTIVATIONS`.
        output_units: the number of output units if not ``n_outputs``: 1 gives a binary
            problem one sigmoid output, as in the two-spirals network of Lang & Witbrock
            (1988) (its loss must then be ``mse_sigmoid``).
        init_range: if given, every weight and bias starts uniform in
            ``[-init_range, init_range]``, as in the Rprop papers' experiments; ``None``:
            torch's default initialisation.
        kernel_sizes, stride, padding: ``cnn1d`` only: each convolution's width, and the
            stride and zero padding all share.

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
    if kind != "cnn1d" and (kernel_sizes or stride != 1 or padding != 0):
        raise ValueError(f"kernel_sizes, stride and padding are for kind cnn1d, not {kind!r}")
    if kind == "shortcut":
        model = ShortcutNet(n_inputs, n_outputs, sizes, activation)
    elif kind == "residual_mlp":
        model = ResidualMLP(n_inputs, n_outputs, sizes, activation)
    elif kind == "cnn1d":
        kernels = [int(k) for k in kernel_sizes]
        if any(k < 1 for k in kernels) or stride < 1 or padding < 0:
            raise ValueError(
                f"kernel sizes and stride must be >= 1 and padding >= 0, got {kernels}, "
                f"stride={stride}, padding={padding}"
            )
        model = Conv1dNet(n_inputs, n_outputs, sizes, kernels, stride, padding, activation)
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
