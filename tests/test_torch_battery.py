"""PyTorch's generic optimizer battery, run against our Rprop (issue 20, part 1).

PyTorch tests every optimizer through the same battery: an ``OptimizerInfo`` entry per
optimizer in ``torch/testing/_internal/common_optimizers.py`` (constructor inputs, error
inputs, supported implementations, skips) and generic checks that run over every entry. This
module registers :class:`rprop_bench.optim.Rprop` as torch registers ``torch.optim.Rprop``,
once per variant, and runs the checks of that battery that apply on CPU, written here as
plain pytest tests.

How it is built:

* :data:`OPTIM_INFOS` holds one ``OptimizerInfo`` per variant. Its inputs are torch's own
  ``optim_inputs_func_rprop`` / ``optim_error_inputs_func_rprop`` with ``variant=`` added
  (:func:`with_variant`), plus a few error inputs of our own (:func:`our_error_inputs`). It
  lists ``fused`` among the supported implementations (on CPU), beside torch's ``foreach``
  and ``differentiable``.
* The implementation axis comes from torch's helper
  ``_get_optim_inputs_including_global_cliquey_kwargs``, which adds ``foreach=``/``fused=``/
  ``differentiable=`` to every input; :func:`optim_inputs` picks one implementation's share.
  Most tests are parametrised over ``variant x impl`` and loop over the optim inputs (torch's
  "default", "non-default lr", "non-default etas", "non-default step_sizes", "maximize");
  a failure names the input.
* The expected behaviour is torch's. Where the variant is ``irprop-`` (torch.optim.Rprop's
  algorithm) the tests also run ``torch.optim.Rprop`` on the same inputs and require the same
  bits (:func:`torch_twin`).
* Plain pytest functions rather than torch's ``@optims`` + ``instantiate_device_type_tests``
  classes. pytest does collect those (``TestXCPU::test_x_Rprop_cpu_float32``), but they
  are generated per device from torch's ``TestCase``, name every entry "Rprop" whatever its
  variant, and bring torch's test runner conventions; plain functions take ids by variant
  and implementation and use the project's fixtures (one torch thread) and markers.
* ``differentiable=True`` runs only where torch's battery runs it (the no-op steps,
  printing) and in the gradcheck of one step; torch skips it elsewhere (pytorch issue
  116490). The ``torch.compile`` checks are marked ``slow``.

iRprop+ needs a closure at every step (its step compares E(t) with E(t-1)). So that it is
covered, the checks below step with a closure wherever the check does not depend on how the
step is called; the checks whose point is stepping without one are excluded for it, listed in
:data:`CLOSURELESS_EXCLUSIONS` with the reason, and ``test_errors`` checks that it refuses.

torch's test helpers import ``expecttest``, which torch does not install: the ``test`` extra
in pyproject.toml lists it. Importing ``torch.testing._internal.common_utils`` freezes
``torch.backends`` flags for the whole process (``torch.backends.disable_global_flags()``);
this module undoes that after the import, so the rest of the suite sees torch as it is
outside torch's own test runner.
"""

from __future__ import annotations

import copy
import functools
import io
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn import Parameter
from torch.optim.optimizer import (
    _get_scalar_dtype,
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)
from torch.testing._internal.common_optimizers import (
    ErrorOptimizerInput,
    OptimizerErrorEnum,
    OptimizerInfo,
    OptimizerInput,
    _get_optim_inputs_including_global_cliquey_kwargs,
    optim_error_inputs_func_rprop,
    optim_inputs_func_rprop,
)

from rprop_bench.optim import VARIANTS, Rprop

# See the module docstring: common_utils froze torch.backends' flags when it was imported.
vars(torch.backends)["__allow_nonbracketed_mutation_flag"] = True

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Variants with weight backtracking (they keep Δw in ``weight_change``).
BACKTRACKING = frozenset({"rprop+", "irprop+"})
#: Variants whose step needs the closure's loss (they keep E(t-1) in ``prev_loss``).
NEEDS_CLOSURE = frozenset({"irprop+"})

#: The implementations, as the keyword arguments that select them.
IMPL_KWARGS: dict[str, dict[str, bool]] = {
    "forloop": {"foreach": False, "fused": False},
    "foreach": {"foreach": True, "fused": False},
    "fused": {"foreach": False, "fused": True},
    "differentiable": {"foreach": False, "fused": False, "differentiable": True},
}
IMPLS = ("forloop", "foreach", "fused")

#: Battery checks whose point is a step without a closure (``loss.backward(); opt.step()``).
#: iRprop+ cannot take one: it compares the loss E(t) with E(t-1) at every step and raises
#: RuntimeError without a closure (test_errors checks that). Excluded for iRprop+ only.
CLOSURELESS_EXCLUSIONS: dict[str, str] = {
    "test_closureless_training_step": (
        "the torch idiom loss.backward(); opt.step() passes no closure, and iRprop+ needs "
        "E(t) from one at every step"
    ),
    "test_grad_scaler_skips_the_step_on_inf_grads": (
        "GradScaler.step(optimizer) calls optimizer.step() without a closure (it refuses "
        "closure=), and iRprop+ needs E(t) from one at every step"
    ),
}

#: Checks of torch's battery (TestOptimRenewed and friends) that this CPU module does not run.
NOT_APPLICABLE: dict[str, str] = {
    "capturable / 'Tensor lr with capturable' inputs": (
        "optim_inputs_func_rprop adds them only for CUDA/XPU; capturable=True needs params and "
        "steps on a capturable device (torch refuses CPU; test_capturable_is_refused_on_cpu)"
    ),
    "test_forloop_goes_right_direction_multigpu": "needs two GPUs",
    "test_mixed_device_dtype": (
        "needs two GPUs; its dtype half runs on CPU as test_mixed_dtypes_match_forloop"
    ),
    "test_peak_memory_foreach": "reads CUDA allocator statistics",
    "test_foreach_large_tensor / test_fused_large_tensor": "2**32-element tensors on a GPU",
    "test_cpu_load_state_dict": "loads a CPU state dict into a fused/capturable CUDA optimizer",
    "test_state_dict_with_cuda_params": "moves the optimizer to CUDA",
    "test_fused_cpu_matches_cuda": "needs CUDA (our fused kernel is CPU-only)",
    "test_defaults_changed_to_foreach": (
        "checks torch's CUDA default (foreach); on CPU our default is fused where a C "
        "compiler is present, which tests/test_optim.py checks ('default' implementation)"
    ),
    "test_fused_does_not_step_if_foundinf": (
        "for fused optimizers that set _step_supports_amp_scaling and read GradScaler's "
        "found_inf themselves; ours does not, so GradScaler unscales and skips the step "
        "(test_grad_scaler_skips_the_step_on_inf_grads)"
    ),
    "test_param_groups_weight_decay": "Rprop has no weight decay",
}

