"""The names shared by the code that writes runs to MLflow and the code that reads them back.

This module is the contract between ``tracking`` (the one writer) and ``results`` (the one
reader for reports): every metric, tag and artifact path is defined here once. It imports
nothing, so every layer may use it.

Metrics logged once per logged epoch use the epoch number as MLflow's ``step``.
Metrics logged once at the end of a run use step 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

# --- per-epoch metrics (step = epoch, 1-based; epoch 0 is the initial point where logged) ---
TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"
VAL_ACCURACY = "val_accuracy"  # classification problems
VAL_R2 = "val_r2"  # regression problems
GRAD_NORM = "grad_norm"  # global L2 norm of the gradient at the start of the epoch
# Divergence diagnostics of sign methods on separable data, whose weights can grow without
# bound while the loss underflows: the global L2 norm of the parameters at the end of the
# epoch, and (classification) the mean logit margin over the training set, the true class's
# output minus the largest other one (one output unit: (2y − 1)·z).
WEIGHT_NORM = "weight_norm"
LOGIT_MARGIN = "logit_margin"
WALL_TIME = "wall_time"  # seconds since training started, at the end of the epoch
# The cost so far, cumulative, in passes over the training set (a mini-batch counts its
# fraction): every call of the optimizer's closure is one gradient evaluation and one loss
# evaluation (L-BFGS's line search included; iRprop+'s loss comes with its gradient). The
# harness's own evaluations (logged losses, validation) are measurements, not counted.
GRAD_EVALS = "grad_evals"
LOSS_EVALS = "loss_evals"

# Step-size diagnostics, logged for every optimizer so that all compare. "Step" is the step
# each weight took: Δ itself for the Rprop family, |Δθ| over the epoch for the others.
STEP_MIN = "step_min"
STEP_P05 = "step_p05"
STEP_P25 = "step_p25"
STEP_MEDIAN = "step_median"
STEP_P75 = "step_p75"
STEP_P95 = "step_p95"
STEP_MAX = "step_max"
STEP_QUANTILES: dict[str, float] = {
    STEP_MIN: 0.0,
    STEP_P05: 0.05,
    STEP_P25: 0.25,
    STEP_MEDIAN: 0.5,
    STEP_P75: 0.75,
    STEP_P95: 0.95,
    STEP_MAX: 1.0,
}
#: The per-epoch metrics the report draws as curves; with ``tracking.grid_curves=report`` a
#: grid member logs only these per epoch (its other metrics: their last values).
REPORT_CURVES: tuple[str, ...] = (TRAIN_LOSS, GRAD_EVALS, VAL_LOSS, WALL_TIME, *STEP_QUANTILES)
#: ``tracking.grid_curves``: a grid member's per-epoch histories, those of REPORT_CURVES or all.
GRID_CURVES = ("report", "all")
SIGN_FLIP_FRACTION = "sign_flip_fraction"  # fraction of weights whose gradient sign flipped
AT_MIN_FRACTION = "at_step_min_fraction"  # Rprop family: fraction of weights with Δ at Δmin
AT_MAX_FRACTION = "at_step_max_fraction"  # Rprop family: fraction of weights with Δ at Δmax

#: The losses a problem may name (``problem.loss``; null: the task's default, cross-entropy
#: or mse). ``mse_sigmoid``: the squared error of sigmoid outputs against one-hot targets, the
#: error of the Rprop papers' classification networks; ``sse_sigmoid``: the same error as
#: Riedmiller & Braun (1993) wrote it, ½ Σ over patterns and outputs (backprop's ε literal).
LOSS_NAMES = ("cross_entropy", "mse_sigmoid", "sse_sigmoid", "mse")
#: The model kinds (``model.kind``; :func:`rprop_bench.models.build_model`) and the hidden
#: layers' activations (``model.activation``).
MODEL_KINDS = ("linear", "mlp", "shortcut", "residual_mlp", "cnn1d")
ACTIVATIONS = ("tanh", "sigmoid", "relu")
#: The floating-point precisions a run may train in (``train.dtype``).
DTYPES = ("float32", "float64")
#: ``train.vectorize``: stack the seeds of a sweep, or its seeds and elementwise hyperparameters.
VECTORIZE_MODES = ("seeds", "grid")

# --- final metrics (step 0) ---
TEST_LOSS = "test_loss"
TEST_ACCURACY = "test_accuracy"
TEST_R2 = "test_r2"
FINAL_TRAIN_LOSS = "final_train_loss"
EPOCHS_RUN = "epochs_run"
TRAIN_SECONDS = "train_seconds"
REACHED_TARGET = "reached_target"  # 1.0 or 0.0
EPOCHS_TO_TARGET = "epochs_to_target"  # only logged when the target was reached
SECONDS_TO_TARGET = "seconds_to_target"  # only logged when the target was reached
GRAD_EVALS_TO_TARGET = "grad_evals_to_target"  # only logged when the target was reached
# A problem's ladder of loss targets (``problem.targets``, hardest last), each checked every
# epoch: ``{name}_{k}`` for target k (0-based). Never reached: reached_target_k = 0 and no
# other metric of k (no sentinel number).
LADDER_REACHED = "reached_target"
LADDER_EPOCHS = "epochs_to_target"
LADDER_SECONDS = "seconds_to_target"
LADDER_GRAD_EVALS = "grad_evals_to_target"


def ladder_metric(name: str, k: int) -> str:
    """The metric of rung ``k`` of the target ladder: ``grad_evals_to_target_3``."""
    return f"{name}_{k}"


# The success criterion of a problem that has one (``problem.success_within``: every sigmoid
# output within that distance of its 0/1 target, on every training pattern; checked every
# epoch): whether and when it was first met.
CRITERION_MET = "criterion_met"  # 1.0 or 0.0
EPOCHS_TO_CRITERION = "epochs_to_criterion"  # only logged when met
SECONDS_TO_CRITERION = "seconds_to_criterion"  # only logged when met
GRAD_EVALS_TO_CRITERION = "grad_evals_to_criterion"  # only logged when met
# The generalisation track: the lowest validation loss of the logged epochs, that epoch, and
# the test metrics the model had then (early stopping judged without retraining).
BEST_VAL_LOSS = "best_val_loss"
BEST_VAL_EPOCH = "best_val_epoch"
TEST_LOSS_AT_BEST_VAL = "test_loss_at_best_val"
TEST_ACCURACY_AT_BEST_VAL = "test_accuracy_at_best_val"  # classification problems
TEST_R2_AT_BEST_VAL = "test_r2_at_best_val"  # regression problems
LINE_WEIGHT = "learned_w"  # problem `line` only
LINE_BIAS = "learned_b"  # problem `line` only
LOGGING_SECONDS = "logging_seconds"  # seconds the run spent writing to MLflow (harness)

# --- tags ---
TAG_PREFIX = "rprop_bench."
TAG_OPTIMIZER = "rprop_bench.optimizer"  # config name, e.g. "irprop_plus", "adam"
TAG_VARIANT = "rprop_bench.variant"  # "irprop+" etc. for the Rprop family, else the optimizer
TAG_PROBLEM = "rprop_bench.problem"
TAG_TASK = "rprop_bench.task"  # "classification" or "regression"
TAG_MODEL = "rprop_bench.model"
TAG_SEED = "rprop_bench.seed"
TAG_GIT_COMMIT = "rprop_bench.git_commit"
# The machine a run was trained on: the same float32 run on another machine (another CPU's
# kernels, another torch build) can differ in its last digits.
TAG_TORCH_VERSION = "rprop_bench.torch_version"
TAG_CPU = "rprop_bench.cpu"  # the CPU's model name, or its architecture where none is known
TAG_PLATFORM = "rprop_bench.platform"  # platform.platform(): OS, kernel, libc
TAG_COMMAND = "rprop_bench.command"
TAG_OUTPUT_DIR = "rprop_bench.hydra_output_dir"
TAG_RUN_KIND = "rprop_bench.run_kind"  # RUN_KIND_SWEEP or RUN_KIND_TRAINING
TAG_SWEEP_ID = "rprop_bench.sweep_id"  # shared by a sweep's parent and all its children
TAG_FAILURE_REASON = "rprop_bench.failure_reason"  # set on FAILED/KILLED runs
#: Set on a run that FAILED because its loss diverged (NaN or ∞): a deterministic failure,
#: which a re-run of its sweep does not train again (``sweep.retry_failed``).
TAG_FAILURE_KIND = "rprop_bench.failure_kind"
FAILURE_DIVERGED = "diverged"
FAILURE_STORE = "store"  # the store failed or went away: recorded in LOCAL_FAILURE_FILE
#: What a run leaves in its Hydra output directory when the store failed or went away.
LOCAL_FAILURE_FILE = "run_failed_locally.json"
#: How the reason of a diverged run begins (rprop_bench.training): it marks the runs made
#: before the failure-kind tag existed.
DIVERGED_REASON_PREFIX = "train loss became "
TAG_RUN_KEY = "rprop_bench.run_key"  # hash of the resolved config (resume support)
# Liveness of a RUNNING run (resume support): the process that writes it, and when it last
# wrote. A RUNNING run whose process is gone is dead: a resumed sweep marks it KILLED, redoes it.
TAG_HOST = "rprop_bench.host"  # socket.gethostname() of the writing process
TAG_PID = "rprop_bench.pid"  # its process id
# Its start time, seconds since boot ("1234.560"; before, Linux clock ticks "123456"), or "".
TAG_PROCESS_START = "rprop_bench.process_start"
TAG_HEARTBEAT = "rprop_bench.heartbeat"  # Unix time of its last write, updated at each flush
# Set on a run trained with train.vectorize_seeds=true: how many seeds trained as one stacked
# model with it. Its seconds (wall_time, train_seconds, seconds_to_target) are the stack's.
TAG_VECTORIZED = "rprop_bench.vectorized"
#: A random id per create_run call: a retry after a lost reply finds the run it already made.
TAG_CREATE_ATTEMPT = "rprop_bench.create_attempt"
TAG_PARENT_RUN_ID = "mlflow.parentRunId"  # MLflow's own tag for nested runs
TAG_NOTE = "mlflow.note.content"  # MLflow's own tag: the run's description in the UI
# MLflow's own tags for the UI's Source column: the code's commit, its name and its kind.
TAG_SOURCE_COMMIT = "mlflow.source.git.commit"
TAG_SOURCE_NAME = "mlflow.source.name"
TAG_SOURCE_TYPE = "mlflow.source.type"
SOURCE_NAME = "rprop_bench"
SOURCE_TYPE = "LOCAL"  # one of MLflow's SourceType names (a script run on this machine)
#: The experiment tag that MLflow 3's UI read to choose its view before its GenAI / Model
#: training toggle (3.17 reads the toggle or the URL's ``workflowType`` instead:
#: rprop_bench.cli.ui); this value asks for the model-training view (runs, metrics, charts).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
#: The dataset inputs of a training run (``mlflow.log_input``): each split of its problem
#: as ``<problem>/<split>``, with MLflow's context tag naming the split's use.
DATASET_CONTEXT_TAG = "mlflow.data.context"
DATASET_SPLITS = {"train": "train", "val": "validation", "test": "test"}
#: The other sweeps a run serves (space-separated sweep ids): a sweep that finds one of its
#: grid points already FINISHED reuses that run and adds its id here, so its report covers
#: its whole grid.
TAG_SWEEPS = "rprop_bench.sweeps"
# A tuning study (``python -m rprop_bench tune``): set on its runs.
TAG_TUNE_STUDY = "rprop_bench.tune.study"  # the study's id
TAG_TUNE_ROLE = "rprop_bench.tune.role"  # TUNE_ROLES: a trial, a tuned rerun, a default rerun
TAG_TUNE_TRIAL = "rprop_bench.tune.trial"  # a trial run's number within its cell
TUNE_ROLES = ("trial", "tuned", "default")
#: What a tuning study may minimise (``tune.objective``; rprop_bench.tuning.selection) and
#: how it may search (``tune.sampler``; rprop_bench.tuning.sampling).
TUNE_OBJECTIVES = ("train_evals_to_target", "best_val_loss")
TUNE_SAMPLERS = ("sobol", "tpe")
#: The protocol's floors: selection on >= 3 tuning seeds, scoring on >= 10 fresh ones.
MIN_TUNING_SEEDS = 3
MIN_RERUN_SEEDS = 10

RUN_KIND_SWEEP = "sweep"
RUN_KIND_TRAINING = "training"
RUN_KIND_TUNE = "tune"  # the parent run of a tuning study (its phases are sweeps under it)

TASK_CLASSIFICATION = "classification"
TASK_REGRESSION = "regression"

# --- artifacts ---
ARTIFACT_CONFIG = "config.yaml"
# Tidy CSV, one row per (epoch, layer, bin): columns HISTOGRAM_COLUMNS.
ARTIFACT_STEP_HISTOGRAMS = "step_sizes/histograms.csv"
HISTOGRAM_COLUMNS = ("epoch", "layer", "bin_left", "bin_right", "count")
HISTOGRAM_ALL_LAYERS = "all"  # the layer name of the histogram over every weight
ARTIFACT_STEP_HEATMAP = "step_sizes/heatmap.png"
# Problem `line` only: the training data (columns x, y) for the seed-example figure.
ARTIFACT_LINE_DATA = "problem/line_data.csv"
# Written by the report command under the sweep's parent run.
ARTIFACT_REPORT_DIR = "report"
# Written by the tune command under the study's parent run (CSV, see rprop_bench.cli.tune).
ARTIFACT_TUNE_TRIALS = "tuning/trials.csv"  # every trial: cell, hyperparameters, scores
ARTIFACT_TUNE_SELECTION = "tuning/selection.csv"  # the winner per cell and objective
ARTIFACT_TUNE_GAIN = "tuning/gain.csv"  # tuned against default, on the fresh seeds
ARTIFACT_TUNE_BUDGET = "tuning/budget.csv"  # trials and gradient evaluations per optimizer

# --- domain facts: defined here once, read by every layer ---
#: The four classic variants of the Rprop family, by the papers' names (Riedmiller & Braun
#: 1993: Rprop+, with weight-backtracking; Igel & Hüsken 2000: Rprop-, iRprop+, iRprop-).
RPROP_VARIANTS: tuple[str, ...] = ("rprop+", "rprop-", "irprop+", "irprop-")
#: The Hydra ``_target_`` of our Rprop, and of torch's (which is iRprop-).
RPROP_TARGET = "rprop_bench.optim.Rprop"
TORCH_RPROP_TARGET = "torch.optim.Rprop"
TORCH_RPROP_VARIANT = "irprop-"  # torch.optim.Rprop: no backtracking, a flip zeroes the gradient
#: The label a report gives torch's Rprop (its optimizer config's name), beside our variants.
TORCH_RPROP_LABEL = "torch_rprop"
#: The harness's own key in an optimizer's config (not passed to its class, not in the run
#: key): ``true`` where each weight's update reads only that weight's gradient, state and
#: value (so seeds can train stacked, ``train.vectorize_seeds``), ``false`` where it couples
#: weights (L-BFGS). Absent: decided by the class (``rprop_bench.seed_batch``).
OPTIMIZER_ELEMENTWISE_KEY = "elementwise"
#: The harness's other key in an optimizer's config: the search space that ``tune`` samples
#: (``rprop_bench.tuning.space``); never passed to the class, nor part of a run's key.
OPTIMIZER_SEARCH_KEY = "search"
OPTIMIZER_HARNESS_KEYS = (OPTIMIZER_ELEMENTWISE_KEY, OPTIMIZER_SEARCH_KEY)
#: The default tracking store: an embedded SQLite file in the working directory.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def failed_by_divergence(tags: Mapping[str, str]) -> bool:
    """Whether a failed run's tags say its loss diverged: its failure kind, or, for runs from
    before that tag, the reason the training loop gives."""
    if TAG_FAILURE_KIND in tags:
        return tags[TAG_FAILURE_KIND] == FAILURE_DIVERGED
    return tags.get(TAG_FAILURE_REASON, "").startswith(DIVERGED_REASON_PREFIX)


def variant_of(target: str, variant: str | None, optimizer: str) -> str:
    """The variant a run trains: our Rprop's ``variant``, iRprop- for torch's Rprop, else the
    optimizer's config name (so a baseline's "variant" is itself)."""
    if target == RPROP_TARGET and variant:
        return variant
    if target == TORCH_RPROP_TARGET:
        return TORCH_RPROP_VARIANT
    return optimizer


def is_rprop_family(label: str) -> bool:
    """Whether a method label is of the Rprop family: one of :data:`RPROP_VARIANTS` or torch's
    Rprop. A label with a suffix ("irprop- batch_size=8") counts by its first word."""
    return label.split(" ", 1)[0] in (*RPROP_VARIANTS, TORCH_RPROP_LABEL)


#: Every optimizer's colour, the same in every figure: the hues of Paul Tol's colour-blind-safe
#: "muted" scheme and Okabe–Ito's blue and vermillion, the pale ones darkened so that every
#: colour has a contrast of at least 3:1 against the white page (WCAG 2.1's minimum for
#: graphics; tests/test_plotting.py checks it). An optimizer not listed gets one of
#: :data:`FALLBACK_COLORS` by a stable hash of its name.
FALLBACK_COLORS: tuple[str, ...] = (
    "#332288",  # indigo
    "#0072B2",  # blue
    "#2D8C7E",  # teal
    "#117733",  # green
    "#7A7A1F",  # olive
    "#8E6C00",  # ochre
    "#CC6677",  # rose
    "#882255",  # wine
    "#AA4499",  # purple
)
OPTIMIZER_COLORS: dict[str, str] = {
    "irprop+": "#332288",
    "irprop-": "#0072B2",
    "rprop+": "#117733",
    "rprop-": "#2D8C7E",
    TORCH_RPROP_LABEL: "#7A7A1F",
    "sgd": "#8E6C00",
    "momentum": "#CC6677",
    "adam": "#882255",
    "adamw": "#AA4499",
    "rmsprop": "#D55E00",
    "lbfgs": "#000000",
}
