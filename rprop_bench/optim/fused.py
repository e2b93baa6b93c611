"""The fused Rprop step: one pass over memory per tensor, for all four variants.

An Rprop step is memory-bound: it reads param, grad, prev and Δ and writes param, prev and
Δ (plus Δw for the backtracking variants). torch's implementations make many passes, one per
elementwise op; the kernel in ``_fused_rprop.c`` makes one. It is compiled with the system C
compiler the first time it is needed (a fraction of a second), cached on disk under
``$RPROP_BENCH_CACHE`` (default ``~/.cache/rprop_bench``) and loaded with ctypes, so nothing
is built at install time and nothing is built for users who never step on a CPU.

Where no compiler is present the fused path warns once, in one line, and the unfused path
runs instead. Tensors the kernel does not cover (bfloat16, non-CPU, non-contiguous) take the
unfused path too, so results never depend on which path ran: the kernel gives the same bits.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["fused_kernel_available", "load_fused_kernel"]

_SOURCE = Path(__file__).with_name("_fused_rprop.c")
# -ffp-contract=off: no FMA, so every product is rounded exactly as torch rounds it.
_FLAGS = [
    "-O3",
    "-std=c11",
    "-shared",
    "-fPIC",
    "-ffp-contract=off",
    "-fno-fast-math",
    # Lets the compiler turn the selects into vector blends; it changes no result.
    "-fno-trapping-math",
]
_OPENMP_FLAG = "-fopenmp"
_VARIANT_CODES = {"rprop-": 0, "irprop-": 1, "rprop+": 2, "irprop+": 3}
_KERNEL_DTYPES = (torch.float32, torch.float64)

_lock = threading.Lock()
_kernel: ctypes.CDLL | None = None
_kernel_failed = False


def _cache_dir() -> Path:
    configured = os.environ.get("RPROP_BENCH_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rprop_bench"


def _compile(compiler: str, target: Path) -> None:
    """Compile the kernel to ``target`` atomically (parallel workers may race here)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        for extra in ([_OPENMP_FLAG], []):  # OpenMP if the compiler has it, else serial
            result = subprocess.run(
                [compiler, *_FLAGS, *extra, str(_SOURCE), "-o", str(out)],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode == 0:
                os.replace(out, target)
                return
        raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr else "failed")


