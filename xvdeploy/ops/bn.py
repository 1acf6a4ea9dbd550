"""BatchNorm folding as pure functions (RepVGG's ``_fuse_bn_tensor`` idea).

``W' = W·γ/σ``, ``b' = β + (b − μ)·γ/σ``, ``σ = sqrt(var + eps)`` (docs/design.md, BatchNorm folding),
computed in float64 and returned in float64; callers cast once at the end.
A missing bias is zero and a missing BN is the identity, so sums of branches
need no special cases.
"""
from __future__ import annotations

import torch
from torch import nn


def bn_scale_shift(bn: nn.BatchNorm2d | None, channels: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as ``y = x·scale + shift`` per channel (float64); identity if ``bn`` is None."""
    if bn is None:
        return (torch.ones(channels, dtype=torch.float64, device=device),
                torch.zeros(channels, dtype=torch.float64, device=device))
    mean = bn.running_mean.double() if bn.running_mean is not None else torch.zeros(channels, dtype=torch.float64, device=device)
    var = bn.running_var.double() if bn.running_var is not None else torch.ones(channels, dtype=torch.float64, device=device)
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    return scale, beta - mean * scale


def fuse_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BN that follows a linear map with ``weight`` (out channels first) and ``bias``."""
    out = weight.shape[0]
    scale, shift = bn_scale_shift(bn, out, weight.device)
    w = weight.double() * scale.view(-1, *([1] * (weight.dim() - 1)))
    b = shift if bias is None else bias.double() * scale + shift
    return w, b


def conv_weight_bias(conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kernel, bias)`` of ``bn(conv(x))`` in float64."""
    return fuse_bn(conv.weight, conv.bias, bn)


def pad_kernel(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad an odd ``k×k`` kernel to ``size×size`` around its centre (RepVGG style)."""
    k = kernel.shape[-1]
    if k == size:
        return kernel
    p = (size - k) // 2
    return torch.nn.functional.pad(kernel, (p, p, p, p))


def make_conv(weight: torch.Tensor, bias: torch.Tensor | None, like: torch.Tensor, **conv_kwargs) -> nn.Conv2d:
    """A new ``nn.Conv2d`` holding ``weight``/``bias`` cast to ``like``'s dtype and device."""
    out_ch, in_per_group, kh, kw = weight.shape
    groups = conv_kwargs.get("groups", 1)
    conv = nn.Conv2d(in_per_group * groups, out_ch, (kh, kw), bias=bias is not None, **conv_kwargs)
    conv = conv.to(device=like.device, dtype=like.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight.to(like.dtype))
        if bias is not None:
            conv.bias.copy_(bias.to(like.dtype))
    return conv


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """``bn(conv(x))`` as one convolution with the conv's own settings."""
    w, b = conv_weight_bias(conv, bn)
    return make_conv(w, b, conv.weight, stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                     groups=conv.groups, padding_mode=conv.padding_mode)


def make_linear(weight: torch.Tensor, bias: torch.Tensor | None, like: torch.Tensor) -> nn.Linear:
    """A new ``nn.Linear`` holding ``weight`` (out × in) / ``bias`` cast to ``like``'s dtype and device."""
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None).to(device=like.device, dtype=like.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight.to(like.dtype))
        if bias is not None:
            linear.bias.copy_(bias.to(like.dtype))
    return linear
