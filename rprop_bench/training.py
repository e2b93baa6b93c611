"""The training loop: built objects in, metrics out through a callback.

:func:`train` knows nothing of Hydra or MLflow. It takes a model, a problem's data, an
optimizer, :class:`TrainSettings` and a callback that receives each logged epoch's metrics
and step-size histograms. Every optimizer steps through a closure, so L-BFGS and iRprop+
(which re-evaluates or compares losses) work unchanged.

Timing: ``train_seconds`` and the per-epoch ``wall_time`` count only the training steps
(forward, backward, optimizer update); evaluation, diagnostics and the callback are excluded,
so optimizers compare on their own cost and logging cannot distort time-to-target.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from rprop_bench import schema
from rprop_bench.diagnostics import HistogramRow, StepSizeMonitor
from rprop_bench.problems import CLASSIFICATION, ProblemData

EpochCallback = Callable[[int, dict[str, float], Sequence[HistogramRow]], None]
"""``callback(epoch, metrics, histogram_rows)``, called once per logged epoch (1-based)."""


@dataclass(frozen=True)
class TrainSettings:
    """How to train, independent of the optimizer and the problem.

    Attributes:
        epochs: passes over the training set.
        batch_size: ``None`` for full batch (one optimizer step per epoch, the Rprop way), else
            the mini-batch size (one step per batch; batches reshuffled every epoch).
        target_loss: a training loss to reach; the epochs and seconds it took are reported.
        log_every: report metrics every this many epochs (and always at the last epoch).
        histogram_every: report step-size histograms every this many logged epochs' worth of
            epochs (a multiple of ``log_every`` makes sense; 0 turns histograms off).
        seed: seeds the mini-batch shuffling (the model's initialisation is seeded by whoever
            builds it).
    """

    epochs: int = 200
    batch_size: int | None = None
    target_loss: float | None = None
    log_every: int = 1
    histogram_every: int = 1
    seed: int = 0


@dataclass
class TrainResult:
    """What a training run ended with.

    ``status`` is ``"finished"`` or ``"diverged"`` (the loss became NaN or infinite; ``reason``
    says when). ``final_metrics`` uses the schema's final-metric names.
    """

    status: Literal["finished", "diverged"]
    epochs_run: int
    train_seconds: float
    reason: str | None = None
    final_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        """Whether training stopped because the loss stopped being finite."""
        return self.status == "diverged"


def loss_function(task: str) -> nn.Module:
    """Cross-entropy for classification, mean squared error for regression."""
    return nn.CrossEntropyLoss() if task == CLASSIFICATION else nn.MSELoss()


def output_metrics(
    out: torch.Tensor, y: torch.Tensor, task: str, loss_fn: nn.Module
) -> dict[str, float]:
    """Loss and accuracy (classification) or R² (regression) of the outputs ``out`` for ``y``.

    Keys are ``loss`` and ``accuracy`` or ``r2``. Split from :func:`evaluate` so that a
    stacked model (:mod:`rprop_bench.seed_batch`) scores each member's outputs the same way.
    """
    result = {"loss": float(loss_fn(out, y))}
    if task == CLASSIFICATION:
        result["accuracy"] = float((out.argmax(dim=1) == y).float().mean())
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


def is_log_epoch(epoch: int, settings: TrainSettings) -> bool:
    """Whether ``epoch`` (1-based) is reported: every ``log_every``-th, and the last."""
    return epoch % settings.log_every == 0 or epoch == settings.epochs


def is_histogram_epoch(epoch: int, settings: TrainSettings) -> bool:
    """Whether a reported ``epoch`` carries step-size histograms (``histogram_every``)."""
    every = settings.histogram_every
    return every > 0 and (epoch % every == 0 or epoch == settings.epochs)


def epoch_metrics(
    train_loss: float,
    val: dict[str, float],
    first_grad_norm: float,
    seconds: float,
    step_metrics: dict[str, float],
) -> dict[str, float]:
    """One logged epoch's metrics under the schema's names (``val`` from :func:`evaluate`)."""
    metrics = {
        schema.TRAIN_LOSS: train_loss,
        schema.VAL_LOSS: val["loss"],
        schema.GRAD_NORM: first_grad_norm,
        schema.WALL_TIME: seconds,
        **step_metrics,
    }
    if "accuracy" in val:
        metrics[schema.VAL_ACCURACY] = val["accuracy"]
    else:
        metrics[schema.VAL_R2] = val["r2"]
    return metrics


@dataclass
class TargetClock:
    """When a run first reached ``target_loss``: the epoch and the training seconds by then."""

    target_loss: float | None
    epoch: int | None = None
    seconds: float | None = None

    def update(self, epoch: int, seconds: float, train_loss: float) -> None:
        """Note ``epoch`` if its training loss is the first at or below the target."""
        if self.target_loss is not None and self.epoch is None and train_loss <= self.target_loss:
            self.epoch, self.seconds = epoch, seconds


def final_metrics(
    train_loss: float,
    test: dict[str, float],
    epochs: int,
    seconds: float,
    target: TargetClock,
) -> dict[str, float]:
    """The final metrics under the schema's names (``test`` from :func:`evaluate`)."""
    final = {
        schema.FINAL_TRAIN_LOSS: train_loss,
        schema.TEST_LOSS: test["loss"],
        schema.EPOCHS_RUN: float(epochs),
        schema.TRAIN_SECONDS: seconds,
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
    return final


def _closure(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    xb: torch.Tensor,
    yb: torch.Tensor,
    grad_norms: list[float],
) -> Callable[[], torch.Tensor]:
    """The closure for one batch; the first call of an epoch records the gradient norm."""

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        if not grad_norms:
            grad_norms.append(grad_norm(p.grad for p in model.parameters()))
        return loss

    return closure


def _batches(n: int, batch_size: int | None, generator: torch.Generator) -> list[torch.Tensor]:
    if batch_size is None or batch_size >= n:
        return [torch.arange(n)]
    return list(torch.randperm(n, generator=generator).split(batch_size))


def train(
    model: nn.Module,
    data: ProblemData,
    optimizer: torch.optim.Optimizer,
    settings: TrainSettings,
    callback: EpochCallback | None = None,
) -> TrainResult:
    """Train ``model`` on ``data.x_train`` with ``optimizer`` and report through ``callback``.

    Each logged epoch reports (schema names): train loss (full training set, after the
    epoch's updates), validation loss and accuracy or R², the gradient norm at the start of the
    epoch, the cumulative training seconds, and the step-size diagnostics.

    Returns:
        A :class:`TrainResult`. A NaN or infinite loss stops training at once and returns a
        ``"diverged"`` result with the reason; it does not raise.
    """
    loss_fn = loss_function(data.task)
    monitor = StepSizeMonitor(model.named_parameters(), optimizer)
    generator = torch.Generator().manual_seed(settings.seed)
    n_train = len(data.x_train)
    seconds = 0.0
    target = TargetClock(settings.target_loss)
    model.train()

    for epoch in range(1, settings.epochs + 1):
        log_now = is_log_epoch(epoch, settings)
        monitor.start_epoch()
        first_grad_norm: list[float] = []
        step_loss = 0.0
        started = time.perf_counter()
        for index in _batches(n_train, settings.batch_size, generator):
            xb, yb = data.x_train[index], data.y_train[index]

            closure = _closure(model, loss_fn, optimizer, xb, yb, first_grad_norm)
            step_loss = float(torch.as_tensor(optimizer.step(closure)).detach())
            if not math.isfinite(step_loss):
                break
        seconds += time.perf_counter() - started

        if not math.isfinite(step_loss):
            return TrainResult("diverged", epoch, seconds, diverged_in(step_loss, epoch))
        need_train_loss = log_now or settings.target_loss is not None
        train_loss = (
            evaluate(model, data.x_train, data.y_train, data.task, loss_fn)["loss"]
            if need_train_loss
            else step_loss
        )
        if not math.isfinite(train_loss):
            return TrainResult("diverged", epoch, seconds, diverged_after(train_loss, epoch))
        target.update(epoch, seconds, train_loss)

        if log_now and callback is not None:
            step_metrics, rows = monitor.end_epoch(
                epoch, with_histograms=is_histogram_epoch(epoch, settings)
            )
            val = evaluate(model, data.x_val, data.y_val, data.task, loss_fn)
            grad = first_grad_norm[0] if first_grad_norm else 0.0
            callback(epoch, epoch_metrics(train_loss, val, grad, seconds, step_metrics), rows)
        else:
            monitor.skip_epoch()

    final = final_metrics(
        evaluate(model, data.x_train, data.y_train, data.task, loss_fn)["loss"],
        evaluate(model, data.x_test, data.y_test, data.task, loss_fn),
        settings.epochs,
        seconds,
        target,
    )
    return TrainResult("finished", settings.epochs, seconds, final_metrics=final)


def diverged_in(loss: float, epoch: int) -> str:
    """The reason of a run whose closure (step) loss stopped being finite in ``epoch``."""
    return f"train loss became {loss} in epoch {epoch}"


def diverged_after(loss: float, epoch: int) -> str:
    """The reason of a run whose full training loss stopped being finite after ``epoch``."""
    return f"train loss became {loss} after epoch {epoch}"
