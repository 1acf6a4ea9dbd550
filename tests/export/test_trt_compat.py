"""Static TensorRT 10.x ONNX-parser check on small hand-built graphs (every graph passes onnx.checker)."""
from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from xvdeploy.export.trt_compat import (  # noqa: E402
    OPSET_MAX,
    OPSET_MIN,
    SUPPORTED_OPS,
    UNSUPPORTED_OPS,
    check_trt_compat,
)

C = 4


def _model(nodes, inputs, outputs, initializers=(), opset=19, ir_version=10, extra_opsets=(), functions=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    model = helper.make_model(graph, opset_imports=imports, ir_version=ir_version, functions=list(functions))
    onnx.checker.check_model(model, full_check=True)
    return model


def _x(name="x", shape=("N", C, 8, 8), dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def _y(name="y", dtype=TensorProto.FLOAT, rank=4):
    return helper.make_tensor_value_info(name, dtype, [None] * rank)


def _init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def _find(report, op_type="", severity=None):
    return [f for f in report.findings if f.op_type == op_type and (severity is None or f.severity == severity)]


def xvolution_model():
    """Pad(wrap) -> depthwise Conv -> Mul -> Concat -> 1x1 Conv: the shape of an exported PSSA + fold."""
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["xp"], mode="wrap"),
        helper.make_node("Conv", ["xp", "w_dw"], ["shifted"], group=C, kernel_shape=[3, 3]),
        helper.make_node("Mul", ["x", "shifted"], ["t"]),
        helper.make_node("Concat", ["x", "t"], ["xt"], axis=1),
        helper.make_node("Conv", ["xt", "w_pw", "b_pw"], ["y"], kernel_shape=[1, 1]),
    ]
    inits = [
        _init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64)),
        _init("w_dw", np.zeros((C, 1, 3, 3), dtype=np.float32)),
        _init("w_pw", np.zeros((C, 2 * C, 1, 1), dtype=np.float32)),
        _init("b_pw", np.zeros((C,), dtype=np.float32)),
    ]
    return _model(nodes, [_x()], [_y()], inits)


def test_xvolution_graph_passes():
    report = check_trt_compat(xvolution_model())
    assert report.ok
    assert report.opset == 19
    assert report.op_types == [("", "Concat"), ("", "Conv"), ("", "Mul"), ("", "Pad")]
    assert report.format_lines()[0] == "TensorRT 10.x ONNX parser: all 4 op types supported (static check)"
    pad = [f.message for f in _find(report, "Pad")]
    assert "mode=wrap -> ISliceLayer kWRAP (TensorRT >= 10.0); pads on axes [2, 3]" in pad
    conv = {f.message: f.count for f in _find(report, "Conv")}
    assert conv["supported"] == 2 and conv[f"grouped (group={C}) -> nbGroups"] == 1
    assert not [f for f in report.findings if f.severity != "ok"]


def test_dynamic_batch_needs_a_profile():
    report = check_trt_compat(xvolution_model())
    (note,) = [f for f in _find(report, "") if "dynamic" in f.message]
    assert note.severity == "ok" and "dynamic dims N:" in note.message and "optimization profile" in note.message


def test_report_serialises_and_formats():
    report = check_trt_compat(xvolution_model())
    d = json.loads(json.dumps(report.to_dict()))
    assert d["ok"] is True and d["opset"] == 19 and d["verdict"] == report.verdict()
    assert {"severity", "op_type", "domain", "count", "message"} <= set(d["findings"][0])
    lines = report.format_lines()
    assert any("Pad" in line and "kWRAP" in line for line in lines[1:])
    assert report.format_lines(show_ok=False) == [report.verdict()]


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_every_pad_mode_and_any_axis(mode):
    """TensorRT 10 pads through ISliceLayer: any axis (here N and C too), any of the four modes."""
    nodes = [helper.make_node("Pad", ["x", "pads"], ["y"], mode=mode)]
    pads = _init("pads", np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=np.int64))
    report = check_trt_compat(_model(nodes, [_x(shape=(1, C, 8, 8))], [_y()], [pads]))
    assert report.ok
    assert any("pads on axes [0, 1]" in f.message for f in _find(report, "Pad"))


