"""The two TensorRT flavours: choice, compute capabilities, GPU checks, what differs (xvdeploy.trt.flavour)."""
from __future__ import annotations

import pytest

import xvdeploy.trt.flavour as flavour
from xvdeploy.errors import XVDeployError
from xvdeploy.trt.flavour import (
    TENSORRT,
    TENSORRT_RTX,
    check_compute_capabilities,
    default_compute_capabilities,
    gpu_reason,
    network_flags,
    parse_compute_capability,
    precision_notes,
    supported_compute_capabilities,
)


def test_names_and_default_order(monkeypatch):
    assert flavour.get("tensorrt") is TENSORRT and flavour.get("tensorrt-rtx") is TENSORRT_RTX
    with pytest.raises(XVDeployError, match="unknown TensorRT runtime 'trt'; expected one of tensorrt, tensorrt-rtx"):
        flavour.get("trt")
    monkeypatch.setattr(flavour, "installed", lambda name: True)
    assert flavour.default() is TENSORRT  # TensorRT first where both are installed
    monkeypatch.setattr(flavour, "installed", lambda name: name == "tensorrt_rtx")
    assert flavour.resolve(None) is TENSORRT_RTX


def test_install_commands():
    assert TENSORRT.install == "pip install tensorrt --extra-index-url https://pypi.nvidia.com"
    assert TENSORRT_RTX.install == "pip install 'xvdeploy[rtx]'"


@pytest.mark.parametrize("text, cc", [("8.6", "8.6"), ("86", "8.6"), ("sm_120", "12.0"), ("SM75", "7.5"),
                                      (" 12.1 ", "12.1")])
def test_parse_compute_capability(text, cc):
    assert parse_compute_capability(text) == cc


@pytest.mark.parametrize("text", ["", "8", "8.66", "x.y", "sm_"])
def test_parse_compute_capability_rejects(text):
    with pytest.raises(XVDeployError, match="is not a compute capability; expected e.g. 8.6 or 12.0"):
        parse_compute_capability(text)


def test_rtx_compute_capabilities(rtx):
    assert supported_compute_capabilities(rtx) == ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")
    assert default_compute_capabilities(rtx) == ("8.0", "8.6", "8.9", "12.0", "12.1")
    assert check_compute_capabilities(TENSORRT_RTX, rtx, ()) == default_compute_capabilities(rtx)
    assert check_compute_capabilities(TENSORRT_RTX, rtx, ("8.9", "8.6", "8.9")) == ("8.9", "8.6")
    with pytest.raises(XVDeployError, match=r"--compute-capability 9\.0, 10\.0: TensorRT-RTX 1\.\d.*targets compute "
                                            r"capability 7\.5, 8\.0, 8\.6, 8\.9, 12\.0, 12\.1"):
        check_compute_capabilities(TENSORRT_RTX, rtx, ("8.6", "9.0", "10.0"))


def test_rtx_gpu_checks(rtx, monkeypatch):
    assert gpu_reason(TENSORRT_RTX, rtx, build=True) is None  # builds without a GPU
    monkeypatch.setattr(flavour, "local_gpu", lambda device=None: None)
    reason = gpu_reason(TENSORRT_RTX, rtx, build=False)
    assert reason.startswith("no CUDA GPU is visible") and "compute capability 7.5, 8.0, 8.6, 8.9, 12.0, 12.1" in reason
    monkeypatch.setattr(flavour, "local_gpu", lambda device=None: ("NVIDIA H200", "9.0"))
    reason = gpu_reason(TENSORRT_RTX, rtx, build=False)
    assert reason.startswith("this GPU, NVIDIA H200, has compute capability 9.0; TensorRT-RTX 1.")
    assert "runs engines on compute capability 7.5, 8.0, 8.6, 8.9, 12.0, 12.1 only" in reason
    monkeypatch.setattr(flavour, "local_gpu", lambda device=None: ("NVIDIA GeForce RTX 4090", "8.9"))
    assert gpu_reason(TENSORRT_RTX, rtx, build=False) is None


def test_tensorrt_needs_a_gpu_to_build(monkeypatch):
    monkeypatch.setattr(flavour, "local_gpu", lambda device=None: None)
    reason = gpu_reason(TENSORRT, None, build=True)
    assert reason.startswith("no CUDA GPU is visible") and "--runtime tensorrt-rtx builds without one" in reason


def test_rtx_precision_facts(rtx):
    assert flavour.strongly_typed_only(TENSORRT_RTX, rtx)
    assert network_flags(TENSORRT_RTX, rtx, "int8") == 0  # always strongly typed
    (note,) = precision_notes(TENSORRT_RTX, "int8")
    assert "weight-only quantized GEMM" in note and "--runtime tensorrt" in note
    assert precision_notes(TENSORRT, "int8") == [] and precision_notes(TENSORRT_RTX, "fp16") == []


def test_rtx_plugin_import_problem_names_the_missing_link(rtx):
    problem = flavour.plugin_import_problem(TENSORRT_RTX, rtx)
    if problem is None:
        pytest.skip("libtensorrt_rtx.so is on the library path here (the workaround is in place)")
    assert "loads 'libtensorrt_rtx.so' to import a plugin node" in problem
    assert "ln -sf " in problem and "LD_LIBRARY_PATH" in problem and "\n" not in problem
