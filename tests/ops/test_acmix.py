"""ACmix: equivalence with the reference implementation, fold parity, position cache, bad input."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from xvdeploy.errors import XVDeployError
from xvdeploy.ops.acmix import ACmix, ACmixFolded, slice_windows
from xvdeploy.ops.base import FoldedOp


# --- the reference math (LeapLabTHU/ACmix, ResNet/test_bottleneck.py), CPU variant --------------------------
# Only change: the position grid is built in the input's dtype (the reference builds it in float32).

def _ref_position(H, W, dtype):
    loc_w = torch.linspace(-1.0, 1.0, W, dtype=dtype).unsqueeze(0).repeat(H, 1)
    loc_h = torch.linspace(-1.0, 1.0, H, dtype=dtype).unsqueeze(1).repeat(1, W)
    return torch.cat([loc_w.unsqueeze(0), loc_h.unsqueeze(0)], 0).unsqueeze(0)


def _ref_stride(x, stride):
    return x[:, :, ::stride, ::stride]


class ReferenceACmix(nn.Module):
    def __init__(self, in_planes, out_planes, kernel_att=7, head=4, kernel_conv=3, stride=1, dilation=1):
        super().__init__()
        self.in_planes = in_planes
        self.out_planes = out_planes
        self.head = head
        self.kernel_att = kernel_att
        self.kernel_conv = kernel_conv
        self.stride = stride
        self.dilation = dilation
        self.rate1 = torch.nn.Parameter(torch.Tensor(1))
        self.rate2 = torch.nn.Parameter(torch.Tensor(1))
        self.head_dim = self.out_planes // self.head
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv2 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv3 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv_p = nn.Conv2d(2, self.head_dim, kernel_size=1)
        self.padding_att = (self.dilation * (self.kernel_att - 1) + 1) // 2
        self.pad_att = torch.nn.ReflectionPad2d(self.padding_att)
        self.unfold = nn.Unfold(kernel_size=self.kernel_att, padding=0, stride=self.stride)
        self.softmax = torch.nn.Softmax(dim=1)
        self.fc = nn.Conv2d(3 * self.head, self.kernel_conv * self.kernel_conv, kernel_size=1, bias=False)
        self.dep_conv = nn.Conv2d(self.kernel_conv * self.kernel_conv * self.head_dim, out_planes,
                                  kernel_size=self.kernel_conv, bias=True, groups=self.head_dim, padding=1,
                                  stride=stride)
        self.reset_parameters()

    def reset_parameters(self):
        self.rate1.data.fill_(0.5)
        self.rate2.data.fill_(0.5)
        kernel = torch.zeros(self.kernel_conv * self.kernel_conv, self.kernel_conv, self.kernel_conv)
        for i in range(self.kernel_conv * self.kernel_conv):
            kernel[i, i // self.kernel_conv, i % self.kernel_conv] = 1.
        kernel = kernel.squeeze(0).repeat(self.out_planes, 1, 1, 1)
        self.dep_conv.weight = nn.Parameter(data=kernel, requires_grad=True)
        self.dep_conv.bias = None  # init_rate_0 returns None

    def forward(self, x):
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        scaling = float(self.head_dim) ** -0.5
        b, c, h, w = q.shape
        h_out, w_out = h // self.stride, w // self.stride
        pe = self.conv_p(_ref_position(h, w, x.dtype))
        q_att = q.view(b * self.head, self.head_dim, h, w) * scaling
        k_att = k.view(b * self.head, self.head_dim, h, w)
        v_att = v.view(b * self.head, self.head_dim, h, w)
        if self.stride > 1:
            q_att = _ref_stride(q_att, self.stride)
            q_pe = _ref_stride(pe, self.stride)
        else:
            q_pe = pe
        unfold_k = self.unfold(self.pad_att(k_att)).view(b * self.head, self.head_dim,
                                                         self.kernel_att * self.kernel_att, h_out, w_out)
        unfold_rpe = self.unfold(self.pad_att(pe)).view(1, self.head_dim, self.kernel_att * self.kernel_att,
                                                        h_out, w_out)
        att = (q_att.unsqueeze(2) * (unfold_k + q_pe.unsqueeze(2) - unfold_rpe)).sum(1)
        att = self.softmax(att)
        out_att = self.unfold(self.pad_att(v_att)).view(b * self.head, self.head_dim,
                                                        self.kernel_att * self.kernel_att, h_out, w_out)
        out_att = (att.unsqueeze(1) * out_att).sum(2).view(b, self.out_planes, h_out, w_out)
        f_all = self.fc(torch.cat([q.view(b, self.head, self.head_dim, h * w),
                                   k.view(b, self.head, self.head_dim, h * w),
                                   v.view(b, self.head, self.head_dim, h * w)], 1))
        f_conv = f_all.permute(0, 2, 1, 3).reshape(x.shape[0], -1, x.shape[-2], x.shape[-1])
        out_conv = self.dep_conv(f_conv)
        return self.rate1 * out_att + self.rate2 * out_conv


# --- helpers ------------------------------------------------------------------------------------------------

def rel_l2(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.double() - ref.double()).norm() / ref.double().norm()).item()


def randomise(module: nn.Module, seed: int) -> None:
    """Random values for every parameter (rates included) and BN statistic."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * (0.3 if p.dim() > 1 else 1.0))
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g, dtype=torch.float64))
                m.running_var.copy_(torch.rand(m.num_features, generator=g, dtype=torch.float64) * 2 + 0.1)