def test_zero_pads_are_an_identity():
    nodes = [helper.make_node("Pad", ["x", "pads"], ["y"])]
    pads = _init("pads", np.zeros(8, dtype=np.int64))
    report = check_trt_compat(_model(nodes, [_x()], [_y()], [pads]))
    assert any("all pads zero" in f.message for f in _find(report, "Pad"))


def test_runtime_pads_are_supported():
    nodes = [helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect")]
    pads = helper.make_tensor_value_info("pads", TensorProto.INT64, [8])
    report = check_trt_compat(_model(nodes, [_x(shape=(1, C, 8, 8)), pads], [_y()]))
    assert report.ok
    assert any("pads computed at run time" in f.message for f in _find(report, "Pad"))


def test_col2im_is_an_error():
    nodes = [helper.make_node("Col2Im", ["x", "image_shape", "block_shape"], ["y"])]
    inits = [_init("image_shape", np.array([4, 4], dtype=np.int64)),
             _init("block_shape", np.array([2, 2], dtype=np.int64))]
    report = check_trt_compat(_model(nodes, [_x(shape=(1, 4 * C, 9))], [_y()], inits))
    assert not report.ok
    (f,) = _find(report, "Col2Im")
    assert f.severity == "error" and "marks it N" in f.message
    assert report.verdict().startswith("TensorRT 10.x ONNX parser: will not parse: 1 of 1 op types fail (Col2Im)")


def test_op_missing_from_the_table_is_an_error():
    """Swish (opset 24) is in ONNX but not in TensorRT's table: the parser would look for a plugin."""
    nodes = [helper.make_node("Swish", ["x"], ["y"])]
    report = check_trt_compat(_model(nodes, [_x()], [_y()], opset=24, ir_version=11))
    (f,) = _find(report, "Swish")
    assert f.severity == "error" and "plugin named Swish" in f.message
    assert not report.ok


def test_every_current_onnx_op_is_classified_or_reported():
    names = {s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain == ""}
    assert not set(SUPPORTED_OPS) & UNSUPPORTED_OPS
    assert {"Pad", "Conv", "Concat", "Mul", "Add", "MatMul", "Softmax", "Reshape", "Transpose", "Slice", "Gather",
            "Range", "Shape", "Cast", "Expand", "ReduceMean", "GlobalAveragePool", "MaxPool", "Relu", "Gemm",
            "Flatten", "Unsqueeze", "Squeeze", "Where", "Equal", "Div", "Sub", "Sqrt", "Constant",
            "ConstantOfShape", "ScatterND"} <= set(SUPPORTED_OPS)
    assert "Col2Im" in UNSUPPORTED_OPS
    # ops newer than the table (opset > 24) are left out on purpose and reported as errors
    assert all(onnx.defs.get_schema(n).since_version > OPSET_MAX - 1
               for n in names - set(SUPPORTED_OPS) - UNSUPPORTED_OPS)


def test_pssa_plugin_node_is_a_plugin_warning():
    # every attribute the plugin's ONNX schema requires (it may be registered by an earlier test)
    pssa = helper.make_node("PSSA", ["x"], ["t"], domain="ai.onnx.contrib", shifts=[-1, -1, 0, 1],
                            shifts_str="-1,-1,0,1", plugin_namespace="xvdeploy", plugin_version="1")
    nodes = [pssa, helper.make_node("Add", ["x", "t"], ["y"])]
    report = check_trt_compat(_model(nodes, [_x()], [_y()], extra_opsets=[("ai.onnx.contrib", 1)]))
    assert report.ok
    (f,) = _find(report, "PSSA")
    assert (f.severity, f.domain) == ("warning", "ai.onnx.contrib")
    assert f.message.startswith("needs a TensorRT plugin named PSSA (version 1, namespace 'xvdeploy')")
    assert report.verdict() == ("TensorRT 10.x ONNX parser: all 2 op types supported, 1 through a plugin (PSSA); "
                                "1 warning (static check)")


def test_custom_domain_without_namespace_falls_back_to_the_domain():
    nodes = [helper.make_node("Shifter", ["x"], ["y"], domain="xv")]
    report = check_trt_compat(_model(nodes, [_x()], [_y()], extra_opsets=[("xv", 1)]))
    (f,) = _find(report, "Shifter")
    assert f.severity == "warning" and "namespace '' or, from TensorRT 10.10, the node domain 'xv'" in f.message


def test_builtin_name_in_a_custom_domain_goes_to_the_builtin_importer():
    nodes = [helper.make_node("Relu", ["x"], ["y"], domain="xv")]
    report = check_trt_compat(_model(nodes, [_x()], [_y()], extra_opsets=[("xv", 1)]))
    (f,) = _find(report, "Relu")
    assert f.severity == "warning" and "dispatches on op_type" in f.message


def test_onnx_ml_ops_are_errors():
    nodes = [helper.make_node("Binarizer", ["x"], ["y"], domain="ai.onnx.ml")]
    report = check_trt_compat(_model(nodes, [_x()], [_y()], extra_opsets=[("ai.onnx.ml", 3)]))
    assert not report.ok


def test_float64_initializer_is_flagged():
    nodes = [helper.make_node("Cast", ["x"], ["xd"], to=TensorProto.DOUBLE),
             helper.make_node("Mul", ["xd", "scale"], ["y"])]
    report = check_trt_compat(_model(nodes, [_x()], [_y(dtype=TensorProto.DOUBLE)],
                                     [_init("scale", np.array(2.0, dtype=np.float64))]))
    assert report.ok  # DOUBLE is narrowed to FLOAT, not rejected
    messages = [f.message for f in report.findings if f.severity == "warning"]
    assert any(m.startswith("1 initializer of type DOUBLE") for m in messages)
    assert any(m.startswith("1 graph output of type DOUBLE") for m in messages)
    assert any(m.startswith("cast to DOUBLE") for m in messages)


def test_float64_graph_input_is_flagged():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    report = check_trt_compat(_model(nodes, [_x(dtype=TensorProto.DOUBLE)], [_y(dtype=TensorProto.DOUBLE)]))
    assert any(f.severity == "warning" and f.message.startswith("1 graph input of type DOUBLE")
               for f in report.findings)


def test_complex_and_uint16_are_errors():
    nodes = [helper.make_node("Identity", ["x"], ["y"])]
    complex_io = check_trt_compat(_model(nodes, [_x(dtype=TensorProto.COMPLEX64)], [_y(dtype=TensorProto.COMPLEX64)]))
    assert not complex_io.ok
    assert any("no COMPLEX64 type" in f.message for f in _find(complex_io, "", "error"))
    cast = [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.UINT16)]
    report = check_trt_compat(_model(cast, [_x()], [_y(dtype=TensorProto.UINT16)]))
    assert any(f.severity == "error" and f.message.startswith("cast to UINT16") for f in _find(report, "Cast"))


