"""Swin window attention, plain and with ACmix, and their fold (docs/design.md#acmix-swin).

Training form — the state-dict keys and shapes of Swin's ``WindowAttention``
(microsoft/Swin-Transformer) and of ``WindowAttention_acmix`` (LeapLabTHU/ACmix,
``Swin-Transformer/models/swin_transformer_acmix.py``), so their checkpoints
load unchanged. Both take the whole ``(B, H, W, C)`` map (already LayerNorm'd
and cyclically shifted by the block) and the block's shift mask:

- ``qkv = Linear(C, 3C)(x)``; channel ``(t·heads + h)·d + i`` is part ``t``
  (q, k, v) of head ``h``, ``d = C / heads``;
- attention path, per ``w×w`` window and head:
  ``softmax(q·kᵀ·d^-½ + B + M)·v`` then ``proj`` (Linear ``C→C``), where
  ``B = relative_position_bias_table[relative_position_index]`` is
  ``(heads, N, N)``, ``N = w²``, and ``M`` the shift mask (0 / −100);
- ACmix's convolution path: ``fc`` (a biased 1×1 conv, ``3·heads → k²``)
  mixes the ``3·heads`` head-slices of ``qkv`` at every position and channel
  ``i``, giving ``f`` with channel ``i·k² + j``; ``dep_conv`` (a ``k×k`` conv
  with ``d`` groups, zero padding, no bias) maps ``f`` to ``C`` channels;
- ACmix's output is ``rate1·attention + rate2·conv``.

Inference form (:class:`WindowAttentionFolded`): ``fc∘qkv`` is linear in
``x``, so one Linear emits ``[q·d^-½, k, v, f]`` (biases composed); ``rate1``
goes into ``proj`` (weight and bias), ``rate2`` into ``dep_conv``; ``B`` is
gathered once into a constant buffer. The shift mask stays the block's
constant buffer; LayerNorm stays where it is (the block's). Nothing else
changes, so outputs agree to float32 rounding.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from xvdeploy.errors import XVDeployError
from xvdeploy.ops.acmix import init_conv_path
from xvdeploy.ops.base import FoldedOp, positive_int
from xvdeploy.ops.bn import make_linear

#: value of the shift mask between tokens of different regions (Swin's, not −inf: softmax stays finite)
MASK_VALUE = -100.0


def relative_position_index(window: int) -> torch.Tensor:
    """``(N, N)`` int64, ``N = window²``: row of the ``(2w−1)²`` bias table for the offset from token ``j`` to ``i``.

    Tokens are numbered row-major inside the window; the offset
    ``(dy, dx) = pos_i − pos_j`` maps to ``(dy + w − 1)·(2w − 1) + dx + w − 1``.
    """
    pos = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    offset = pos[:, :, None] - pos[:, None, :] + (window - 1)  # (2, N, N), each in [0, 2w − 2]
    return offset[0] * (2 * window - 1) + offset[1]


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, H, W, C)`` → ``(B, nW, w², C)``; windows row-major over the map, tokens row-major in a window.

    The batch axis is never merged with the window axis, so an exported graph
    reshapes only static dimensions and the batch stays a plain dynamic axis.
    """
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c).transpose(2, 3)
    return x.reshape(b, (h // window) * (w // window), window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B, nW, w², C)`` → ``(B, H, W, C)``."""
    b, c = windows.shape[0], windows.shape[-1]
    x = windows.reshape(b, h // window, w // window, window, window, c).transpose(2, 3)
    return x.reshape(b, h, w, c)


def shift_mask(h: int, w: int, window: int, shift: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Swin's shifted-window mask ``(nW, N, N)``: 0 within a region, :data:`MASK_VALUE` across regions.

    After the cyclic shift by ``−shift`` the map has three bands per axis
    (``[0, H−w)``, ``[H−w, H−shift)``, ``[H−shift, H)``); tokens of one
    window attend only to tokens of their own band pair.
    """
    def bands(n: int) -> torch.Tensor:
        idx = torch.arange(n)
        return (idx >= n - window).long() + (idx >= n - shift).long()

    region = (bands(h)[:, None] * 3 + bands(w)[None, :]).to(dtype)
    ids = window_partition(region.view(1, h, w, 1), window)[0, :, :, 0]  # (nW, N)
    same = ids[:, None, :] == ids[:, :, None]
    return torch.where(same, torch.zeros((), dtype=dtype), torch.full((), MASK_VALUE, dtype=dtype))


def window_attention(qkv: torch.Tensor, window: int, heads: int, bias: torch.Tensor, mask: torch.Tensor | None,
                     scale: float | None) -> torch.Tensor:
    """Multi-head attention inside each window, before the output projection.

    ``qkv`` is ``(B, H, W, 3C)`` (q, k, v, each head-major); ``bias`` is
    ``(heads, N, N)``; ``mask`` ``(nW, N, N)`` or None; ``scale`` multiplies q
    (None: q is already scaled). Returns ``(B, H, W, C)``.
    """
    b, h, w, c3 = qkv.shape
    c, n = c3 // 3, window * window
    windows = window_partition(qkv, window)  # (B, nW, N, 3C)
    nw = windows.shape[1]
    q, k, v = windows.reshape(b, nw, n, 3, heads, c // heads).permute(3, 0, 1, 4, 2, 5).unbind(0)  # (B, nW, heads, N, d)
    if scale is not None:
        q = q * scale
    att = q @ k.transpose(-2, -1) + bias  # (B, nW, heads, N, N)
    if mask is not None:
        att = att + mask.unsqueeze(1)
    out = (att.softmax(dim=-1) @ v).transpose(2, 3).reshape(b, nw, n, c)
    return window_reverse(out, window, h, w)


def _check_map(x: torch.Tensor, dim: int, window: int) -> None:
    if x.dim() != 4 or x.shape[-1] != dim:
        raise XVDeployError(f"window attention takes a (B, H, W, {dim}) map, got shape {tuple(x.shape)}")
    h, w = x.shape[1], x.shape[2]
    if isinstance(h, int) and isinstance(w, int) and (h % window or w % window):
        raise XVDeployError(f"window attention with window {window} needs H and W divisible by {window}, got {h}×{w}")


class WindowAttention(nn.Module):
    """Swin's window attention (W-MSA / SW-MSA), training form; keys as microsoft/Swin-Transformer's.

    Args:
        dim: channels ``C`` (``num_heads`` must divide it).
        window_size: side ``w`` of the square windows.
        num_heads: attention heads.
        qkv_bias: bias in the qkv projection.
        qk_scale: overrides ``head_dim ** -0.5``.
    """

    operator = "WindowAttention"

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
                 qk_scale: float | None = None) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("window_size", window_size), ("num_heads", num_heads)):
            positive_int(name, value)
        if dim % num_heads:
            raise XVDeployError(f"num_heads={num_heads} must divide dim={dim}")
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}"

    def position_bias(self) -> torch.Tensor:
        """The table gathered by the index: ``(heads, N, N)``."""
        n = self.window_size ** 2
        return self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)

    def attention_path(self, qkv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.proj(window_attention(qkv, self.window_size, self.num_heads, self.position_bias(), mask, self.scale))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(B, H, W, C)``; ``mask``: ``(nW, N, N)`` or None. Returns ``(B, H, W, C)``."""
        _check_map(x, self.dim, self.window_size)
        return self.attention_path(self.qkv(x), mask)

    def _stem_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """qkv's weight and bias in float64 (zero bias if it has none)."""
        w = self.qkv.weight.double()
        b = self.qkv.bias.double() if self.qkv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64,
                                                                                 device=w.device)
        return w, b

    def _scaled_qkv(self) -> tuple[torch.Tensor, torch.Tensor]:
        w, b = self._stem_weights()
        scale = torch.ones(3 * self.dim, dtype=torch.float64, device=w.device)
        scale[:self.dim] = self.scale
        return w * scale[:, None], b * scale

    def _check_no_bn(self, bn) -> None:
        if bn is not None:
            raise XVDeployError(f"{self.operator} is not followed by a BatchNorm in Swin; cannot fold one into it")

    @torch.no_grad()
    def fold(self, bn: nn.BatchNorm2d | None = None) -> "WindowAttentionFolded":
        """Inference form: q·scale inside the qkv Linear, the position bias gathered once."""
        self._check_no_bn(bn)
        w, b = self._scaled_qkv()
        like = self.qkv.weight
        proj = make_linear(self.proj.weight.double(), self.proj.bias.double() if self.proj.bias is not None else None,
                           like)
        return WindowAttentionFolded(self.dim, self.window_size, self.num_heads, make_linear(w, b, like), proj,
                                     self.position_bias().detach().contiguous())

    def plain_counterpart(self) -> nn.Module:
        """This module as plain Swin attention (itself): the op-census twin of ACmix."""
        return copy.deepcopy(self)


class ACmixWindowAttention(WindowAttention):
    """ACmix in Swin's window attention, training form; keys as the reference ``WindowAttention_acmix``.

    Adds to :class:`WindowAttention`: ``fc`` (biased 1×1 conv ``3·heads → k²``),
    ``dep_conv`` (``k×k`` conv, ``head_dim`` groups, no bias — the reference
    drops it), ``rate1`` / ``rate2``. ``kernel_conv`` is ``k`` (the reference: 3).

    The reference initialises both rates with its helper ``ones``, which fills
    0.5 (not 1); :meth:`reset_parameters` does the same, and ``dep_conv`` starts
    as one shift per tap.
    """

    operator = "ACmix-Swin"

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
                 qk_scale: float | None = None, kernel_conv: int = 3) -> None:
        super().__init__(dim, window_size, num_heads, qkv_bias, qk_scale)
        positive_int("kernel_conv", kernel_conv)
        if kernel_conv % 2 == 0:
            raise XVDeployError(f"kernel_conv must be odd, got {kernel_conv}")
        self.kernel_conv = kernel_conv
        kk = kernel_conv * kernel_conv
        self.fc = nn.Conv2d(3 * num_heads, kk, 1, bias=True)
        self.dep_conv = nn.Conv2d(kk * self.head_dim, dim, kernel_conv, padding=kernel_conv // 2,
                                  groups=self.head_dim, bias=False)
        self.rate1 = nn.Parameter(torch.empty(1))
        self.rate2 = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference's initialisation of the ACmix parts: rates 0.5, ``dep_conv`` as shifts."""
        init_conv_path(self.rate1, self.rate2, self.dep_conv, self.kernel_conv)

    def conv_path(self, qkv: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, 3C)`` → ``(B, H, W, C)``: ``dep_conv(fc(qkv))`` on the map (zero padding at its border)."""
        b, h, w, _ = qkv.shape
        heads, hd, kk = self.num_heads, self.head_dim, self.kernel_conv ** 2
        f = self.fc(qkv.reshape(b, h * w, 3 * heads, hd).permute(0, 2, 1, 3))  # (B, k², HW, d)
        f = f.permute(0, 3, 1, 2).reshape(b, hd * kk, h, w)  # channel i·k² + j
        return self.dep_conv(f).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        _check_map(x, self.dim, self.window_size)
        qkv = self.qkv(x)
        return self.rate1 * self.attention_path(qkv, mask) + self.rate2 * self.conv_path(qkv)

    @torch.no_grad()
    def fold(self, bn: nn.BatchNorm2d | None = None) -> "WindowAttentionFolded":
        """One Linear ``[q·scale, k, v, fc∘qkv]``; ``rate1`` in ``proj``, ``rate2`` in ``dep_conv``; bias gathered."""
        self._check_no_bn(bn)
        heads, hd, kk = self.num_heads, self.head_dim, self.kernel_conv ** 2
        w_qkv, b_qkv = self._stem_weights()  # f mixes the unscaled q
        fc_w = self.fc.weight.double().view(kk, 3 * heads)
        fc_b = self.fc.bias.double() if self.fc.bias is not None else torch.zeros(kk, dtype=torch.float64,
                                                                                 device=fc_w.device)
        # f[i·k² + j] = Σ_s fc[j, s]·qkv[s·d + i] + fc_b[j], s over the 3·heads head-slices
        w_f = torch.einsum("js,sic->ijc", fc_w, w_qkv.view(3 * heads, hd, -1)).reshape(hd * kk, -1)
        b_f = (torch.einsum("js,si->ij", fc_w, b_qkv.view(3 * heads, hd)) + fc_b).reshape(hd * kk)
        w_s, b_s = self._scaled_qkv()
        like = self.qkv.weight
        stem = make_linear(torch.cat([w_s, w_f]), torch.cat([b_s, b_f]), like)
        rate1, rate2 = self.rate1.double(), self.rate2.double()
        proj_b = self.proj.bias.double() if self.proj.bias is not None else torch.zeros(self.dim, dtype=torch.float64,
                                                                                       device=like.device)
        proj = make_linear(self.proj.weight.double() * rate1, proj_b * rate1, like)
        dep_conv = nn.Conv2d(kk * hd, self.dim, self.kernel_conv, padding=self.kernel_conv // 2, groups=hd,
                             bias=False).to(device=like.device, dtype=like.dtype)
        dep_conv.weight.copy_(self.dep_conv.weight.double() * rate2)
        return WindowAttentionFolded(self.dim, self.window_size, heads, stem, proj,
                                     self.position_bias().detach().contiguous(), dep_conv)

    def plain_counterpart(self) -> nn.Module:
        """Plain Swin attention with this module's qkv, proj and bias table (no conv path, no rates)."""
        plain = WindowAttention(self.dim, self.window_size, self.num_heads, self.qkv.bias is not None, self.scale)
        plain = plain.to(device=self.qkv.weight.device, dtype=self.qkv.weight.dtype)
        plain.load_state_dict({k: v for k, v in self.state_dict().items() if k in plain.state_dict()})
        return plain


class WindowAttentionFolded(FoldedOp):
    """Window attention (plain or ACmix), inference form.

    ``y = stem(x)`` (one Linear: ``[q·scale, k, v]`` and, with ACmix, ``f``);
    attention with the constant ``position_bias`` (and the block's mask) →
    ``proj`` (``rate1`` inside); with ACmix ``+ dep_conv(f)`` (``rate2`` inside).
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, stem: nn.Linear, proj: nn.Linear,
                 position_bias: torch.Tensor, dep_conv: nn.Conv2d | None = None) -> None:
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.stem, self.proj = stem, proj
        self.register_buffer("position_bias", position_bias)
        self.dep_conv = dep_conv
        acmix = dep_conv is not None
        self.operator = "ACmix-Swin" if acmix else "WindowAttention"
        self.merged = acmix
        self.note = ("qkv and fc∘qkv as one Linear (q·scale); rate1 in proj, rate2 in dep_conv; relative position "
                     "bias gathered once" if acmix else "q·scale in the qkv Linear; relative position bias gathered once")

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}"

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        _check_map(x, self.dim, self.window_size)
        y = self.stem(x)
        c = 3 * self.dim
        qkv = y[..., :c] if self.dep_conv is not None else y
        out = self.proj(window_attention(qkv, self.window_size, self.num_heads, self.position_bias, mask, None))
        if self.dep_conv is not None:
            out = out + self.dep_conv(y[..., c:].permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return out

    def plain_counterpart(self) -> nn.Module:
        """The attention path alone (the q, k, v rows of the stem, ``proj``): the op-census twin."""
        if self.dep_conv is None:
            return copy.deepcopy(self)
        c = 3 * self.dim
        stem = make_linear(self.stem.weight[:c].double(), self.stem.bias[:c].double(), self.stem.weight)
        return WindowAttentionFolded(self.dim, self.window_size, self.num_heads, stem, copy.deepcopy(self.proj),
                                     self.position_bias.clone())
