"""The Triton kernel of the fused PSSA step (see docs/design.md (PSSA)); imported lazily.

This module imports :mod:`triton` at the top, so nothing in the package imports
it before a kernel is launched: ``import xvdeploy.plugins`` stays triton-free
and ``TRITON_INTERPRET`` is read when this module is first imported.

One program handles ``BLOCK`` consecutive pixels of one ``(n, c)`` plane
(1-D grid of ``N·C·NBLK`` programs, ``NBLK = ⌈H·W / BLOCK⌉``; consecutive
programs walk one plane, so the neighbour rows a shift reads are in L2). For
each pixel ``p = (h, w)`` and each shift ``(dy, dx)`` it reads
``X[(h - dy) mod H, (w - dx) mod W]`` (``torch.roll`` semantics), so

* ``MODE = 0`` ("sum"): ``T[p] = X[p] · Σ_s X[p - s]`` accumulated in fp32 (fp64 for fp64);
* ``MODE = 1`` ("concat"): ``T[n, s·C + c, p] = X[p] · X[p - s]`` (the reference order);
* ``MODE = 2`` ("concat", channel-major): ``T[n, c·|S| + s, p]`` (the folded modules' order).

The argument order (input pointer, int32 scalars, output pointer, constexprs)
is the one TensorRT's AOT plugins launch with (inputs, extra args, outputs).
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _source_index(i, shift, size):
    """``(i - shift) mod size`` for ``0 <= i < size``: the shift is reduced once per program (robust to
    C or Python ``%`` on negatives), then one compare-and-add per element replaces a per-element modulo."""
    s = ((shift % size) + size) % size
    j = i - s
    return tl.where(j < 0, j + size, j)


@triton.jit
def pssa_kernel(
    x_ptr,
    C,
    H,
    W,
    NBLK,
    out_ptr,
    SHIFTS: tl.constexpr,
    NUM_SHIFTS: tl.constexpr,
    MODE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    plane = pid // NBLK
    blk = pid - plane * NBLK
    hw = H * W
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < hw
    h = offs // W
    w = offs - h * W
    base = plane.to(tl.int64) * hw
    xin = tl.load(x_ptr + base + offs, mask=mask, other=0.0)
    if xin.dtype == tl.float64:
        x = xin
    else:
        x = xin.to(tl.float32)
    acc = tl.zeros([BLOCK], dtype=x.dtype)
    for i in tl.static_range(NUM_SHIFTS):
        dy = SHIFTS[2 * i]
        dx = SHIFTS[2 * i + 1]
        # Source row / column, wrapped into [0, H) / [0, W)
        hs = h
        if dy != 0:
            hs = _source_index(h, dy, H)
        ws = w
        if dx != 0:
            ws = _source_index(w, dx, W)
        v = tl.load(x_ptr + base + hs * W + ws, mask=mask, other=0.0).to(x.dtype)
        if MODE == 1:
            n = plane // C
            c = plane - n * C
            obase = ((n * NUM_SHIFTS + i) * C + c).to(tl.int64) * hw
            tl.store(out_ptr + obase + offs, (x * v).to(out_ptr.dtype.element_ty), mask=mask)
        elif MODE == 2:
            obase = (plane.to(tl.int64) * NUM_SHIFTS + i) * hw
            tl.store(out_ptr + obase + offs, (x * v).to(out_ptr.dtype.element_ty), mask=mask)
        else:
            acc += v
    if MODE == 0:
        tl.store(out_ptr + base + offs, (x * acc).to(out_ptr.dtype.element_ty), mask=mask)
