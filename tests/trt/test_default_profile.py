from __future__ import annotations

from xvdeploy.trt.builder import default_profiles, read_onnx_inputs


def test_exported_graph_gets_a_default_profile(digits_onnx):
    (profile,) = default_profiles(digits_onnx, read_onnx_inputs(digits_onnx))
    rng = profile["input"]
    assert (rng.min, rng.opt, rng.max) == ((1, 1, 8, 8), (2, 1, 8, 8), (8, 1, 8, 8))
