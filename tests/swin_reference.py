"""The reference Swin / Swin-ACmix arithmetic and state-dict layout, for the tests (not shipped).

Transcribed step by step from reading LeapLabTHU/ACmix
``Swin-Transformer/models/swin_transformer_acmix.py`` (``WindowAttention_acmix``,
``SwinTransformerBlock``, ``PatchMerging``, ``SwinTransformer_acmix``) and the
plain ``Swin-Transformer/models/swin_transformer.py`` of the same repository
(= microsoft/Swin-Transformer). Functional, on a state dict, with its own
index and mask construction, so it shares nothing with ``xvdeploy``'s modules.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def reference_index(ws: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid([torch.arange(ws), torch.arange(ws)], indexing="ij"))
    flat = torch.flatten(coords, 1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += ws - 1
    rel[:, :, 1] += ws - 1
    rel[:, :, 0] *= 2 * ws - 1
    return rel.sum(-1)


def _partition(x, ws):
    b, h, w, c = x.shape
    return x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, c)


def _reverse(windows, ws, h, w):
    b = int(windows.shape[0] / (h * w / ws / ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, -1)


def reference_mask(h: int, w: int, ws: int, shift: int, dtype=torch.float32) -> torch.Tensor:
    img_mask = torch.zeros((1, h, w, 1), dtype=dtype)
    slices = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    cnt = 0
    for hs in slices:
        for wsl in slices:
            img_mask[:, hs, wsl, :] = cnt
            cnt += 1
    mw = _partition(img_mask, ws).view(-1, ws * ws)
    am = mw.unsqueeze(1) - mw.unsqueeze(2)
    return am.masked_fill(am != 0, float(-100.0)).masked_fill(am == 0, float(0.0))


def _window_msa(p: dict, windows: torch.Tensor, heads: int, ws: int, mask, qkv=None):
    """Attention over windows ``(B_, N, C)`` (plain: from x; ACmix: ``qkv`` windows given), projected."""
    if qkv is None:
        b_, n, c = windows.shape
        qkv = F.linear(windows, p["qkv.weight"], p["qkv.bias"])
    else:
        b_, n, c3 = qkv.shape
        c = c3 // 3
    qkv = qkv.reshape(b_, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    q = q * (c // heads) ** -0.5
    attn = q @ k.transpose(-2, -1)
    rpb = p["relative_position_bias_table"][reference_index(ws).view(-1)].view(ws * ws, ws * ws, -1)
    attn = attn + rpb.permute(2, 0, 1).contiguous().unsqueeze(0)
    if mask is not None:
        nw = mask.shape[0]
        attn = attn.view(b_ // nw, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, heads, n, n)
    attn = attn.softmax(dim=-1)
    x = (attn @ v).transpose(1, 2).reshape(b_, n, c)
    return F.linear(x, p["proj.weight"], p["proj.bias"])


def reference_acmix_attention(p: dict, x: torch.Tensor, heads: int, ws: int, mask) -> torch.Tensor:
    """``WindowAttention_acmix.forward(x, H, W, mask)`` on ``(B, H, W, C)``."""
    b, h, w, c = x.shape
    qkv = F.linear(x, p["qkv.weight"], p["qkv.bias"])
    f_all = qkv.reshape(b, h * w, 3 * heads, -1).permute(0, 2, 1, 3)
    f_conv = F.conv2d(f_all, p["fc.weight"], p["fc.bias"]).permute(0, 3, 1, 2).reshape(b, 9 * c // heads, h, w)
    out_conv = F.conv2d(f_conv, p["dep_conv.weight"], None, padding=1, groups=c // heads).permute(0, 2, 3, 1)
    qkv_w = _partition(qkv, ws).view(-1, ws * ws, 3 * c)
    y = _window_msa(p, None, heads, ws, mask, qkv=qkv_w)
    y = _reverse(y.view(-1, ws, ws, c), ws, h, w)
    return p["rate1"] * y + p["rate2"] * out_conv


def reference_plain_attention(p: dict, x: torch.Tensor, heads: int, ws: int, mask) -> torch.Tensor:
    """The plain block's partition → ``WindowAttention`` → reverse, on ``(B, H, W, C)``."""
    b, h, w, c = x.shape
    y = _window_msa(p, _partition(x, ws).view(-1, ws * ws, c), heads, ws, mask)
    return _reverse(y.view(-1, ws, ws, c), ws, h, w)


