"""Small ONNX models built with onnx.helper (fast, no export), shared by the export and TensorRT tests."""
from __future__ import annotations

import numpy as np
import pytest


def conv_net(batch: int | str = 1, channels: int = 3, size: int = 16, seed: int = 0):
    """Conv → Relu → depthwise Conv on a wrap-padded input → Mul → GlobalAveragePool → Flatten → Gemm.

    ``batch`` may be a string (a dynamic, named batch dimension).
    """
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array((rng.standard_normal((8, channels, 3, 3)) * 0.3).astype(np.float32), "w1")
    b1 = numpy_helper.from_array((rng.standard_normal(8) * 0.1).astype(np.float32), "b1")
    w2 = numpy_helper.from_array((rng.standard_normal((8, 1, 3, 3)) * 0.3).astype(np.float32), "w2")
    fc = numpy_helper.from_array((rng.standard_normal((5, 8)) * 0.3).astype(np.float32), "fc")
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Pad", ["r1", "pads"], ["p1"], mode="wrap", name="pad_wrap"),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], group=8, name="shift_conv"),
        helper.make_node("Mul", ["r1", "c2"], ["t"], name="pssa_mul"),
        helper.make_node("GlobalAveragePool", ["t"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "conv_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5])],
        [w1, b1, w2, fc, pads],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model