#: Error inputs whose message deliberately differs from the one torch's entry expects:
#: ``desc -> (our regex, why)``. Empty: our messages begin as torch.optim.Rprop's do.
OUR_ERROR_REGEX: dict[str, tuple[str, str]] = {}
#: Error inputs that need real params here: ``desc -> (params, why)``.
OUR_ERROR_PARAMS: dict[str, tuple[Callable[[], list[Tensor]], str]] = {
    "Tensor lr must be 1-element": (
        lambda: [torch.zeros(1, requires_grad=True)],
        "a 1-D lr of several values is one Δ0 per stacked member here, refused (with torch's "
        "message first) only where a parameter lacks that leading dim: torch's params=None "
        "cannot show it",
    ),
}


# --------------------------------------------------------------------------- the entries


def with_variant(inputs: list[Any], variant: str) -> list[Any]:
    """torch's Rprop inputs (``OptimizerInput`` or ``ErrorOptimizerInput``), for one variant."""
    for item in inputs:
        optim_input = item.optimizer_error_input if isinstance(item, ErrorOptimizerInput) else item
        optim_input.kwargs = {**optim_input.kwargs, "variant": variant}
    return inputs


NO_CLOSURE = "irprop+ needs a closure"


def our_error_inputs(device: str, dtype: torch.dtype, variant: str) -> list[ErrorOptimizerInput]:
    """Error inputs torch's Rprop entry has no counterpart for."""
    with_grad = Parameter(torch.randn(2, device=device, dtype=dtype))
    with_grad.grad = torch.ones_like(with_grad)
    sparse = Parameter(torch.randn(2, device=device, dtype=dtype))
    sparse.grad = torch.ones_like(sparse).to_sparse()
    errors = [
        ErrorOptimizerInput(
            OptimizerInput(
                params=None,
                kwargs={"foreach": True, "fused": True, "variant": variant},
                desc="foreach and fused are exclusive",
            ),
            error_type=ValueError,
            error_regex="foreach=True with fused=True",
        ),
        ErrorOptimizerInput(
            OptimizerInput(params=[sparse], kwargs={"variant": variant}, desc="sparse grad"),
            error_on=OptimizerErrorEnum.STEP_ERROR,
            error_type=RuntimeError,
            error_regex="Rprop does not support sparse gradients",
        ),
    ]
    if variant in NEEDS_CLOSURE:
        errors.append(
            ErrorOptimizerInput(
                OptimizerInput(params=[with_grad], kwargs={"variant": variant}, desc=NO_CLOSURE),
                error_on=OptimizerErrorEnum.STEP_ERROR,
                error_type=RuntimeError,
                error_regex="needs the loss at every step",
            )
        )
    return errors


def make_optim_info(variant: str) -> OptimizerInfo:
    """Our Rprop registered as torch registers torch.optim.Rprop, for one variant."""
    return OptimizerInfo(
        Rprop,
        optim_inputs_func=lambda device, dtype=None: with_variant(
            optim_inputs_func_rprop(device, dtype), variant
        ),
        optim_error_inputs_func=lambda device, dtype: (
            with_variant(optim_error_inputs_func_rprop(device, dtype), variant)
            + our_error_inputs(device, dtype, variant)
        ),
        supported_impls=("foreach", "fused", "differentiable"),
        supports_fused_on=("cpu",),
        has_capturable_arg=True,
        step_requires_closure=variant in NEEDS_CLOSURE,
    )


OPTIM_INFOS: dict[str, OptimizerInfo] = {variant: make_optim_info(variant) for variant in VARIANTS}


def impl_of(kwargs: dict[str, Any]) -> str:
    for flag in ("fused", "foreach", "differentiable"):
        if kwargs.get(flag):
            return flag
    return "forloop"


def optim_inputs(variant: str, impl: str, dtype: torch.dtype = torch.float32) -> list[Any]:
    """The battery's CPU inputs for one variant and implementation (torch's cliquey helper).

    torch's helper leaves foreach out on CPU (no foreach kernels there: torch's foreach ops
    fall back to a loop), but our multi-tensor path is a path of ours on CPU too, so its
    inputs are the for-loop's with foreach=True, as torch's test_foreach_matches_forloop
    sets it by hand.
    """
    every = _get_optim_inputs_including_global_cliquey_kwargs("cpu", dtype, OPTIM_INFOS[variant])
    if impl == "foreach":
        every = [
            OptimizerInput(
                params=None, kwargs={**i.kwargs, "foreach": True}, desc=f"{i.desc} & foreach"
            )
            for i in every
            if impl_of(i.kwargs) == "forloop"
        ]
    chosen = [optim_input for optim_input in every if impl_of(optim_input.kwargs) == impl]
    assert chosen, f"no optim inputs for {variant} with {impl}"
    return chosen


def variant_impl_cases(impls: tuple[str, ...] = IMPLS) -> list[Any]:
    return [pytest.param(v, impl, id=f"{v}-{impl}") for v in VARIANTS for impl in impls]


def closureless_variants(test_name: str) -> list[Any]:
    reason = CLOSURELESS_EXCLUSIONS[test_name]
    return [
        pytest.param(
            v,
            id=v,
            marks=[pytest.mark.skip(reason=f"excluded for {v}: {reason}")]
            if v in NEEDS_CLOSURE
            else [],
        )
        for v in VARIANTS
    ]


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _own_rng() -> Iterator[None]:
    """Each test seeds torch's RNG itself and leaves it as it found it."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


def torch_twin_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """torch.optim.Rprop's kwargs for our irprop- kwargs (it has no variant and no fused)."""
    twin = {k: v for k, v in kwargs.items() if k not in ("variant", "fused")}
    if kwargs.get("fused"):
        twin["foreach"] = False
    return twin


def torch_twin(params: Any, kwargs: dict[str, Any]) -> torch.optim.Rprop:
    assert kwargs.get("variant", "irprop-") == "irprop-"
    return torch.optim.Rprop(params, **torch_twin_kwargs(kwargs))


def assert_identical(actual: Any, expected: Any, where: str = "") -> None:
    """Equal bits, dtypes and devices, recursively through dicts and sequences."""
    if isinstance(expected, Tensor):
        assert isinstance(actual, Tensor), f"{where}: {type(actual).__name__} is not a Tensor"
        torch.testing.assert_close(
            actual,
            expected,
            rtol=0,
            atol=0,
            equal_nan=True,
            check_dtype=True,
            check_device=True,
            msg=lambda message: f"{where}: {message}",
        )
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {type(actual).__name__} is not a dict"
        assert list(actual) == list(expected) or set(actual) == set(expected), (
            f"{where}: keys {sorted(map(str, actual))} != {sorted(map(str, expected))}"
        )
        for key in expected:
            assert_identical(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)), f"{where}: {actual!r} is not a sequence"
        assert len(actual) == len(expected), f"{where}: length {len(actual)} != {len(expected)}"
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_identical(a, e, f"{where}[{index}]")
    elif isinstance(expected, float) and math.isnan(expected):
        assert isinstance(actual, float), f"{where}: {actual!r} != nan"
        assert math.isnan(actual), f"{where}: {actual!r} != nan"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
        assert type(actual) is type(expected), f"{where}: {type(actual)} != {type(expected)}"


