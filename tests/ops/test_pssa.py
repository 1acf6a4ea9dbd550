from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from xvdeploy import XVDeployError, pssa_transform
from xvdeploy.ops.pssa import ShiftKernel, default_shifts, pssa_depthwise, resolve_shifts


def test_default_shifts_are_the_eight_directions():
    assert default_shifts(2) == [(-2, -2), (-2, 0), (-2, 2), (0, -2), (0, 2), (2, -2), (2, 0), (2, 2)]


def test_sum_mode_is_x_times_sum_of_rolls():
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    expected = x * sum(torch.roll(x, s, (2, 3)) for s in default_shifts(1))
    torch.testing.assert_close(pssa_transform(x), expected, rtol=1e-15, atol=1e-15)


def test_concat_mode_order_is_shift_major():
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    t = pssa_transform(x, shifts=[(0, 1), (1, 0)], mode="concat")
    assert torch.equal(t[:, :2], x * torch.roll(x, (0, 1), (2, 3)))
    assert torch.equal(t[:, 2:], x * torch.roll(x, (1, 0), (2, 3)))


shift = st.tuples(st.integers(-6, 6), st.integers(-6, 6))


@given(shifts=st.one_of(st.none(), st.lists(shift, min_size=1, max_size=5)), distance=st.integers(1, 3),
       mode=st.sampled_from(["sum", "concat"]), h=st.integers(1, 9), w=st.integers(1, 9),
       c=st.integers(1, 3))
def test_depthwise_form_equals_roll_form_exactly_in_float64(shifts, distance, mode, h, w, c):
    shift_list = resolve_shifts(distance, shifts)
    x = torch.randn(2, c, h, w, dtype=torch.float64)
    kernel = ShiftKernel.from_shifts(shift_list)
    weight = kernel.weight(c, mode, torch.float64)
    y = pssa_depthwise(x, kernel, weight, mode)
    ref = pssa_transform(x, shifts=shift_list, mode=mode)
    if mode == "concat":  # depthwise form is channel-major: c·|S| + s
        n = len(shift_list)
        ref = ref.view(2, n, c, h, w).transpose(1, 2).reshape(2, n * c, h, w)
    # One-hot kernels pick single values, so both forms add the same float64 numbers; only the
    # order of the additions may differ (a few ulp), never the values.
    torch.testing.assert_close(y, ref, rtol=1e-14, atol=1e-13)


def test_depthwise_form_is_bitwise_equal_for_a_single_shift():
    x = torch.randn(1, 3, 7, 5, dtype=torch.float64)
    kernel = ShiftKernel.from_shifts([(2, -1)])
    y = pssa_depthwise(x, kernel, kernel.weight(3, "sum", torch.float64))
    assert torch.equal(y, pssa_transform(x, shifts=[(2, -1)]))


def test_shift_kernel_uses_dilation_for_distance():
    k = ShiftKernel.from_shifts(default_shifts(3))
    assert (k.pad_h, k.pad_w, k.dilation, k.size) == (3, 3, 3, (3, 3))


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="max"), "unknown PSSA mode 'max'"),
    (dict(shifts=[]), "shift list is empty"),
    (dict(shifts=[(1,)]), "pair of integers"),
    (dict(distance=0), "distance must be a positive integer"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(XVDeployError, match=message):
        pssa_transform(torch.zeros(1, 1, 3, 3), **kwargs)


def test_rejects_non_4d():
    with pytest.raises(XVDeployError, match="N×C×H×W"):
        pssa_transform(torch.zeros(3, 3))


@pytest.mark.parametrize("pad_h, pad_w", [(1, 1), (2, 0), (0, 3), (2, 1)])
def test_portable_wrap_pad_is_the_circular_pad_bit_for_bit(pad_h, pad_w, monkeypatch):
    """The Slice+Concat form that export writes under portable_wrap_pad() copies exactly F.pad's values."""
    import torch.nn.functional as F

    from xvdeploy.ops import pssa

    x = torch.randn(2, 3, 5, 6)
    expected = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="circular")
    eager = pssa.wrap_pad(x, pad_h, pad_w)
    with pssa.portable_wrap_pad():
        assert torch.equal(pssa.wrap_pad(x, pad_h, pad_w), expected)  # eager mode: still F.pad
        monkeypatch.setattr(pssa, "is_tracing", lambda: True)  # what torch.onnx.export sees
        portable = pssa.wrap_pad(x, pad_h, pad_w)
    monkeypatch.setattr(pssa, "is_tracing", lambda: True)
    assert not pssa._portable_pad and torch.equal(eager, expected)
    assert torch.equal(portable, expected)
