"""PSSA as PyTorch custom ops, registered on import (see docs/design.md (PSSA)).

* ``torch.ops.xvdeploy.pssa(x, shifts) -> T``: ``T = X ⊙ Σ_s roll_s(X)``;
* ``torch.ops.xvdeploy.pssa_concat(x, shifts, channel_major=False) -> T``:
  ``T = concat_s(X ⊙ roll_s X)``, channel ``s·C + c`` (like
  :func:`xvdeploy.pssa_contract.pssa_transform`) or, with ``channel_major``,
  ``c·|S| + s`` (like the folded modules' :func:`xvdeploy.ops.pssa.pssa_depthwise`).

``shifts`` is flat ``[dy0, dx0, dy1, dx1, …]`` (``torch.roll`` semantics, any
integer, wrapped modulo ``H``/``W``). Implementations: CPU (and any non-CUDA
device) = the reference roll math of :mod:`xvdeploy.pssa_contract`; CUDA = the
fused Triton kernel (:mod:`xvdeploy.plugins.pssa_triton`); a fake implementation
for ``torch.export`` / ``torch.compile``; a backward so the op also trains.
Non-contiguous / channels-last inputs are made contiguous; the output is
always contiguous. Bad input raises :class:`~xvdeploy.errors.XVDeployError`.
Op names, modes and shift validation come from :mod:`xvdeploy.pssa_contract`.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from xvdeploy.plugins.pssa_triton import pssa_triton
from xvdeploy.pssa_contract import (
    TORCH_NAMESPACE,
    TORCH_OPS,
    check_input,
    check_mode,
    flat_shifts,
    pssa_transform,
    resolve_shifts,
    shift_pairs,
    to_shift_major,
    torch_op_name,
)


def _validate(x: torch.Tensor, shifts: Sequence[int], mode: str) -> tuple[int, ...]:
    check_input(x, torch_op_name(mode))
    return flat_shifts(shifts)


def _reference(x: torch.Tensor, flat: Sequence[int], concat: bool, channel_major: bool = False) -> torch.Tensor:
    """:func:`~xvdeploy.pssa_contract.pssa_transform` on a contiguous input (any device).

    fp16/bf16 are computed in fp32 and rounded once, like the Triton kernel.
    """
    dtype = x.dtype
    x = x.contiguous()
    if dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    out = pssa_transform(x, shifts=shift_pairs(flat), mode="concat" if concat else "sum", channel_major=channel_major)
    return out.to(dtype)


def _out_shape(x: torch.Tensor, flat: Sequence[int], concat: bool) -> tuple:
    n, c, h, w = x.shape
    return (n, c * (len(flat) // 2), h, w) if concat else (n, c, h, w)


def _backward_math(x: torch.Tensor, grad: torch.Tensor, flat: Sequence[int], concat: bool,
                   channel_major: bool = False) -> torch.Tensor:
    """``∂L/∂X``: sum ``g ⊙ A + Σ_s roll_{-s}(g ⊙ X)``; concat ``Σ_s g_s ⊙ roll_s X + roll_{-s}(g_s ⊙ X)``."""
    pairs = shift_pairs(flat)
    c = x.shape[1]
    if concat and channel_major:
        grad = to_shift_major(grad, len(pairs))
    gx = torch.zeros_like(x)
    for i, (dy, dx) in enumerate(pairs):
        g = grad[:, i * c:(i + 1) * c] if concat else grad
        gx = gx + g * torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        gx = gx + torch.roll(g * x, shifts=(-dy, -dx), dims=(2, 3))
    return gx


def _has_op(mode: str) -> bool:
    return hasattr(getattr(torch.ops, TORCH_NAMESPACE), TORCH_OPS[mode])


def _existing(mode: str):
    return getattr(getattr(torch.ops, TORCH_NAMESPACE), TORCH_OPS[mode]).default


def _define_sum():
    """Register ``xvdeploy::pssa`` once per process (a second import reuses it)."""
    if _has_op("sum"):
        return _existing("sum")

    @torch.library.custom_op(torch_op_name("sum"), mutates_args=(), schema="(Tensor x, int[] shifts) -> Tensor")
    def pssa(x: torch.Tensor, shifts: list[int]) -> torch.Tensor:
        """``X ⊙ Σ_s roll_s(X)`` (reference implementation; CUDA runs the Triton kernel)."""
        return _reference(x, _validate(x, shifts, "sum"), concat=False)

    @pssa.register_kernel("cuda")
    def _cuda(x: torch.Tensor, shifts: list[int]) -> torch.Tensor:
        return pssa_triton(x, _validate(x, shifts, "sum"), "sum")

    @pssa.register_fake
    def _fake(x: torch.Tensor, shifts: list[int]) -> torch.Tensor:
        return x.new_empty(_out_shape(x, _validate(x, shifts, "sum"), False))

    def _setup(ctx, inputs, output) -> None:
        x, shifts = inputs
        ctx.save_for_backward(x)
        ctx.shifts = tuple(shifts)

    def _backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return _backward_math(x.contiguous(), grad.contiguous(), ctx.shifts, False), None

    pssa.register_autograd(_backward, setup_context=_setup)
    return pssa


def _define_concat():
    """Register ``xvdeploy::pssa_concat`` once per process (a second import reuses it)."""
    if _has_op("concat"):
        return _existing("concat")

    @torch.library.custom_op(torch_op_name("concat"), mutates_args=(),
                              schema="(Tensor x, int[] shifts, bool channel_major=False) -> Tensor")
    def pssa_concat(x: torch.Tensor, shifts: list[int], channel_major: bool = False) -> torch.Tensor:
        """``concat_s (X ⊙ roll_s X)`` (reference implementation; CUDA runs the Triton kernel)."""
        return _reference(x, _validate(x, shifts, "concat"), True, bool(channel_major))

    @pssa_concat.register_kernel("cuda")
    def _cuda(x: torch.Tensor, shifts: list[int], channel_major: bool = False) -> torch.Tensor:
        return pssa_triton(x, _validate(x, shifts, "concat"), "concat", channel_major=bool(channel_major))

    @pssa_concat.register_fake
    def _fake(x: torch.Tensor, shifts: list[int], channel_major: bool = False) -> torch.Tensor:
        return x.new_empty(_out_shape(x, _validate(x, shifts, "concat"), True))

    def _setup(ctx, inputs, output) -> None:
        x, shifts, channel_major = inputs
        ctx.save_for_backward(x)
        ctx.shifts = tuple(shifts)
        ctx.channel_major = bool(channel_major)

    def _backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        gx = _backward_math(x.contiguous(), grad.contiguous(), ctx.shifts, True, ctx.channel_major)
        return gx, None, None

    pssa_concat.register_autograd(_backward, setup_context=_setup)
    return pssa_concat


#: ``torch.ops.xvdeploy.pssa`` — call as ``pssa(x, [dy0, dx0, …])``.
pssa = _define_sum()
#: ``torch.ops.xvdeploy.pssa_concat`` — call as ``pssa_concat(x, [dy0, dx0, …], channel_major=False)``.
pssa_concat = _define_concat()


def op_overload(mode: str = "sum") -> torch._ops.OpOverload:
    """The ``OpOverload`` of a mode (``torch.ops.xvdeploy.pssa.default`` for "sum")."""
    return _existing(check_mode(mode))


def pssa_op(
    x: torch.Tensor,
    shifts: Iterable[Sequence[int]] | Sequence[int] | None = None,
    distance: int = 1,
    mode: str = "sum",
    channel_major: bool = False,
) -> torch.Tensor:
    """PSSA through the custom ops: same arguments and result as :func:`pssa_transform`.

    ``shifts`` may be ``(dy, dx)`` pairs or the flat list; ``None`` means ``S_distance``.
    ``channel_major`` ("concat" only) orders channels ``c·|S| + s`` like the folded modules.
    """
    check_mode(mode)
    flat = flat_shifts(resolve_shifts(distance) if shifts is None else list(shifts))
    check_input(x)
    if mode == "sum":
        return _existing("sum")(x, list(flat))
    return _existing("concat")(x, list(flat), bool(channel_major))
