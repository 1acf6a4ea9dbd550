"""Swin-T/S and ACmix Swin-T/S: the reference checkpoints' layout loads strictly; reference arithmetic; fold."""
from __future__ import annotations

import copy

import pytest
import torch

from tests.conftest import rel_l2
from tests.swin_reference import reference_forward, reference_state_dict, reference_state_shapes
from xvdeploy import XVDeployError, fold, zoo
from xvdeploy.folding import fold_with_records
from xvdeploy.folding.check import check_fold
from xvdeploy.models.swin import SwinTransformer
from xvdeploy.ops.acmix_swin import WindowAttentionFolded

# A tiny Swin: 3 stages, windows of 2 (stage 3 is 2×2: window clamped, no shift), shifted blocks in stages 1-2.
TINY = dict(embed=8, depths=(2, 2, 1), heads=(1, 2, 2), window=2, img=32, patch=4, classes=5)


def _tiny(acmix: bool) -> SwinTransformer:
    c = TINY
    return SwinTransformer(img_size=c["img"], patch_size=c["patch"], num_classes=c["classes"], embed_dim=c["embed"],
                           depths=c["depths"], num_heads=c["heads"], window_size=c["window"], acmix=acmix)


def _shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("acmix", [False, True])
def test_tiny_reference_layout_loads_strictly_and_computes_the_reference(acmix):
    sd = reference_state_dict(seed=1, dtype=torch.float64, acmix=acmix, **TINY)
    model = _tiny(acmix).double().eval()
    model.load_state_dict(sd, strict=True)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    cfg = {k: TINY[k] for k in ("embed", "depths", "heads", "window", "patch")}
    with torch.no_grad():
        assert rel_l2(model(x), reference_forward(sd, x, acmix=acmix, **cfg)) <= 1e-12
    # the buffers a fresh model computes are the reference's
    fresh = _tiny(acmix).double().state_dict()
    for key in sd:
        if key.endswith(("relative_position_index", "attn_mask")):
            assert torch.equal(fresh[key], sd[key]), key


@pytest.fixture(scope="module")
def acmix_swin_t():
    return zoo.create("acmix_swin_t")


@pytest.mark.parametrize("name,depths,acmix", [("swin_t", (2, 2, 6, 2), False), ("swin_s", (2, 2, 18, 2), False),
                                               ("acmix_swin_t", (2, 2, 6, 2), True),
                                               ("acmix_swin_s", (2, 2, 18, 2), True)])
def test_zoo_names_have_the_reference_keys_and_shapes(name, depths, acmix, request):
    model = request.getfixturevalue("acmix_swin_t") if name == "acmix_swin_t" else zoo.create(name)
    expected = reference_state_shapes(depths=depths, acmix=acmix)
    assert _shapes(model) == expected
    assert zoo.input_shape(name) == (3, 224, 224)
    n = sum(torch.Size(s).numel() for k, s in expected.items() if not k.endswith(("_index", "attn_mask")))
    assert zoo.count_parameters(model) == n
    if name == "swin_t":  # Liu et al. 2021, Table 1: 28M; timm's swin_tiny_patch4_window7_224: 28,288,354
        assert n == 28_288_354


def _randomise(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() == 1:  # LayerNorm
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g, dtype=torch.float64))
            elif p.dim() == 1 and p.numel() == 1:  # rates
                p.copy_(torch.rand(1, generator=g, dtype=torch.float64) + 0.5)
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 4
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * fan_in ** -0.5)
    return model.eval()


@pytest.mark.parametrize("acmix", [False, True])
def test_fold_tiny(acmix):
    model = _randomise(_tiny(acmix))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    folded, records = fold_with_records(model)
    assert [r.name for r in records] == [f"layers.{i}.blocks.{j}.attn" for i, d in enumerate(TINY["depths"])
                                         for j in range(d)]
    assert all(isinstance(folded.get_submodule(r.name), WindowAttentionFolded) for r in records)
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in folded.modules()) == \
        sum(isinstance(m, torch.nn.LayerNorm) for m in model.modules())  # LayerNorm stays
    result = check_fold(model, folded, records, x)
    assert result.total_float64 <= 1e-12 and result.worst_layer() <= 1e-12  # the per-layer check gets the mask too
    assert result.total_float32 <= 1e-6
    with torch.no_grad():
        assert rel_l2(folded(x), copy.deepcopy(model).double()(x.double())) <= 1e-6


def test_wrong_input_size_is_one_clear_error():
    with pytest.raises(XVDeployError, match=r"takes N×3×32×32 input .* got 1×3×64×64"):
        _tiny(True)(torch.randn(1, 3, 64, 64))
    with pytest.raises(XVDeployError, match="not a whole number of 4×4 windows"):
        SwinTransformer(img_size=24, patch_size=4, embed_dim=8, depths=(1,), num_heads=(1,), window_size=4)
    with pytest.raises(XVDeployError, match="multiple of 8"):
        SwinTransformer(img_size=48, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))


@pytest.mark.slow
def test_acmix_swin_t_reference_checkpoint_at_224(acmix_swin_t):
    """The full ACmix Swin-T: a reference-layout state dict loads strictly; fold within 1e-6 (float32 vs float64)."""
    sd = reference_state_dict(seed=0, depths=(2, 2, 6, 2), acmix=True)
    model = acmix_swin_t.eval()
    model.load_state_dict(sd, strict=True)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref64 = copy.deepcopy(model).double()(x.double())
        folded = fold(model)
        assert rel_l2(folded(x), ref64) <= 1e-6
    assert sum(isinstance(m, WindowAttentionFolded) for m in folded.modules()) == 12