def linear_problem(
    dtype: torch.dtype = torch.float32, contiguous: bool = True
) -> tuple[Parameter, Parameter, Tensor]:
    """torch's battery problem: ||W x + b||², W 10x5, in contiguous or strided storage."""
    if contiguous:
        weight = Parameter(torch.randn(10, 5, dtype=dtype))
        bias = Parameter(torch.randn(10, dtype=dtype))
    else:
        weight = Parameter(torch.randn(10, 5, 2, dtype=dtype)[..., 0])
        bias = Parameter(torch.randn(10, 2, dtype=dtype)[..., 0])
    return weight, bias, torch.randn(5, dtype=dtype)


def squared_loss(
    optimizer: torch.optim.Optimizer, weight: Tensor, bias: Tensor, x: Tensor
) -> Tensor:
    """The closure of :func:`linear_problem`: zero the grads, backpropagate, return the loss."""
    optimizer.zero_grad()
    loss = (weight.mv(x) + bias).pow(2).sum()
    loss.backward()
    return loss


def clone_params(params: list[Tensor]) -> list[Parameter]:
    with torch.no_grad():
        return [Parameter(p.clone()) for p in params]


def state_of(optimizer: torch.optim.Optimizer, params: list[Tensor]) -> list[dict[str, Any]]:
    """The per-parameter state, in parameter order (comparable across optimizers)."""
    return [dict(optimizer.state[p]) for p in params]


def rosenbrock(t: Tensor) -> Tensor:
    x, y = t
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def small_model(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Linear(3, 1), nn.Sigmoid()).to(dtype)


def constant_loss(value: float = 1.0) -> Callable[[], Tensor]:
    """A closure returning a fixed E(t), for steps whose grads are set by hand."""
    return lambda: torch.tensor(value)


# --------------------------------------------------------------------------- the entries' inputs


@pytest.mark.parametrize("variant", VARIANTS)
def test_optim_inputs_are_torchs_with_the_variant_and_leave_impl_flags_to_the_tests(variant):
    ours = OPTIM_INFOS[variant].optim_inputs_func(device="cpu")
    theirs = optim_inputs_func_rprop("cpu")
    assert [i.desc for i in ours] == [i.desc for i in theirs]
    for optim_input, torch_input in zip(ours, theirs, strict=True):
        assert optim_input.kwargs == {**torch_input.kwargs, "variant": variant}
        assert not {"foreach", "fused", "differentiable"} & optim_input.kwargs.keys()


def error_cases() -> list[Any]:
    cases = []
    for variant in VARIANTS:
        info = OPTIM_INFOS[variant]
        for error_input in info.optim_error_inputs_func(device="cpu", dtype=torch.float32):
            desc = error_input.optimizer_error_input.desc
            cases.append(pytest.param(variant, desc, id=f"{variant}-{desc}"))
    return cases


@pytest.mark.parametrize(("variant", "desc"), error_cases())
def test_errors(variant, desc):
    """torch's error inputs raise (or warn) the type torch expects, with its message."""
    info = OPTIM_INFOS[variant]
    (error_input,) = [
        e
        for e in info.optim_error_inputs_func(device="cpu", dtype=torch.float32)
        if e.optimizer_error_input.desc == desc
    ]
    optim_input = error_input.optimizer_error_input
    regex = OUR_ERROR_REGEX.get(desc, (error_input.error_regex, ""))[0]
    check = (
        functools.partial(pytest.warns, error_input.error_type, match=regex)
        if issubclass(error_input.error_type, Warning)
        else functools.partial(pytest.raises, error_input.error_type, match=regex)
    )
    params = OUR_ERROR_PARAMS[desc][0]() if desc in OUR_ERROR_PARAMS else optim_input.params
    if error_input.error_on == OptimizerErrorEnum.CONSTRUCTION_ERROR:
        with check():
            Rprop(params, **optim_input.kwargs)
    else:
        optimizer = Rprop(optim_input.params, **optim_input.kwargs)
        # torch steps without a closure; irprop+ gets one, except where its absence is the error
        closure = constant_loss() if variant in NEEDS_CLOSURE and desc != NO_CLOSURE else None
        with check():
            optimizer.step(closure)


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("with_lrsched", [False, True], ids=["no_sched", "lrsched"])
@pytest.mark.parametrize("contiguous", [True, False], ids=["contiguous", "strided"])
@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases())
def test_goes_right_direction(variant, impl, contiguous, with_lrsched):
    """20 closure steps lower the loss (raise it with maximize), with and without the
    entry's LR schedulers; irprop- lands on torch.optim.Rprop's bits."""
    info = OPTIM_INFOS[variant]
    schedulers_for = info.scheduler_inputs if with_lrsched else ([],)
    for optim_input in optim_inputs(variant, impl):
        for scheduler_makers in schedulers_for:
            finals = []
            makers: list[Callable[..., Any]] = [Rprop]
            if variant == "irprop-":
                makers.append(torch_twin)
            for make in makers:
                torch.manual_seed(0)
                weight, bias, x = linear_problem(contiguous=contiguous)
                if make is Rprop:
                    optimizer = Rprop([weight, bias], **optim_input.kwargs)
                else:
                    optimizer = torch_twin([weight, bias], optim_input.kwargs)
                schedulers = [maker(optimizer) for maker in scheduler_makers]
                closure = functools.partial(squared_loss, optimizer, weight, bias, x)
                initial = closure().item()
                for _ in range(20):
                    loss = optimizer.step(closure)
                    for scheduler in schedulers:
                        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                            scheduler.step(loss.item())
                        else:
                            scheduler.step()
                final = closure().item()
                if optim_input.kwargs.get("maximize"):
                    assert final > initial, optim_input.desc
                else:
                    assert final < initial, optim_input.desc
                finals.append([weight, bias])
            if len(finals) == 2:
                assert_identical(finals[0], finals[1], f"{optim_input.desc} vs torch.optim.Rprop")


@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases())
def test_param_groups_lr(variant, impl):
    """A group with its own lr learns; a group at lr=1e-28 (Δmin=0, as torch's battery sets
    for Rprop) leaves its param's bits unchanged."""
    for optim_input in optim_inputs(variant, impl):
        kwargs = dict(optim_input.kwargs)
        if not kwargs.get("lr"):
            kwargs["lr"] = 1e-3
        weight, bias, x = linear_problem()
        irrelevant = Parameter(torch.randn(2))
        irrelevant_before = irrelevant.detach().clone()
        optimizer = Rprop(
            [{"params": [weight, bias], **kwargs}, {"params": [irrelevant]}],
            lr=1e-28,
            step_sizes=(0, 50),
            variant=variant,
        )

        def closure(optimizer=optimizer, weight=weight, bias=bias, x=x, irrelevant=irrelevant):
            loss = squared_loss(optimizer, weight, bias, x)
            irrelevant.grad = torch.rand_like(irrelevant)
            return loss

        initial = closure().item()
        for _ in range(20):
            loss = optimizer.step(closure)
        if kwargs.get("maximize"):
            assert loss.item() > initial, optim_input.desc
        else:
            assert loss.item() < initial, optim_input.desc
        assert_identical(irrelevant.detach(), irrelevant_before, optim_input.desc)


