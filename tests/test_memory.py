"""xvdeploy.memory: estimates before large allocations; huge shapes are one line, not the allocator's death."""
from __future__ import annotations

import pytest

import xvdeploy.memory as memory
from tests.cli.conftest import assert_one_line_error, invoke
from xvdeploy import zoo
from xvdeploy.errors import XVDeployError


def test_available_memory_is_known_here():
    available = memory.available_bytes()
    assert available is not None and available > 0


def test_check_fits_is_one_line():
    with pytest.raises(XVDeployError, match=r"^the thing needs about 1\.0 PiB of memory, more than the .* available "
                                            r"here; make it smaller$"):
        memory.check_fits(1 << 50, "the thing", "make it smaller")
    memory.check_fits(1, "one byte", "")


def test_activations_are_traced_without_allocating():
    model = zoo.create("xv_digits").eval()
    largest, total = memory.activation_numels(model, (1, 1, 8, 8))
    assert largest >= 16 * 8 * 8 and total > largest
    huge = memory.activation_numels(model, (1, 1, 100_000, 100_000))  # 640 GB of activations: nothing allocated
    assert huge[0] >= 16 * 10 ** 10
    assert memory.activation_numels(model, (1, 3, 8, 8)) is None  # cannot take 3 channels: no estimate


def test_forward_estimate_counts_activations_for_large_inputs(monkeypatch):
    model = zoo.create("xv_digits").eval()
    monkeypatch.setattr(memory, "available_bytes", lambda: 10 << 20)  # a 10 MiB machine
    small = memory.forward_bytes(model, (1, 1, 8, 8))
    assert small == 4 * 64  # tiny input: not worth a trace
    big = memory.forward_bytes(model, (1, 1, 256, 256), itemsize=8, keep_activations=True)
    assert big > 8 * 16 * 256 * 256 * 4
    with pytest.raises(XVDeployError, match="the fold check needs about"):
        memory.check_forward_fits(model, (1, 1, 256, 256), "the fold check", "smaller", itemsize=8,
                                  keep_activations=True)


@pytest.mark.parametrize("args, fragments", [
    (["fold", "xv_digits", "-o", "{tmp}/f.safetensors", "--input-shape", "1x1x100000x100000"],
     ["one float32 input needs about 37.3 GiB of memory", "smaller --input-shape"]),
    (["fold", "xv_digits", "-o", "{tmp}/f.safetensors", "--input-shape", "1x1x20000x20000"],  # the input fits
     ["the fold check at 1x1x20000x20000", "needs about"]),
    (["bench", "xv_digits", "--input-shape", "1x100000x100000", "--data", "random", "--iters", "1"],
     ["needs about", "smaller --input-shape"]),
    (["bench", "xv_digits", "--input-shape", "1x20000x20000", "--data", "random", "--iters", "1",
      "--backends", "torch"], ["a batch of 1x1x20000x20000 needs about"]),
    (["export", "xv_digits", "-o", "{tmp}/d.onnx", "--input-shape", "1x1x20000x20000"], ["exporting at", "needs about"]),
])
def test_huge_shapes_are_refused_before_the_allocator(tmp_path, args, fragments):
    result = invoke(*[a.format(tmp=tmp_path) for a in args], "--quiet")
    assert_one_line_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []
