"""Swin Transformer (Liu et al. 2021) and Swin with ACmix (Pan et al. 2022), our own code (docs/design.md#acmix-swin).

The module tree, state-dict keys and shapes are those of
microsoft/Swin-Transformer's ``SwinTransformer`` and of LeapLabTHU/ACmix's
``SwinTransformer_acmix`` (``Swin-Transformer/models/swin_transformer_acmix.py``),
so their checkpoints — including the buffers ``relative_position_index`` and
``attn_mask`` that they save — load with ``strict=True``:

``patch_embed.{proj,norm}``; ``layers.i.blocks.j.{norm1, attn, norm2, mlp.fc1, mlp.fc2}``
(plus ``attn_mask`` in shifted blocks); ``layers.i.downsample.{norm, reduction}``
(every stage but the last); ``norm``; ``head``. Absolute position embedding
off (``ape=False``) as in every published Swin-T/S; ``ape=True`` adds
``absolute_pos_embed``. Dropout and stochastic depth (training only) are left out.

The input size is fixed at construction (``img_size``): the window partition,
the window clamp of small stages and the shift masks are built for it, as in
the reference.
"""
from __future__ import annotations

import torch
from torch import nn

from xvdeploy.errors import XVDeployError
from xvdeploy.models.registry import register
from xvdeploy.ops.acmix_swin import ACmixWindowAttention, WindowAttention, shift_mask


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """LayerNorm → (cyclic shift) → window attention → (shift back) → residual; LayerNorm → MLP → residual.

    Where the stage is no larger than the window, the window shrinks to the
    stage and there is no shift (as in the reference).
    """

    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window_size: int, shift_size: int,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, acmix: bool = False) -> None:
        super().__init__()
        if min(resolution) <= window_size:
            window_size, shift_size = min(resolution), 0
        h, w = resolution
        if h % window_size or w % window_size:
            raise XVDeployError(f"a {h}×{w} stage is not a whole number of {window_size}×{window_size} windows; "
                                "choose img_size / window_size so that every stage is")
        self.dim, self.resolution, self.window_size, self.shift_size = dim, tuple(resolution), window_size, shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = (ACmixWindowAttention if acmix else WindowAttention)(dim, window_size, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.register_buffer("attn_mask", shift_mask(h, w, window_size, shift_size) if shift_size else None)

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, window_size={self.window_size}, shift_size={self.shift_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, _, c = x.shape
        y = self.norm1(x).reshape(b, h, w, c)
        s = self.shift_size
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        y = self.attn(y, self.attn_mask)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        x = x + y.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2×2 neighbours concatenated (order (0,0), (1,0), (0,1), (1,1)) → LayerNorm(4C) → Linear(4C, 2C, no bias)."""

    def __init__(self, resolution: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.resolution = tuple(resolution)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, _, c = x.shape
        x = x.reshape(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


class SwinStage(nn.Module):
    """Blocks alternating plain and shifted windows, then patch merging (``downsample``) unless it is the last stage."""

    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int, window_size: int,
                 mlp_ratio: float, qkv_bias: bool, acmix: bool, downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            SwinBlock(dim, resolution, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio,
                      qkv_bias, acmix) for i in range(depth)])
        self.downsample = PatchMerging(resolution, dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, norm: bool) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)  # (B, H·W, C)
        return self.norm(x) if self.norm is not None else x


class SwinTransformer(nn.Module):
    """Swin Transformer image classifier; ``acmix=True`` puts ACmix in every window attention.

    Args mirror the reference constructor: ``img_size``, ``patch_size``,
    ``in_chans``, ``num_classes``, ``embed_dim``, ``depths``, ``num_heads``,
    ``window_size``, ``mlp_ratio``, ``qkv_bias``, ``ape``, ``patch_norm``.
    """

    #: read by the ONNX export: which input axes the graph cannot leave dynamic, and why
    xvdeploy_static_axes = {"height": "Swin's window partition and shift masks are built for one input size",
                            "width": "Swin's window partition and shift masks are built for one input size"}

    def __init__(self, img_size: int = 224, patch_size: int = 4, in_chans: int = 3, num_classes: int = 1000,
                 embed_dim: int = 96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size: int = 7,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, ape: bool = False, patch_norm: bool = True,
                 acmix: bool = False) -> None:
        super().__init__()
        depths, num_heads = list(depths), list(num_heads)
        if len(depths) != len(num_heads) or not depths:
            raise XVDeployError(f"depths {depths} and num_heads {num_heads} must be non-empty and of equal length")
        grid = img_size // patch_size
        if img_size % patch_size or grid % 2 ** (len(depths) - 1):
            raise XVDeployError(f"img_size={img_size} must be patch_size={patch_size} × a multiple of "
                                f"{2 ** (len(depths) - 1)} (one halving per patch merging)")
        self.img_size, self.in_chans, self.num_classes = img_size, in_chans, num_classes
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, patch_norm)
        if ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, grid * grid, embed_dim))
            trunc_normal_(self.absolute_pos_embed)
        else:
            self.absolute_pos_embed = None
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            res = grid // 2 ** i
            self.layers.append(SwinStage(embed_dim * 2 ** i, (res, res), depth, heads, window_size, mlp_ratio,
                                         qkv_bias, acmix, downsample=i < len(depths) - 1))
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.in_chans, self.img_size, self.img_size):
            raise XVDeployError(f"this Swin Transformer takes N×{self.in_chans}×{self.img_size}×{self.img_size} "
                                f"input (its windows and shift masks are built for that size), got "
                                f"{'×'.join(map(str, x.shape))}")
        x = self.patch_embed(x)
        if self.absolute_pos_embed is not None:
            x = x + self.absolute_pos_embed
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).mean(dim=1))


def trunc_normal_(tensor: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """The reference's ``trunc_normal_(std=.02)``: its cut-off is at ±2 absolute (100 σ), so it is a normal
    draw clamped there — drawn directly (``nn.init.trunc_normal_``'s inverse-CDF method is 6× slower)."""
    with torch.no_grad():
        return tensor.normal_(0.0, std).clamp_(-2.0, 2.0)


def _init_weights(m: nn.Module) -> None:
    """The reference's: truncated normal (std 0.02) Linear weights, zero biases, LayerNorm 1 / 0."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


_IMAGENET = (3, 224, 224)
_SIZES = {"t": (2, 2, 6, 2), "s": (2, 2, 18, 2)}


def _register_all() -> None:
    for size, depths in _SIZES.items():
        shape = "-".join(map(str, depths))
        register(f"swin_{size}", _IMAGENET, f"Swin-{size.upper()} (embed 96, depths {shape}, window 7)",
                 depths=depths)(SwinTransformer)
        register(f"acmix_swin_{size}", _IMAGENET,
                 f"Swin-{size.upper()} with ACmix in every window attention (LeapLabTHU/ACmix checkpoints load)",
                 depths=depths, acmix=True)(SwinTransformer)


_register_all()