def test_old_opset_is_flagged():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    report = check_trt_compat(_model(nodes, [_x()], [_y()], opset=OPSET_MIN - 1))
    (f,) = [f for f in _find(report, "") if "opset" in f.message]
    assert f.severity == "warning" and "below TensorRT's documented range 9-24" in f.message


def test_opset_above_the_table_is_flagged():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    report = check_trt_compat(_model(nodes, [_x()], [_y()], opset=OPSET_MAX + 1, ir_version=11))
    assert any(f.severity == "warning" and "above the range" in f.message for f in _find(report, ""))


def test_softmax_any_axis_from_opset_13():
    for axis in (1, -1, 2):
        nodes = [helper.make_node("Softmax", ["x"], ["y"], axis=axis)]
        report = check_trt_compat(_model(nodes, [_x()], [_y()]))
        assert report.ok and [f.message for f in _find(report, "Softmax")] == ["supported"]


def test_softmax_before_opset_13_is_coerced_to_2d():
    nodes = [helper.make_node("Softmax", ["x"], ["y"], axis=1)]
    report = check_trt_compat(_model(nodes, [_x()], [_y()], opset=11))
    assert report.ok
    assert any("coerced to 2D at axis=1" in f.message for f in _find(report, "Softmax"))


def test_subgraphs_and_local_functions_are_checked():
    then_branch = helper.make_graph(
        [helper.make_node("Col2Im", ["x", "image_shape", "block_shape"], ["z"])], "then", [], [_y("z")])
    else_branch = helper.make_graph([helper.make_node("Identity", ["x4"], ["w"])], "else", [], [_y("w")])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    nodes = [helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch)]
    inits = [_init("image_shape", np.array([4, 4], dtype=np.int64)),
             _init("block_shape", np.array([2, 2], dtype=np.int64))]
    report = check_trt_compat(_model(nodes, [cond, _x(shape=(1, 4 * C, 9)), _x("x4")], [_y()], inits))
    assert not report.ok and _find(report, "Col2Im", "error")

    body = helper.make_function("xv", "Unfoldish", ["a"], ["b"],
                                [helper.make_node("Relu", ["a"], ["b"])], [helper.make_opsetid("", 19)])
    nodes = [helper.make_node("Unfoldish", ["x"], ["y"], domain="xv")]
    report = check_trt_compat(_model(nodes, [_x()], [_y()], extra_opsets=[("xv", 1)], functions=[body]))
    assert report.ok
    assert [f.message for f in _find(report, "Unfoldish")] == [
        "local function: the parser imports its body node by node"]
    assert _find(report, "Relu", "ok")


