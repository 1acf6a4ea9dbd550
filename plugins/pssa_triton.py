"""Launching the fused Triton PSSA kernel (see docs/design.md (PSSA)).

``pssa_triton(x, shifts)`` computes ``T = X ⊙ Σ_s roll_s(X)`` ("sum") or
``concat_s(X ⊙ roll_s(X))`` ("concat", channel ``s·C + c`` like
:func:`xvdeploy.pssa_contract.pssa_transform`, or ``c·|S| + s`` with
``channel_major=True`` like :func:`xvdeploy.ops.pssa.pssa_depthwise`) in one
pass: every program reads its block of ``X`` and the shifted neighbours (L1/L2
hits) and writes ``T`` once.

The shift list is compiled into the kernel (a ``tl.constexpr`` tuple, unrolled
with ``tl.static_range``); one compilation per shift list, dtype and block.
:mod:`triton` is imported on the first launch only. CUDA tensors run the
compiled kernel; CPU tensors run it in Triton's interpreter when
``TRITON_INTERPRET=1`` was set before that first launch (how CI tests it).
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Sequence

import torch

from xvdeploy._lazy import require
from xvdeploy.errors import XVDeployError
from xvdeploy.pssa_contract import check_input, check_mode, flat_shifts

#: the largest block of pixels one program handles (4 warps × 32 lanes × 8).
MAX_BLOCK = 1024
_MIN_BLOCK = 16


def pick_block(hw: int, block: int | None = None) -> int:
    """Pixels per program: the next power of two ≥ ``H·W`` (≥ 16), capped at :data:`MAX_BLOCK`."""
    if block is not None:
        if block < 1 or block & (block - 1):
            raise XVDeployError(f"the PSSA block size must be a power of two, got {block}")
        return block
    b = _MIN_BLOCK
    while b < hw and b < MAX_BLOCK:
        b *= 2
    return b


def num_warps_for(block: int) -> int:
    """Warps per program: one per 256 pixels, 1…4 (8 fp32 pixels per lane at 1024)."""
    return max(1, min(4, block // 256))


def interpreting() -> bool:
    """Whether Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def kernel_mode(mode: str, channel_major: bool = False) -> int:
    """The kernel's ``MODE`` constexpr: 0 sum, 1 concat (``s·C + c``), 2 concat channel-major (``c·|S| + s``)."""
    if check_mode(mode) == "sum":
        return 0
    return 2 if channel_major else 1


def load_kernel():
    """The ``@triton.jit`` kernel (imports :mod:`triton` on first call)."""
    require("triton", "The Triton PSSA kernel")
    from xvdeploy.plugins._pssa_kernel import pssa_kernel  # imports triton: lazy

    return pssa_kernel


def pssa_triton(
    x: torch.Tensor,
    shifts: Sequence[int] | Sequence[Sequence[int]],
    mode: str = "sum",
    *,
    channel_major: bool = False,
    block: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fused PSSA with the Triton kernel: ``X ⊙ Σ_s roll_s(X)`` or ``concat_s(X ⊙ roll_s X)``.

    ``x`` is ``N×C×H×W`` float32/float16/bfloat16/float64 on CUDA (or on CPU
    under ``TRITON_INTERPRET=1``); non-contiguous input (e.g. channels-last) is
    made contiguous. ``shifts`` is flat ``[dy0, dx0, …]`` or pairs; any integer
    values, wrapped modulo ``H``/``W`` like :func:`torch.roll`.
    ``channel_major`` orders "concat" channels ``c·|S| + s`` instead of
    ``s·C + c``. ``block`` overrides the pixels per program (a power of two;
    tests use it to force tails). ``out`` (contiguous, right shape and dtype)
    receives the result.
    """
    kmode = kernel_mode(mode, channel_major)
    check_input(x)
    flat = flat_shifts(shifts)
    if x.device.type == "cpu" and not interpreting():
        raise XVDeployError(
            "the Triton PSSA kernel runs on CUDA tensors; for CPU tensors set TRITON_INTERPRET=1 "
            "before the first launch (Triton's interpreter), or use torch.ops.xvdeploy.pssa"
        )
    x = x.contiguous()
    n, c, h, w = x.shape
    s = len(flat) // 2
    shape = (n, c * s, h, w) if mode == "concat" else (n, c, h, w)
    if out is None:
        out = torch.empty(shape, dtype=x.dtype, device=x.device)
    elif tuple(out.shape) != shape or out.dtype != x.dtype or not out.is_contiguous():
        raise XVDeployError(
            f"PSSA out= must be a contiguous {str(x.dtype).replace('torch.', '')} tensor of shape {shape}, "
            f"got {tuple(out.shape)} {out.dtype}"
        )
    if out.numel() == 0:
        return out
    hw = h * w
    blk = pick_block(hw, block)
    nblk = -(-hw // blk)
    if nblk * blk >= 2**31:  # in-plane offsets are int32, the last block's included
        raise XVDeployError(f"the PSSA kernel needs H·W ≤ 2^31 − {blk}, got {h}×{w}")
    if n * c * nblk >= 2**31:  # CUDA's grid x limit
        raise XVDeployError(f"the PSSA kernel needs N·C·⌈H·W/{blk}⌉ < 2^31 blocks, got {n * c * nblk}")
    kernel = load_kernel()
    grid = (n * c * nblk,)
    with torch.cuda.device(x.device) if x.is_cuda else nullcontext():
        kernel[grid](
            x, c, h, w, nblk, out,
            SHIFTS=flat, NUM_SHIFTS=s, MODE=kmode, BLOCK=blk,
            num_warps=num_warps_for(blk),
        )
    return out

