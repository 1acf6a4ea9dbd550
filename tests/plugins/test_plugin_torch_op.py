"""``torch.ops.xvdeploy.pssa`` / ``pssa_concat``: CPU implementation, fake implementation, autograd, errors."""
from __future__ import annotations

import importlib

import pytest
import torch

import xvdeploy.plugins as plugins
from xvdeploy.errors import XVDeployError
from xvdeploy.plugins import pssa, pssa_concat, pssa_op
from xvdeploy.plugins.torch_op import op_overload
from xvdeploy.pssa_contract import default_shifts, pssa_transform


def _flat(pairs):
    return [v for p in pairs for v in p]


@pytest.mark.parametrize("shifts", [default_shifts(1), default_shifts(2), [(7, -9), (0, 0)]], ids=["S1", "S2", "big"])
@pytest.mark.parametrize("mode", ["sum", "concat"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_cpu_op_is_the_reference(shifts, mode, dtype):
    x = torch.randn(2, 3, 5, 6).to(dtype)
    op = pssa if mode == "sum" else pssa_concat
    y = op(x, _flat(shifts))
    assert y.dtype == dtype
    torch.testing.assert_close(y, pssa_transform(x.double(), shifts=shifts, mode=mode).to(dtype))


def test_concat_channel_major():
    x = torch.randn(2, 3, 5, 6)
    shifts = default_shifts(1)
    y = pssa_concat(x, _flat(shifts), True)
    ref = pssa_transform(x, shifts=shifts, mode="concat").reshape(2, 8, 3, 5, 6).transpose(1, 2).reshape(2, 24, 5, 6)
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(pssa_op(x, mode="concat", channel_major=True), ref)
    from xvdeploy.ops.pssa import ShiftKernel, pssa_depthwise

    kernel = ShiftKernel.from_shifts(shifts)  # the folded modules' form and order
    torch.testing.assert_close(y, pssa_depthwise(x, kernel, kernel.weight(3, "concat"), "concat"))


def test_pssa_op_wrapper_and_overloads():
    x = torch.randn(1, 2, 4, 5)
    torch.testing.assert_close(pssa_op(x), pssa_transform(x))
    torch.testing.assert_close(pssa_op(x, distance=2, mode="concat"), pssa_transform(x, distance=2, mode="concat"))
    torch.testing.assert_close(pssa_op(x, [(1, 0), (0, -1)]), pssa_op(x, [1, 0, 0, -1]))
    assert op_overload("sum") is torch.ops.xvdeploy.pssa.default
    assert op_overload("concat") is torch.ops.xvdeploy.pssa_concat.default


def test_channels_last_input_gives_contiguous_output():
    x = torch.randn(2, 3, 5, 6)
    y = pssa(x.to(memory_format=torch.channels_last), [1, 1, -1, 0])
    assert y.is_contiguous()
    torch.testing.assert_close(y, pssa_transform(x, shifts=[(1, 1), (-1, 0)]))


@pytest.mark.parametrize(
    "x,shifts,match",
    [
        (torch.randn(3, 4, 4), [1, 1], "N×C×H×W"),
        (torch.ones(1, 1, 4, 4, dtype=torch.int64), [1, 1], "dtypes"),
        (torch.randn(1, 1, 4, 4, dtype=torch.complex64), [1, 1], "dtypes"),
        (torch.randn(1, 1, 4, 4), [], "empty"),
        (torch.randn(1, 1, 4, 4), [1, 1, 2], "odd length"),
    ],
)
@pytest.mark.parametrize("op", [pssa, pssa_concat], ids=["pssa", "pssa_concat"])
def test_bad_input_raises_xvdeploy_error(op, x, shifts, match):
    with pytest.raises(XVDeployError, match=match):
        op(x, shifts)


def test_bad_input_through_wrapper():
    with pytest.raises(XVDeployError, match="mode"):
        pssa_op(torch.randn(1, 1, 4, 4), mode="max")
    with pytest.raises(XVDeployError, match="integers"):
        pssa_op(torch.randn(1, 1, 4, 4), [(0.5, 1)])


def test_registering_twice_is_harmless():
    mod = importlib.reload(importlib.import_module("xvdeploy.plugins.torch_op"))
    importlib.reload(plugins)
    x = torch.randn(1, 2, 3, 3)
    torch.testing.assert_close(mod.pssa(x, [1, 1]), pssa_transform(x, shifts=[(1, 1)]))


def test_opcheck_schema_fake_and_autograd():
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    torch.library.opcheck(torch.ops.xvdeploy.pssa.default, (x, [1, 1, -1, 0]))
    torch.library.opcheck(torch.ops.xvdeploy.pssa_concat.default, (x, [1, 1, -1, 0], True))


def test_gradcheck():
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: pssa(a, [1, 1, 0, -1, -5, 2]), (x,))
    assert torch.autograd.gradcheck(lambda a: pssa_concat(a, [1, 1, 0, -1]), (x,))
    assert torch.autograd.gradcheck(lambda a: pssa_concat(a, [1, 1, 0, -1, 2, 0], True), (x,))


class _Block(torch.nn.Module):
    def forward(self, x):
        return pssa_op(x, [(1, 1), (-1, 0)]) + pssa_op(x, distance=2, mode="concat")[:, : x.shape[1]]


def test_torch_export_with_dynamic_shapes():
    dims = {0: torch.export.Dim("n"), 2: torch.export.Dim("h", min=2), 3: torch.export.Dim("w", min=2)}
    ep = torch.export.export(_Block(), (torch.randn(2, 3, 8, 8),), dynamic_shapes=(dims,))
    targets = [n.target for n in ep.graph.nodes if n.op == "call_function"]
    assert torch.ops.xvdeploy.pssa.default in targets and torch.ops.xvdeploy.pssa_concat.default in targets
    x = torch.randn(1, 3, 5, 6)
    torch.testing.assert_close(ep.module()(x), _Block()(x))


def test_fake_tensor_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(2, 3, 5, 7)
        assert pssa(x, [1, 1, 0, 1]).shape == (2, 3, 5, 7)
        assert pssa_concat(x, [1, 1, 0, 1, 2, 2]).shape == (2, 9, 5, 7)
        with pytest.raises(XVDeployError, match="odd length"):
            pssa(x, [1])


def test_torch_compile_aot_eager():
    x = torch.randn(1, 3, 5, 6)
    compiled = torch.compile(_Block(), backend="aot_eager", dynamic=True)
    torch.testing.assert_close(compiled(x), _Block()(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the op's Triton implementation is checked by the interpreter tests")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["sum", "concat"])
def test_cuda_op_uses_the_kernel(dtype, mode):
    x = torch.randn(2, 8, 17, 23, device="cuda").to(dtype)
    y = pssa_op(x, distance=1, mode=mode)
    ref = pssa_transform(x.double(), mode=mode)
    torch.testing.assert_close(y, ref.to(dtype))
