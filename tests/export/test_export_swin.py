"""ACmix Swin exports to standard-op ONNX: dynamic batch, static height/width (said so), onnxruntime parity."""
from __future__ import annotations

import numpy as np
import onnx
import torch

from tests.conftest import rel_l2
from xvdeploy import export_onnx, fold
from xvdeploy.export.census import plain_counterpart
from xvdeploy.models.swin import SwinTransformer
from xvdeploy.ops.acmix_swin import ACmixWindowAttention, WindowAttention, WindowAttentionFolded


def _tiny_acmix_swin() -> SwinTransformer:
    """Stage 1: 8×8 map, 4×4 windows, a plain and a shifted block; patch merging; stage 2: one 4×4 window."""
    torch.manual_seed(0)
    model = SwinTransformer(img_size=16, patch_size=2, embed_dim=8, depths=(2, 1), num_heads=(2, 2), window_size=4,
                            num_classes=7, acmix=True)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ACmixWindowAttention):  # non-trivial rates, position bias and fc bias
                for p in (m.rate1, m.rate2, m.relative_position_bias_table, m.fc.bias):
                    p.copy_(torch.randn(p.shape, generator=g))
    return model.eval()


def test_acmix_swin_exports_standard_ops_with_dynamic_batch(tmp_path):
    model = fold(_tiny_acmix_swin())
    path = tmp_path / "swin.onnx"
    report = export_onnx(model, path, (1, 3, 16, 16), compare_plain=False)
    proto = onnx.load(str(path))
    assert report.standard_only and report.parity_ok and [(p.runtime, p.shape) for p in report.parity] == [
        ("onnxruntime", (1, 3, 16, 16)), ("onnxruntime", (2, 3, 16, 16)), ("onnx.reference", (1, 3, 16, 16))]
    assert all(p.rel_l2 <= 1e-5 for p in report.parity)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 16, 16] and report.dynamic_axes == ["batch"]
    assert any("height, width static (Swin's window partition and shift masks" in n for n in report.notes)
    assert any("dynamic axes: batch" in line for line in report.format_lines())
    # one more batch size in onnxruntime than the export checked
    from xvdeploy.export.onnxfile import ort_session

    x = np.random.default_rng(3).standard_normal((5, 3, 16, 16), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    y = ort_session(path).run(None, {"input": x})[0]
    assert rel_l2(torch.from_numpy(y), ref) <= 1e-5


def test_census_twin_is_plain_window_attention():
    model = _tiny_acmix_swin()
    x = torch.randn(1, 3, 16, 16)
    twin = plain_counterpart(model, x)
    attn = [m for m in twin.modules() if isinstance(m, WindowAttention)]
    assert len(attn) == 3 and not any(isinstance(m, ACmixWindowAttention) for m in attn)
    folded_twin = plain_counterpart(fold(model), x)
    blocks = [m for m in folded_twin.modules() if isinstance(m, WindowAttentionFolded)]
    assert len(blocks) == 3 and all(b.dep_conv is None for b in blocks)
    with torch.no_grad():
        assert twin(x).shape == folded_twin(x).shape == (1, 7)
