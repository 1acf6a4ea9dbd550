"""PSSA (pixel-shift self-attention) transform, DESIGN §2.1.

Two formulations of the same function:

* the reference (``roll`` form): ``A = Σ_s roll_s(X)``, ``T = X ⊙ A``;
* the depthwise-shift form (the ACmix paper's §4.3 trick): a cyclic shift is a
  depthwise convolution with a fixed one-hot kernel after wrap padding, so
  ``A = DepthwiseConv(Pad_wrap(X, P), K_fixed)``. It exports as Pad(wrap) →
  Conv(group=C) → Mul instead of ~28 Slice/Concat/Add nodes.

Shifts follow :func:`torch.roll`: ``roll_s(X)[i] = X[i - s]`` (cyclic).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from xvdeploy.errors import XVDeployError
from xvdeploy.ops.base import is_tracing

Shift = tuple[int, int]
MODES = ("sum", "concat")


def default_shifts(distance: int = 1) -> list[Shift]:
    """``S_L``: the 8 directions at distance ``L`` (row-major, centre excluded)."""
    if not isinstance(distance, int) or distance < 1:
        raise XVDeployError(f"PSSA distance must be a positive integer, got {distance!r}")
    return [(distance * dy, distance * dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def resolve_shifts(distance: int = 1, shifts: Iterable[Sequence[int]] | None = None) -> list[Shift]:
    """The shift list of a PSSA step: ``shifts`` if given, else ``S_distance``."""
    if shifts is None:
        return default_shifts(distance)
    out: list[Shift] = []
    for s in shifts:
        if len(s) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in s):
            raise XVDeployError(f"each PSSA shift must be a pair of integers (dy, dx), got {s!r}")
        out.append((int(s[0]), int(s[1])))
    if not out:
        raise XVDeployError("the PSSA shift list is empty; expected at least one (dy, dx) pair")
    return out


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise XVDeployError(f"unknown PSSA mode {mode!r}; expected one of {', '.join(MODES)}")


def pssa_transform(
    x: torch.Tensor,
    distance: int = 1,
    shifts: Iterable[Sequence[int]] | None = None,
    mode: str = "sum",
) -> torch.Tensor:
    """Reference PSSA: ``T = X ⊙ Σ_s roll_s(X)`` ("sum") or ``concat_s(X ⊙ roll_s(X))`` ("concat").

    ``x`` is ``N×C×H×W``; shifts are cyclic, with :func:`torch.roll` semantics.
    """
    _check_mode(mode)
    shift_list = resolve_shifts(distance, shifts)
    if x.dim() != 4:
        raise XVDeployError(f"PSSA expects an N×C×H×W tensor, got shape {tuple(x.shape)}")
    rolled = [torch.roll(x, shifts=s, dims=(2, 3)) for s in shift_list]
    if mode == "sum":
        return x * torch.stack(rolled).sum(0) if len(rolled) > 1 else x * rolled[0]
    return torch.cat([x * r for r in rolled], dim=1)


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
        _check_mode(mode)
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


def pssa_depthwise(x: torch.Tensor, kernel: ShiftKernel, weight: torch.Tensor, mode: str = "sum",
                   repeat_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Depthwise-shift PSSA with a prepared ``weight`` (see :meth:`ShiftKernel.weight`).

    "concat" output channels are ordered ``c·|S| + s`` (channel-major), unlike
    the reference's ``s·C + c``; consumers permute their weights accordingly.
    Falls back to the roll form where the map is smaller than the pads, so the
    result equals :func:`pssa_transform` for every size. ``repeat_weight`` (ones,
    ``C·|S|×1×1×1``) may be passed in "concat" mode to keep it a constant.
    """
    n, c, h, w = x.shape
    if not is_tracing() and not kernel.fits(h, w):
        ref = pssa_transform(x, shifts=kernel.shifts, mode=mode)
        if mode == "concat":
            ref = ref.view(n, len(kernel.shifts), c, h, w).transpose(1, 2).reshape(n, -1, h, w)
        return ref
    padded = F.pad(x, (kernel.pad_w, kernel.pad_w, kernel.pad_h, kernel.pad_h), mode="circular")
    a = F.conv2d(padded, weight, dilation=kernel.dilation, groups=c)
    if mode == "sum":
        return x * a
    # channel c·|S| + s needs X_c: a grouped 1×1 conv of ones repeats each channel |S| times
    # (exports as one Conv, where a view/reshape would add Shape/Reshape nodes under dynamic shapes)
    repeat = weight.new_ones(weight.shape[0], 1, 1, 1) if repeat_weight is None else repeat_weight
    return F.conv2d(x, repeat, groups=c) * a