CASES = [  # (in, out, kernel_att, head, kernel_conv, stride, size)
    (8, 16, 7, 4, 3, 1, (9, 11)),
    (16, 8, 5, 2, 3, 1, (7, 6)),
    (8, 16, 7, 4, 3, 2, (10, 12)),
    (16, 16, 3, 4, 3, 2, (8, 6)),
]


@pytest.mark.parametrize("cin,cout,katt,head,kconv,stride,size", CASES)
def test_matches_reference(cin, cout, katt, head, kconv, stride, size):
    torch.manual_seed(0)
    ref = ReferenceACmix(cin, cout, katt, head, kconv, stride).double()
    randomise(ref, 1)
    ours = ACmix(cin, cout, katt, head, kconv, stride).double()
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, cin, *size, dtype=torch.float64)
    assert rel_l2(ours(x), ref(x)) <= 1e-12


def test_default_init_matches_reference():
    ref, ours = ReferenceACmix(8, 8, head=2), ACmix(8, 8, head=2)
    assert torch.equal(ours.dep_conv.weight, ref.dep_conv.weight)
    assert ours.dep_conv.bias is None and ours.rate1.item() == ours.rate2.item() == 0.5


def test_trained_reference_state_dict_loads():
    torch.manual_seed(0)
    ref = ReferenceACmix(8, 8, kernel_att=5, head=2)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        ref(torch.randn(2, 8, 8, 8)).square().mean().backward()
        opt.step()
    ours = ACmix(8, 8, kernel_att=5, head=2)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 8, 9, 7)
    assert rel_l2(ours(x), ref(x)) <= 1e-6


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels).double().eval()


@pytest.mark.parametrize("cin,cout,katt,head,kconv,stride,size", CASES + [(8, 16, 7, 4, 5, 2, (9, 11))])
@pytest.mark.parametrize("with_bn", [False, True])
def test_fold_parity(cin, cout, katt, head, kconv, stride, size, with_bn):
    block = ACmix(cin, cout, katt, head, kconv, stride).double()
    bn = _bn(cout) if with_bn else None
    randomise(block, 2)
    if bn is not None:
        randomise(bn, 3)
    x = torch.randn(2, cin, *size, dtype=torch.float64)
    with torch.no_grad():
        ref = block(x) if bn is None else bn(block(x))
        folded = block.fold(bn)
        assert isinstance(folded, ACmixFolded) and isinstance(folded, FoldedOp)
        assert folded.operator == "ACmix" and folded.merged and folded.note
        assert rel_l2(folded(x), ref) <= 1e-10
        folded32 = block.float().fold(bn.float() if bn is not None else None)
        assert folded32.stem.weight.dtype == torch.float32
        assert rel_l2(folded32(x.float()), ref) <= 1e-6


