"""X-volution(SA): a conv branch beside global multi-head self-attention (docs/design.md, X-volution(SA)).

``y = BN_c(Conv_c(X)) + BN_a(P_o(MHSA(X)))``, MHSA with 1×1 projections
``Q, K, V`` and ``softmax(QᵀK/√d)·V`` over all ``H·W`` positions, no
positional encoding. With stride ``s`` the queries sit at ``X[..., ::s, ::s]``.
The fold puts BN_c into the conv, ``Q/K/V`` (with ``1/√d`` in ``Q``) into one
1×1 conv and BN_a (and a trailing BN) into ``P_o``.
"""
from __future__ import annotations

import torch
from torch import nn

from xvdeploy.errors import XVDeployError
from xvdeploy.ops.bn import bn_scale_shift, conv_weight_bias, fuse_bn, make_conv
from xvdeploy.ops.base import FoldedOp, SameConv2d, positive_int


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head attention over positions: ``q`` is ``N×D×h×w``, ``k``/``v`` are ``N×D×H×W``.

    Returns ``N×D×h×w``; ``q`` must already carry the ``1/√d`` scale.
    """
    n, d, h, w = q.shape
    hd = d // heads
    qf = q.reshape(n, heads, hd, -1).transpose(2, 3)  # n, heads, hw, hd
    kf = k.reshape(n, heads, hd, -1)  # n, heads, hd, HW
    vf = v.reshape(n, heads, hd, -1).transpose(2, 3)  # n, heads, HW, hd
    att = torch.softmax(qf @ kf, dim=-1)
    return (att @ vf).transpose(2, 3).reshape(n, d, h, w)


class XVolutionSA(nn.Module):
    """X-volution(SA), training form.

    Args:
        in_channels, out_channels: channel counts; ``heads`` must divide ``out_channels``.
        kernel_size, stride, dilation: of the conv branch (same padding).
        heads: attention heads.
        bias: bias in the conv branch and the projections.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, heads: int = 4,
                 stride: int = 1, dilation: int = 1, bias: bool = False) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("kernel_size", kernel_size), ("heads", heads), ("stride", stride), ("dilation", dilation)):
            positive_int(name, value)
        if out_channels % heads:
            raise XVDeployError(f"heads={heads} must divide out_channels={out_channels}")
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.conv = SameConv2d(in_channels, out_channels, kernel_size, stride, dilation, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels)
        self.query = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
        self.key = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
        self.value = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
        self.proj = nn.Conv2d(out_channels, out_channels, 1, bias=bias)
        self.attn_bn = nn.BatchNorm2d(out_channels)

    @property
    def scale(self) -> float:
        return (self.out_channels // self.heads) ** -0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        out = attention(self.query(xq) * self.scale, self.key(x), self.value(x), self.heads)
        return self.bn(self.conv(x)) + self.attn_bn(self.proj(out))

    @torch.no_grad()
    def fold(self, bn: nn.BatchNorm2d | None = None) -> "XVolutionSAFolded":
        """Inference form; ``bn`` is an eval-mode BatchNorm applied right after this block."""
        like = self.conv.weight
        wc, bc = fuse_bn(*conv_weight_bias(self.conv, self.bn), bn)
        conv = SameConv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.dilation, bias=True)
        conv = conv.to(device=like.device, dtype=like.dtype)
        conv.weight.copy_(wc.to(like.dtype))
        conv.bias.copy_(bc.to(like.dtype))
        parts = [conv_weight_bias(m) for m in (self.query, self.key, self.value)]
        wq, bq = parts[0]
        parts[0] = (wq * self.scale, bq * self.scale)
        qkv = make_conv(torch.cat([w for w, _ in parts]), torch.cat([b for _, b in parts]), like)
        wp, bp = conv_weight_bias(self.proj, self.attn_bn)
        scale, _ = bn_scale_shift(bn, self.out_channels, wp.device)
        # The trailing BN's shift is already in the conv branch's bias.
        proj = make_conv(wp * scale.view(-1, 1, 1, 1), bp * scale, like)
        return XVolutionSAFolded(conv, qkv, proj, self.heads, self.stride)


class XVolutionSAFolded(FoldedOp):
    """X-volution(SA), inference form: conv + (one QKV conv → attention → projection)."""

    operator = "X-volution(SA)"
    merged = False
    note = "conv + attention (Q/K/V in one 1×1 conv, BN in the projection)"

    def __init__(self, conv: nn.Module, qkv: nn.Conv2d, proj: nn.Conv2d, heads: int, stride: int) -> None:
        super().__init__()
        self.conv, self.qkv, self.proj = conv, qkv, proj
        self.heads, self.stride = heads, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=1)
        if self.stride > 1:
            q = q[:, :, :: self.stride, :: self.stride]
        return self.conv(x) + self.proj(attention(q, k, v, self.heads))
