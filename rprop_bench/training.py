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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from torch import nn

from rprop_bench.diagnostics import HistogramRow, StepSizeMonitor
from rprop_bench.metrics import (
    BestValidation,
    EvaluationCount,
    FirstReach,
    TargetClock,
    all_within,
    epoch_metrics,
    evaluate,
    final_metrics,
    global_norm,
    logit_margin,
    loss_function,
)
from rprop_bench.problems import CLASSIFICATION, ProblemData

__all__ = ["EpochCallback", "TrainResult", "TrainSettings", "Trainee", "run_epochs", "train"]

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
        loss: the loss's name (:data:`rprop_bench.metrics.LOSSES`); ``None``: the task's
            default (cross-entropy or mean squared error).
        targets: the problem's ladder of training-loss targets, each checked every epoch
            (when each was first reached: :func:`~rprop_bench.metrics.ladder_names`).
        success_within: the problem's success criterion, checked every epoch: every sigmoid
            output within this distance of its 0/1 target (:func:`~rprop_bench.metrics.
            all_within`); ``None``: the problem has none.
    """

    epochs: int = 200
    batch_size: int | None = None
    target_loss: float | None = None
    log_every: int = 1
    histogram_every: int = 1
    seed: int = 0
    loss: str | None = None
    targets: tuple[float, ...] = ()
    success_within: float | None = None


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


def is_log_epoch(epoch: int, settings: TrainSettings) -> bool:
    """Whether ``epoch`` (1-based) is reported: every ``log_every``-th, and the last."""
    return epoch % settings.log_every == 0 or epoch == settings.epochs


def is_histogram_epoch(epoch: int, settings: TrainSettings) -> bool:
    """Whether a reported ``epoch`` carries step-size histograms (``histogram_every``)."""
    every = settings.histogram_every
    return every > 0 and (epoch % every == 0 or epoch == settings.epochs)


class Trainee(Protocol):
    """What the epoch loop trains: one model (S = 1) or S stacked members.

    :func:`run_epochs` holds everything an epoch means (metrics, the divergence rule,
    time-to-target, diagnostics); a trainee only steps and evaluates, member by member.
    """

    #: The number S of members (1 for a single model).
    members: int
    #: The step-size diagnostics of the trainee's parameters.
    monitor: StepSizeMonitor
    #: The evaluations its optimizer asked for so far (the same for every member: a stacked
    #: closure call evaluates every member once).
    evals: EvaluationCount

    def step_epoch(self, record_grad_norms: bool) -> list[float]:
        """Train one epoch; per member, the loss of its last step (non-finite: diverged)."""
        ...

    def train_losses(self, members: Sequence[int]) -> list[float]:
        """Each member's full training loss, now (NaN for members not listed)."""
        ...

    def train_losses_for_next_step(self, members: Sequence[int]) -> list[float] | None:
        """:meth:`train_losses`, with the forward pass kept, graph and all, for the next
        epoch's first closure call, which would compute exactly it (the same weights, the same
        operations): the check then costs no forward pass of its own. ``None`` where the
        trainee cannot do that (mini-batches): the loop then calls :meth:`train_losses`.
        """
        ...

    def grad_norms(self) -> list[float]:
        """Per member, the gradient norm at the start of the last recorded epoch."""
        ...

    def weight_norms(self) -> list[float]:
        """Per member, the global L2 norm of its parameters, now."""
        ...

    def train_outputs(self, members: Sequence[int]) -> dict[int, torch.Tensor]:
        """Each listed member's outputs on the whole training set, now (no gradients)."""
        ...

    def metrics(
        self, x: torch.Tensor, y: torch.Tensor, members: Sequence[int]
    ) -> dict[int, dict[str, float]]:
        """:func:`output_metrics` of each listed member on ``(x, y)``."""
        ...


class _Member:
    """The bookkeeping of one run: its callback, clock to target and (once over) its result."""

    def __init__(self, callback: EpochCallback | None, settings: TrainSettings) -> None:
        self.callback = callback
        self.target = TargetClock(settings.target_loss)
        self.ladder = [TargetClock(target) for target in settings.targets]
        self.criterion = FirstReach(settings.success_within)
        self.best = BestValidation()
        self.result: TrainResult | None = None

    def diverge(self, epoch: int, seconds: float, reason: str) -> None:
        self.result = TrainResult("diverged", epoch, seconds, reason)


