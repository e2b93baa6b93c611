"""What a run reports: losses, accuracy or R², and the epoch and final metrics by the schema's
names, for one model or for each member of a stack alike.

A leaf below the training loop: it knows nothing of Hydra or MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from rprop_bench import schema
from rprop_bench.problems import CLASSIFICATION, REGRESSION


class SigmoidMSE(nn.Module):
    """Mean squared error of sigmoid outputs against 0/1 targets (one-hot class labels).

    The error of Riedmiller & Braun (1993) and Igel & Hüsken (2003), whose networks have
    sigmoid output units. Theirs is the sum E = ½ Σ_p Σ_o (t − o)²; this is its mean over
    patterns and outputs, E / (P·O/2): the same minimiser and, for the sign-based Rprop
    family, the same steps; a gradient method's learning rate scales by P·O/2.
    """

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(torch.sigmoid(out), targets_of(out, y))


class SigmoidSSE(nn.Module):
    """The error of Riedmiller & Braun (1993) itself: E = ½ Σ_p Σ_o (t − o)² of sigmoid
    outputs against 0/1 targets, summed over patterns and outputs.

    Rprop's steps do not change with the scale of E (they use its sign only); backprop's do,
    so with this loss a learning rate ε is the paper's ε, not ε scaled by P·O/2.
    """

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((torch.sigmoid(out) - targets_of(out, y)) ** 2).sum()


class CrossEntropy(nn.CrossEntropyLoss):
    """Softmax cross-entropy of the logits against class labels; for a binary problem's single
    output unit, the binary cross-entropy of its sigmoid (the same loss with logits (0, z))."""

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if out.shape[-1] == 1:
            return nn.functional.binary_cross_entropy_with_logits(out[..., 0], y.to(out.dtype))
        return super().forward(out, y)


def targets_of(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The 0/1 targets of class labels ``y`` for outputs ``out``: one-hot, or for a binary
    problem's single output unit the label itself."""
    if out.shape[-1] == 1:
        return y.to(out.dtype).unsqueeze(-1)
    return nn.functional.one_hot(y, out.shape[-1]).to(out.dtype)


def predicted_classes(out: torch.Tensor) -> torch.Tensor:
    """The class each output row names: the largest output, or with one output unit, 1 where
    its sigmoid is above 0.5."""
    if out.shape[-1] == 1:
        return (out[..., 0] > 0).long()
    return out.argmax(dim=-1)


#: The losses a problem may name (:data:`rprop_bench.schema.LOSS_NAMES`): each one's module
#: and the tasks it fits.
LOSSES: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "cross_entropy": (CrossEntropy, (CLASSIFICATION,)),
    "mse_sigmoid": (SigmoidMSE, (CLASSIFICATION,)),
    "sse_sigmoid": (SigmoidSSE, (CLASSIFICATION,)),
    "mse": (nn.MSELoss, (REGRESSION,)),
}
assert tuple(LOSSES) == schema.LOSS_NAMES


def loss_function(task: str, name: str | None = None) -> nn.Module:
    """The loss ``name`` (:data:`LOSSES`), or the task's default: cross-entropy for
    classification, mean squared error for regression.

    Raises:
        ValueError: an unknown name (the valid ones listed), or one that does not fit the task.
    """
    if name is None:
        name = "cross_entropy" if task == CLASSIFICATION else "mse"
    if name not in LOSSES:
        raise ValueError(f"problem.loss={name!r} is not a loss; valid losses: {', '.join(LOSSES)}")
    module, tasks = LOSSES[name]
    if task not in tasks:
        fits = ", ".join(n for n, (_, fit) in LOSSES.items() if task in fit)
        raise ValueError(f"problem.loss={name!r} does not fit a {task} problem; valid: {fits}")
    return module()


def output_metrics(
    out: torch.Tensor, y: torch.Tensor, task: str, loss_fn: nn.Module
) -> dict[str, float]:
    """Loss and accuracy (classification) or R² (regression) of the outputs ``out`` for ``y``.

    Keys are ``loss`` and ``accuracy`` or ``r2``. Split from :func:`evaluate` so that a
    stacked model (:mod:`rprop_bench.seed_batch`) scores each member's outputs the same way.
    """
    result = {"loss": float(loss_fn(out, y))}
    if task == CLASSIFICATION:
        result["accuracy"] = float((predicted_classes(out) == y).float().mean())
    else:
        total = float(((y - y.mean()) ** 2).sum())
        residual = float(((y - out) ** 2).sum())
        result["r2"] = 1.0 - residual / total if total > 0 else float("nan")
    return result


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str, loss_fn: nn.Module
) -> dict[str, float]:
    """Loss and accuracy (classification) or R² (regression) of ``model`` on ``(x, y)``.

    Keys are ``loss`` and ``accuracy`` or ``r2``.
    """
    return output_metrics(model(x), y, task, loss_fn)


