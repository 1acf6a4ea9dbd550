"""X-volution: training form and its fold (docs/design.md, X-volution).

Training: ``y = BN_c(Conv_c(X)) + BN_a(Conv_a(T))`` with ``T`` the PSSA
transform of ``X``. Inference: ``y = Conv(concat[X, T])`` where ``T`` comes
from the depthwise-shift subgraph, when strides, dilations, groups and odd
kernels allow the merge; otherwise two BN-free convolutions and an add.
"""
from __future__ import annotations

import torch
from torch import nn

from xvdeploy.errors import XVDeployError
from xvdeploy.ops.bn import bn_scale_shift, conv_weight_bias, fuse_bn, make_conv, pad_kernel
from xvdeploy.ops.base import FoldedOp, SameConv2d, positive_int
from xvdeploy.ops.pssa import ShiftKernel, pssa_depthwise
from xvdeploy.plugins.torch_op import op_overload
from xvdeploy.pssa_contract import check_mode, flat_shifts, pssa_transform, resolve_shifts, to_channel_major


class XVolution(nn.Module):
    """X-volution, training form: a conv branch and a PSSA branch, each with BatchNorm.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: ``k`` of the conv branch (any positive size; odd merges).
        attn_kernel_size: ``k_a`` of the convolution over ``T``.
        stride, dilation, groups: of the conv branch; the PSSA branch has the
            same stride, dilation 1 and groups 1.
        distance, shifts, mode: the PSSA step (see :func:`pssa_transform`).
        bias: whether both convolutions carry a bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, attn_kernel_size: int = 3,
                 stride: int = 1, dilation: int = 1, distance: int = 1, shifts=None, mode: str = "sum",
                 bias: bool = False, groups: int = 1) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("kernel_size", kernel_size), ("attn_kernel_size", attn_kernel_size),
                            ("stride", stride), ("dilation", dilation), ("groups", groups)):
            positive_int(name, value)
        check_mode(mode)
        if in_channels % groups or out_channels % groups:
            raise XVDeployError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.attn_kernel_size = kernel_size, attn_kernel_size
        self.stride, self.dilation, self.groups = stride, dilation, groups
        self.shifts = resolve_shifts(distance, shifts)
        self.mode = mode
        t_channels = in_channels * (len(self.shifts) if mode == "concat" else 1)
        self.conv = SameConv2d(in_channels, out_channels, kernel_size, stride, dilation, groups, bias)
        self.bn = nn.BatchNorm2d(out_channels)
        self.attn_conv = SameConv2d(t_channels, out_channels, attn_kernel_size, stride, 1, 1, bias)
        self.attn_bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = pssa_transform(x, shifts=self.shifts, mode=self.mode)
        return self.bn(self.conv(x)) + self.attn_bn(self.attn_conv(t))

    def merge_blocker(self) -> str | None:
        """Why the two branches cannot become one convolution, or None if they can."""
        k, ka = self.kernel_size, self.attn_kernel_size
        if k % 2 == 0 or ka % 2 == 0:
            return f"even kernel ({k}×{k} conv, {ka}×{ka} attention conv)"
        if self.groups != 1:
            return f"grouped conv branch (groups={self.groups})"
        if self.dilation != 1 and k != 1 and ka != 1:
            return f"different dilations (conv {self.dilation}, attention conv 1)"
        return None

    @torch.no_grad()
    def fold(self, bn: nn.BatchNorm2d | None = None) -> "XVolutionFolded":
        """Inference form; ``bn`` is an eval-mode BatchNorm applied right after this block."""
        wc, bc = conv_weight_bias(self.conv, self.bn)
        wa, ba = conv_weight_bias(self.attn_conv, self.attn_bn)
        if self.mode == "concat":  # reference order s·C + c -> depthwise-form order c·|S| + s
            wa = to_channel_major(wa, len(self.shifts))
        like = self.conv.weight
        blocker = self.merge_blocker()
        if blocker is None:
            size = max(self.kernel_size, self.attn_kernel_size)
            dilation = self.dilation if self.kernel_size != 1 else 1
            w = torch.cat([pad_kernel(wc, size), pad_kernel(wa, size)], dim=1)
            w, b = fuse_bn(w, bc + ba, bn)
            convs = [make_conv(w, b, like, stride=self.stride, padding=dilation * (size - 1) // 2, dilation=dilation)]
        else:
            wc, bc = fuse_bn(wc, bc, bn)  # the trailing BN's shift goes into one branch only
            scale, _ = bn_scale_shift(bn, wa.shape[0], wa.device)
            wa, ba = wa * scale.view(-1, 1, 1, 1), ba * scale
            convs = [_same_conv(wc, bc, like, self.stride, self.dilation, self.groups),
                     _same_conv(wa, ba, like, self.stride, 1, 1)]
        return XVolutionFolded(self.in_channels, self.shifts, self.mode, convs, blocker)


def _same_conv(w: torch.Tensor, b: torch.Tensor, like: torch.Tensor, stride: int, dilation: int, groups: int) -> SameConv2d:
    conv = SameConv2d(w.shape[1] * groups, w.shape[0], w.shape[-1], stride, dilation, groups, bias=True)
    conv = conv.to(device=like.device, dtype=like.dtype)
    conv.weight.copy_(w.to(like.dtype))
    conv.bias.copy_(b.to(like.dtype))
    return conv


class XVolutionFolded(FoldedOp):
    """X-volution, inference form: ``Conv(concat[X, T])`` or ``Conv_c(X) + Conv_a(T)``.

    ``T`` is computed with the depthwise-shift form (Pad wrap → depthwise Conv
    with a fixed one-hot kernel → Mul).
    """

    operator = "X-volution"

    def __init__(self, channels: int, shifts, mode: str, convs: list[nn.Module], blocker: str | None) -> None:
        super().__init__()
        self.channels = channels
        self.mode = mode
        self.shift_kernel = ShiftKernel.from_shifts(resolve_shifts(shifts=shifts))
        self.merged = blocker is None
        self.note = "one conv over concat[X, T]" if self.merged else f"two convs + add: {blocker}"
        like = convs[0].weight
        self.register_buffer("shift_weight", self.shift_kernel.weight(channels, mode, like.dtype, like.device),
                             persistent=False)
        repeat = torch.ones(self.shift_weight.shape[0], 1, 1, 1, dtype=like.dtype, device=like.device)
        self.register_buffer("repeat_weight", repeat if mode == "concat" else None, persistent=False)
        if self.merged:
            self.conv = convs[0]
        else:
            self.conv, self.attn_conv = convs

    @property
    def shifts(self) -> list[tuple[int, int]]:
        return list(self.shift_kernel.shifts)

    #: compute ``T`` with the fused op ``torch.ops.xvdeploy.pssa`` (Triton on CUDA) instead of the
    #: depthwise-shift subgraph; set with :func:`xvdeploy.folding.use_pssa_plugin` (the one swap)
    use_plugin: bool = False

    def pssa(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_plugin:
            flat = list(flat_shifts(self.shift_kernel.shifts))
            if self.mode == "sum":
                return op_overload("sum")(x, flat)
            return op_overload("concat")(x, flat, True)  # channel-major, as the merged conv expects
        return pssa_depthwise(x, self.shift_kernel, self.shift_weight, self.mode, self.repeat_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.pssa(x)
        if self.merged:
            return self.conv(torch.cat([x, t], dim=1))
        return self.conv(x) + self.attn_conv(t)
