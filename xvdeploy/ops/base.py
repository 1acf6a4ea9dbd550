"""Shared pieces of the operators: "same" padding and the folded-module contract."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xvdeploy.errors import XVDeployError


def positive_int(name: str, value: int) -> int:
    """``value`` if it is a positive integer, else a one-line error naming the argument."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise XVDeployError(f"{name} must be a positive integer, got {value!r}")
    return value


def is_tracing() -> bool:
    """True while a forward is compiled, traced or exported (no data-dependent Python branches then)."""
    return bool(torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())


def same_padding(kernel_size: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) zero padding that keeps ``ceil(H / stride)`` outputs for any kernel."""
    total = dilation * (kernel_size - 1)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with "same" zero padding, asymmetric for even kernels.

    State-dict names are those of ``nn.Conv2d`` (``weight``, ``bias``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = True) -> None:
        before, after = same_padding(kernel_size, dilation)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=before if before == after else 0, dilation=dilation, groups=groups, bias=bias)
        self.extra_pad = None if before == after else (before, after, before, after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.extra_pad is not None:
            x = F.pad(x, self.extra_pad)
        return super().forward(x)


class FoldedOp(nn.Module):
    """Base of every inference-form operator produced by :func:`xvdeploy.fold`.

    ``operator`` names the training operator, ``merged`` says whether the
    branches became one convolution, ``note`` says why not (or what was done).
    """

    operator: str = ""
    merged: bool = False
    note: str = ""