@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases())
def test_tensor_lr(variant, impl):
    """A 1-element Tensor lr behaves as the same float lr, bit for bit, and stays a Tensor in
    the param group (as torch keeps it); irprop- matches torch.optim.Rprop with it."""
    for optim_input in optim_inputs(variant, impl):
        lr = optim_input.kwargs.get("lr", 1e-2)
        runs = []
        for lr_value, make in [
            (lr, Rprop),
            (torch.tensor(lr), Rprop),
            *([(torch.tensor(lr), torch_twin)] if variant == "irprop-" else []),
        ]:
            torch.manual_seed(0)
            weight, bias, x = linear_problem()
            kwargs = {**optim_input.kwargs, "lr": lr_value}
            optimizer = (
                Rprop([weight, bias], **kwargs)
                if make is Rprop
                else torch_twin([weight, bias], kwargs)
            )
            if isinstance(lr_value, Tensor):
                assert isinstance(optimizer.param_groups[0]["lr"], Tensor), optim_input.desc
            closure = functools.partial(squared_loss, optimizer, weight, bias, x)
            for _ in range(10):
                optimizer.step(closure)
            runs.append(([weight, bias], state_of(optimizer, [weight, bias])))
        for run in runs[1:]:
            assert_identical(run, runs[0], optim_input.desc)


@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases())
def test_complex_params_match_their_real_view(variant, impl):
    """Complex params (with a real one among them) step as their view_as_real twins."""
    for optim_input in optim_inputs(variant, impl, dtype=torch.complex64):
        complex_params = [
            torch.randn(10, 5, dtype=torch.complex64, requires_grad=True),
            torch.randn(10, dtype=torch.complex64, requires_grad=True),
            torch.randn(10, 5, dtype=torch.float32, requires_grad=True),
        ]
        real_params = [
            (torch.view_as_real(p) if p.is_complex() else p).detach().clone().requires_grad_()
            for p in complex_params
        ]
        optimizers = [
            Rprop(complex_params, **optim_input.kwargs),
            Rprop(real_params, **optim_input.kwargs),
        ]
        if variant == "irprop-":
            twin_params = [p.detach().clone().requires_grad_() for p in complex_params]
            optimizers.append(torch_twin(twin_params, optim_input.kwargs))
        for step in range(3):
            grads = [torch.randn_like(p) for p in real_params]
            loss = torch.randn(())
            for p, grad in zip(real_params, grads, strict=True):
                p.grad = grad.clone()
            for p, grad in zip(complex_params, grads, strict=True):
                p.grad = torch.view_as_complex(grad.clone()) if p.is_complex() else grad.clone()
            if variant == "irprop-":
                for p, grad in zip(twin_params, grads, strict=True):
                    p.grad = torch.view_as_complex(grad.clone()) if p.is_complex() else grad.clone()
            for optimizer in optimizers:
                optimizer.step(lambda loss=loss: loss)
            as_real = [torch.view_as_real(p) if p.is_complex() else p for p in complex_params]
            assert_identical(
                [p.detach() for p in as_real],
                [p.detach() for p in real_params],
                f"{optim_input.desc}, step {step}",
            )
            if variant == "irprop-":
                assert_identical(
                    [p.detach() for p in complex_params],
                    [p.detach() for p in twin_params],
                    f"{optim_input.desc}, step {step} vs torch.optim.Rprop",
                )


@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases())
def test_complex_2d(variant, impl):
    """A complex 2-vector on |rosenbrock| steps as its real and imaginary parts apart."""
    for optim_input in optim_inputs(variant, impl, dtype=torch.complex64):
        a = torch.randn(2, dtype=torch.complex64, requires_grad=True)
        a_real = a.real.detach().clone().requires_grad_()
        a_imag = a.imag.detach().clone().requires_grad_()
        whole = Rprop([a], **optim_input.kwargs)
        parts = Rprop([a_real, a_imag], **optim_input.kwargs)

        def closure_whole(whole=whole, a=a):
            whole.zero_grad()
            loss = rosenbrock(a).abs()
            loss.backward()
            return loss

        def closure_parts(parts=parts, a_real=a_real, a_imag=a_imag):
            parts.zero_grad()
            loss = rosenbrock(torch.complex(a_real, a_imag)).abs()
            loss.backward()
            return loss

        for step in range(10):
            whole.step(closure_whole)
            parts.step(closure_parts)
            where = f"{optim_input.desc}, step {step}"
            assert_identical(a.real.detach(), a_real.detach(), where)
            assert_identical(a.imag.detach(), a_imag.detach(), where)


# --------------------------------------------------------------------------- implementations


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases(("foreach", "fused")))
def test_impl_matches_forloop(variant, impl, dtype):
    """foreach and fused give the for-loop's bits (params and state) over 7 steps of a small
    net with a 0-dim param, one step with every grad None; irprop- also torch's."""
    for optim_input in optim_inputs(variant, impl, dtype=dtype):
        runs = []
        flavours: list[tuple[str, Callable[..., Any]]] = [("forloop", Rprop), (impl, Rprop)]
        if variant == "irprop-":
            flavours.append(("forloop", torch_twin))
        for flavour, make in flavours:
            model = small_model(dtype)
            x = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dtype=dtype).reshape(3, 2)
            scalar = torch.empty((), dtype=dtype, requires_grad=True)
            with torch.no_grad():
                scalar.fill_(0.5)
            scalar.grad = torch.full_like(scalar, 0.25)
            params = [*model.parameters(), scalar]
            kwargs = {**optim_input.kwargs, **IMPL_KWARGS[flavour]}
            optimizer = Rprop(params, **kwargs) if make is Rprop else torch_twin(params, kwargs)
            for i in range(7):
                # the first closure call zeroes the grads: the 0-dim param steps once, at i=0
                def closure(optimizer=optimizer, model=model, x=x, i=i, first=i == 0):
                    if not first:
                        optimizer.zero_grad()
                    loss = model(x).sum()
                    if i != 3:  # i=3: every grad None, so the step must do nothing
                        loss.backward()
                    return loss

                optimizer.step(closure)
            runs.append((flavour, [p.detach() for p in params], state_of(optimizer, params)))
        for flavour, params, state in runs[1:]:
            where = f"{optim_input.desc}: {flavour} vs forloop"
            assert_identical(params, runs[0][1], where)
            assert_identical(state, runs[0][2], where)


@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases(("foreach", "fused")))
def test_mixed_dtypes_match_forloop(variant, impl):
    """CPU half of torch's test_mixed_device_dtype: params of four float dtypes (and an int
    one without grad) in one group; foreach and fused give the for-loop's bits."""
    dtypes = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
    base = [torch.rand(2, 3, dtype=dtype) for dtype in dtypes]
    grads = [[torch.randn(2, 3, dtype=dtype) for dtype in dtypes] for _ in range(7)]
    losses = [float(v) for v in torch.rand(7)]
    integer = torch.randint(1024, (2, 3))  # int64, no grad: never stepped
    for optim_input in optim_inputs(variant, impl):
        runs = []
        for flavour in ("forloop", impl):
            params = [p.clone().requires_grad_() for p in base]
            params.append(integer)
            kwargs = {**optim_input.kwargs, **IMPL_KWARGS[flavour]}
            optimizer = Rprop(params, **kwargs)
            for step_grads, loss in zip(grads, losses, strict=True):
                for p, grad in zip(params, step_grads, strict=False):
                    p.grad = grad.clone()
                optimizer.step(constant_loss(loss))
            runs.append(([p.detach() for p in params], state_of(optimizer, params)))
        assert_identical(runs[1], runs[0], f"{optim_input.desc}: {impl} vs forloop")