def load_fused_kernel() -> ctypes.CDLL | None:
    """Return the compiled kernel, building it on first use; ``None`` where it can't be built."""
    global _kernel, _kernel_failed
    if _kernel is not None or _kernel_failed:
        return _kernel
    with _lock:
        if _kernel is not None or _kernel_failed:
            return _kernel
        compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
        if compiler is None:
            _kernel_failed = True
            warnings.warn(
                "rprop_bench: no C compiler found (set CC); fused Rprop falls back to the "
                "unfused path",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        try:
            # Inside the try: an install without the source (it ships as package data) must
            # fall back with the one-line warning too, not fail the first step.
            digest = hashlib.sha256(
                _SOURCE.read_bytes() + " ".join([compiler, *_FLAGS]).encode()
            ).hexdigest()[:16]
            target = _cache_dir() / f"fused_rprop-{digest}.so"
            if not target.exists():
                _compile(compiler, target)
            library = ctypes.CDLL(str(target))
        except (OSError, RuntimeError) as error:
            _kernel_failed = True
            warnings.warn(
                f"rprop_bench: could not build the fused Rprop kernel ({error}); "
                "falling back to the unfused path",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        for name, c_type in (
            ("rprop_step_float32", ctypes.c_float),
            ("rprop_step_float64", ctypes.c_double),
        ):
            function = getattr(library, name)
            function.restype = None
            function.argtypes = [ctypes.c_void_p] * 5 + [
                ctypes.c_int64,
                c_type,
                c_type,
                c_type,
                c_type,
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_void_p,
                ctypes.c_int64,
                ctypes.c_int,
                ctypes.c_void_p,
            ]
        _kernel = library
        return _kernel


@torch.compiler.assume_constant_result
def fused_kernel_available() -> bool:
    """Whether the fused kernel can run here (builds it on first call).

    A constant for torch.compile, which then traces neither the build nor the ctypes library.
    """
    return load_fused_kernel() is not None


def kernel_covers(*tensors: Tensor) -> bool:
    """Whether the kernel handles these same-shaped tensors: CPU, float32/64, contiguous."""
    first = tensors[0]
    return (
        first.device.type == "cpu"
        and first.dtype in _KERNEL_DTYPES
        and all(t.is_contiguous() and t.dtype == first.dtype for t in tensors)
    )


def fused_step(
    kernel: ctypes.CDLL,
    param: Tensor,
    grad: Tensor,
    prev: Tensor,
    step_size: Tensor,
    weight_change: Tensor | None,
    *,
    eta_minus: float,
    eta_plus: float,
    step_size_min: float,
    step_size_max: float,
    variant: str,
    maximize: bool,
    undo_on_flip: bool,
    undo_per_member: Tensor | None = None,
    member_hypers: Tensor | None = None,
) -> None:
    """One fused step over one real tensor, in place. The caller checks :func:`kernel_covers`.

    ``undo_on_flip``: a sign flip undoes the last weight change (backtracking variants).
    ``undo_per_member``: instead, one flag per stacked member (a contiguous CPU bool tensor of
    shape ``(S,)``; the tensors' leading dim is S), so that one call steps every member.
    ``member_hypers``: a contiguous CPU float64 tensor of shape ``(4, S)`` holding each
    member's η-, η+, Δmin and Δmax (the scalars are then ignored): a grid in one call.
    """
    if undo_per_member is not None and (
        undo_per_member.dtype != torch.bool
        or not undo_per_member.is_contiguous()
        or param.numel() % max(undo_per_member.numel(), 1) != 0
    ):
        raise ValueError(
            f"undo_per_member must be a contiguous bool tensor with one flag per member of a "
            f"tensor of {param.numel()} weights; got {undo_per_member.dtype} of shape "
            f"{tuple(undo_per_member.shape)}"
        )
    members = undo_per_member.numel() if undo_per_member is not None else 1
    if member_hypers is not None:
        if (
            member_hypers.dtype != torch.float64
            or not member_hypers.is_contiguous()
            or member_hypers.dim() != 2
            or member_hypers.shape[0] != 4
            or param.numel() % max(member_hypers.shape[1], 1) != 0
            or (undo_per_member is not None and undo_per_member.numel() != member_hypers.shape[1])
        ):
            raise ValueError(
                "member_hypers must be a contiguous float64 tensor of shape (4, S), S the "
                f"members of a tensor of {param.numel()} weights; got {member_hypers.dtype} of "
                f"shape {tuple(member_hypers.shape)}"
            )
        members = member_hypers.shape[1]
    function = (
        kernel.rprop_step_float32 if param.dtype == torch.float32 else kernel.rprop_step_float64
    )
    function(
        param.data_ptr(),
        grad.data_ptr(),
        prev.data_ptr(),
        step_size.data_ptr(),
        weight_change.data_ptr() if weight_change is not None else None,
        param.numel(),
        eta_minus,
        eta_plus,
        step_size_min,
        step_size_max,
        _VARIANT_CODES[variant],
        int(maximize),
        int(undo_on_flip),
        undo_per_member.data_ptr() if undo_per_member is not None else None,
        members,
        torch.get_num_threads(),
        member_hypers.data_ptr() if member_hypers is not None else None,
    )


@torch.library.custom_op(
    "rprop_bench::fused_step", mutates_args=("param", "prev", "step_size", "weight_change")
)
def fused_step_op(
    param: Tensor,
    grad: Tensor,
    prev: Tensor,
    step_size: Tensor,
    weight_change: Tensor | None,
    undo_per_member: Tensor | None,
    member_hypers: Tensor | None = None,
    *,
    eta_minus: float,
    eta_plus: float,
    step_size_min: float,
    step_size_max: float,
    variant: str,
    maximize: bool,
    undo_on_flip: bool,
) -> None:
    """:func:`fused_step` as a torch custom op, so torch.compile calls it without tracing it.

    Eager code calls :func:`fused_step` directly: the op's dispatch would cost more than the
    step itself on small tensors.
    """
    kernel = load_fused_kernel()
    if kernel is None:  # fused_kernel_available() said it was there when the graph was built
        raise RuntimeError("rprop_bench: the fused Rprop kernel is no longer available")
    fused_step(
        kernel,
        param,
        grad,
        prev,
        step_size,
        weight_change,
        eta_minus=eta_minus,
        eta_plus=eta_plus,
        step_size_min=step_size_min,
        step_size_max=step_size_max,
        variant=variant,
        maximize=maximize,
        undo_on_flip=undo_on_flip,
        undo_per_member=undo_per_member,
        member_hypers=member_hypers,
    )


@fused_step_op.register_fake
def _fused_step_fake(param: Tensor, *args: object, **kwargs: object) -> None:
    """Shapes for the compiler: the op returns nothing and writes its inputs in place."""
    return None