def logit_margin(out: torch.Tensor, y: torch.Tensor) -> float:
    """The mean margin of the outputs ``out`` for class labels ``y``: the true class's output
    minus the largest other output, or for one output unit ``(2y − 1)·z``. Positive where a
    pattern is classified right; its growth on separable data shows weights running off."""
    if out.shape[-1] == 1:
        return float(((2 * y.to(out.dtype) - 1) * out[..., 0]).mean())
    true = out.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    others = out.scatter(-1, y.unsqueeze(-1), -math.inf).amax(dim=-1)
    return float((true - others).mean())


def global_norm(tensors: Iterable[torch.Tensor | None]) -> float:
    """The global L2 norm of ``tensors`` (gradients, weights; ``None`` entries skipped; 0 if
    there are none)."""
    norms = [t.detach().norm() for t in tensors if t is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


@dataclass
class EvaluationCount:
    """The evaluations an optimizer asked for, counted in training samples.

    :attr:`grad_evals` and :attr:`loss_evals` give them in passes over the ``n_train``
    training samples, the unit the schema logs (:data:`rprop_bench.schema.GRAD_EVALS`): a full
    batch is 1, a mini-batch its fraction. Counting samples keeps the sum of an epoch's
    mini-batches exactly 1. A closure call is one of each (its loss comes with its gradient).
    """

    n_train: int
    grad_samples: int = 0
    loss_samples: int = 0

    def closure_call(self, batch_size: int) -> None:
        """One forward and backward pass over ``batch_size`` samples."""
        self.grad_samples += batch_size
        self.loss_samples += batch_size

    @property
    def grad_evals(self) -> float:
        return self.grad_samples / self.n_train

    @property
    def loss_evals(self) -> float:
        return self.loss_samples / self.n_train


def epoch_metrics(
    train_loss: float,
    val: dict[str, float],
    first_grad_norm: float,
    seconds: float,
    step_metrics: dict[str, float],
    evals: EvaluationCount,
    weight_norm: float,
    margin: float | None = None,
) -> dict[str, float]:
    """One logged epoch's metrics under the schema's names (``val`` from :func:`evaluate`;
    ``margin`` from :func:`logit_margin`, classification only)."""
    metrics = {
        schema.TRAIN_LOSS: train_loss,
        schema.VAL_LOSS: val["loss"],
        schema.GRAD_NORM: first_grad_norm,
        schema.WEIGHT_NORM: weight_norm,
        schema.WALL_TIME: seconds,
        schema.GRAD_EVALS: evals.grad_evals,
        schema.LOSS_EVALS: evals.loss_evals,
        **step_metrics,
    }
    if margin is not None:
        metrics[schema.LOGIT_MARGIN] = margin
    if "accuracy" in val:
        metrics[schema.VAL_ACCURACY] = val["accuracy"]
    else:
        metrics[schema.VAL_R2] = val["r2"]
    return metrics


#: The final metrics of a :class:`FirstReach`: whether it was reached, then the epoch, the
#: training seconds and the gradient evaluations by then (the last three only if reached).
FirstReachNames = tuple[str, str, str, str]
TARGET_NAMES: FirstReachNames = (
    schema.REACHED_TARGET, schema.EPOCHS_TO_TARGET, schema.SECONDS_TO_TARGET,
    schema.GRAD_EVALS_TO_TARGET,
)  # fmt: skip
CRITERION_NAMES: FirstReachNames = (
    schema.CRITERION_MET, schema.EPOCHS_TO_CRITERION, schema.SECONDS_TO_CRITERION,
    schema.GRAD_EVALS_TO_CRITERION,
)  # fmt: skip


def ladder_names(k: int) -> FirstReachNames:
    """The names of rung ``k`` of a target ladder (``grad_evals_to_target_3`` ...)."""
    names = (schema.LADDER_REACHED, schema.LADDER_EPOCHS, schema.LADDER_SECONDS,
             schema.LADDER_GRAD_EVALS)  # fmt: skip
    reached, epochs, seconds, evals = (schema.ladder_metric(name, k) for name in names)
    return reached, epochs, seconds, evals


@dataclass
class FirstReach:
    """When a run first reached a goal (a loss target, a success criterion): the epoch, and
    the training seconds and gradient evaluations by then. ``goal`` ``None``: there is none."""

    goal: float | None
    epoch: int | None = None
    seconds: float | None = None
    grad_evals: float | None = None

    def note(self, epoch: int, seconds: float, reached: bool, grad_evals: float) -> None:
        """Note ``epoch`` if the goal is reached now and was not before."""
        if self.goal is not None and self.epoch is None and reached:
            self.epoch, self.seconds, self.grad_evals = epoch, seconds, grad_evals

    def metrics(self, names: FirstReachNames) -> dict[str, float]:
        """Its final metrics under ``names``; none without a goal, and only the first when
        never reached (no sentinel number)."""
        if self.goal is None:
            return {}
        reached, epochs, seconds, evals = names
        found = {reached: float(self.epoch is not None)}
        if self.epoch is not None:
            found[epochs] = float(self.epoch)
            found[seconds] = float(self.seconds or 0.0)
            found[evals] = float(self.grad_evals or 0.0)
        return found


class TargetClock(FirstReach):
    """When a run's training loss first reached ``goal`` (the target loss) or below."""

    def update(self, epoch: int, seconds: float, train_loss: float, grad_evals: float) -> None:
        """Note ``epoch`` if its training loss is the first at or below the target."""
        self.note(epoch, seconds, self.goal is not None and train_loss <= self.goal, grad_evals)


def all_within(out: torch.Tensor, y: torch.Tensor, within: float) -> bool:
    """Whether every sigmoid output of ``out`` lies within ``within`` of its 0/1 target
    (one-hot ``y``): the encoder's "every output within 0.4 of its target" (Riedmiller & Braun
    1993); with 0.5, every pattern is on the right side of 0.5 (Lang & Witbrock 1988)."""
    return bool(((torch.sigmoid(out) - targets_of(out, y)).abs() < within).all())


@dataclass
class BestValidation:
    """The lowest validation loss of the logged epochs, its epoch, and the test metrics (from
    :func:`evaluate`) of the model as it was then."""

    loss: float = math.inf
    epoch: int | None = None
    test: dict[str, float] | None = None

    def improved_by(self, val_loss: float) -> bool:
        """Whether ``val_loss`` is lower (a NaN never is)."""
        return val_loss < self.loss

    def metrics(self) -> dict[str, float]:
        """Its final metrics under the schema's names (none before a logged epoch)."""
        if self.epoch is None or self.test is None:
            return {}
        found = {
            schema.BEST_VAL_LOSS: self.loss,
            schema.BEST_VAL_EPOCH: float(self.epoch),
            schema.TEST_LOSS_AT_BEST_VAL: self.test["loss"],
        }
        if "accuracy" in self.test:
            found[schema.TEST_ACCURACY_AT_BEST_VAL] = self.test["accuracy"]
        else:
            found[schema.TEST_R2_AT_BEST_VAL] = self.test["r2"]
        return found


def final_metrics(
    train_loss: float,
    test: dict[str, float],
    epochs: int,
    seconds: float,
    target: TargetClock,
    evals: EvaluationCount,
    best: BestValidation,
    criterion: FirstReach,
    ladder: Sequence[TargetClock] = (),
) -> dict[str, float]:
    """The final metrics under the schema's names (``test`` from :func:`evaluate`)."""
    final = {
        schema.FINAL_TRAIN_LOSS: train_loss,
        schema.TEST_LOSS: test["loss"],
        schema.EPOCHS_RUN: float(epochs),
        schema.TRAIN_SECONDS: seconds,
        schema.GRAD_EVALS: evals.grad_evals,
        schema.LOSS_EVALS: evals.loss_evals,
        **best.metrics(),
        **target.metrics(TARGET_NAMES),
        **criterion.metrics(CRITERION_NAMES),
    }
    for k, rung in enumerate(ladder):
        final.update(rung.metrics(ladder_names(k)))
    if "accuracy" in test:
        final[schema.TEST_ACCURACY] = test["accuracy"]
    else:
        final[schema.TEST_R2] = test["r2"]
    return final