@pytest.mark.parametrize("default_dtype", [torch.float64, torch.float16])
@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases())
def test_step_count_dtype_follows_the_default_dtype(variant, impl, default_dtype):
    """CPU half of torch's test_set_default_dtype_works_with_foreach: the step count is a
    float64 tensor under a float64 default dtype and float32 otherwise (torch's
    _get_scalar_dtype; fused optimizers keep it float32, as torch's load_state_dict does)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(default_dtype)
    try:
        expected = _get_scalar_dtype(is_fused=impl == "fused")
        for optim_input in optim_inputs(variant, impl, dtype=torch.float64):
            params = [
                torch.rand(3, 2, dtype=torch.float64, requires_grad=True),
                torch.rand(3, dtype=torch.float64, requires_grad=True),
            ]
            for p in params:
                p.grad = torch.rand_like(p)
            optimizer = Rprop(params, **optim_input.kwargs)
            optimizer.step(constant_loss())
            for p in params:
                step = optimizer.state[p]["step"]
                assert step.dtype == expected, f"{optim_input.desc}: step is {step.dtype}"
            if variant == "irprop-" and impl != "fused":
                twin = torch_twin([p.detach().clone() for p in params], optim_input.kwargs)
                for p, q in zip(twin.param_groups[0]["params"], params, strict=True):
                    p.grad = q.grad.clone()
                twin.step()
                assert twin.state[twin.param_groups[0]["params"][0]]["step"].dtype == expected
    finally:
        torch.set_default_dtype(previous)


# --------------------------------------------------------------------------- no-op steps


@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases((*IMPLS, "differentiable")))
def test_step_is_noop_when_params_have_no_grad(variant, impl):
    params = [torch.randn(2, 3, requires_grad=False) for _ in range(2)]
    before = [p.clone() for p in params]
    for optim_input in optim_inputs(variant, impl):
        optimizer = Rprop(params, **optim_input.kwargs)
        optimizer.step(lambda: torch.tensor([1.0]))
        assert_identical(params, before, optim_input.desc)
        assert not optimizer.state, optim_input.desc


@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases((*IMPLS, "differentiable")))
def test_step_is_noop_for_zero_grads(variant, impl):
    """A zero gradient moves nothing (and, differentiable, a non-leaf param is accepted)."""
    param = torch.randn(5, 1, requires_grad=True)
    before = param.detach().clone()
    for optim_input in optim_inputs(variant, impl):
        params = [param.clone()] if optim_input.kwargs.get("differentiable") else [param]
        optimizer = Rprop(params, **optim_input.kwargs)
        params[0].grad = torch.zeros_like(params[0])
        for _ in range(3):
            optimizer.step(lambda: torch.tensor([1.0]))
        assert_identical(params[0].detach(), before, optim_input.desc)


@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases())
def test_zero_grad(variant, impl):
    """zero_grad() drops the grads (set_to_none=True, torch's default) and
    zero_grad(set_to_none=False) zeroes them in place; neither lets a step move anything."""
    for optim_input in optim_inputs(variant, impl):
        weight, bias, x = linear_problem()
        optimizer = Rprop([weight, bias], **optim_input.kwargs)
        squared_loss(optimizer, weight, bias, x)
        optimizer.step(constant_loss())
        for set_to_none in (True, False):
            squared_loss(optimizer, weight, bias, x)
            grads = [weight.grad, bias.grad]
            optimizer.zero_grad(set_to_none=set_to_none)
            if set_to_none:
                assert [weight.grad, bias.grad] == [None, None], optim_input.desc
            else:
                assert weight.grad is grads[0], optim_input.desc
                assert bias.grad is grads[1], optim_input.desc
                assert not torch.cat([weight.grad.flatten(), bias.grad]).any(), optim_input.desc
            before = [weight.detach().clone(), bias.detach().clone()]
            optimizer.step(constant_loss())
            assert_identical([weight.detach(), bias.detach()], before, optim_input.desc)


# --------------------------------------------------------------------------- object protocol


@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases((*IMPLS, "differentiable")))
def test_optimizer_can_be_printed(variant, impl):
    params = [Parameter(torch.randn(2, 3)) for _ in range(2)]
    for optim_input in optim_inputs(variant, impl):
        text = repr(Rprop(params, **optim_input.kwargs))
        assert text.startswith("Rprop ("), text
        assert f"variant: {variant}" in text, text


def stepped_optimizers(variant: str, impl: str) -> Iterator[tuple[Any, list[Tensor], Rprop]]:
    """For each optim input: two params with fixed grads and an optimizer stepped 3 times."""
    params = [Parameter(torch.randn(2, 3)) for _ in range(2)]
    for p in params:
        p.grad = torch.rand_like(p)
    for optim_input in optim_inputs(variant, impl):
        optimizer = Rprop(params, **optim_input.kwargs)
        for _ in range(3):
            optimizer.step(constant_loss())
        yield optim_input, params, optimizer


@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases())
def test_deepcopy_copies_all_public_attrs(variant, impl):
    for optim_input, _, optimizer in stepped_optimizers(variant, impl):

        def public(obj: object) -> set[str]:
            return {k for k in vars(obj) if not k.startswith("_")}

        assert public(copy.deepcopy(optimizer)) == public(optimizer), optim_input.desc


@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases())
def test_non_empty_state(variant, impl):
    """One step gives every param with a grad its state: torch's keys (step, prev,
    step_size) plus weight_change (backtracking) and prev_loss (irprop+)."""
    expected = {"step", "prev", "step_size"}
    if variant in BACKTRACKING:
        expected.add("weight_change")
    if variant in NEEDS_CLOSURE:
        expected.add("prev_loss")
    for optim_input in optim_inputs(variant, impl):
        model = small_model()
        optimizer = Rprop(model.parameters(), **optim_input.kwargs)
        model(torch.randn(4, 2)).sum().backward()
        optimizer.step(constant_loss())
        for p in model.parameters():
            state = optimizer.state[p]
            assert set(state) == expected, optim_input.desc
            for key in expected - {"step", "prev_loss"}:
                assert state[key].shape == p.shape, (optim_input.desc, key)
                assert state[key].dtype == p.dtype, (optim_input.desc, key)
                assert state[key].device == p.device, (optim_input.desc, key)


@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases())
def test_grads_are_never_written(variant, impl):
    """The step reads the grads and never writes them (maximize negates a copy)."""
    for optim_input in optim_inputs(variant, impl):
        weight, bias, x = linear_problem()
        optimizer = Rprop([weight, bias], **optim_input.kwargs)
        for _ in range(4):
            squared_loss(optimizer, weight, bias, x)
            grads = [weight.grad.clone(), bias.grad.clone()]
            optimizer.step(constant_loss())
            assert_identical([weight.grad, bias.grad], grads, optim_input.desc)


@pytest.mark.parametrize("variant", VARIANTS)
def test_fused_error_on_params_on_meta(variant):
    """fused=True on meta params raises at the step, before it creates any state (as torch's
    fused optimizers check each param before its state); materialised on CPU, they step."""
    with torch.device("meta"):
        model = small_model()
    optimizer = Rprop(model.parameters(), variant=variant, fused=True)
    with torch.device("meta"):
        for p in model.parameters():
            p.grad = torch.rand_like(p)
    with pytest.raises(
        RuntimeError, match="`fused=True` requires all the params to be floating point Tensors"
    ):
        optimizer.step(constant_loss())
    assert not optimizer.state, "the failed step left state on meta tensors"
    optimizer.zero_grad(set_to_none=True)
    model.to_empty(device="cpu")  # new Parameter objects: meta and CPU storage don't swap
    optimizer = Rprop(model.parameters(), variant=variant, fused=True)
    for p in model.parameters():
        p.grad = torch.rand_like(p)
    optimizer.step(constant_loss())
    assert all(optimizer.state[p]["step"].item() == 1 for p in model.parameters())


@pytest.mark.parametrize("variant", VARIANTS)
def test_capturable_is_refused_on_cpu(variant):
    """capturable/differentiable are torch's flags, False by default; capturable=True needs
    params on a capturable device (CUDA, XPU, ...), and torch refuses CPU params at the step."""
    param = Parameter(torch.randn(3))
    optimizer = Rprop([param], variant=variant)
    assert optimizer.param_groups[0]["capturable"] is False
    assert optimizer.param_groups[0]["differentiable"] is False
    param.grad = torch.ones_like(param)
    message = "If capturable=True, params and state_steps must be on supported devices"
    with pytest.raises((AssertionError, RuntimeError), match=message):
        torch.optim.Rprop([param], capturable=True).step()
    with pytest.raises((AssertionError, RuntimeError), match=message):
        Rprop([param], variant=variant, capturable=True).step(constant_loss())


# --------------------------------------------------------------------------- state dicts


@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases())
def test_state_dict_deterministic(variant, impl):
    """A state dict loaded into a fresh optimizer over cloned params continues the same
    trajectory, and both state dicts are then identical (dtypes included)."""
    for optim_input in optim_inputs(variant, impl):
        weight, bias = Parameter(torch.randn(2, 3)), Parameter(torch.randn(2))
        x = torch.randn(3)
        optimizer = Rprop([weight, bias], **optim_input.kwargs)
        closure = functools.partial(squared_loss, optimizer, weight, bias, x)
        for _ in range(10):
            optimizer.step(closure)
        weight_c, bias_c = clone_params([weight, bias])
        optimizer_c = Rprop([weight_c, bias_c], **optim_input.kwargs)
        closure_c = functools.partial(squared_loss, optimizer_c, weight_c, bias_c, x)
        saved = copy.deepcopy(optimizer.state_dict())
        optimizer_c.load_state_dict(saved)
        assert_identical(saved, optimizer.state_dict(), f"{optim_input.desc}: saved dict changed")
        assert_identical(
            optimizer_c.state_dict(), optimizer.state_dict(), f"{optim_input.desc}: after load"
        )
        for step in range(10):
            optimizer.step(closure)
            optimizer_c.step(closure_c)
            assert_identical(
                [weight_c, bias_c], [weight, bias], f"{optim_input.desc}: step {step} after load"
            )
        assert_identical(optimizer_c.state_dict(), optimizer.state_dict(), optim_input.desc)
        # repeated params have identical representations (pytorch issue 36831)
        optimizer_c.param_groups.extend(optimizer_c.param_groups)
        assert_identical(
            optimizer_c.state_dict()["param_groups"][-1],
            optimizer.state_dict()["param_groups"][-1],
            optim_input.desc,
        )


#: The param-group flags torch added after its optimizers first shipped (its battery deletes
#: them to make an "older" state dict). `variant` is ours: a dict without it is iRprop-'s.
NEW_FLAGS = ("maximize", "foreach", "fused", "differentiable", "capturable")


@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases())
def test_can_load_older_state_dict(variant, impl):
    """A state dict without the newer flags loads; the flags come back at their defaults
    and the optimizer steps (for irprop-, a dict without `variant` too: torch's own)."""
    for optim_input in optim_inputs(variant, impl):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Conv2d(4, 2, 1, stride=2), nn.BatchNorm2d(2))
        x = torch.rand(1, 4, 16, 16)
        optimizer = Rprop(model.parameters(), **optim_input.kwargs)

        def closure(optimizer=optimizer, model=model, x=x):
            optimizer.zero_grad()
            loss = model(x).sum()
            loss.backward()
            return loss

        for _ in range(3):
            optimizer.step(closure)
        old = copy.deepcopy(optimizer.state_dict())
        dropped = (*NEW_FLAGS, "variant") if variant == "irprop-" else NEW_FLAGS
        for group in old["param_groups"]:
            for flag in dropped:
                group.pop(flag, None)
        optimizer.load_state_dict(old)
        group = optimizer.param_groups[0]
        assert group["variant"] == variant, optim_input.desc
        for flag, default in [
            ("maximize", False),
            ("foreach", None),
            ("fused", None),
            ("differentiable", False),
            ("capturable", False),
        ]:
            assert group[flag] == default, (optim_input.desc, flag, group[flag])
        optimizer.step(closure)


