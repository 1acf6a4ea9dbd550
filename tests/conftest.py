from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# CI runs the property tests with at least 200 examples each.
# derandomize: the same 200 examples every run, so a CI result never depends on luck.
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# XV_TEST_THREADS=1 on a machine shared by several test runs (two threads per run oversubscribe the cores)
torch.set_num_threads(int(os.environ.get("XV_TEST_THREADS", max(1, min(2, os.cpu_count() or 1)))))


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same global RNG state: no test passes or fails by the draw."""
    import numpy as np

    seed = int(os.environ.get("XV_TEST_SEED", "0"))  # another seed hunts for tolerances that hold by luck
    torch.manual_seed(seed)
    np.random.seed(seed)


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BatchNorm statistics and affine parameters (a fresh BN hides fold bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 2 - 1)
    return model.eval()


def calibrate_bn(model: torch.nn.Module, x: torch.Tensor, seed: int = 0) -> torch.nn.Module:
    """Random BN affine parameters and running statistics measured on ``x``.

    Deep random networks with arbitrary statistics overflow (PSSA squares its
    input and the error compounds through a stage); statistics measured on the
    probe keep activations in range while every BN holds non-trivial values
    (far from the fresh 0/1 that hides fold bugs).
    """
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
            m.momentum = None  # cumulative average: one batch sets the statistics
            m.reset_running_stats()
        model.train()(x)
    return model.eval()


def rel_l2(y: torch.Tensor, ref: torch.Tensor) -> float:
    y, ref = y.detach().double(), ref.detach().double()
    return float((y - ref).norm() / ref.norm())


@pytest.fixture(scope="session")
def digits_checkpoint():
    from xvdeploy.models.digits import CHECKPOINT

    return CHECKPOINT


@pytest.fixture
def tiny_onnx(tmp_path):
    """A small ONNX conv net file (tests/onnx_models.py), shared by the export and TensorRT tests."""
    import onnx

    from tests.onnx_models import conv_net

    path = tmp_path / "tiny.onnx"
    onnx.save(conv_net(), str(path))
    return path


@pytest.fixture(scope="session")
def rtx():
    """The TensorRT-RTX module, or a skip saying why it cannot build here (tests/trt and tests/plugins)."""
    from xvdeploy.trt import availability

    reason = availability("tensorrt-rtx", build=True)
    if reason is not None:
        pytest.skip(f"TensorRT-RTX cannot build here: {reason}")
    import tensorrt_rtx

    return tensorrt_rtx