def _sub(sd: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def reference_forward(sd: dict, x: torch.Tensor, *, embed: int, depths, heads, window: int, patch: int,
                      acmix: bool) -> torch.Tensor:
    """``SwinTransformer(_acmix).forward`` (eval: no dropout, no drop path) with the weights of ``sd``."""
    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)
    grid = x.shape[-1]
    x = x.flatten(2).transpose(1, 2)
    x = F.layer_norm(x, (embed,), sd["patch_embed.norm.weight"], sd["patch_embed.norm.bias"])
    for i, (depth, nh) in enumerate(zip(depths, heads)):
        dim, res = embed * 2 ** i, grid // 2 ** i
        for j in range(depth):
            p = _sub(sd, f"layers.{i}.blocks.{j}.")
            ws, shift = window, (0 if j % 2 == 0 else window // 2)
            if res <= ws:
                ws, shift = res, 0
            b = x.shape[0]
            shortcut = x
            y = F.layer_norm(x, (dim,), p["norm1.weight"], p["norm1.bias"]).view(b, res, res, dim)
            if shift:
                y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
            mask = reference_mask(res, res, ws, shift, x.dtype) if shift else None
            attn = (reference_acmix_attention if acmix else reference_plain_attention)(_sub(p, "attn."), y, nh, ws, mask)
            if shift:
                attn = torch.roll(attn, shifts=(shift, shift), dims=(1, 2))
            x = shortcut + attn.reshape(b, res * res, dim)
            z = F.layer_norm(x, (dim,), p["norm2.weight"], p["norm2.bias"])
            z = F.linear(F.gelu(F.linear(z, p["mlp.fc1.weight"], p["mlp.fc1.bias"])), p["mlp.fc2.weight"], p["mlp.fc2.bias"])
            x = x + z
        if i < len(depths) - 1:
            d = _sub(sd, f"layers.{i}.downsample.")
            b = x.shape[0]
            v = x.view(b, res, res, dim)
            v = torch.cat([v[:, 0::2, 0::2, :], v[:, 1::2, 0::2, :], v[:, 0::2, 1::2, :], v[:, 1::2, 1::2, :]], -1)
            v = F.layer_norm(v.view(b, -1, 4 * dim), (4 * dim,), d["norm.weight"], d["norm.bias"])
            x = F.linear(v, d["reduction.weight"])
    nf = embed * 2 ** (len(depths) - 1)
    x = F.layer_norm(x, (nf,), sd["norm.weight"], sd["norm.bias"])
    x = torch.flatten(F.adaptive_avg_pool1d(x.transpose(1, 2), 1), 1)
    return F.linear(x, sd["head.weight"], sd["head.bias"])


def reference_state_shapes(*, embed: int = 96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), window: int = 7,
                           img: int = 224, patch: int = 4, in_chans: int = 3, classes: int = 1000, acmix: bool = True,
                           mlp_ratio: float = 4.0) -> dict[str, tuple[int, ...]]:
    """Every key of the reference model's ``state_dict()`` (parameters and persistent buffers) with its shape."""
    s: dict[str, tuple[int, ...]] = {
        "patch_embed.proj.weight": (embed, in_chans, patch, patch), "patch_embed.proj.bias": (embed,),
        "patch_embed.norm.weight": (embed,), "patch_embed.norm.bias": (embed,)}
    grid = img // patch
    for i, (depth, nh) in enumerate(zip(depths, heads)):
        dim, res = embed * 2 ** i, grid // 2 ** i
        hidden = int(dim * mlp_ratio)
        for j in range(depth):
            ws, shift = window, (0 if j % 2 == 0 else window // 2)
            if res <= ws:
                ws, shift = res, 0
            b = f"layers.{i}.blocks.{j}."
            s[b + "norm1.weight"] = s[b + "norm1.bias"] = (dim,)
            s[b + "attn.relative_position_bias_table"] = ((2 * ws - 1) ** 2, nh)
            s[b + "attn.relative_position_index"] = (ws * ws, ws * ws)
            s[b + "attn.qkv.weight"], s[b + "attn.qkv.bias"] = (3 * dim, dim), (3 * dim,)
            s[b + "attn.proj.weight"], s[b + "attn.proj.bias"] = (dim, dim), (dim,)
            if acmix:
                s[b + "attn.rate1"] = s[b + "attn.rate2"] = (1,)
                s[b + "attn.fc.weight"], s[b + "attn.fc.bias"] = (9, 3 * nh, 1, 1), (9,)
                s[b + "attn.dep_conv.weight"] = (dim, 9, 3, 3)  # reset_parameters sets dep_conv.bias to None
            s[b + "norm2.weight"] = s[b + "norm2.bias"] = (dim,)
            s[b + "mlp.fc1.weight"], s[b + "mlp.fc1.bias"] = (hidden, dim), (hidden,)
            s[b + "mlp.fc2.weight"], s[b + "mlp.fc2.bias"] = (dim, hidden), (dim,)
            if shift:
                s[b + "attn_mask"] = ((res // ws) ** 2, ws * ws, ws * ws)
        if i < len(depths) - 1:
            d = f"layers.{i}.downsample."
            s[d + "reduction.weight"] = (2 * dim, 4 * dim)
            s[d + "norm.weight"] = s[d + "norm.bias"] = (4 * dim,)
    nf = embed * 2 ** (len(depths) - 1)
    s["norm.weight"], s["norm.bias"] = (nf,), (nf,)
    s["head.weight"], s["head.bias"] = (classes, nf), (classes,)
    return s


def reference_state_dict(seed: int = 0, dtype=torch.float32, **config) -> dict[str, torch.Tensor]:
    """A state dict with the reference's keys and shapes: random weights (non-zero biases, rates, tables);
    ``relative_position_index`` and ``attn_mask`` as the reference computes them."""
    g = torch.Generator().manual_seed(seed)
    shapes = reference_state_shapes(**config)
    window = config.get("window", 7)
    out = {}
    for key, shape in shapes.items():
        if key.endswith("relative_position_index"):
            out[key] = reference_index(int(round(shape[0] ** 0.5)))
        elif key.endswith("attn_mask"):
            ws = int(round(shape[1] ** 0.5))
            res = ws * int(round(shape[0] ** 0.5))
            out[key] = reference_mask(res, res, ws, window // 2, dtype)
        elif key.endswith(("rate1", "rate2")):
            out[key] = torch.rand(shape, generator=g, dtype=dtype) + 0.5
        elif key.endswith(("norm.weight", "norm1.weight", "norm2.weight")):
            out[key] = 1 + 0.2 * torch.randn(shape, generator=g, dtype=dtype)
        else:
            fan_in = torch.Size(shape[1:]).numel() if len(shape) > 1 else 1
            scale = 0.5 if len(shape) == 1 else fan_in ** -0.5
            out[key] = scale * torch.randn(shape, generator=g, dtype=dtype)
    return out