def run_epochs(
    trainee: Trainee,
    data: ProblemData,
    settings: TrainSettings,
    callbacks: Sequence[EpochCallback | None],
) -> list[TrainResult]:
    """The epoch loop of every training run, alone or stacked: one result per member.

    Per epoch and member: a non-finite step loss stops the member ("in epoch e"); on a
    logged epoch, and on every epoch when a target is set, the full training loss is
    evaluated, and a non-finite one stops it too ("after epoch e"); the first training loss
    at or below ``target_loss`` stops the target clock.

    The training loss is evaluated after the epoch, not read from the next epoch's step
    (the loss of its first closure call), so no step is taken from weights whose loss is
    already non-finite (L-BFGS's line search raises there). In full batch that forward pass
    is the next step's own (:meth:`Trainee.train_losses_for_next_step`), so its seconds
    count as training in the next epoch; evaluation, diagnostics and callbacks stay out of
    the clock.
    """
    members = [_Member(callback, settings) for callback in callbacks]
    every_epoch = settings.target_loss is not None or bool(settings.targets)
    monitor = trainee.monitor
    seconds = 0.0
    carried = 0.0  # seconds of a forward pass done early for the next epoch's step
    for epoch in range(1, settings.epochs + 1):
        log_now = is_log_epoch(epoch, settings)
        monitor.start_epoch()
        started = time.perf_counter()
        step_losses = trainee.step_epoch(record_grad_norms=log_now)
        seconds += time.perf_counter() - started + carried
        carried = 0.0

        for k in _active(members):
            if not math.isfinite(step_losses[k]):
                members[k].diverge(epoch, seconds, diverged_in(step_losses[k], epoch))
        losses = step_losses
        if (log_now or every_epoch) and _active(members):
            started = time.perf_counter()
            ahead = (
                trainee.train_losses_for_next_step(_active(members))
                if epoch < settings.epochs
                else None
            )
            if ahead is not None:
                losses, carried = ahead, time.perf_counter() - started
            else:
                losses = trainee.train_losses(_active(members))
            _check_train_losses(members, losses, epoch, seconds, trainee.evals.grad_evals)
        if settings.success_within is not None and _active(members):
            _check_criterion(trainee, data, members, settings.success_within, epoch, seconds)
        if not _active(members):
            break
        if log_now:
            _log_epoch(trainee, data, settings, members, epoch, losses, seconds)
        else:
            monitor.skip_epoch()
    return _finish(trainee, data, settings, members, seconds)


def _check_train_losses(
    members: Sequence[_Member],
    losses: Sequence[float],
    epoch: int,
    seconds: float,
    grad_evals: float,
) -> None:
    """A non-finite full training loss stops its member; a finite one may stop the target clock."""
    for k in _active(members):
        if not math.isfinite(losses[k]):
            members[k].diverge(epoch, seconds, diverged_after(losses[k], epoch))
        else:
            for clock in (members[k].target, *members[k].ladder):
                clock.update(epoch, seconds, losses[k], grad_evals)


def _check_criterion(
    trainee: Trainee,
    data: ProblemData,
    members: Sequence[_Member],
    within: float,
    epoch: int,
    seconds: float,
) -> None:
    """The first epoch at which each member's outputs meet the problem's criterion."""
    waiting = [k for k in _active(members) if members[k].criterion.epoch is None]
    if not waiting:
        return
    outputs = trainee.train_outputs(waiting)
    for k in waiting:
        met = all_within(outputs[k], data.y_train, within)
        members[k].criterion.note(epoch, seconds, met, trainee.evals.grad_evals)


def _log_epoch(
    trainee: Trainee,
    data: ProblemData,
    settings: TrainSettings,
    members: Sequence[_Member],
    epoch: int,
    losses: Sequence[float],
    seconds: float,
) -> None:
    """Report a logged epoch's metrics and step-size diagnostics to each member's callback,
    and keep each member's best validation loss, with its test metrics then."""
    active = _active(members)
    val = trainee.metrics(data.x_val, data.y_val, active)
    improved = [k for k in active if members[k].best.improved_by(val[k]["loss"])]
    if improved:
        test = trainee.metrics(data.x_test, data.y_test, improved)
        for k in improved:
            members[k].best = BestValidation(val[k]["loss"], epoch, test[k])
    logging = [k for k in active if members[k].callback is not None]
    if not logging:
        trainee.monitor.skip_epoch()
        return
    steps = trainee.monitor.end_epoch_members(
        epoch, with_histograms=is_histogram_epoch(epoch, settings)
    )
    grads, weights = trainee.grad_norms(), trainee.weight_norms()
    margins: dict[int, float] = {}
    if data.task == CLASSIFICATION:
        outputs = trainee.train_outputs(logging)
        margins = {k: logit_margin(outputs[k], data.y_train) for k in logging}
    for k in logging:
        step_metrics, rows = steps[k]
        metrics = epoch_metrics(losses[k], val[k], grads[k], seconds, step_metrics, trainee.evals,
                                weights[k], margins.get(k))  # fmt: skip
        members[k].callback(epoch, metrics, rows)  # type: ignore[misc]


