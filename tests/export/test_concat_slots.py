"""A merged "concat"-mode X-volution block exports without its Concat(X, T) (xvdeploy/export/concat_slots.py)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from tests.conftest import randomize_bn, rel_l2
from xvdeploy.export import export_onnx
from xvdeploy.export.concat_slots import carry_x_through_product
from xvdeploy.export.onnxfile import ort_session, read_header
from xvdeploy.ops.xvolution import XVolution


def _export(block, tmp_path, opset, name="b.onnx"):
    path = tmp_path / name
    export_onnx(block, path, (1, 8, 9, 10), compare_plain=False, opset=opset)
    return path, onnx.load(str(path))


@pytest.mark.parametrize("opset, nodes", [(19, 5), (17, 10)])
@pytest.mark.parametrize("kwargs", [dict(), dict(stride=2, kernel_size=5), dict(distance=2, shifts=[(0, 2), (-2, 1)])])
def test_concat_mode_block_has_no_concat_of_x_and_the_same_values(kwargs, opset, nodes, tmp_path):
    block = randomize_bn(XVolution(8, 8, mode="concat", **kwargs)).fold().eval()
    path, proto = _export(block, tmp_path, opset)
    ops = [n.op_type for n in proto.graph.node]
    assert len(ops) == nodes and ops.count("Concat") == (2 if opset < 19 else 0), ops  # the pad's only
    assert ops[-4:] == ["Conv", "Conv", "Mul", "Conv"]  # shift conv (with the slot bias), repeat conv, product, merged
    assert len(read_header(path).pssa_steps) == 1  # the step build --report maps to TensorRT layers
    x = np.random.default_rng(3).standard_normal((3, 8, 11, 7), dtype=np.float32)  # another batch and size
    with torch.no_grad():
        ref = block(torch.from_numpy(x))
    assert rel_l2(torch.from_numpy(ort_session(path).run(None, {"input": x})[0]), ref) <= 1e-6


def test_the_rewrite_changes_no_value_of_the_graph_it_is_given(tmp_path):
    """Against the graph as the exporter wrote it (the pass applied to a copy of it)."""
    block = randomize_bn(XVolution(8, 8, mode="concat")).fold().eval()
    path, proto = _export(block, tmp_path, 19)
    torch_path = tmp_path / "traced.onnx"
    torch.onnx.export(block, (torch.zeros(1, 8, 9, 10),), str(torch_path), dynamo=True, opset_version=19,
                      input_names=["input"], output_names=["output"])
    traced = onnx.load(str(torch_path))
    assert "Concat" in [n.op_type for n in traced.graph.node]
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(traced)
    assert carry_x_through_product(rewritten) and "Concat" not in [n.op_type for n in rewritten.graph.node]
    onnx.checker.check_model(rewritten, full_check=True)
    x = np.random.default_rng(0).standard_normal((1, 8, 9, 10), dtype=np.float32)
    a = ort_session(traced).run(None, {"input": x})[0]
    b = ort_session(rewritten).run(None, {"input": x})[0]
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()


@pytest.mark.parametrize("kwargs", [dict(), dict(mode="concat", groups=2)])
def test_sum_mode_and_unmerged_blocks_are_left_alone(kwargs, tmp_path):
    block = randomize_bn(XVolution(8, 8, **kwargs)).fold().eval()
    _, proto = _export(block, tmp_path, 19)
    before = [(n.op_type, list(n.input)) for n in proto.graph.node]
    assert carry_x_through_product(proto) == [] and [(n.op_type, list(n.input)) for n in proto.graph.node] == before


def test_every_block_of_a_network_is_rewritten(tmp_path):
    """Two "concat"-mode blocks in one graph (found in one pass, their Concats removed together)."""
    net = torch.nn.Sequential(randomize_bn(XVolution(8, 8, mode="concat")).fold(),
                              randomize_bn(XVolution(8, 8, mode="concat", distance=2)).fold()).eval()
    path, proto = _export(net, tmp_path, 19)
    ops = [n.op_type for n in proto.graph.node]
    assert "Concat" not in ops and ops.count("Conv") == 6 and len(read_header(path).pssa_steps) == 2, ops
    x = np.random.default_rng(4).standard_normal((2, 8, 9, 10), dtype=np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x))
    assert rel_l2(torch.from_numpy(ort_session(path).run(None, {"input": x})[0]), ref) <= 1e-6
