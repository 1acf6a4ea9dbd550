"""Swin window attention with and without ACmix: reference equivalence, fold parity, bad input."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from tests.conftest import rel_l2
from tests.swin_reference import (reference_acmix_attention, reference_index, reference_mask,
                                  reference_plain_attention)
from xvdeploy.errors import XVDeployError
from xvdeploy.ops.acmix_swin import (ACmixWindowAttention, WindowAttention, WindowAttentionFolded,
                                     relative_position_index, shift_mask)
from xvdeploy.ops.base import FoldedOp


def randomise(module: nn.Module, seed: int) -> nn.Module:
    """Random values for every parameter: weights, biases, rates, the position bias table."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            scale = p.shape[-1] ** -0.5 if p.dim() == 2 and p.shape[-1] > 8 else 0.5
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * scale + (0.7 if p.numel() == 1 else 0))
    return module


@pytest.mark.parametrize("window", [1, 2, 3, 7])
def test_index_matches_reference(window):
    assert torch.equal(relative_position_index(window), reference_index(window))


@pytest.mark.parametrize("size,window,shift", [(8, 4, 2), (56, 7, 3), (12, 3, 1), (6, 2, 1)])
def test_shift_mask_matches_reference(size, window, shift):
    assert torch.equal(shift_mask(size, size, window, shift), reference_mask(size, size, window, shift))


@pytest.mark.parametrize("acmix", [False, True])
@pytest.mark.parametrize("dim,heads,window,size,shifted", [(16, 2, 4, 8, True), (24, 3, 2, 6, True), (8, 1, 3, 3, False)])
def test_matches_reference(acmix, dim, heads, window, size, shifted):
    block = randomise((ACmixWindowAttention if acmix else WindowAttention)(dim, window, heads).double(), 1)
    x = torch.randn(2, size, size, dim, dtype=torch.float64)
    mask = reference_mask(size, size, window, window // 2, torch.float64) if shifted else None
    ref = (reference_acmix_attention if acmix else reference_plain_attention)(block.state_dict(), x, heads, window, mask)
    assert rel_l2(block(x, mask), ref) <= 1e-13


def test_default_init_matches_reference():
    block = ACmixWindowAttention(12, 2, 3)
    assert block.dep_conv.bias is None and block.rate1.item() == block.rate2.item() == 0.5  # reference `ones` fills 0.5
    kernel = torch.zeros(9, 3, 3)
    for i in range(9):
        kernel[i, i // 3, i % 3] = 1.0
    assert torch.equal(block.dep_conv.weight, kernel.repeat(12, 1, 1, 1))
    assert block.fc.bias is not None and tuple(block.fc.weight.shape) == (9, 9, 1, 1)


@given(heads=st.integers(1, 3), head_dim=st.integers(1, 5), window=st.integers(1, 4), n_h=st.integers(1, 3),
       n_w=st.integers(1, 3), acmix=st.booleans(), shifted=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_fold_parity_property(heads, head_dim, window, n_h, n_w, acmix, shifted, seed):
    """Folded float64 ≡ training float64; folded float32 within 1e-6 of training float64 (any rates, tables)."""
    dim, h, w = heads * head_dim, n_h * window, n_w * window
    block = randomise((ACmixWindowAttention if acmix else WindowAttention)(dim, window, heads).double(), seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, h, w, dim, generator=g, dtype=torch.float64)
    mask = shift_mask(h, w, window, window // 2, torch.float64) if shifted and window > 1 else None
    with torch.no_grad():
        ref = block(x, mask)
        assert rel_l2(block.fold()(x, mask), ref) <= 1e-12
        folded32 = block.float().fold()
        assert rel_l2(folded32(x.float(), None if mask is None else mask.float()), ref) <= 1e-6


def test_fold_structure():
    block = randomise(ACmixWindowAttention(16, 4, 2), 3)
    folded = block.fold()
    assert isinstance(folded, WindowAttentionFolded) and isinstance(folded, FoldedOp)
    assert folded.operator == "ACmix-Swin" and folded.merged and "rate2 in dep_conv" in folded.note
    assert set(folded.state_dict()) == {"stem.weight", "stem.bias", "proj.weight", "proj.bias", "position_bias",
                                        "dep_conv.weight"}
    assert tuple(folded.stem.weight.shape) == (3 * 16 + 9 * 8, 16)  # q, k, v and fc∘qkv: one Linear
    assert tuple(folded.position_bias.shape) == (2, 16, 16)
    assert torch.equal(folded.position_bias, block.position_bias())
    plain = WindowAttention(16, 4, 2).fold()
    assert plain.operator == "WindowAttention" and not plain.merged and plain.dep_conv is None
    assert set(plain.state_dict()) == {"stem.weight", "stem.bias", "proj.weight", "proj.bias", "position_bias"}


def test_plain_counterparts_drop_the_conv_path():
    block = randomise(ACmixWindowAttention(16, 4, 2), 4)
    x, mask = torch.randn(1, 8, 8, 16), shift_mask(8, 8, 4, 2)
    twin = block.plain_counterpart()
    assert type(twin) is WindowAttention and torch.equal(twin.qkv.weight, block.qkv.weight)
    with torch.no_grad():
        folded_twin = block.fold().plain_counterpart()
        assert folded_twin.dep_conv is None
        # the folded twin is the attention path (rate1 inside proj): twin + rate2·conv = ACmix
        conv = block.rate2 * block.conv_path(block.qkv(x))
        assert rel_l2(folded_twin(x, mask) + conv, block(x, mask)) <= 1e-5


def test_bad_input_is_one_clear_error():
    block = ACmixWindowAttention(16, 4, 2)
    with pytest.raises(XVDeployError, match="divisible by 4, got 6×8"):
        block(torch.randn(1, 6, 8, 16))
    with pytest.raises(XVDeployError, match=r"\(B, H, W, 16\) map"):
        block.fold()(torch.randn(1, 16, 8, 8))
    with pytest.raises(XVDeployError, match="num_heads=3 must divide dim=16"):
        WindowAttention(16, 4, 3)
    with pytest.raises(XVDeployError, match="kernel_conv must be odd"):
        ACmixWindowAttention(16, 4, 2, kernel_conv=2)
    with pytest.raises(XVDeployError, match="BatchNorm"):
        block.fold(nn.BatchNorm2d(16))