def test_resize_modes():
    def resize(**attrs):
        scales = _init("scales", np.array([1, 1, 2, 2], dtype=np.float32))
        nodes = [helper.make_node("Resize", ["x", "", "scales"], ["y"], **attrs)]
        return check_trt_compat(_model(nodes, [_x(shape=(1, C, 8, 8))], [_y()], [scales]))

    assert resize(mode="nearest").ok
    assert resize(mode="linear", coordinate_transformation_mode="align_corners").ok
    assert not resize(mode="linear", coordinate_transformation_mode="tf_crop_and_resize").ok
    assert not resize(mode="cubic").ok
    assert not resize(mode="linear", antialias=1).ok


def test_reduce_axes_must_be_an_initializer():
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [2])
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["y"])]
    report = check_trt_compat(_model(nodes, [_x(), axes], [_y()]))
    assert any(f.severity == "error" and "axes must be an initializer" in f.message
               for f in _find(report, "ReduceMean"))
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["y"])]
    const = _model(nodes, [_x()], [_y()], [_init("axes", np.array([2, 3], dtype=np.int64))])
    assert check_trt_compat(const).ok


def test_conv_restrictions():
    w = _init("w", np.zeros((C, C, 3, 3, 3, 3), dtype=np.float32))
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"])]
    report = check_trt_compat(_model(nodes, [_x(shape=(1, C, 5, 5, 5, 5))], [_y(rank=6)], [w]))
    assert any(f.severity == "error" and "4D convolution" in f.message for f in _find(report, "Conv"))
    dyn_w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [C, 1, 3, 3])
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], group=C)]
    report = check_trt_compat(_model(nodes, [_x(), dyn_w], [_y()]))
    assert report.ok and any("multi-input convolution" in f.message for f in _find(report, "Conv"))


def test_maxpool_indices_and_dilations():
    nodes = [helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2], dilations=[2, 2])]
    report = check_trt_compat(_model(nodes, [_x()], [_y(), _y("idx", TensorProto.INT64)]))
    messages = {f.message for f in _find(report, "MaxPool", "error")}
    assert messages == {"dilations must be empty or all ones", "the Indices output is unsupported"}


def test_ops_newer_than_10_0_are_warnings():
    nodes = [helper.make_node("HannWindow", ["size"], ["y"])]
    size = helper.make_tensor_value_info("size", TensorProto.INT64, [])
    report = check_trt_compat(_model(nodes, [size], [_y(rank=1)]))
    (f,) = _find(report, "HannWindow")
    assert f.severity == "warning" and "from TensorRT 10.4" in f.message and report.ok
