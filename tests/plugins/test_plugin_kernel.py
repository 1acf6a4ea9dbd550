"""The fused Triton PSSA kernel against the reference (Triton's interpreter on CPU in CI)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xvdeploy.errors import XVDeployError
from xvdeploy.plugins.pssa_triton import pick_block, pssa_triton
from xvdeploy.pssa_contract import default_shifts, flat_shifts, pssa_transform

SHIFT_LISTS = {
    "S1": default_shifts(1),
    "S2": default_shifts(2),
    "S3": default_shifts(3),
    "one": [(0, 1)],
    "big": [(5, -9), (-12, 3), (0, 0), (33, 17)],  # larger than the maps, and the zero shift
}
SHAPES = [(1, 1, 1, 1), (1, 2, 2, 3), (2, 3, 5, 7), (1, 2, 33, 17)]


def _channel_major(t: torch.Tensor, s: int) -> torch.Tensor:
    n, sc, h, w = t.shape
    return t.reshape(n, s, sc // s, h, w).transpose(1, 2).reshape(n, sc, h, w)


def _check(y: torch.Tensor, x: torch.Tensor, shifts, mode: str, channel_major: bool = False) -> None:
    ref = pssa_transform(x.double(), shifts=shifts, mode=mode)
    if channel_major:
        ref = _channel_major(ref, len(shifts))
    assert y.shape == ref.shape and y.dtype == x.dtype and y.is_contiguous()
    if x.dtype in (torch.float32, torch.float64):
        torch.testing.assert_close(y.double(), ref, rtol=1e-6 if x.dtype == torch.float32 else 1e-12, atol=1e-5)
    else:  # one rounding of the fp32 result
        torch.testing.assert_close(y, ref.to(x.dtype))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list(SHIFT_LISTS))
@pytest.mark.parametrize("mode", ["sum", "concat"])
def test_kernel_matches_reference(kernel_device, shape, name, mode):
    x = torch.randn(*shape, device=kernel_device)
    _check(pssa_triton(x, SHIFT_LISTS[name], mode), x, SHIFT_LISTS[name], mode)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 7), (1, 2, 33, 17)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ["S1", "big"])
def test_concat_channel_major(kernel_device, shape, name):
    """Channel ``c·|S| + s``: the order of the folded modules (``pssa_depthwise``)."""
    x = torch.randn(*shape, device=kernel_device)
    shifts = SHIFT_LISTS[name]
    _check(pssa_triton(x, shifts, "concat", channel_major=True), x, shifts, "concat", channel_major=True)
    _check(pssa_triton(x, shifts, "concat", channel_major=True, block=16), x, shifts, "concat", channel_major=True)


@pytest.mark.parametrize("shape,block", [((2, 3, 5, 7), 16), ((1, 2, 33, 17), 64), ((1, 1, 3, 3), 16)])
@pytest.mark.parametrize("mode", ["sum", "concat"])
def test_tails_and_several_blocks_per_plane(kernel_device, shape, block, mode):
    """Blocks smaller than the plane: masked tails and neighbours read across block edges."""
    x = torch.randn(*shape, device=kernel_device)
    _check(pssa_triton(x, SHIFT_LISTS["S1"], mode, block=block), x, SHIFT_LISTS["S1"], mode)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("mode", ["sum", "concat"])
def test_low_and_double_precision(kernel_device, dtype, mode):
    x = torch.randn(2, 2, 5, 6, device=kernel_device).to(dtype)
    _check(pssa_triton(x, SHIFT_LISTS["S1"], mode), x, SHIFT_LISTS["S1"], mode)


def test_non_contiguous_inputs_are_made_contiguous(kernel_device):
    x = torch.randn(2, 3, 5, 7, device=kernel_device)
    for view in (x.to(memory_format=torch.channels_last), x.transpose(2, 3).contiguous().transpose(2, 3)):
        assert not view.is_contiguous()
        y = pssa_triton(view, SHIFT_LISTS["S1"])
        assert y.is_contiguous()
        _check(y, x, SHIFT_LISTS["S1"], "sum")


def test_out_argument_and_empty_batch(kernel_device):
    x = torch.randn(1, 2, 4, 4, device=kernel_device)
    out = torch.empty(1, 16, 4, 4, device=kernel_device)
    assert pssa_triton(x, SHIFT_LISTS["S1"], "concat", out=out) is out
    _check(out, x, SHIFT_LISTS["S1"], "concat")
    with pytest.raises(XVDeployError, match="out="):
        pssa_triton(x, SHIFT_LISTS["S1"], "sum", out=out)
    empty = torch.randn(0, 2, 4, 4, device=kernel_device)
    assert pssa_triton(empty, SHIFT_LISTS["S1"]).shape == (0, 2, 4, 4)


@settings(max_examples=15, deadline=None)  # the interpreter runs ~5 ms per program
@given(
    n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 12),
    shifts=st.lists(st.tuples(st.integers(-15, 15), st.integers(-15, 15)), min_size=1, max_size=4),
    mode=st.sampled_from(["sum", "concat", "concat-cm"]), block=st.sampled_from([None, 16, 32]),
)
def test_kernel_property(kernel_device, n, c, h, w, shifts, mode, block):
    x = torch.randn(n, c, h, w, device=kernel_device)
    cm = mode == "concat-cm"
    mode = "concat" if cm else mode
    _check(pssa_triton(x, shifts, mode, channel_major=cm, block=block), x, shifts, mode, cm)


@pytest.mark.parametrize(
    "x,shifts,mode,match",
    [
        (torch.randn(3, 4, 4), [1, 1], "sum", "N×C×H×W"),
        (torch.ones(1, 1, 4, 4, dtype=torch.int32), [1, 1], "sum", "dtypes"),
        (torch.randn(1, 1, 4, 4), [], "sum", "empty"),
        (torch.randn(1, 1, 4, 4), [1, 1, 2], "sum", "odd length"),
        (torch.randn(1, 1, 4, 4), [1.5, 1], "sum", "integers"),
        (torch.randn(1, 1, 4, 4), [True, 1], "sum", "integers"),
        (torch.randn(1, 1, 4, 4), [(1, 2, 3)], "sum", "pair"),
        (torch.randn(1, 1, 4, 4), [1, 1], "max", "mode"),
        ("not a tensor", [1, 1], "sum", "torch.Tensor"),
    ],
)
def test_bad_input(x, shifts, mode, match):
    with pytest.raises(XVDeployError, match=match):
        pssa_triton(x, shifts, mode)


def test_block_choice():
    assert pick_block(1) == 16 and pick_block(49) == 64 and pick_block(10**6) == 1024
    with pytest.raises(XVDeployError, match="power of two"):
        pick_block(100, 24)
    assert flat_shifts([(1, -2), (3, 4)]) == (1, -2, 3, 4) == flat_shifts([1, -2, 3, 4])


def test_cpu_without_interpreter_is_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(XVDeployError, match="TRITON_INTERPRET=1"):
        pssa_triton(torch.randn(1, 1, 4, 4), [1, 1])


def test_import_needs_no_triton_onnx_or_tensorrt():
    code = (
        "import sys, xvdeploy.plugins, torch\n"
        "assert hasattr(torch.ops.xvdeploy, 'pssa') and hasattr(torch.ops.xvdeploy, 'pssa_concat')\n"
        "heavy = [m for m in ('triton', 'onnx', 'onnxscript', 'onnxruntime', 'tensorrt') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
