"""The custom ONNX node (``--pssa-plugin`` form): export, checker, and onnxruntime-extensions execution."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime_extensions")

from xvdeploy.errors import XVDeployError  # noqa: E402
from xvdeploy.export.onnxfile import ort_session  # noqa: E402
from xvdeploy.folding import use_pssa_plugin  # noqa: E402
from xvdeploy.plugins import pssa_op  # noqa: E402
from xvdeploy.plugins.onnx_node import (  # noqa: E402
    custom_translation_table,
    make_node,
    mark_aot,
    plugin_nodes,
    pssa_numpy,
)
from xvdeploy.pssa_contract import ONNX_DOMAIN as DOMAIN  # noqa: E402
from xvdeploy.pssa_contract import (  # noqa: E402
    PLUGIN_NAMESPACE,
    default_shifts,
    pssa_transform,
    shifts_from_str,
    shifts_to_str,
)

from .conftest import rel_l2  # noqa: E402

BIG = [(7, -9), (0, 1)]  # larger than the maps the test runs on


class _Net(torch.nn.Module):
    """conv → PSSA (S_1) → conv, plus a concat-mode PSSA with wrapping shifts: two plugin nodes."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Conv2d(4 + 4 * len(BIG), 2, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.rand(p.shape, generator=g) - 0.5)

    def forward(self, x):
        a = self.conv(x)
        return self.head(torch.cat([pssa_op(a), pssa_op(a, BIG, mode="concat")], dim=1))


@pytest.fixture(scope="module")
def exported():
    model = _Net().eval()
    dims = {0: torch.export.Dim("n"), 2: torch.export.Dim("h"), 3: torch.export.Dim("w")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), dynamo=True, verbose=False,
                                 custom_translation_table=custom_translation_table(), dynamic_shapes=(dims,))
    return model, prog.model_proto


def test_one_custom_node_per_pssa_step(exported):
    _, proto = exported
    nodes = plugin_nodes(proto)
    assert [n.op_type for n in nodes] == ["PSSA", "PSSAConcat"]
    others = [n for n in proto.graph.node if n not in nodes]
    assert others and all(n.domain in ("", "ai.onnx") for n in others)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    flat = [v for p in default_shifts(1) for v in p]
    assert attrs["shifts"] == flat
    assert attrs["shifts_str"] == ",".join(map(str, flat)).encode()
    assert attrs["plugin_namespace"] == PLUGIN_NAMESPACE.encode() and attrs["plugin_version"] == b"1"
    assert "channel_major" not in attrs
    concat_attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[1].attribute}
    assert concat_attrs["channel_major"] == 0 and concat_attrs["shifts"] == [v for p in BIG for v in p]
    assert nodes[0].domain == DOMAIN
    assert {o.domain: o.version for o in proto.opset_import}[DOMAIN] == 1
    onnx.checker.check_model(proto, full_check=True)


