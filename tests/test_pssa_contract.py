"""The PSSA contract (xvdeploy.pssa_contract): one home for modes, shifts, names, channel order, reference math."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import xvdeploy
from xvdeploy import pssa_contract as pc
from xvdeploy.errors import XVDeployError

ROOT = Path(__file__).resolve().parent.parent


def test_modes_and_their_check():
    assert pc.MODES == ("sum", "concat")
    assert [pc.check_mode(m) for m in pc.MODES] == ["sum", "concat"]
    with pytest.raises(XVDeployError, match="unknown PSSA mode 'max'; expected one of sum, concat"):
        pc.check_mode("max")


def test_names():
    assert pc.OP_TYPES == {"sum": "PSSA", "concat": "PSSAConcat"}
    assert {pc.MODE_OF_OP_TYPE[pc.op_type(m)] for m in pc.MODES} == set(pc.MODES)
    assert (pc.ONNX_DOMAIN, pc.ONNX_OPSET_VERSION) == ("ai.onnx.contrib", 1)
    assert (pc.PLUGIN_NAMESPACE, pc.PLUGIN_VERSION) == ("xvdeploy", "1")
    assert [pc.plugin_id(m) for m in pc.MODES] == ["xvdeploy::PSSA", "xvdeploy::PSSAConcat"]
    assert [pc.torch_op_name(m) for m in pc.MODES] == ["xvdeploy::pssa", "xvdeploy::pssa_concat"]
    for mode, name in pc.TORCH_OPS.items():  # the ops registered on import are the contract's
        assert getattr(getattr(torch.ops, pc.TORCH_NAMESPACE), name).default.name() == pc.torch_op_name(mode)
    for bad in (pc.op_type, pc.plugin_id, pc.torch_op_name):
        with pytest.raises(XVDeployError, match="mode"):
            bad("max")


def test_shift_forms_round_trip():
    pairs = [(-1, -1), (0, 12), (7, -9)]
    flat = pc.flat_shifts(pairs)
    assert flat == (-1, -1, 0, 12, 7, -9) == pc.flat_shifts(list(flat)) == pc.flat_shifts(np.array(flat))
    assert pc.shift_pairs(flat) == pairs == pc.shift_pairs(pairs)
    assert pc.shifts_to_str(pairs) == "-1,-1,0,12,7,-9"
    assert pc.shifts_from_str(pc.shifts_to_str(pairs)) == list(flat)
    assert pc.resolve_shifts(shifts=[[1, 2], (np.int64(3), 4)]) == [(1, 2), (3, 4)]
    assert pc.resolve_shifts(2) == pc.default_shifts(2)
    assert len(set(pc.default_shifts(1))) == 8 and (0, 0) not in pc.default_shifts(1)


@pytest.mark.parametrize("call, match", [
    (lambda: pc.flat_shifts([]), "empty"),
    (lambda: pc.flat_shifts([1, 2, 3]), "odd length"),
    (lambda: pc.flat_shifts([1.5, 1]), "integers"),
    (lambda: pc.flat_shifts([True, 1]), "integers"),
    (lambda: pc.flat_shifts([(1, 2, 3)]), "pair"),
    (lambda: pc.resolve_shifts(shifts=[]), "empty"),
    (lambda: pc.resolve_shifts(shifts=[(1,)]), "pair of integers"),
    (lambda: pc.resolve_shifts(shifts=[1, 2]), "pair of integers"),
    (lambda: pc.resolve_shifts(shifts=[(0.5, 1)]), "pair of integers"),
    (lambda: pc.default_shifts(0), "positive integer"),
    (lambda: pc.shifts_from_str("1;2"), "comma-separated"),
])
def test_bad_shifts_are_one_line_errors(call, match):
    with pytest.raises(XVDeployError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_channel_orders():
    n, c, s, h, w = 2, 3, 4, 5, 6
    t = torch.randn(n, s * c, h, w)
    cm = pc.to_channel_major(t, s)
    for ci in range(c):
        for si in range(s):
            assert torch.equal(cm[:, ci * s + si], t[:, si * c + ci])  # c·|S| + s  <-  s·C + c
    assert torch.equal(pc.to_shift_major(cm, s), t)
    weight = torch.randn(7, s * c, 3, 3)  # a conv weight over "concat" channels permutes its input dim the same way
    assert torch.equal(pc.to_shift_major(pc.to_channel_major(weight, s), s), weight)


def test_reference_math():
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    shifts = [(1, 0), (0, -2)]
    t = pc.pssa_transform(x, shifts=shifts, mode="concat")
    assert torch.equal(t[:, :3], x * torch.roll(x, (1, 0), (2, 3)))
    assert torch.equal(pc.pssa_transform(x, shifts=shifts, mode="concat", channel_major=True), pc.to_channel_major(t, 2))
    torch.testing.assert_close(pc.pssa_transform(x, shifts=shifts), t[:, :3] + t[:, 3:], rtol=1e-15, atol=1e-15)
    assert xvdeploy.pssa_transform is pc.pssa_transform  # the public API is the contract's


def test_check_input():
    pc.check_input(torch.zeros(1, 1, 2, 2, dtype=torch.bfloat16))
    for x, match in [("x", "torch.Tensor"), (torch.zeros(2, 2), "N×C×H×W"), (torch.zeros(1, 1, 2, 2, dtype=torch.int8), "dtypes")]:
        with pytest.raises(XVDeployError, match=match):
            pc.check_input(x)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_contract_is_core_and_plugins_do_not_import_ops_or_folding():
    assert _imports(ROOT / "xvdeploy" / "pssa_contract.py") <= {"__future__", "operator", "typing", "torch",
                                                               "xvdeploy.errors"}
    for path in sorted((ROOT / "plugins").glob("*.py")):
        bad = {m for m in _imports(path) if m.startswith(("xvdeploy.ops", "xvdeploy.folding"))}
        assert not bad, f"{path.name} imports {bad}"


def test_one_copy_of_the_contract():
    """The op and the plugin modules use the contract's objects instead of their own copies."""
    from xvdeploy.ops import pssa as ops_pssa
    from xvdeploy.plugins import onnx_node, pssa_triton, torch_op, trt_plugin

    assert ops_pssa.pssa_transform is pc.pssa_transform and ops_pssa.resolve_shifts is pc.resolve_shifts
    assert ops_pssa.default_shifts is pc.default_shifts
    assert pssa_triton.flat_shifts is pc.flat_shifts and torch_op.flat_shifts is pc.flat_shifts
    assert onnx_node.OP_TYPES is pc.OP_TYPES and trt_plugin.plugin_id is pc.plugin_id
    for mod in (onnx_node, trt_plugin, torch_op, pssa_triton):
        assert not hasattr(mod, "PLUGIN_NAMES") and not hasattr(mod, "NAMESPACE") and not hasattr(mod, "OPSET_VERSION")
    assert not hasattr(onnx_node, "plugin_model")  # one plugin swap: xvdeploy.folding.use_pssa_plugin