def test_fold_is_one_stem_conv():
    block = ACmix(8, 16, kernel_att=5, head=4)
    folded = block.fold()
    convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [(3 * 16 + 4 * 9, 8, 1, 1), (4, 2, 1, 1), (16, 9, 3, 3)]
    assert not any(isinstance(m, nn.Unfold) for m in folded.modules())
    assert set(folded.state_dict()) == {"stem.weight", "stem.bias", "conv_p.weight", "conv_p.bias",
                                        "dep_conv.weight", "dep_conv.bias"}


def test_position_cache_two_sizes():
    block = ACmix(8, 8, kernel_att=5, head=2, stride=2).double()
    randomise(block, 4)
    folded = block.fold()
    with torch.no_grad():
        for size in [(10, 12), (6, 8), (10, 12)]:
            x = torch.randn(1, 8, *size, dtype=torch.float64)
            assert rel_l2(folded(x), block(x)) <= 1e-10
    assert set(folded._position_cache) == {(10, 12), (6, 8)}
    assert folded._position_cache[(10, 12)].shape == (4, 25, 5, 6)
    folded.float()  # dtype change drops the cache
    assert not folded._position_cache
    assert rel_l2(folded(torch.ones(1, 8, 6, 8)), block(torch.ones(1, 8, 6, 8, dtype=torch.float64))) <= 1e-6


@pytest.mark.parametrize("size", [(3, 9), (9, 2)])
def test_too_small_input(size):
    block = ACmix(8, 8, kernel_att=7, head=2)
    x = torch.randn(1, 8, *size)
    for module in (block, block.fold()):
        with pytest.raises(XVDeployError, match=r"at least 4×4") as info:
            module(x)
        assert "\n" not in str(info.value)
    block(torch.randn(1, 8, 4, 4))  # the minimum works


@pytest.mark.parametrize("kwargs,match", [
    (dict(in_planes=8, out_planes=10, head=4), "head=4 must divide out_planes=10"),
    (dict(in_planes=8, out_planes=8, kernel_att=4), "must be odd"),
    (dict(in_planes=8, out_planes=8, kernel_conv=2), "must be odd"),
    (dict(in_planes=8, out_planes=8, dilation=2), "dilation=2"),
    (dict(in_planes=0, out_planes=8), "in_planes must be a positive integer"),
    (dict(in_planes=8, out_planes=8, stride=1.5), "stride must be a positive integer"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(XVDeployError, match=match):
        ACmix(**kwargs)


def test_fold_bn_channel_mismatch():
    with pytest.raises(XVDeployError, match="expected 8"):
        ACmix(8, 8, head=2).fold(nn.BatchNorm2d(4).eval())


def test_kernel_att_one_and_dilation():
    block = ACmix(8, 8, kernel_att=1, head=2, dilation=2).double()
    randomise(block, 5)
    x = torch.randn(2, 8, 5, 1, dtype=torch.float64)
    with torch.no_grad():
        assert rel_l2(block.fold()(x), block(x)) <= 1e-10


@settings(max_examples=60)
@given(k=st.sampled_from([1, 3, 5, 7]), stride=st.integers(1, 3), n=st.integers(1, 2), c=st.integers(1, 3),
       extra_h=st.integers(0, 6), extra_w=st.integers(0, 6))
def test_slice_windows_equals_unfold(k, stride, n, c, extra_h, extra_w):
    """The exported window gather (strided slices) is F.unfold's, tap for tap."""
    h, w = k + extra_h, k + extra_w
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    h_out, w_out = (h - k) // stride + 1, (w - k) // stride + 1
    ref = torch.nn.functional.unfold(x, k, stride=stride).view(n, c, k * k, h_out, w_out)
    assert torch.equal(slice_windows(x, k, stride), ref)