@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases())
def test_load_nontensor_step(variant, impl):
    """A state dict whose step counts are Python numbers (old checkpoints) loads; the counts
    become tensors again, as torch.optim.Rprop's __setstate__ makes them, and keep counting."""
    for optim_input, params, optimizer in stepped_optimizers(variant, impl):
        state_dict = copy.deepcopy(optimizer.state_dict())
        for p_state in state_dict["state"].values():
            p_state["step"] = p_state["step"].item()
        optimizer.load_state_dict(state_dict)
        optimizer.step(constant_loss())
        for p in params:
            step = optimizer.state[p]["step"]
            assert isinstance(step, Tensor), (optim_input.desc, type(step))
            assert step.item() == 4, optim_input.desc


@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases())
def test_save_load_with_weights_only(variant, impl):
    """torch.save then torch.load(weights_only=True) gives back an identical state dict,
    and an optimizer loaded from it continues the same trajectory."""
    for optim_input in optim_inputs(variant, impl):
        weight, bias, x = linear_problem()
        optimizer = Rprop([weight, bias], **optim_input.kwargs)
        closure = functools.partial(squared_loss, optimizer, weight, bias, x)
        for _ in range(3):
            optimizer.step(closure)
        buffer = io.BytesIO()
        torch.save(optimizer.state_dict(), buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=True)
        assert_identical(loaded, optimizer.state_dict(), optim_input.desc)
        weight_c, bias_c = clone_params([weight, bias])
        optimizer_c = Rprop([weight_c, bias_c], **optim_input.kwargs)
        optimizer_c.load_state_dict(loaded)
        closure_c = functools.partial(squared_loss, optimizer_c, weight_c, bias_c, x)
        for _ in range(3):
            optimizer.step(closure)
            optimizer_c.step(closure_c)
        assert_identical([weight_c, bias_c], [weight, bias], optim_input.desc)
        assert_identical(optimizer_c.state_dict(), optimizer.state_dict(), optim_input.desc)


