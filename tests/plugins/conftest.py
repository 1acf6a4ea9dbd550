"""Fixtures of the PSSA plugin tests.

The Triton kernel runs on CPU tensors in Triton's interpreter: ``TRITON_INTERPRET``
is read when the kernel is decorated, i.e. when ``xvdeploy.plugins._pssa_kernel``
is first imported (on the first launch), so setting it here, at collection, is
early enough. Nothing outside these tests uses Triton.
"""
from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


def _kernel_device() -> str | None:
    from xvdeploy._lazy import available
    from xvdeploy.plugins.pssa_triton import interpreting

    if not available("triton"):
        return None
    if torch.cuda.is_available() and not interpreting():
        return "cuda"
    return "cpu" if interpreting() else None


@pytest.fixture(scope="session")
def kernel_device() -> str:
    """Where the Triton kernel runs: CPU under the interpreter, else CUDA; skip otherwise."""
    dev = _kernel_device()
    if dev is None:
        pytest.skip("the Triton kernel needs triton and either TRITON_INTERPRET=1 or a CUDA device")
    return dev


def rel_l2(y, ref) -> float:
    """‖y − ref‖ / ‖ref‖ in float64 (numpy or torch)."""
    y = torch.as_tensor(y).detach().double()
    ref = torch.as_tensor(ref).detach().double()
    return float((y - ref).norm() / ref.norm())
