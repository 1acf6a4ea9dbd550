"""ACmix: training form compatible with LeapLabTHU/ACmix and its fold (docs/design.md, ACmix).

Training (Pan et al., "On the Integration of Self-Attention and Convolution",
reference ``ResNet/test_bottleneck.py``): three 1×1 convs give ``q, k, v``;
the attention path is local-window self-attention over a reflection-padded
``k_att×k_att`` window with a relative position term from ``conv_p`` on a
fixed coordinate grid; the convolution path is a 1×1 ``fc`` over the
head-grouped ``q, k, v`` followed by a grouped ``k_conv×k_conv`` conv;
``y = rate1·F_att + rate2·F_conv``.

Inference: ``fc∘[conv1, conv2, conv3]`` is linear in ``x``, so stage I is one
1×1 conv emitting ``[k, rate1·v, q·scaling, f_conv]`` (a trailing BN's scale
folded into ``v`` and the grouped conv, its shift into the grouped conv's
bias); the position term depends only on ``(H, W)`` and is cached per size
(computed in-graph from the input's shape when exporting). Exported, windows
are taken with strided Slices, not ``Unfold``, so the graph has only plain
ONNX operators (Pad, Slice, Concat, Conv, Mul, Add, ReduceSum, Softmax, ...).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xvdeploy.errors import XVDeployError
from xvdeploy.ops.bn import bn_scale_shift, make_conv
from xvdeploy.ops.base import FoldedOp, is_tracing, positive_int


def _check_size(h, w, padding: int, kernel_att: int) -> None:
    if isinstance(h, int) and isinstance(w, int) and (h <= padding or w <= padding):
        raise XVDeployError(
            f"ACmix with kernel_att={kernel_att} needs an input of at least {padding + 1}×{padding + 1} "
            f"(reflection padding {padding}), got {h}×{w}")


def position_grid(h, w, like: torch.Tensor) -> torch.Tensor:
    """The reference's fixed grid ``(1, 2, H, W)``: channel 0 = x in [-1, 1] along W, channel 1 = y along H.

    Eagerly ``torch.linspace`` (as the reference); while tracing
    ``-1 + 2·arange(n)/(n−1)`` so that H and W may stay symbolic.
    """
    kw = dict(dtype=like.dtype, device=like.device)
    if isinstance(h, int) and isinstance(w, int) and not is_tracing():
        loc_w, loc_h = torch.linspace(-1.0, 1.0, w, **kw), torch.linspace(-1.0, 1.0, h, **kw)
    else:
        loc_w = torch.arange(w, **kw) * 2.0 / (w - 1) - 1.0
        loc_h = torch.arange(h, **kw) * 2.0 / (h - 1) - 1.0
    return torch.stack([loc_w.unsqueeze(0).expand(h, w), loc_h.unsqueeze(1).expand(h, w)]).unsqueeze(0)


def window_kernel(kernel: int, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """One-hot ``(k², 1, k, k)`` kernel: output channel ``j`` is window tap ``(j // k, j % k)`` (``Unfold`` order)."""
    n = kernel * kernel
    return torch.eye(n, dtype=dtype, device=device).view(n, 1, kernel, kernel)


def slice_windows(x: torch.Tensor, kernel: int, stride: int = 1) -> torch.Tensor:
    """``F.unfold``'s taps by slicing: ``(N, C, H, W)`` → ``(N, C, k², H_out, W_out)``, tap ``j = dy·k + dx``.

    Columns first (``k`` strided slices concatenated on the channel axis), then
    rows of that (``k`` more): ``2k`` Slices and two Concats instead of ``k²``
    slices, and channel ``(dy·k + dx)·C + c`` comes out in unfold's tap order.
    Slice ends are negative offsets from the end (or open), so an exported
    graph has constant Slice inputs and H, W stay dynamic.
    ``H_out = (H − k) // stride + 1`` as for ``F.unfold``.
    """
    def end(d: int) -> int | None:
        return d - (kernel - 1) or None

    cols = torch.cat([x[..., dx:end(dx):stride] for dx in range(kernel)], dim=1)  # (N, k·C, H, W_out)
    taps = torch.cat([cols[:, :, dy:end(dy):stride] for dy in range(kernel)], dim=1)  # (N, k²·C, H_out, W_out)
    if x.shape[1] == 1:
        return taps.unsqueeze(1)
    return taps.unflatten(1, (kernel * kernel, x.shape[1])).transpose(1, 2)


@torch.no_grad()
def init_conv_path(rate1: torch.Tensor, rate2: torch.Tensor, dep_conv: nn.Conv2d, kernel_conv: int) -> None:
    """The reference initialisation of ACmix's mixing rates (0.5 each) and of its grouped ``dep_conv`` (one
    shift per tap, so the convolution path starts as a plain k×k convolution of ``fc``'s output)."""
    rate1.fill_(0.5)
    rate2.fill_(0.5)
    k = kernel_conv
    dep_conv.weight.copy_(window_kernel(k).view(1, k * k, k, k).expand_as(dep_conv.weight))


class ACmix(nn.Module):
    """ACmix, training form; same arguments, state-dict keys and math as the reference.

    Args:
        in_planes, out_planes: channel counts (``head`` must divide ``out_planes``).
        kernel_att: attention window (odd).
        head: attention heads.
        kernel_conv: kernel of the grouped conv of the convolution path (odd).
        stride: of both paths (output ``ceil(H/stride)``; the reference needs ``H % stride == 0``).
        dilation: only enters the reference's attention padding, which breaks its
            window shape unless ``dilation == 1`` or ``kernel_att == 1``; other values are refused.
    """

    def __init__(self, in_planes: int, out_planes: int, kernel_att: int = 7, head: int = 4, kernel_conv: int = 3,
                 stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        for name, value in (("in_planes", in_planes), ("out_planes", out_planes), ("kernel_att", kernel_att),
                            ("head", head), ("kernel_conv", kernel_conv), ("stride", stride), ("dilation", dilation)):
            positive_int(name, value)
        if out_planes % head:
            raise XVDeployError(f"head={head} must divide out_planes={out_planes}")
        if kernel_att % 2 == 0 or kernel_conv % 2 == 0:
            raise XVDeployError(f"kernel_att and kernel_conv must be odd, got {kernel_att} and {kernel_conv}")
        if dilation != 1 and kernel_att != 1:
            raise XVDeployError(f"dilation={dilation} is not supported with kernel_att={kernel_att}: the reference "
                                "ACmix pads for a dilated window but unfolds an undilated one; use dilation=1")
        self.in_planes, self.out_planes = in_planes, out_planes
        self.head, self.kernel_att, self.kernel_conv = head, kernel_att, kernel_conv
        self.stride, self.dilation = stride, dilation
        self.head_dim = out_planes // head
        self.padding_att = (dilation * (kernel_att - 1) + 1) // 2
        # registration order reproduces the reference's state-dict key order
        self.rate1 = nn.Parameter(torch.empty(1))
        self.rate2 = nn.Parameter(torch.empty(1))
        self.conv1 = nn.Conv2d(in_planes, out_planes, 1)
        self.conv2 = nn.Conv2d(in_planes, out_planes, 1)
        self.conv3 = nn.Conv2d(in_planes, out_planes, 1)
        self.conv_p = nn.Conv2d(2, self.head_dim, 1)
        self.fc = nn.Conv2d(3 * head, kernel_conv * kernel_conv, 1, bias=False)
        # the reference sets dep_conv.bias to None in reset_parameters
        self.dep_conv = nn.Conv2d(kernel_conv * kernel_conv * self.head_dim, out_planes, kernel_conv, stride=stride,
                                  padding=kernel_conv // 2, groups=self.head_dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference initialisation: rates 0.5, ``dep_conv`` as one shift per tap."""
        init_conv_path(self.rate1, self.rate2, self.dep_conv, self.kernel_conv)

    def _windows(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` → ``(N, C, k_att², H_out, W_out)``: reflection pad + unfold."""
        n, c = x.shape[:2]
        p = self.padding_att
        cols = F.unfold(F.pad(x, (p, p, p, p), mode="reflect"), self.kernel_att, stride=self.stride)
        h_out, w_out = -(-x.shape[-2] // self.stride), -(-x.shape[-1] // self.stride)
        return cols.view(n, c, self.kernel_att ** 2, h_out, w_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        _check_size(h, w, self.padding_att, self.kernel_att)
        heads, hd, s = self.head, self.head_dim, self.stride
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        # attention path
        pe = self.conv_p(position_grid(h, w, x))
        q_att = q.view(b * heads, hd, h, w)[:, :, ::s, ::s] * hd ** -0.5
        q_pe = pe[:, :, ::s, ::s]
        unfold_k = self._windows(k.view(b * heads, hd, h, w))
        unfold_rpe = self._windows(pe)
        att = (q_att.unsqueeze(2) * (unfold_k + q_pe.unsqueeze(2) - unfold_rpe)).sum(1).softmax(dim=1)
        unfold_v = self._windows(v.view(b * heads, hd, h, w))
        h_out, w_out = att.shape[-2:]
        out_att = (att.unsqueeze(1) * unfold_v).sum(2).view(b, self.out_planes, h_out, w_out)
        # convolution path: channel d·k_conv² + j of f_conv is fc output j over head_dim slice d
        qkv = torch.cat([t.view(b, heads, hd, h * w) for t in (q, k, v)], dim=1)
        f_conv = self.fc(qkv).permute(0, 2, 1, 3).reshape(b, -1, h, w)
        out_conv = self.dep_conv(f_conv)
        return self.rate1 * out_att + self.rate2 * out_conv

    @torch.no_grad()
    def fold(self, bn: nn.BatchNorm2d | None = None) -> "ACmixFolded":
        """Inference form; ``bn`` is an eval-mode BatchNorm applied right after this block."""
        c, heads, hd, kk = self.out_planes, self.head, self.head_dim, self.kernel_conv ** 2
        dd = dict(dtype=torch.float64, device=self.conv1.weight.device)
        if bn is not None and bn.num_features != c:
            raise XVDeployError(f"the BatchNorm after ACmix has {bn.num_features} channels, expected {c}")
        scale, shift = bn_scale_shift(bn, c, dd["device"])
        rate1, rate2 = self.rate1.double(), self.rate2.double()
        ws = [conv.weight.double().flatten(1) for conv in (self.conv1, self.conv2, self.conv3)]
        bs = [conv.bias.double() if conv.bias is not None else torch.zeros(c, **dd)
              for conv in (self.conv1, self.conv2, self.conv3)]
        # f_conv[d·kk + j] = Σ_{t,h} fc[j, t·head + h] · qkv_t[h·hd + d]
        fc = self.fc.weight.double().view(kk, 3, heads)
        w_f = torch.einsum("jth,thdi->dji", fc, torch.stack(ws).view(3, heads, hd, -1)).reshape(hd * kk, -1)
        b_f = torch.einsum("jth,thd->dj", fc, torch.stack(bs).view(3, heads, hd)).reshape(hd * kk)
        v_scale = rate1 * scale
        w = torch.cat([ws[1], ws[2] * v_scale[:, None], ws[0] * hd ** -0.5, w_f])
        b = torch.cat([bs[1], bs[2] * v_scale, bs[0] * hd ** -0.5, b_f])
        like = self.conv1.weight
        stem = make_conv(w.view(*w.shape, 1, 1), b, like)
        dep_scale = rate2 * scale
        dep_bias = self.dep_conv.bias.double() if self.dep_conv.bias is not None else torch.zeros(c, **dd)
        dep_conv = make_conv(self.dep_conv.weight.double() * dep_scale.view(-1, 1, 1, 1), dep_bias * dep_scale + shift,
                             like, stride=self.stride, padding=self.kernel_conv // 2, groups=hd)
        conv_p = make_conv(self.conv_p.weight.double(), self.conv_p.bias.double(), like)
        return ACmixFolded(self.in_planes, c, self.kernel_att, heads, self.kernel_conv, self.stride,
                           self.padding_att, stem, conv_p, dep_conv)


class ACmixFolded(FoldedOp):
    """ACmix, inference form.

    ``[k, v, q, f] = Conv1×1(x)``; windows of ``k, v`` by reflection pad +
    ``k_att×k_att`` taps (stride ``s``); ``att = softmax_j Σ_d
    q·(k_j + P_j)`` with the cached position term ``P``; ``y = Σ_j att_j·v_j +
    GroupedConv(f)``.
    """

    operator = "ACmix"
    merged = True
    note = ("stage I as one 1×1 conv (q·scaling, k, rate1·v, fc∘[conv1,conv2,conv3]); rate2 and the trailing BN "
            "in the grouped conv; position term precomputed per input size")

    def __init__(self, in_planes: int, out_planes: int, kernel_att: int, head: int, kernel_conv: int, stride: int,
                 padding_att: int, stem: nn.Conv2d, conv_p: nn.Conv2d, dep_conv: nn.Conv2d) -> None:
        super().__init__()
        self.in_planes, self.out_planes = in_planes, out_planes
        self.kernel_att, self.head, self.kernel_conv = kernel_att, head, kernel_conv
        self.head_dim = out_planes // head
        self.stride, self.padding_att = stride, padding_att
        self.stem, self.conv_p, self.dep_conv = stem, conv_p, dep_conv
        self._position_cache: dict[tuple[int, int], torch.Tensor] = {}

    def _apply(self, fn, *args, **kwargs):
        self._position_cache.clear()  # .to() / .double() / .cuda() invalidate the cached term
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._position_cache.clear()
        super()._load_from_state_dict(*args, **kwargs)

    def windows(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` → ``(N, C, k_att², H_out, W_out)``: Pad(reflect), then the k_att² window taps.

        Exported, the taps are strided Slices in two separable steps (columns,
        then rows: 2·k_att Slice nodes, no Im2Col/Col2Im, no multiply-adds); in
        eager mode ``F.unfold`` gathers the same values. Both only copy.
        """
        n, c, h, w = x.shape
        p, k = self.padding_att, self.kernel_att
        if is_tracing():  # one channel per image: the taps come out without a transpose
            x = x.reshape(n * c, 1, h, w)
        if p:
            x = F.pad(x, (p, p, p, p), mode="reflect")
        if is_tracing():
            taps = slice_windows(x, k, self.stride)
            return taps.reshape(n, c, k * k, taps.shape[-2], taps.shape[-1])
        h_out, w_out = (x.shape[-2] - k) // self.stride + 1, (x.shape[-1] - k) // self.stride + 1
        return F.unfold(x, k, stride=self.stride).view(n, c, k * k, h_out, w_out)

    def compute_position(self, h, w, like: torch.Tensor) -> torch.Tensor:
        """``q_pe − unfold_rpe`` of the reference: ``(head_dim, k_att², H_out, W_out)``, constant per ``(H, W)``."""
        pe = self.conv_p(position_grid(h, w, like))
        s = self.stride
        return pe[0, :, ::s, ::s].unsqueeze(1) - self.windows(pe)[0]

    def position(self, h, w, like: torch.Tensor) -> torch.Tensor:
        """The position term, cached by ``(H, W)`` in eager mode, computed in-graph while tracing."""
        if is_tracing() or not (isinstance(h, int) and isinstance(w, int)):
            return self.compute_position(h, w, like)
        cached = self._position_cache.get((h, w))
        if cached is None or cached.dtype != like.dtype or cached.device != like.device:
            with torch.no_grad():
                cached = self.compute_position(h, w, like)
            self._position_cache[(h, w)] = cached
        return cached

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        _check_size(h, w, self.padding_att, self.kernel_att)
        c, heads, hd, s = self.out_planes, self.head, self.head_dim, self.stride
        kk = self.kernel_att ** 2
        y = self.stem(x)
        kv = self.windows(y[:, :2 * c])  # (b, 2c, k_att², h_out, w_out)
        h_out, w_out = kv.shape[-2], kv.shape[-1]
        # Heads are merged into the batch and H, W stay the last two axes of every rank-5 tensor, so each
        # exported Reshape target is a constant (0 = copy H or W at the same position, -1 = the batch):
        # converters that do not follow Shape reads (onnx2tf) take the dynamic graph too.
        key = kv[:, :c].reshape(b * heads, hd, kk, h_out, w_out)
        value = kv[:, c:].reshape(b * heads, hd, kk, h_out, w_out)
        # the stride after the unsqueeze: onnx2tf merges a channel Slice with the strided H and W Slices that
        # follow it into one TensorFlow slice that came out empty (0 elements)
        q = y[:, 2 * c:3 * c].unsqueeze(2)[..., ::s, ::s].reshape(b * heads, hd, 1, h_out, w_out)
        if self.kernel_att > 1:  # with a 1×1 window the position term is exactly zero
            key = key + self.position(h, w, x)
        att = (q * key).sum(1).softmax(dim=1)  # (b·head, k_att², h_out, w_out)
        out_att = (att.unsqueeze(1) * value).sum(2).reshape(b, c, h_out, w_out)
        return out_att + self.dep_conv(y[:, 3 * c:])