def test_onnxruntime_runs_the_plugin_form(exported):
    model, proto = exported
    sess = ort_session(proto)
    for shape in [(2, 3, 5, 6), (1, 3, 8, 8)]:  # a shape unlike the export one: dynamic batch/H/W
        x = torch.randn(*shape)
        (y,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            ref = model(x)
        assert y.shape == tuple(ref.shape)
        assert rel_l2(y, ref) <= 1e-5


def test_ort_session_from_path_and_bytes(tmp_path, exported):
    _, proto = exported
    path = tmp_path / "plugin.onnx"
    onnx.save(proto, str(path))
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    outs = [ort_session(src).run(None, {"x": x})[0] for src in (path, str(path), proto.SerializeToString())]
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    with pytest.raises(XVDeployError, match="no such file"):
        ort_session(tmp_path / "missing.onnx")
    with pytest.raises(XVDeployError, match="path, bytes or onnx.ModelProto"):
        ort_session(42)


@pytest.mark.parametrize("mode", ["sum", "concat", "concat-cm"])
def test_hand_built_node_with_wrapping_shifts(mode):
    shifts = [(5, -9), (-12, 3), (0, 0)]
    c = 2
    cm = mode == "concat-cm"
    mode = "concat" if cm else mode
    out_c = c * len(shifts) if mode == "concat" else c
    graph = onnx.helper.make_graph(
        [make_node("x", "y", shifts, mode, name="pssa0", channel_major=cm)], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", c, "h", "w"])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", out_c, "h", "w"])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18),
                                                         onnx.helper.make_opsetid(DOMAIN, 1)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    x = torch.randn(1, c, 3, 4)
    (y,) = ort_session(model).run(None, {"x": x.numpy()})
    ref = pssa_transform(x, shifts=shifts, mode=mode)
    if cm:
        ref = ref.reshape(1, len(shifts), c, 3, 4).transpose(1, 2).reshape(1, -1, 3, 4)
    np.testing.assert_allclose(y, ref.numpy(), rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def folded_net():
    from tests.conftest import randomize_bn

    from xvdeploy import fold
    from xvdeploy.ops import XVolution

    torch.manual_seed(0)
    net = torch.nn.Sequential(XVolution(3, 4, mode="concat"), torch.nn.ReLU(), XVolution(4, 4, distance=2))
    return fold(randomize_bn(net))


def _plugged(model):
    """A deep copy of a folded model whose PSSA steps call the custom ops (the one swap: ``use_pssa_plugin``)."""
    twin = copy.deepcopy(model)
    use_pssa_plugin(twin)
    return twin


def test_use_pssa_plugin_swaps_each_folded_pssa_step(folded_net):
    twin = copy.deepcopy(folded_net)
    assert use_pssa_plugin(twin) == 2
    assert twin[0].use_plugin and twin[2].use_plugin
    assert not folded_net[0].use_plugin and not folded_net[2].use_plugin  # the original keeps the subgraph
    x = torch.randn(2, 3, 6, 7)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), folded_net(x))
    assert use_pssa_plugin(twin, enabled=False) == 2 and not twin[0].use_plugin
    assert use_pssa_plugin(torch.nn.Conv2d(3, 3, 1)) == 0  # no folded PSSA step (export --pssa-plugin refuses it)


def test_folded_network_exports_to_one_node_per_step(folded_net):
    from xvdeploy.plugins.onnx_node import translation_table

    dims = {0: torch.export.Dim("n"), 2: torch.export.Dim("h"), 3: torch.export.Dim("w")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(_plugged(folded_net), (torch.randn(1, 3, 8, 8),), dynamo=True, verbose=False,
                                 custom_translation_table=translation_table(), dynamic_shapes=(dims,))
    proto = prog.model_proto
    nodes = plugin_nodes(proto)
    assert [n.op_type for n in nodes] == ["PSSAConcat", "PSSA"]
    assert {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}["channel_major"] == 1
    assert not any(n.op_type in ("Pad", "Reshape", "Transpose") for n in proto.graph.node)
    onnx.checker.check_model(proto, full_check=True)
    sess = ort_session(proto)
    x = torch.randn(2, 3, 5, 9)
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert rel_l2(y, folded_net(x)) <= 1e-5


def test_mark_aot(exported):
    _, proto = exported
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    for value in (True, False, None):
        mark_aot(model, value)
        for node in plugin_nodes(model):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs.get("aot") == (None if value is None else int(value))
    onnx.checker.check_model(mark_aot(model, True), full_check=True)


def test_shift_string_round_trip_and_errors():
    assert shifts_to_str([(-1, -1), (0, 12)]) == "-1,-1,0,12"
    assert shifts_from_str("-1,-1,0,12") == [-1, -1, 0, 12]
    assert shifts_from_str(b"3,4") == [3, 4]
    with pytest.raises(XVDeployError, match="comma-separated"):
        shifts_from_str("1;2")
    with pytest.raises(XVDeployError, match="odd length"):
        shifts_from_str("1,2,3")
    with pytest.raises(XVDeployError, match="mode"):
        make_node("x", "y", [1, 1], mode="max")
    with pytest.raises(XVDeployError, match="N×C×H×W"):
        pssa_numpy(np.zeros((2, 3)), [1, 1])
