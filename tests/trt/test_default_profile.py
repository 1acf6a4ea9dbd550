from __future__ import annotations

from xvdeploy import export_onnx, fold, load_checkpoint
from xvdeploy.trt.builder import default_profiles, read_onnx_inputs


def test_exported_graph_gets_a_default_profile(tmp_path, digits_checkpoint):
    path = tmp_path / "d.onnx"
    export_onnx(fold(load_checkpoint(digits_checkpoint)), path, (2, 1, 8, 8), compare_plain=False, check=False)
    (profile,) = default_profiles(path, read_onnx_inputs(path))
    rng = profile["input"]
    assert (rng.min, rng.opt, rng.max) == ((1, 1, 8, 8), (2, 1, 8, 8), (8, 1, 8, 8))
