"""PSSA (pixel-shift self-attention) transform: the depthwise-shift form (see docs/design.md (PSSA)).

Two formulations of the same function:

* the reference (``roll`` form): ``A = Σ_s roll_s(X)``, ``T = X ⊙ A``
  (:func:`xvdeploy.pssa_contract.pssa_transform`, re-exported here);
* the depthwise-shift form (the ACmix paper's §4.3 trick): a cyclic shift is a
  depthwise convolution with a fixed one-hot kernel after wrap padding, so
  ``A = DepthwiseConv(Pad_wrap(X, P), K_fixed)``. It exports as Pad(wrap) →
  Conv(group=C) → Mul instead of ~28 Slice/Concat/Add nodes; under
  :func:`portable_wrap_pad` (the export's ``--portable`` / opset < 19) the
  wrap padding is written as Slice+Concat instead (same values, 6 nodes, no
  ``Pad mode=wrap``, which needs opset 19 and many runtimes refuse).

Shifts follow :func:`torch.roll`: ``roll_s(X)[i] = X[i - s]`` (cyclic). Modes,
shift lists and the "concat" channel orders are defined in
:mod:`xvdeploy.pssa_contract`.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from xvdeploy.ops.base import is_tracing
from xvdeploy.pssa_contract import Shift, check_mode, default_shifts, pssa_transform, resolve_shifts

__all__ = ["ShiftKernel", "default_shifts", "portable_wrap_pad", "pssa_depthwise", "pssa_transform", "resolve_shifts",
           "wrap_pad"]


@dataclass(frozen=True)
class ShiftKernel:
    """A shift list as a fixed depthwise kernel: wrap padding, kernel taps, dilation.

    Tap ``(ky, kx)`` of shift ``(dy, dx)`` is ``(Py - dy, Px - dx) / dilation``
    (cross-correlation after padding by ``P`` reads ``X[i + p - P]``).
    """

    shifts: tuple[Shift, ...]
    pad_h: int
    pad_w: int
    dilation: int

    @classmethod
    def from_shifts(cls, shifts: Sequence[Shift]) -> "ShiftKernel":
        pad_h = max(abs(dy) for dy, _ in shifts)
        pad_w = max(abs(dx) for _, dx in shifts)
        g = 0
        for dy, dx in shifts:
            g = math.gcd(g, math.gcd(abs(dy), abs(dx)))
        return cls(tuple(shifts), pad_h, pad_w, max(g, 1))

    @property
    def size(self) -> tuple[int, int]:
        return 2 * self.pad_h // self.dilation + 1, 2 * self.pad_w // self.dilation + 1

    def taps(self) -> list[tuple[int, int]]:
        d = self.dilation
        return [((self.pad_h - dy) // d, (self.pad_w - dx) // d) for dy, dx in self.shifts]

    def weight(self, channels: int, mode: str, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> torch.Tensor:
        """Depthwise weight: ``C×1×kh×kw`` ("sum") or ``C·|S|×1×kh×kw`` ("concat", order ``c·|S| + s``)."""
        check_mode(mode)
        kh, kw = self.size
        n = len(self.shifts)
        if mode == "sum":
            k = torch.zeros(kh, kw, dtype=dtype, device=device)
            for ty, tx in self.taps():
                k[ty, tx] += 1
            return k.expand(channels, 1, kh, kw).contiguous()
        k = torch.zeros(n, kh, kw, dtype=dtype, device=device)
        for s, (ty, tx) in enumerate(self.taps()):
            k[s, ty, tx] = 1
        return k.repeat(channels, 1, 1).unsqueeze(1)

    def fits(self, h: int, w: int) -> bool:
        """Whether wrap padding by this kernel's pads is valid on an ``h×w`` map (pads ≤ size)."""
        return self.pad_h <= h and self.pad_w <= w


_portable_pad = False


@contextlib.contextmanager
def portable_wrap_pad(enabled: bool = True) -> Iterator[None]:
    """While active, :func:`wrap_pad` traces as Slice+Concat instead of ``Pad(mode=wrap)`` (an export-time setting)."""
    global _portable_pad
    before, _portable_pad = _portable_pad, enabled
    try:
        yield
    finally:
        _portable_pad = before


def wrap_pad(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Cyclic padding of the last two axes by ``pad_h`` rows and ``pad_w`` columns on each side.

    ``F.pad(mode="circular")`` (exported as ``Pad(mode=wrap)``), or, while
    tracing under :func:`portable_wrap_pad`, the same copy as
    ``Concat(X[..., -p:], X, X[..., :p])`` per axis: the Slices have constant
    starts/ends (negative from the end), so H and W stay dynamic. Both copy
    values only, so the results are bit-identical; eager mode always takes
    ``F.pad``.
    """
    if not (_portable_pad and is_tracing()):
        return F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="circular")
    if pad_w:
        x = torch.cat([x[..., -pad_w:], x, x[..., :pad_w]], dim=-1)
    if pad_h:
        x = torch.cat([x[..., -pad_h:, :], x, x[..., :pad_h, :]], dim=-2)
    return x


def pssa_depthwise(x: torch.Tensor, kernel: ShiftKernel, weight: torch.Tensor, mode: str = "sum",
                   repeat_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Depthwise-shift PSSA with a prepared ``weight`` (see :meth:`ShiftKernel.weight`).

    "concat" output channels are ordered ``c·|S| + s`` (channel-major), unlike
    the reference's ``s·C + c``; consumers permute their weights accordingly.
    Falls back to the roll form where the map is smaller than the pads, so the
    result equals :func:`pssa_transform` for every size. ``repeat_weight`` (ones,
    ``C·|S|×1×1×1``) may be passed in "concat" mode to keep it a constant.
    """
    _, c, h, w = x.shape
    if not is_tracing() and not kernel.fits(h, w):
        return pssa_transform(x, shifts=kernel.shifts, mode=mode, channel_major=True)
    padded = wrap_pad(x, kernel.pad_h, kernel.pad_w)
    a = F.conv2d(padded, weight, dilation=kernel.dilation, groups=c)
    if mode == "sum":
        return x * a
    # channel c·|S| + s needs X_c: a grouped 1×1 conv of ones repeats each channel |S| times
    # (exports as one Conv, where a view/reshape would add Shape/Reshape nodes under dynamic shapes)
    repeat = weight.new_ones(weight.shape[0], 1, 1, 1) if repeat_weight is None else repeat_weight
    return F.conv2d(x, repeat, groups=c) * a

