from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import randomize_bn, rel_l2
from xvdeploy import XVDeployError, XVolution
from xvdeploy.ops import XVolutionFolded, XVolutionSA


def _fold_error(m: torch.nn.Module, x: torch.Tensor, trailing_bn: bool) -> tuple[float, torch.nn.Module]:
    m = randomize_bn(m.double())
    bn = None
    if trailing_bn:
        bn = randomize_bn(torch.nn.BatchNorm2d(m.out_channels).double(), seed=1)
    folded = m.fold(bn)
    y = m(x) if bn is None else bn(m(x))
    return rel_l2(folded(x), y), folded


@given(k=st.sampled_from([1, 3, 5, 7]), ka=st.sampled_from([1, 3, 5, 7]), stride=st.sampled_from([1, 2]),
       dilation=st.sampled_from([1, 2]), distance=st.integers(1, 3), mode=st.sampled_from(["sum", "concat"]),
       h=st.integers(3, 9), w=st.integers(3, 9), bias=st.booleans(), trailing_bn=st.booleans())
def test_fold_parity_float64(k, ka, stride, dilation, distance, mode, h, w, bias, trailing_bn):
    torch.manual_seed(0)
    m = XVolution(3, 4, k, ka, stride=stride, dilation=dilation, distance=distance, mode=mode, bias=bias)
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    err, folded = _fold_error(m, x, trailing_bn)
    assert err <= 1e-10
    assert folded.merged == (m.merge_blocker() is None)


@pytest.mark.parametrize("kwargs, merged", [
    (dict(), True), (dict(kernel_size=5, attn_kernel_size=3), True), (dict(kernel_size=1, dilation=3), True),
    (dict(kernel_size=2), False), (dict(attn_kernel_size=4), False), (dict(dilation=2), False),
    (dict(groups=2), False), (dict(mode="concat", shifts=[(0, 1), (-2, 3)]), True),
])
def test_fold_float32_single_operator(kwargs, merged):
    torch.manual_seed(0)
    m = randomize_bn(XVolution(4, 6, **kwargs))
    x = torch.randn(2, 4, 9, 7)
    folded = m.fold()
    assert folded.merged is merged
    assert isinstance(folded, XVolutionFolded)
    assert rel_l2(folded(x), m.double()(x.double())) <= 1e-6
    if not merged:
        assert "two convs + add" in folded.note


def test_even_kernel_keeps_same_output_size():
    m = XVolution(2, 2, kernel_size=2, attn_kernel_size=4, stride=2).eval()
    assert m(torch.zeros(1, 2, 7, 5)).shape == (1, 2, 4, 3)


def test_merged_fold_is_one_conv_over_concat():
    folded = randomize_bn(XVolution(4, 8)).fold()
    convs = [m for m in folded.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 and convs[0].in_channels == 8
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())


def test_folded_form_handles_maps_smaller_than_the_shift():
    m = randomize_bn(XVolution(2, 2, distance=3).double())
    x = torch.randn(1, 2, 2, 2, dtype=torch.float64)
    assert rel_l2(m.fold()(x), m(x)) <= 1e-12


@pytest.mark.parametrize("kwargs, message", [
    (dict(kernel_size=0), "kernel_size must be a positive integer"),
    (dict(groups=3), "groups=3 must divide"),
    (dict(mode="avg"), "unknown PSSA mode"),
])
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(XVDeployError, match=message):
        XVolution(4, 4, **kwargs)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("trailing_bn", [False, True])
def test_xvolution_sa_fold(stride, trailing_bn):
    torch.manual_seed(0)
    m = XVolutionSA(4, 8, heads=2, stride=stride, bias=True)
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64)
    err, folded = _fold_error(m, x, trailing_bn)
    assert err <= 1e-10
    qkv = [c for c in folded.modules() if isinstance(c, torch.nn.Conv2d) and c.kernel_size == (1, 1)]
    assert any(c.out_channels == 24 for c in qkv)  # Q, K and V in one 1×1 conv
    m32 = randomize_bn(XVolutionSA(4, 8, heads=2, stride=stride))
    assert rel_l2(m32.fold()(x.float()), m32.double()(x)) <= 1e-6


def test_xvolution_sa_rejects_heads_not_dividing():
    with pytest.raises(XVDeployError, match="heads=3 must divide out_channels=8"):
        XVolutionSA(4, 8, heads=3)
