"""FP16 ONNX conversion (TensorRT 11 networks are strongly typed): checked, then run in onnxruntime."""
from __future__ import annotations

import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxconverter_common")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from xvdeploy.errors import MissingDependencyError, XVDeployError  # noqa: E402
from xvdeploy.export.fp16 import convert_file_to_fp16, convert_model_to_fp16  # noqa: E402

FP16_REL_L2 = 1e-2


def run(model, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(a.astype(np.float64)))


def elem_types(values) -> dict[str, int]:
    return {v.name: v.type.tensor_type.elem_type for v in values}


def check_and_compare(model, converted, x):
    onnx.checker.check_model(converted)
    assert set(elem_types(converted.graph.input).values()) == {TensorProto.FLOAT}
    assert set(elem_types(converted.graph.output).values()) == {TensorProto.FLOAT}
    ref, got = run(model, x), run(converted, x)
    assert got.dtype == np.float32
    assert rel_l2(ref, got) <= FP16_REL_L2
    return ref, got


def model_of(nodes, inputs, outputs, initializers=(), opsets=(("", 19),)):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def test_conv_net_weights_become_fp16_and_io_stays_fp32(make_conv_net):
    model = make_conv_net(batch=2)
    converted = convert_model_to_fp16(model)
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    check_and_compare(model, converted, x)
    floats = {i.name: i.data_type for i in converted.graph.initializer if i.name in ("w1", "b1", "w2", "fc")}
    assert set(floats.values()) == {TensorProto.FLOAT16}
    casts = [n for n in converted.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2  # one at the input, one at the output
    assert model.graph.initializer[0].data_type == TensorProto.FLOAT  # the input model is not modified


def test_torch_dynamo_export_converts():
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            y = torch.relu(self.bn(self.conv(x)))
            y = y * torch.roll(y, shifts=(1, -1), dims=(2, 3))
            return self.fc(y.mean((2, 3))).softmax(-1)

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(2, 3, 12, 12)
    program = torch.onnx.export(net, (x,), dynamo=True, opset_version=19, verbose=False)
    model = program.model_proto
    converted = convert_model_to_fp16(model)
    check_and_compare(model, converted, x.numpy())


def test_float_cast_in_graph_is_retargeted():
    w = numpy_helper.from_array(np.full((2, 2, 1, 1), 0.5, np.float32), "w")
    model = model_of(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
            helper.make_node("Cast", ["c"], ["cf"], to=TensorProto.FLOAT, name="cast"),
            helper.make_node("Relu", ["cf"], ["y"], name="relu"),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        [w],
    )
    converted = convert_model_to_fp16(model)
    cast = next(n for n in converted.graph.node if n.name == "cast")
    assert cast.attribute[0].i == TensorProto.FLOAT16
    check_and_compare(model, converted, np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32))


def test_sensitive_ops_stay_fp32_and_shared_weights_are_split():
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.2, "w")
    s = numpy_helper.from_array(np.array([1.5], np.float32), "s")  # read by Mul (fp16) and Pow (fp32)
    model = model_of(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
            helper.make_node("Mul", ["c", "s"], ["m"], name="mul"),
            helper.make_node("Abs", ["m"], ["a"], name="abs"),
            helper.make_node("Pow", ["a", "s"], ["p"], name="pow"),
            helper.make_node("Exp", ["p"], ["y"], name="exp"),  # a graph output made by a float32 op
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
        [w, s],
    )
    converted = convert_model_to_fp16(model)
    types = {i.name: i.data_type for i in converted.graph.initializer}
    assert types["s"] == TensorProto.FLOAT16 and types["s__fp32"] == TensorProto.FLOAT
    pow_node = next(n for n in converted.graph.node if n.op_type == "Pow")
    assert pow_node.input[1] == "s__fp32"
    inferred = onnx.shape_inference.infer_shapes(converted)
    value_types = elem_types(list(inferred.graph.value_info) + list(inferred.graph.output))
    assert value_types[pow_node.output[0]] == TensorProto.FLOAT
    check_and_compare(model, converted, np.random.default_rng(1).random((1, 4, 6, 6)).astype(np.float32) * 0.5)


def test_custom_op_outputs_are_typed_so_casts_follow():
    """A plugin op (no ONNX schema) is assumed to keep its input type; the Exp after it stays fp32."""
    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    model = model_of(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
            helper.make_node("PSSA", ["c"], ["p"], domain="xvdeploy", name="pssa", shifts=[1, 0, -1, 0]),
            helper.make_node("Exp", ["p"], ["y"], name="exp"),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        [w],
        opsets=(("", 19), ("xvdeploy", 1)),
    )
    converted = convert_model_to_fp16(model)
    exp = next(n for n in converted.graph.node if n.op_type == "Exp")
    producer = next(n for n in converted.graph.node if exp.input[0] in n.output)
    assert producer.op_type == "Cast" and producer.attribute[0].i == TensorProto.FLOAT
    assert elem_types(converted.graph.output)["y"] == TensorProto.FLOAT


def test_weights_outside_fp16_range_are_clamped_not_infinite():
    w = numpy_helper.from_array(np.array([[[[1e6]]], [[[1e-9]]]], np.float32), "w")  # 2×1×1×1
    model = model_of(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])],
        [w],
    )
    converted = convert_model_to_fp16(model)
    values = numpy_helper.to_array(next(i for i in converted.graph.initializer if i.name == "w"))
    assert values.dtype == np.float16 and np.isfinite(values).all()
    assert values.max() == np.float16(65504) and values.min() > 0


def test_already_fp16_model_is_rejected():
    model = model_of(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 2])],
    )
    with pytest.raises(XVDeployError, match="already float16; expected a float32 model"):
        convert_model_to_fp16(model)


def test_convert_file(tmp_path, tiny_onnx):
    out = tmp_path / "tiny16.onnx"
    convert_file_to_fp16(tiny_onnx, out)
    converted = onnx.load(str(out))
    x = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)
    check_and_compare(onnx.load(str(tiny_onnx)), converted, x)
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left nothing behind


def test_missing_converter_names_the_extra(monkeypatch, make_conv_net):
    for name in ("onnxconverter_common", "onnxconverter_common.float16"):
        monkeypatch.setitem(sys.modules, name, None)  # any import of it now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"onnxconverter_common.*pip install 'xvdeploy\[onnx\]'"):
        convert_model_to_fp16(make_conv_net())
