"""PSSA as PyTorch custom ops (DESIGN §2.1, §6), registered on import.

* ``torch.ops.xvdeploy.pssa(x, shifts) -> T``: ``T = X ⊙ Σ_s roll_s(X)``;
* ``torch.ops.xvdeploy.pssa_concat(x, shifts) -> T``: ``T = concat_s(X ⊙ roll_s X)``
  with channel ``s·C + c`` (like :func:`xvdeploy.ops.pssa.pssa_transform`).

``shifts`` is flat ``[dy0, dx0, dy1, dx1, …]`` (``torch.roll`` semantics, any
integer, wrapped modulo ``H``/``W``). Implementations: CPU (and any non-CUDA
device) = the reference roll math; CUDA = the fused Triton kernel
(:mod:`xvdeploy.plugins.pssa_triton`); a fake implementation for
``torch.export`` / ``torch.compile``; a backward so the op also trains.
Non-contiguous / channels-last inputs are made contiguous; the output is
always contiguous. Bad input raises :class:`~xvdeploy.errors.XVDeployError`.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from xvdeploy.errors import XVDeployError
from xvdeploy.plugins.pssa_triton import check_input, flat_shifts

NAMESPACE = "xvdeploy"
MODES = {"sum": "pssa", "concat": "pssa_concat"}


def _pairs(flat: Sequence[int]) -> list[tuple[int, int]]:
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def _validate(x: torch.Tensor, shifts: Sequence[int], op: str) -> tuple[int, ...]:
    check_input(x, f"{NAMESPACE}::{op}")
    return flat_shifts(shifts)


def _reference(x: torch.Tensor, flat: Sequence[int], concat: bool) -> torch.Tensor:
    """``X ⊙ Σ_s roll_s X`` or ``concat_s (X ⊙ roll_s X)`` with :func:`torch.roll` (any device).

    fp16/bf16 are computed in fp32 and rounded once, like the Triton kernel.
    """
    dtype = x.dtype
    x = x.contiguous()
    if dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    rolled = [torch.roll(x, shifts=s, dims=(2, 3)) for s in _pairs(flat)]
    if concat:
        out = torch.cat([x * r for r in rolled], dim=1)
    else:
        acc = rolled[0].clone()
        for r in rolled[1:]:
            acc += r
        out = x * acc
    return out.to(dtype)


def _out_shape(x: torch.Tensor, flat: Sequence[int], concat: bool) -> tuple:
    n, c, h, w = x.shape
    return (n, c * (len(flat) // 2), h, w) if concat else (n, c, h, w)


def _backward_math(x: torch.Tensor, grad: torch.Tensor, flat: Sequence[int], concat: bool) -> torch.Tensor:
    """``∂L/∂X``: sum ``g ⊙ A + Σ_s roll_{-s}(g ⊙ X)``; concat ``Σ_s g_s ⊙ roll_s X + roll_{-s}(g_s ⊙ X)``."""
    pairs = _pairs(flat)
    c = x.shape[1]
    gx = torch.zeros_like(x)
    for i, (dy, dx) in enumerate(pairs):
        g = grad[:, i * c:(i + 1) * c] if concat else grad
        gx = gx + g * torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        gx = gx + torch.roll(g * x, shifts=(-dy, -dx), dims=(2, 3))
    return gx


def _has_op(name: str) -> bool:
    return hasattr(getattr(torch.ops, NAMESPACE), name)


def _define(name: str, concat: bool):
    """Register ``xvdeploy::<name>`` once per process (a second import reuses it)."""
    qualname = f"{NAMESPACE}::{name}"
    if _has_op(name):
        return getattr(getattr(torch.ops, NAMESPACE), name).default

    def impl(x: torch.Tensor, shifts: list[int]) -> torch.Tensor:
        return _reference(x, _validate(x, shifts, name), concat)

    impl.__name__ = name
    impl.__doc__ = f"{qualname}: reference (torch.roll) implementation."
    op = torch.library.custom_op(qualname, mutates_args=())(impl)

    @op.register_kernel("cuda")
    def _cuda(x: torch.Tensor, shifts: list[int]) -> torch.Tensor:
        flat = _validate(x, shifts, name)
        from xvdeploy.plugins.pssa_triton import pssa_triton

        return pssa_triton(x, flat, "concat" if concat else "sum")

    @op.register_fake
    def _fake(x: torch.Tensor, shifts: list[int]) -> torch.Tensor:
        flat = _validate(x, shifts, name)
        return x.new_empty(_out_shape(x, flat, concat))

    def _setup(ctx, inputs, output) -> None:
        x, shifts = inputs
        ctx.save_for_backward(x)
        ctx.shifts = tuple(shifts)

    def _backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return _backward_math(x.contiguous(), grad.contiguous(), ctx.shifts, concat), None

    op.register_autograd(_backward, setup_context=_setup)
    return op


#: ``torch.ops.xvdeploy.pssa`` — call as ``pssa(x, [dy0, dx0, …])``.
pssa = _define("pssa", concat=False)
#: ``torch.ops.xvdeploy.pssa_concat`` — call as ``pssa_concat(x, [dy0, dx0, …])``.
pssa_concat = _define("pssa_concat", concat=True)


def op_overload(mode: str = "sum") -> torch._ops.OpOverload:
    """The ``OpOverload`` of a mode (``torch.ops.xvdeploy.pssa.default`` for "sum")."""
    if mode not in MODES:
        raise XVDeployError(f"unknown PSSA mode {mode!r}; expected one of {', '.join(MODES)}")
    return getattr(getattr(torch.ops, NAMESPACE), MODES[mode]).default


def pssa_op(
    x: torch.Tensor,
    shifts: Iterable[Sequence[int]] | Sequence[int] | None = None,
    distance: int = 1,
    mode: str = "sum",
) -> torch.Tensor:
    """PSSA through the custom op: same arguments and result as :func:`pssa_transform`.

    ``shifts`` may be ``(dy, dx)`` pairs or the flat list; ``None`` means ``S_distance``.
    """
    from xvdeploy.ops.pssa import resolve_shifts

    if shifts is None:
        flat = flat_shifts(resolve_shifts(distance))
    else:
        flat = flat_shifts(list(shifts))
    check_input(x)
    return op_overload(mode)(x, list(flat))