@pytest.mark.parametrize("variant", VARIANTS)
def test_state_dict_with_named_params(variant):
    """Built from named_parameters(), the state dict carries param_names, and it loads into
    a named or an unnamed optimizer, which continue alike."""
    model = small_model()
    x = torch.randn(4, 2)
    optimizer = Rprop(model.named_parameters(), variant=variant)

    def closure(optimizer, model):
        optimizer.zero_grad()
        loss = model(x).sum()
        loss.backward()
        return loss

    for _ in range(3):
        optimizer.step(functools.partial(closure, optimizer, model))
    state_dict = optimizer.state_dict()
    names = [name for name, _ in model.named_parameters()]
    assert state_dict["param_groups"][0]["param_names"] == names
    finals = []
    for named in (True, False):
        model_c = copy.deepcopy(model)
        params = model_c.named_parameters() if named else model_c.parameters()
        optimizer_c = Rprop(params, variant=variant)
        optimizer_c.load_state_dict(copy.deepcopy(state_dict))
        assert optimizer_c.state_dict()["param_groups"][0]["param_names"] == names
        for _ in range(3):
            optimizer_c.step(functools.partial(closure, optimizer_c, model_c))
        finals.append([p.detach() for p in model_c.parameters()])
    assert_identical(finals[1], finals[0], "unnamed vs named")


# --------------------------------------------------------------------------- hooks


@pytest.mark.parametrize("variant", VARIANTS)
def test_step_hooks(variant):
    """Global pre, own pre, step, own post, global post, in that order; a pre hook may
    replace the step's arguments; removed hooks are not called."""
    weight, bias, x = linear_problem()
    optimizer = Rprop([weight, bias], variant=variant)
    closure = functools.partial(squared_loss, optimizer, weight, bias, x)
    calls: list[str] = []
    replacement = torch.tensor(42.0)

    def pre(opt, args, kwargs):
        calls.append("pre")
        # args start with the optimizer itself (the bound method's self)
        assert opt is optimizer
        assert args == (optimizer, closure)
        assert kwargs == {}
        return (optimizer,), {"closure": lambda: (closure(), replacement)[1]}

    def post(opt, args, kwargs):
        calls.append("post")
        assert opt is optimizer
        assert args == (optimizer,)
        assert set(kwargs) == {"closure"}

    handles = [
        register_optimizer_step_pre_hook(lambda *_: calls.append("global pre")),
        optimizer.register_step_pre_hook(pre),
        optimizer.register_step_post_hook(post),
        register_optimizer_step_post_hook(lambda *_: calls.append("global post")),
    ]
    try:
        before = weight.detach().clone()
        assert optimizer.step(closure) is replacement
        assert calls == ["global pre", "pre", "post", "global post"]
        assert not torch.equal(weight.detach(), before)
    finally:
        for handle in handles:
            handle.remove()
    calls.clear()
    optimizer.step(closure)
    assert calls == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_state_dict_hooks(variant):
    """state_dict pre/post and load_state_dict pre/post hooks run, a post hook's dict is the
    one returned, and a load pre hook's dict is the one loaded (here: another optimizer's)."""
    weight, bias, x = linear_problem()
    optimizer = Rprop([weight, bias], variant=variant)
    closure = functools.partial(squared_loss, optimizer, weight, bias, x)
    for _ in range(3):
        optimizer.step(closure)
    calls: list[str] = []
    optimizer.register_state_dict_pre_hook(lambda opt: calls.append("pre"))

    def post(opt, state_dict):
        calls.append("post")
        return {**state_dict, "hooked": True}

    optimizer.register_state_dict_post_hook(post)
    state_dict = optimizer.state_dict()
    assert calls == ["pre", "post"]
    assert state_dict["hooked"] is True

    # Another optimizer, further along: a load pre hook substitutes its state dict.
    other_weight, other_bias = clone_params([weight, bias])
    other = Rprop([other_weight, other_bias], variant=variant)
    other.load_state_dict({k: v for k, v in state_dict.items() if k != "hooked"})
    other_closure = functools.partial(squared_loss, other, other_weight, other_bias, x)
    for _ in range(4):
        other.step(other_closure)
    substitute = copy.deepcopy(other.state_dict())

    weight_c, bias_c = clone_params([other_weight, other_bias])
    loader = Rprop([weight_c, bias_c], variant=variant)
    loader.register_load_state_dict_pre_hook(lambda opt, sd: copy.deepcopy(substitute))
    loader.register_load_state_dict_post_hook(lambda opt: calls.append("load post"))
    loader.load_state_dict(optimizer.state_dict())
    assert calls[-1] == "load post"
    assert_identical(loader.state_dict(), substitute, "loaded vs the pre hook's state dict")


# --------------------------------------------------------------------------- closure-less use


@pytest.mark.parametrize("variant", closureless_variants("test_closureless_training_step"))
def test_closureless_training_step(variant):
    """The common loop, loss.backward(); opt.step(), lowers the loss; irprop- matches torch."""
    runs = []
    for make in (Rprop, torch.optim.Rprop) if variant == "irprop-" else (Rprop,):
        torch.manual_seed(0)
        weight, bias, x = linear_problem()
        optimizer = make([weight, bias], **({"variant": variant} if make is Rprop else {}))
        initial = None
        for _ in range(20):
            loss = squared_loss(optimizer, weight, bias, x)
            initial = loss.item() if initial is None else initial
            assert optimizer.step() is None
        assert squared_loss(optimizer, weight, bias, x).item() < initial
        runs.append([weight.detach(), bias.detach()])
    assert_identical(runs[-1], runs[0], "vs torch.optim.Rprop")


@pytest.mark.parametrize(
    "variant", closureless_variants("test_grad_scaler_skips_the_step_on_inf_grads")
)
@pytest.mark.parametrize("impl", IMPLS)
def test_grad_scaler_skips_the_step_on_inf_grads(variant, impl):
    """Through torch.amp.GradScaler on CPU: an inf grad skips the step (params and state
    untouched), finite grads step as an unscaled step would."""
    weight, bias, x = linear_problem()
    optimizer = Rprop([weight, bias], variant=variant, **IMPL_KWARGS[impl])
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    optimizer.zero_grad()
    scaler.scale((weight.mv(x) + bias).pow(2).sum()).backward()
    weight.grad[0, 0] = math.inf
    before = [weight.detach().clone(), bias.detach().clone()]
    scaler.step(optimizer)
    scaler.update()
    assert_identical([weight.detach(), bias.detach()], before, "after an inf grad")
    assert not optimizer.state
    twin_params = clone_params([weight, bias])
    twin = Rprop(twin_params, variant=variant, **IMPL_KWARGS[impl])
    for opt, params, scale in ((optimizer, [weight, bias], True), (twin, twin_params, False)):
        opt.zero_grad()
        loss = (params[0].mv(x) + params[1]).pow(2).sum()
        (scaler.scale(loss) if scale else loss).backward()
        if scale:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
    assert_identical(
        [weight.detach(), bias.detach()],
        [p.detach() for p in twin_params],
        "scaled and unscaled step vs an unscaled one",
    )


