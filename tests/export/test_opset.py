"""Opset down-conversion (export/opset.py) and the shape simplification (export/simplify.py) on one exported graph."""
from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import randomize_bn, rel_l2
from xvdeploy import ACmix, XVolution, XVolutionSA, export_onnx
from xvdeploy.errors import XVDeployError
from xvdeploy.export.onnxfile import ort_session
from xvdeploy.export.opset import default_opset, downgrade, max_opset


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """X-volution ("concat"), X-volution(SA) with stride 2 and ACmix in one dynamic graph, exported at opset 18."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        randomize_bn(XVolution(8, 8, mode="concat")).fold(), randomize_bn(XVolutionSA(8, 8, heads=2, stride=2)).fold(),
        randomize_bn(ACmix(8, 8, kernel_att=3, head=2)).fold(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(8, 5)).eval()
    path = tmp_path_factory.mktemp("mixed") / "mixed.onnx"
    report = export_onnx(model, path, (1, 8, 12, 14), opset=18, compare_plain=False, check=False)
    return model, onnx.load(str(path)), report


def _run(proto, x: np.ndarray) -> np.ndarray:
    session = ort_session(proto)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_reshape_targets_are_constants_or_one_shape_read(mixed):
    """No Shape → Gather → arithmetic → Concat chains: every Reshape target is a constant (0 = copy, -1 = infer)
    or, where two dims are dynamic (an un-flatten of H·W), constants around one Shape(start, end) read."""
    _, proto, report = mixed
    assert report.dynamic_axes == ["batch", "height", "width"]
    consts = {i.name for i in proto.graph.initializer}
    producers = {o: n for n in proto.graph.node for o in n.output}
    reshapes = [n for n in proto.graph.node if n.op_type == "Reshape"]
    assert reshapes
    for node in reshapes:
        assert [a.i for a in node.attribute if a.name == "allowzero"] in ([], [0]), node.name
        target = node.input[1]
        if target in consts:
            continue
        concat = producers[target]
        assert concat.op_type == "Concat"
        reads = [producers[i] for i in concat.input if i not in consts]
        assert len(reads) == 1 and reads[0].op_type == "Shape", [r.op_type for r in reads]
    ops = [n.op_type for n in proto.graph.node]
    assert "Gather" not in [producers[i].op_type for n in reshapes for i in n.input[1:] if i in producers]
    # what stays dynamic: ACmix's position grid (Range over H and W) and the un-flatten reads
    assert ops.count("Shape") <= 6, ops


@pytest.mark.parametrize("opset", [13, 14, 15, 16, 17])
def test_downgrade_keeps_the_values(mixed, opset):
    model, proto, _ = mixed
    old = copy.deepcopy(proto)
    notes = downgrade(old, opset)
    onnx.checker.check_model(old, full_check=True)
    assert default_opset(old) == opset and notes and "ReduceMean" in notes[0] and "Split" in notes[0]
    if opset < 15:
        assert "Shape" in notes[0]  # Shape(start, end) became Shape + Slice
    read = {i for n in old.graph.node for i in n.input}
    assert [i.name for i in old.graph.initializer if i.name not in read] == []  # e.g. axes that became attributes
    for shape in ((1, 8, 12, 14), (3, 8, 9, 16)):
        x = np.random.default_rng(sum(shape)).standard_normal(shape, dtype=np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x))
        assert rel_l2(torch.from_numpy(_run(old, x)), ref) <= 1e-5


def _model(nodes, inputs, outputs, inits=(), opset=18):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _x(*dims):
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))


def _y(*dims):
    return helper.make_tensor_value_info("y", TensorProto.FLOAT, list(dims))


@pytest.mark.parametrize("build, target, fragments", [
    (lambda: _model([helper.make_node("LayerNormalization", ["x", "s"], ["y"], axis=-1)], [_x(2, 4)], [_y(2, 4)],
                    [numpy_helper.from_array(np.ones(4, np.float32), "s")]), 16,
     ["no LayerNormalization before opset 17", "--opset 17"]),
    (lambda: _model([helper.make_node("Pad", ["x", "p"], ["y"], mode="wrap")], [_x(1, 1, 4, 4)], [_y(1, 1, 6, 6)],
                    [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "p")], opset=19), 17,
     ["Pad mode=wrap needs opset ≥ 19", "--portable"]),
    (lambda: _model([helper.make_node("Split", ["x"], ["a", "b"], axis=0, num_outputs=2)], [_x("n", 4)],
                    [_y("n", 4), helper.make_tensor_value_info("b", TensorProto.FLOAT, None)]), 17,
     ["Split into 2 parts of a dynamic axis"]),
    (lambda: _model([helper.make_node("Resize", ["x", "", "sc"], ["y"], antialias=1)], [_x(1, 1, 4, 4)],
                    [_y(1, 1, 8, 8)], [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc")]), 17,
     ["Resize-18 has no down-conversion", "--opset 18"]),
])
def test_downgrade_refuses_what_it_cannot_rewrite(build, target, fragments):
    with pytest.raises(XVDeployError) as info:
        downgrade(build(), target)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_split_of_a_static_uneven_axis_gets_its_sizes():
    proto = _model([helper.make_node("Split", ["x"], ["y", "b"], axis=1, num_outputs=2)], [_x(2, 5)],
                   [_y(2, 3), helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 2])])
    downgrade(proto, 13)
    onnx.checker.check_model(proto, full_check=True)
    x = np.arange(10, dtype=np.float32).reshape(2, 5)
    y, b = ort_session(proto).run(None, {"x": x})
    assert np.array_equal(y, x[:, :3]) and np.array_equal(b, x[:, 3:])


def test_max_opset_is_what_onnx_and_onnxruntime_both_know():
    pytest.importorskip("onnxruntime")
    assert 19 <= max_opset() <= onnx.defs.onnx_opset_version()
