from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from xvdeploy.export.onnxfile import ort_session
from xvdeploy.quant.pssa_graph import find_pssa_blocks, rescale_t


def _run(model, x):
    return ort_session(model).run(None, {"input": x})[0]


def test_finds_each_kind_of_pssa_block_in_an_exported_model(three_blocks_onnx):
    blocks = {b.label: b for b in find_pssa_blocks(onnx.load(str(three_blocks_onnx)))}
    assert sorted(blocks) == ["a", "b", "c"]
    a, b, c = blocks["a"], blocks["b"], blocks["c"]
    assert (a.mode, a.merged, a.t_channels, a.t_offset) == ("sum", True, 4, 4)  # concat[X, T]: T after X's 4 channels
    assert (b.mode, b.merged, b.t_channels, b.concat) == ("concat", True, 8, None)  # 4 channels × 2 shifts
    # no Concat(X, T): per channel 2 shift filters and a slot carrying X (export/concat_slots.py)
    assert b.t_index == [0, 1, 3, 4, 6, 7, 9, 10]
    assert b.repeat_conv is not None and len(b.nodes) == 4  # Pad, shift conv, repeat conv, Mul
    assert (c.mode, c.merged, c.concat) == ("sum", False, None)  # grouped conv: two convs + add, no concat
    graph = {n.name: n for n in onnx.load(str(three_blocks_onnx)).graph.node}
    assert [graph[n].op_type for n in a.nodes] == ["Pad", "Conv", "Mul", "Concat"]
    assert graph[a.merged_convs[0]].input[0] == graph[a.concat].output[0]


def test_the_default_exports_portable_pad_is_found_too(tmp_path):
    """`xvdeploy export`'s default writes the cyclic pad as Concat(Slice, ·, Slice) per axis: the same three blocks."""
    from tests.quant.conftest import ThreeBlocks
    from xvdeploy import export_onnx, fold

    path = tmp_path / "three.onnx"
    export_onnx(fold(ThreeBlocks().eval()), path, (2, 2, 6, 6), check=False, compare_plain=False)
    proto = onnx.load(str(path))
    graph = {n.name: n for n in proto.graph.node}
    blocks = sorted(find_pssa_blocks(proto), key=lambda b: b.label)
    assert [b.label for b in blocks] == ["a", "b", "c"] and [b.mode for b in blocks] == ["sum", "concat", "sum"]
    for b in blocks:
        assert [graph[n].op_type for n in b.pad_nodes] == ["Slice", "Slice", "Concat"] * 2
        assert graph[b.shift_conv].input[0] == graph[b.pad_nodes[-1]].output[0]
        assert b.x == graph[b.pad_nodes[0]].input[0] and b.nodes[:6] == b.pad_nodes


def test_rescaling_t_is_the_same_function_in_float(three_blocks_onnx):
    model = onnx.load(str(three_blocks_onnx))
    blocks = find_pssa_blocks(model)
    rescaled = rescale_t(model, blocks, {"a": 0.05, "b": 0.3, "c": 0.1})  # c is unmerged: left alone
    onnx.checker.check_model(rescaled, full_check=True)
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6), dtype=np.float32)
    ref, y = _run(model, x), _run(rescaled, x)
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 1e-5
    again = {b.label: b for b in find_pssa_blocks(rescaled)}  # still found: kernel entries 0 or α
    assert sorted(again) == ["a", "b", "c"]
    inits = {t.name: numpy_helper.to_array(t) for t in rescaled.graph.initializer}
    nodes = {n.name: n for n in rescaled.graph.node}
    assert set(np.unique(inits[nodes[again["a"].shift_conv].input[1]])) == {np.float32(0), np.float32(0.05)}
    assert nodes[again["c"].shift_conv].input[1] == nodes[blocks[2].shift_conv].input[1]  # untouched


def test_a_wrap_pad_before_an_ordinary_conv_is_not_pssa():
    w = numpy_helper.from_array(np.full((2, 1, 3, 3), 0.5, np.float32) * np.arange(9).reshape(1, 1, 3, 3), "w")
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    nodes = [helper.make_node("Pad", ["input", "pads"], ["p"], mode="wrap", name="pad"),
             helper.make_node("Conv", ["p", "w"], ["a"], group=2, name="conv"),
             helper.make_node("Mul", ["input", "a"], ["output"], name="mul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2, 4, 4])], [w, pads])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=10)
    onnx.checker.check_model(model)
    assert find_pssa_blocks(model) == []


@pytest.mark.parametrize("value", [1.0, 0.25])
def test_one_hot_kernel_detection(value):
    from xvdeploy.quant.pssa_graph import _is_shift_kernel

    k = np.zeros((3, 1, 3, 3), np.float32)
    k[:, 0, 0, 1] = k[:, 0, 2, 1] = value
    assert _is_shift_kernel(k)
    k[1, 0, 1, 1] = 2 * value
    assert not _is_shift_kernel(k)
    assert not _is_shift_kernel(np.zeros((3, 1, 3, 3), np.float32))
