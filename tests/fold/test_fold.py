from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tests.conftest import calibrate_bn, randomize_bn, rel_l2
from xvdeploy import XVolution, fold, zoo
from xvdeploy.folding import find_bn_pairs, fold_with_records
from xvdeploy.folding.check import check_fold
from xvdeploy.ops.base import FoldedOp

# Smallest inputs that keep every layer meaningful (ACmix's 7×7 window needs ≥ 4×4 in stage 5).
PROBE_SIZE = {"acmix_resnet50": 100, "xv_digits": 8}
# Swin's input size is part of the architecture: the zoo's Swins (their depths and heads) at 64×64 with 2×2
# windows (every stage windowed and shifted but the last, whose 2×2 map is one window) and embed 24 (head
# dim 8, not 32): fast, still every kind of block. The full-size ACmix Swin-T is folded in tests/models.
ZOO_KWARGS = {name: dict(img_size=64, window_size=2, embed_dim=24)
              for name in ("swin_t", "swin_s", "acmix_swin_t", "acmix_swin_s")}


def _probe(name: str, batch: int = 2) -> torch.Tensor:
    c, h, _ = zoo.input_shape(name)
    s = PROBE_SIZE.get(name, 64)
    return torch.randn(batch, c, s, s, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_fold_parity(name):
    torch.manual_seed(0)
    x = _probe(name)
    model = calibrate_bn(zoo.create(name, **ZOO_KWARGS.get(name, {})), x)
    folded, records = fold_with_records(model)
    result = check_fold(model, folded, records, x)
    assert result.total_float64 <= 1e-10
    # float32: 1e-5, or no worse than 1.5× the training form's own float32 error (random deep nets
    # are badly conditioned: ResNet-50 is ~3e-5 from float64 before any fold).
    assert result.float32_ok(1e-5, headroom=1.5), (result.total_float32, result.train_float32)
    assert result.worst_layer() <= 1e-10
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules()), "a folded zoo model has no BatchNorm"
    assert not any(callable(getattr(m, "fold", None)) and not isinstance(m, FoldedOp) for m in folded.modules())


def test_fold_returns_a_copy_by_default_and_folds_inplace_on_request():
    model = randomize_bn(zoo.create("xv_digits"))
    before = copy.deepcopy(model.state_dict())
    folded = fold(model)
    assert folded is not model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    same = fold(model, inplace=True)
    assert same is model and isinstance(model.xv1, FoldedOp)


def test_fold_is_idempotent():
    model = randomize_bn(zoo.create("xv_digits"))
    once = fold(model)
    twice, records = fold_with_records(once)
    assert records == []
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(once(x), twice(x))


class Untraceable(nn.Module):
    """Data-dependent control flow defeats torch.fx: pairs come from Sequential order only."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.side = nn.Conv2d(3, 4, 1)
        self.side_bn = nn.BatchNorm2d(4)

    def forward(self, x):
        if x.sum() > 0:
            return self.body(x) + self.side_bn(self.side(x))
        return self.body(x) - self.side_bn(self.side(x))


class SharedBN(nn.Module):
    """A BN applied to two convs cannot be folded into either."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.a(x)) + self.bn(self.b(x))


class ConvUsedTwice(nn.Module):
    """The conv's output also feeds the residual, so its BN is not foldable into it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.xv = XVolution(3, 3)
        self.post = nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.conv(x)
        return self.post(self.xv(self.bn(y) + y))


def test_untraceable_model_falls_back_to_sequential_pairs():
    model = randomize_bn(Untraceable())
    assert find_bn_pairs(model) == {"body.0": "body.1"}
    x = torch.rand(2, 3, 5, 5)
    assert rel_l2(fold(model)(x), model(x)) <= 1e-6


def test_only_provably_safe_bn_pairs_fold():
    assert find_bn_pairs(randomize_bn(SharedBN())) == {}
    model = randomize_bn(ConvUsedTwice())
    assert find_bn_pairs(model) == {"xv": "post"}
    folded = fold(model)
    assert isinstance(folded.bn, nn.BatchNorm2d) and isinstance(folded.post, nn.Identity)
    x = torch.randn(2, 3, 6, 6)
    assert rel_l2(folded(x), model(x)) <= 1e-6


def test_a_bare_operator_folds_to_its_inference_form():
    from xvdeploy import ACmix, XVolutionSA

    for block, c in ((XVolution(4, 4), 4), (ACmix(8, 8, kernel_att=3, head=2), 8), (XVolutionSA(8, 8, heads=2), 8)):
        randomize_bn(block)
        folded, records = fold_with_records(block.double())
        assert isinstance(folded, FoldedOp) and folded.xvdeploy_folded and len(records) == 1
        x = torch.randn(2, c, 7, 6, dtype=torch.float64)
        with torch.no_grad():
            assert rel_l2(folded(x), block(x)) <= 1e-10
        assert fold(folded) is not folded and isinstance(fold(folded), FoldedOp)  # idempotent
