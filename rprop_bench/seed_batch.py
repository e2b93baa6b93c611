"""Seed-vectorised training: S seeds of one model trained at once, as one stacked model.

Rprop adapts each weight from the signs of that weight's own gradients (Riedmiller & Braun
1993; Igel & Hüsken 2000, 2003), so S independent copies of a model (S seeds) can share one
optimizer whose parameters carry the S copies along a new leading dim: the update of copy k
depends on copy k alone. :func:`train_seeds` builds that stacked model from S seeded models
(``torch.func.stack_module_state``), computes the S losses in one forward pass, and steps one
optimizer whose closure returns the ``(S,)`` losses after the backward pass of their sum. The
gradient of the sum with respect to copy k is exactly copy k's own gradient (each loss depends
on its own copy only, and d(sum)/d(loss_k) = 1), and iRprop+ compares each member's loss with
that member's previous loss (see "Stacked members" in :class:`rprop_bench.optim.Rprop`).

What each seed gets is what :func:`rprop_bench.training.train` gives it alone: one
:class:`~rprop_bench.training.TrainResult` and one callback per seed, with the same metric
names, step-size diagnostics, time-to-target and divergence handling. A seed whose loss stops
being finite is reported as diverged (the same reason as alone) and its callback is no longer
called; the other seeds go on. A diverged member cannot poison the others: every operation on
the stack (forward, loss, backward, optimizer update, diagnostics) is per member, and a NaN in
member k stays in member k's slice (pinned by a test).

Two ways to compute the forward and backward pass:

- ``exact=False`` (default): each ``nn.Linear`` is one batched matrix product over the S
  members (``torch.baddbmm``) and the losses one batched reduction. This is where the speed
  comes from. The products reduce in another order than the per-model ``addmm`` (a different
  BLAS kernel), so losses and gradients differ in the last bits (about 1e-7 relative in float32).
  The Rprop family uses only gradient signs, so its weights stay bit-identical unless a
  gradient component lies within rounding of zero; magnitude-based optimizers (SGD, Adam, ...)
  drift by a few ulps per epoch. ``tests/test_seed_batch.py`` pins the tolerances.
- ``exact=True``: every member runs the very operations of a single model (a loop over the
  members inside one closure), so every number equals ``train``'s bit for bit; the saving is
  then the optimizer step, the evaluation and the diagnostics done once for all members.

Only optimizers that update every weight from its own history are accepted
(:data:`ELEMENTWISE_OPTIMIZERS`); L-BFGS is refused, since its line search and curvature pairs
span all weights and would couple the seeds. Only full-batch training is supported: mini-batches
are shuffled with each seed's own generator, so the members would need different batches.

Timing: ``wall_time``, ``train_seconds`` and ``seconds_to_target`` of every seed are the
stacked training's seconds (forward, backward, update of all S members; evaluation and
diagnostics excluded), the wall-clock time the seed's result took. Compare seconds only between
runs trained the same way.

This module is a leaf of the harness like :mod:`rprop_bench.training`: it knows nothing of
Hydra or MLflow.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from rprop_bench.diagnostics import StepSizeMonitor
from rprop_bench.metrics import EvaluationCount, global_norm, loss_function, output_metrics
from rprop_bench.models import ACTIVATIONS
from rprop_bench.optim import Rprop
from rprop_bench.optim.members import MemberBaselines, MemberGroups
from rprop_bench.problems import ProblemData
from rprop_bench.training import (
    EpochCallback,
    TrainResult,
    TrainSettings,
    run_epochs,
    step_with_closure,
)

#: Optimizers whose update of a weight reads only that weight's gradient, state and value, so a
#: stacked parameter trains each member as if alone (weight decay, momentum, Adam's moments and
#: bias correction, RMSprop's averages and Rprop's step sizes are all per weight).
ELEMENTWISE_OPTIMIZERS: tuple[type[torch.optim.Optimizer], ...] = (
    Rprop,
    torch.optim.Rprop,
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.RMSprop,
    # a grid's stack, hyperparameters per member (rprop_bench.optim.members)
    MemberBaselines,
    MemberGroups,
)

_WHY_NOT_ELEMENTWISE: dict[type[torch.optim.Optimizer], str] = {
    torch.optim.LBFGS: "L-BFGS couples all weights through its line search and its curvature "
    "pairs, so stacked seeds would share one step length and one search direction",
}

#: Layers the batched forward pass (``exact=False``) understands: what models.build_model builds.
_ELEMENTWISE_LAYERS: tuple[type[nn.Module], ...] = tuple(ACTIVATIONS.values())


class SeedBatchError(ValueError):
    """The seeds cannot train stacked (optimizer, batching or models); train them one by one."""


def batchable(model: nn.Module) -> bool:
    """Whether the batched forward pass (``exact=False``) can stack models like ``model``: an
    ``nn.Sequential`` of ``nn.Linear`` and activation layers. Others stack in exact mode."""
    try:
        StackedModel._batched_layers(model)
    except SeedBatchError:
        return False
    return True


def seeded_models(build: Callable[[], nn.Module], seeds: Iterable[int]) -> list[nn.Module]:
    """One model per seed, each built right after ``torch.manual_seed(seed)``.

    This is how the harness builds a single run's model (``rprop_bench.cli.build.build``), so each
    model starts from the weights of that seed's one-by-one run.
    """
    models = []
    for seed in seeds:
        torch.manual_seed(int(seed))
        models.append(build())
    return models


class StackedModel:
    """S models of one architecture held as stacked parameters (leading dim S).

    Args:
        models: the S models; their parameters are copied into the stack (the models are not
            changed until :meth:`write_back`).
        exact: compute every member with a single model's own operations (see module doc).

    Raises:
        SeedBatchError: for no models, models of different architectures, or (batched mode) a
            model that is not an ``nn.Sequential`` of ``nn.Linear`` and activation layers.
    """

    def __init__(self, models: Sequence[nn.Module], *, exact: bool = False) -> None:
        if not models:
            raise SeedBatchError("no models to stack")
        shapes = [[(n, tuple(t.shape)) for n, t in m.state_dict().items()] for m in models]
        if any(s != shapes[0] for s in shapes):
            raise SeedBatchError("stacked seeds need models of one architecture (same params)")
        self.members = len(models)
        self.exact = exact
        params, buffers = stack_module_state(list(models))
        self.params: dict[str, torch.Tensor] = params
        self.buffers: dict[str, torch.Tensor] = buffers
        # A parameter-free copy that only defines the computation (functional_call fills it).
        self._template = copy.deepcopy(models[0]).to("meta")
        if not exact:
            self._layers = self._batched_layers(models[0])

    @staticmethod
    def _batched_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
        layers = list(model.named_children()) if isinstance(model, nn.Sequential) else []
        if not layers or not all(
            isinstance(layer, (nn.Linear, *_ELEMENTWISE_LAYERS)) for _, layer in layers
        ):
            raise SeedBatchError(
                f"the batched forward pass supports an nn.Sequential of nn.Linear and "
                f"activation layers (what models.build_model builds), not "
                f"{type(model).__name__}; use exact=True"
            )
        return layers

    def named_parameters(self) -> list[tuple[str, torch.Tensor]]:
        """The stacked parameters, named as in one model (``0.weight``, ...)."""
        return list(self.params.items())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The S members' outputs for the shared input ``x``: shape ``(S, n, n_outputs)``."""
        if self.exact:
            views = {n: t.unbind(0) for n, t in {**self.params, **self.buffers}.items()}
            return torch.stack(
                [
                    functional_call(self._template, {n: v[k] for n, v in views.items()}, (x,))
                    for k in range(self.members)
                ]
            )
        h = x
        for name, layer in self._layers:
            if isinstance(layer, nn.Linear):
                h = self._linear(h, self.params[f"{name}.weight"], self.params.get(f"{name}.bias"))
            else:
                h = layer(h)
        return h

    def _linear(
        self, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """One ``nn.Linear`` of every member: ``(S, n, in)`` (or a shared ``(n, in)``) in."""
        if h.dim() == 2:
            # A shared input: one product with the members' weights side by side, (S·out, in).
            # Each output element is the dot product the single model computes.
            flat_bias = bias.reshape(-1) if bias is not None else None
            out = nn.functional.linear(h, weight.reshape(-1, weight.shape[-1]), flat_bias)
            return out.reshape(len(h), self.members, -1).transpose(0, 1)
        if bias is None:
            return torch.bmm(h, weight.transpose(1, 2))
        return torch.baddbmm(bias[:, None], h, weight.transpose(1, 2))

    def losses(self, out: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module) -> torch.Tensor:
        """Each member's loss ``loss_fn(out[k], y)``, as a tensor of shape ``(S,)``.

        One call of ``loss_fn`` per member, in both modes: a batched reduction (members side
        by side, unreduced, then a mean per member) sums in another order and changes the
        loss in its last bit, and iRprop+ compares losses E(t) > E(t−1), where such a bit
        decides ties and sends the trajectory elsewhere. The loop costs S small kernels.
        """
        return torch.stack([loss_fn(o, y) for o in out.unbind(0)])

    @torch.no_grad()
    def write_back(self, models: Sequence[nn.Module]) -> None:
        """Copy member k's parameters and buffers into ``models[k]``."""
        for k, model in enumerate(models):
            for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
                tensor.copy_({**self.params, **self.buffers}[name][k])


def why_not_stacked(kind: type) -> str | None:
    """Why optimizers of class ``kind`` cannot train seeds stacked, ``None`` if they can.

    Split from :func:`check_optimizer` so that the CLI can tell from a config's ``_target_``,
    before building anything, which jobs of a sweep fall back to one-by-one training.
    """
    if kind in ELEMENTWISE_OPTIMIZERS:
        return None
    names = ", ".join(  # the classes a config names (not the per-member wrappers)
        f"{c.__module__}.{c.__name__}"
        for c in ELEMENTWISE_OPTIMIZERS
        if c not in (MemberBaselines, MemberGroups)
    )
    why = _WHY_NOT_ELEMENTWISE.get(kind, "it is not known to update each weight on its own")
    return (
        f"{kind.__name__} cannot train seeds stacked: {why}. Stacked seeds need an elementwise "
        f"optimizer ({names}); train these seeds one by one (train.vectorize_seeds=false)"
    )


def check_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Raise :class:`SeedBatchError` unless ``optimizer`` is elementwise (see module doc)."""
    why = why_not_stacked(type(optimizer))
    if why is not None:
        raise SeedBatchError(why)


def check_full_batch(settings: TrainSettings, n_train: int) -> None:
    """Raise :class:`SeedBatchError` for mini-batch settings (batches are shuffled per seed)."""
    if settings.batch_size is not None and settings.batch_size < n_train:
        raise SeedBatchError(
            f"stacked seeds train full batch only, got batch_size={settings.batch_size} < "
            f"{n_train} training samples: mini-batches are shuffled with each seed's own "
            "generator, so the seeds would need different batches; set train.batch_size=null "
            "or train.vectorize_seeds=false"
        )


class _StackedTrainee:
    """S stacked members as a :class:`~rprop_bench.training.Trainee` (full batch only)."""

    def __init__(
        self,
        stacked: StackedModel,
        data: ProblemData,
        optimizer: torch.optim.Optimizer,
        loss: str | None = None,
    ) -> None:
        self.stacked = stacked
        self.members = stacked.members
        self.data = data
        self.optimizer = optimizer
        self.loss_fn = loss_function(data.task, loss)
        self.monitor = StepSizeMonitor(stacked.named_parameters(), optimizer, members=self.members)
        self._grad_norms = [0.0] * self.members
        self._ahead: torch.Tensor | None = None  # the next step's first losses, computed early
        self.evals = EvaluationCount(len(data.x_train))

    def _losses(self) -> torch.Tensor:
        """The (S,) training losses of the members, as the closure computes them."""
        out = self.stacked.forward(self.data.x_train)
        return self.stacked.losses(out, self.data.y_train, self.loss_fn)

    def step_epoch(self, record_grad_norms: bool) -> list[float]:
        def closure() -> torch.Tensor:
            self.evals.closure_call(len(self.data.x_train))  # each member's own full batch
            self.optimizer.zero_grad()
            losses, self._ahead = self._ahead, None
            if losses is None:
                losses = self._losses()
            losses.sum().backward()
            if record_grad_norms:  # the gradient norm at the start of the epoch, as alone
                grads = [t.grad for _, t in self.stacked.named_parameters()]
                self._grad_norms = [
                    global_norm(g[k] if g is not None else None for g in grads)
                    for k in range(self.members)
                ]
            return losses

        return step_with_closure(self.optimizer, closure).detach().tolist()

    def grad_norms(self) -> list[float]:
        return self._grad_norms

    def weight_norms(self) -> list[float]:
        stacked = [t for _, t in self.stacked.named_parameters()]
        return [global_norm(t[k] for t in stacked) for k in range(self.members)]

    def train_losses(self, members: Sequence[int]) -> list[float]:
        with torch.no_grad():
            return self._losses().tolist()

    def train_losses_for_next_step(self, members: Sequence[int]) -> list[float] | None:
        with torch.enable_grad():  # the closure's own forward pass, graph and all
            self._ahead = self._losses()
        return self._ahead.detach().tolist()

    def metrics(
        self, x: torch.Tensor, y: torch.Tensor, members: Sequence[int]
    ) -> dict[int, dict[str, float]]:
        if not members:
            return {}
        with torch.no_grad():
            out = self.stacked.forward(x)
            return {k: output_metrics(out[k], y, self.data.task, self.loss_fn) for k in members}

    @torch.no_grad()
    def train_outputs(self, members: Sequence[int]) -> dict[int, torch.Tensor]:
        if not members:
            return {}
        out = self.stacked.forward(self.data.x_train)
        return {k: out[k] for k in members}


def train_seeds(
    models: Sequence[nn.Module],
    data: ProblemData,
    make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    settings: TrainSettings,
    callbacks: Sequence[EpochCallback | None] | None = None,
    *,
    exact: bool = False,
    elementwise: bool | None = None,
) -> list[TrainResult]:
    """Train ``models`` (one per seed, one architecture) at once, each as ``train`` would alone.

    Both run the one epoch loop, :func:`rprop_bench.training.run_epochs`, so metrics, the
    divergence rule, time-to-target and diagnostics are the same code.

    Args:
        models: the seeds' models, built as for single runs (:func:`seeded_models`). They hold
            the trained weights afterwards (a diverged member's are whatever its slice holds).
        data: the problem, shared by every seed.
        make_optimizer: builds the optimizer from a list of parameters, e.g. the config's
            optimizer partial; it receives the stacked parameters.
        settings: as for :func:`rprop_bench.training.train`; ``batch_size`` must be full batch.
        callbacks: one per model (or ``None``), called as ``train`` calls its callback.
        exact: bit-identical to ``train`` at a lower speed-up (see the module doc).
        elementwise: what the optimizer's config declares: ``True`` vouches for a class
            this module does not know (an optimizer of the user's), ``False`` refuses it;
            ``None`` goes by :data:`ELEMENTWISE_OPTIMIZERS`.

    Returns:
        One :class:`TrainResult` per model, in order: ``"finished"`` with the final metrics, or
        ``"diverged"`` with the epoch and the reason, exactly as ``train`` reports them.

    Raises:
        SeedBatchError: for a coupled optimizer (L-BFGS), mini-batches or mismatched models.
    """
    callbacks = list(callbacks) if callbacks is not None else [None] * len(models)
    if len(callbacks) != len(models):
        raise SeedBatchError(f"{len(models)} models but {len(callbacks)} callbacks")
    check_full_batch(settings, len(data.x_train))
    stacked = StackedModel(models, exact=exact)
    optimizer = make_optimizer([t for _, t in stacked.named_parameters()])
    if elementwise is False:
        raise SeedBatchError(
            f"{type(optimizer).__name__} is declared not elementwise: train its seeds one by one"
        )
    if elementwise is None:
        check_optimizer(optimizer)
    for model in models:
        model.train()
    trainee = _StackedTrainee(stacked, data, optimizer, settings.loss)
    results = run_epochs(trainee, data, settings, callbacks)
    stacked.write_back(models)
    return results