# --------------------------------------------------------------------------- differentiable


@pytest.mark.parametrize("variant", VARIANTS)
def test_differentiable_step_gradcheck(variant):
    """With differentiable=True one step is a differentiable function of the param, its
    grad and the state (torch's TestDifferentiableOptimizer); irprop- matches torch's."""
    n = 10
    magnitudes = 0.1 + torch.rand(4, n, dtype=torch.float64)
    signs = torch.randint(0, 2, (4, n), dtype=torch.float64) * 2 - 1
    grad, prev, weight_change, _ = (magnitudes * signs).unbind()
    state = {
        "prev": prev,
        "step_size": 0.1 + 0.5 * torch.rand(n, dtype=torch.float64),
    }
    if variant in BACKTRACKING:
        state["weight_change"] = weight_change
    param = torch.rand(n, dtype=torch.float64)
    inputs = [t.clone().requires_grad_() for t in (param, grad, *state.values())]
    extra = (
        {"prev_loss": torch.tensor(1.0, dtype=torch.float64)} if variant in NEEDS_CLOSURE else {}
    )

    def one_step(make: Callable[..., Any], p: Tensor, g: Tensor, *state_tensors: Tensor):
        p = p.clone()
        p.grad = g
        optimizer = make([p])
        optimizer.state[p].update(
            {
                "step": torch.tensor(3.0),
                **{k: v.clone() for k, v in zip(state, state_tensors, strict=True)},
                **{k: v.clone() for k, v in extra.items()},
            }
        )
        optimizer.step(constant_loss(2.0))  # E(t)=2 > E(t-1)=1: irprop+ undoes on a flip
        return (p, *(optimizer.state[p][k] for k in state))

    ours = functools.partial(
        one_step,
        functools.partial(Rprop, variant=variant, differentiable=True, foreach=False, fused=False),
    )
    assert torch.autograd.gradcheck(ours, inputs)
    if variant == "irprop-":
        theirs = functools.partial(
            one_step, functools.partial(torch.optim.Rprop, differentiable=True, foreach=False)
        )
        out_ours, out_theirs = ours(*inputs), theirs(*inputs)
        assert_identical([t.detach() for t in out_ours], [t.detach() for t in out_theirs], "")
        grads_ours = torch.autograd.grad(sum(t.sum() for t in out_ours), inputs)
        grads_theirs = torch.autograd.grad(sum(t.sum() for t in out_theirs), inputs)
        assert_identical(list(grads_ours), list(grads_theirs), "input grads")


# --------------------------------------------------------------------------- torch.compile


def compile_case(variant: str, impl: str, make: Callable[..., Any] = Rprop):
    """A problem with an optimizer; the grads and E(t) are computed outside the compiled step
    (dynamo cannot trace backward()), and the closure hands E(t) to irprop+."""
    torch.manual_seed(0)
    weight, bias, x = linear_problem()
    if make is Rprop:
        optimizer = Rprop([weight, bias], variant=variant, **IMPL_KWARGS[impl])
    else:
        optimizer = torch.optim.Rprop([weight, bias], foreach=impl == "foreach")
    current: dict[str, Tensor] = {}

    def prepare() -> None:
        optimizer.zero_grad()
        loss = (weight.mv(x) + bias).pow(2).sum()
        loss.backward()
        current["loss"] = loss.detach()

    def step() -> None:
        if variant in NEEDS_CLOSURE:
            optimizer.step(lambda: current["loss"])
        else:
            optimizer.step()

    return optimizer, [weight, bias], prepare, step


def run_steps(
    variant: str, impl: str, backend: str | None, make: Callable[..., Any] = Rprop
) -> tuple[Any, dict[str, Any]]:
    """Five steps, compiled with ``backend`` (None: eager); the params and state after them,
    and what dynamo made of it: distinct graphs, graph breaks and unsupported constructs."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    optimizer, params, prepare, step = compile_case(variant, impl, make)
    run_step = step if backend is None else torch.compile(step, backend=backend)
    for _ in range(5):  # the first step creates the state: a graph of its own for torch too
        prepare()
        run_step()
    counters = torch._dynamo.utils.counters

    def by_reason(kind: str) -> dict[str, int]:
        """Reason: the first line of dynamo's message, and its debug context if it has one."""
        found: dict[str, int] = {}
        for message, n in counters[kind].items():
            lines = [line.strip() for line in message.splitlines()]
            context = [line for line in lines if line.startswith("Developer debug context:")]
            reason = " | ".join([lines[0], *(c for c in context if c.partition(":")[2].strip())])
            found[reason] = found.get(reason, 0) + n
        return found

    report = {
        "graphs": counters["stats"]["unique_graphs"],
        "breaks": by_reason("graph_break"),
        "unsupported": by_reason("unimplemented"),
    }
    return ([p.detach() for p in params], state_of(optimizer, params)), report


@functools.cache
def torch_compile_report(impl: str) -> dict[str, Any]:
    """torch.optim.Rprop's report, for the same call (no fused path: its for-loop stands in)."""
    _, report = run_steps(
        "irprop-", "foreach" if impl == "foreach" else "forloop", "aot_eager", torch.optim.Rprop
    )
    return report


#: torch's own step breaks the graph on purpose, once on each side of the update
#: (torch.optim.optimizer._use_grad_for_differentiable calls torch._dynamo.graph_break()).
USER_GRAPH_BREAK = "Call to `torch._dynamo.graph_break()`"


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "impl"), variant_impl_cases())
def test_compiled_step(variant, impl):
    """torch.compile (aot_eager: dynamo and AOT autograd, no codegen) of the step gives the
    eager bits, and one graph: torch.optim.Rprop's step compiles on CPU to one graph, with no
    graph break but the two it asks for itself, so ours must give one graph, with no break and
    nothing unsupported, in every implementation (the fused kernel is a custom op)."""
    theirs = torch_compile_report(impl)
    assert theirs["graphs"] == 1, f"torch.optim.Rprop: {theirs}"
    assert all(r.startswith(USER_GRAPH_BREAK) for r in theirs["breaks"]), theirs
    assert not theirs["unsupported"], f"torch.optim.Rprop: {theirs}"
    eager, _ = run_steps(variant, impl, None)
    compiled, ours = run_steps(variant, impl, "aot_eager")
    assert_identical(compiled, eager, "compiled (aot_eager) vs eager")
    breaks = {r: n for r, n in ours["breaks"].items() if not r.startswith(USER_GRAPH_BREAK)}
    assert (ours["graphs"], breaks, ours["unsupported"]) == (1, {}, {}), f"ours: {ours}"


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_compiled_step_with_inductor(variant):
    """Inductor's generated step (for-loop path) gives the eager bits: Rprop's update is
    signs times step sizes, which no fusion rounds differently."""
    eager, _ = run_steps(variant, "forloop", None)
    compiled, report = run_steps(variant, "forloop", "inductor")
    assert_identical(compiled, eager, f"compiled (inductor) vs eager; dynamo: {report}")
