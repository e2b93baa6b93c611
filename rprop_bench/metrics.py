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


#: The losses a problem may name (:data:`rprop_bench.schema.LOSS_NAMES`), and the tasks each
#: fits.
LOSSES: dict[str, tuple[str, ...]] = {
    "cross_entropy": (CLASSIFICATION,),
    "mse_sigmoid": (CLASSIFICATION,),
    "mse": (REGRESSION,),
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
    if task not in LOSSES[name]:
        fits = ", ".join(n for n, tasks in LOSSES.items() if task in tasks)
        raise ValueError(f"problem.loss={name!r} does not fit a {task} problem; valid: {fits}")
    return {"cross_entropy": nn.CrossEntropyLoss, "mse_sigmoid": SigmoidMSE, "mse": nn.MSELoss}[
        name
    ]()


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


def grad_norm(grads: Iterable[torch.Tensor | None]) -> float:
    """The global L2 norm of ``grads`` (``None`` entries skipped; 0 if there are none)."""
    norms = [g.detach().norm() for g in grads if g is not None]
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
) -> dict[str, float]:
    """One logged epoch's metrics under the schema's names (``val`` from :func:`evaluate`)."""
    metrics = {
        schema.TRAIN_LOSS: train_loss,
        schema.VAL_LOSS: val["loss"],
        schema.GRAD_NORM: first_grad_norm,
        schema.WALL_TIME: seconds,
        schema.GRAD_EVALS: evals.grad_evals,
        schema.LOSS_EVALS: evals.loss_evals,
        **step_metrics,
    }
    if "accuracy" in val:
        metrics[schema.VAL_ACCURACY] = val["accuracy"]
    else:
        metrics[schema.VAL_R2] = val["r2"]
    return metrics


@dataclass
class TargetClock:
    """When a run first reached ``target_loss``: the epoch, and the training seconds and
    gradient evaluations by then."""

    target_loss: float | None
    epoch: int | None = None
    seconds: float | None = None
    grad_evals: float | None = None

    def update(self, epoch: int, seconds: float, train_loss: float, grad_evals: float) -> None:
        """Note ``epoch`` if its training loss is the first at or below the target."""
        if self.target_loss is not None and self.epoch is None and train_loss <= self.target_loss:
            self.epoch, self.seconds, self.grad_evals = epoch, seconds, grad_evals


def all_within(out: torch.Tensor, y: torch.Tensor, within: float) -> bool:
    """Whether every sigmoid output of ``out`` lies within ``within`` of its 0/1 target
    (one-hot ``y``): the encoder's "every output within 0.4 of its target" (Riedmiller & Braun
    1993); with 0.5, every pattern is on the right side of 0.5 (Lang & Witbrock 1988)."""
    return bool(((torch.sigmoid(out) - targets_of(out, y)).abs() < within).all())


@dataclass
class CriterionClock:
    """When a run first met its problem's success criterion (see :func:`all_within`)."""

    within: float | None
    epoch: int | None = None
    seconds: float | None = None
    grad_evals: float | None = None

    def update(self, epoch: int, seconds: float, met: bool, grad_evals: float) -> None:
        """Note ``epoch`` if the criterion is met for the first time."""
        if self.within is not None and self.epoch is None and met:
            self.epoch, self.seconds, self.grad_evals = epoch, seconds, grad_evals

    def metrics(self) -> dict[str, float]:
        """Its final metrics under the schema's names (none without a criterion)."""
        if self.within is None:
            return {}
        found = {schema.CRITERION_MET: float(self.epoch is not None)}
        if self.epoch is not None:
            found[schema.EPOCHS_TO_CRITERION] = float(self.epoch)
            found[schema.SECONDS_TO_CRITERION] = float(self.seconds or 0.0)
            found[schema.GRAD_EVALS_TO_CRITERION] = float(self.grad_evals or 0.0)
        return found


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


def ladder_metrics(clocks: Sequence[TargetClock]) -> dict[str, float]:
    """The final metrics of a target ladder, one :class:`TargetClock` per rung (schema names)."""
    found: dict[str, float] = {}
    for k, clock in enumerate(clocks):
        found[schema.ladder_metric(schema.LADDER_REACHED, k)] = float(clock.epoch is not None)
        if clock.epoch is not None:
            found[schema.ladder_metric(schema.LADDER_EPOCHS, k)] = float(clock.epoch)
            found[schema.ladder_metric(schema.LADDER_SECONDS, k)] = float(clock.seconds or 0.0)
            found[schema.ladder_metric(schema.LADDER_GRAD_EVALS, k)] = float(clock.grad_evals or 0)
    return found


def final_metrics(
    train_loss: float,
    test: dict[str, float],
    epochs: int,
    seconds: float,
    target: TargetClock,
    evals: EvaluationCount,
    best: BestValidation,
    criterion: CriterionClock,
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
        **criterion.metrics(),
    }
    if "accuracy" in test:
        final[schema.TEST_ACCURACY] = test["accuracy"]
    else:
        final[schema.TEST_R2] = test["r2"]
    if target.target_loss is not None:
        final[schema.REACHED_TARGET] = float(target.epoch is not None)
        if target.epoch is not None and target.seconds is not None:
            final[schema.EPOCHS_TO_TARGET] = float(target.epoch)
            final[schema.SECONDS_TO_TARGET] = target.seconds
            final[schema.GRAD_EVALS_TO_TARGET] = float(target.grad_evals or 0.0)
    return final