def _finish(
    trainee: Trainee,
    data: ProblemData,
    settings: TrainSettings,
    members: Sequence[_Member],
    seconds: float,
) -> list[TrainResult]:
    """The final metrics of every member still training; one result per member."""
    finished = _active(members)
    if finished:
        final_train = trainee.train_losses(finished)
        test = trainee.metrics(data.x_test, data.y_test, finished)
        for k in finished:
            member = members[k]
            final = final_metrics(final_train[k], test[k], settings.epochs, seconds,
                                  member.target, trainee.evals, member.best,
                                  member.criterion, member.ladder)  # fmt: skip
            members[k].result = TrainResult(
                "finished", settings.epochs, seconds, final_metrics=final
            )
    return [m.result for m in members if m.result is not None]


def _active(members: Sequence[_Member]) -> list[int]:
    """The members still training (no result yet)."""
    return [k for k, m in enumerate(members) if m.result is None]


class _SingleModel:
    """One model as a :class:`Trainee`: full batch or shuffled mini-batches, any optimizer."""

    members = 1

    def __init__(
        self,
        model: nn.Module,
        data: ProblemData,
        optimizer: torch.optim.Optimizer,
        settings: TrainSettings,
    ) -> None:
        self.model = model
        self.data = data
        self.optimizer = optimizer
        self.batch_size = settings.batch_size
        self.loss_fn = loss_function(data.task, settings.loss)
        self.monitor = StepSizeMonitor(model.named_parameters(), optimizer)
        self._generator = torch.Generator().manual_seed(settings.seed)
        self._grad_norm = 0.0
        self._full_batch = settings.batch_size is None or settings.batch_size >= len(data.x_train)
        self._ahead: torch.Tensor | None = None  # the next step's first loss, computed early
        self.evals = EvaluationCount(len(data.x_train))

    def step_epoch(self, record_grad_norms: bool) -> list[float]:
        first = [record_grad_norms]  # the first closure call of the epoch records the norm
        step_loss = math.nan
        for index in _batches(len(self.data.x_train), self.batch_size, self._generator):
            xb, yb = self.data.x_train[index], self.data.y_train[index]

            def closure(xb: torch.Tensor = xb, yb: torch.Tensor = yb) -> torch.Tensor:
                self.evals.closure_call(len(xb))  # L-BFGS calls it several times a step
                self.optimizer.zero_grad()
                loss, self._ahead = self._ahead, None
                if loss is None:
                    loss = self.loss_fn(self.model(xb), yb)
                loss.backward()
                if first[0]:
                    first[0] = False
                    self._grad_norm = global_norm(p.grad for p in self.model.parameters())
                return loss

            step_loss = float(step_with_closure(self.optimizer, closure).detach())
            if not math.isfinite(step_loss):
                break
        return [step_loss]

    def grad_norms(self) -> list[float]:
        return [self._grad_norm]

    def weight_norms(self) -> list[float]:
        return [global_norm(self.model.parameters())]

    def train_losses(self, members: Sequence[int]) -> list[float]:
        if not members:
            return [math.nan]
        x, y = self.data.x_train, self.data.y_train
        return [evaluate(self.model, x, y, self.data.task, self.loss_fn)["loss"]]

    def train_losses_for_next_step(self, members: Sequence[int]) -> list[float] | None:
        if not members or not self._full_batch:
            return None
        x, y = self.data.x_train, self.data.y_train
        with torch.enable_grad():  # the closure's own forward pass, graph and all
            self._ahead = self.loss_fn(self.model(x[torch.arange(len(x))]), y)
        return [float(self._ahead.detach())]

    def metrics(
        self, x: torch.Tensor, y: torch.Tensor, members: Sequence[int]
    ) -> dict[int, dict[str, float]]:
        return {0: evaluate(self.model, x, y, self.data.task, self.loss_fn)} if members else {}

    @torch.no_grad()
    def train_outputs(self, members: Sequence[int]) -> dict[int, torch.Tensor]:
        return {0: self.model(self.data.x_train)} if members else {}


def step_with_closure(
    optimizer: torch.optim.Optimizer, closure: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """``optimizer.step(closure)``, the closure's loss as a tensor (what every optimizer returns).

    torch types a closure as returning a float; ours return the loss tensor, as torch's own
    optimizers expect (L-BFGS calls ``float()`` on it).
    """
    return torch.as_tensor(optimizer.step(closure))  # type: ignore[arg-type]


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
    model.train()
    (result,) = run_epochs(
        _SingleModel(model, data, optimizer, settings), data, settings, [callback]
    )
    return result


def diverged_in(loss: float, epoch: int) -> str:
    """The reason of a run whose closure (step) loss stopped being finite in ``epoch``."""
    return f"train loss became {loss} in epoch {epoch}"


def diverged_after(loss: float, epoch: int) -> str:
    """The reason of a run whose full training loss stopped being finite after ``epoch``."""
    return f"train loss became {loss} after epoch {epoch}"
