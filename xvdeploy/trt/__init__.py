"""TensorRT: engine build (``xvdeploy build``) and the ``tensorrt`` bench backend (DESIGN §5).

Targets TensorRT 10.x and 11.x. ``tensorrt`` is imported lazily, on first use:
``import xvdeploy.trt`` works without it, and :func:`availability` says why the
backend cannot run (for ``bench`` to list it as skipped).

TensorRT's full builder is published only on NVIDIA's package index, so the
missing-package message names that index rather than a pip extra.

Modules: ``shapes`` (trtexec-style shape specs → optimization profiles),
``fp16`` (FP16 ONNX for TensorRT 11's strongly typed networks), ``builder``,
``sidecar`` (the ``<plan>.json`` build record), ``runtime`` (engine loading
with a version/GPU check), ``runner`` (the bench runner), ``cache`` (engines
reused by ``bench``).
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from xvdeploy.errors import XVDeployError

#: Where TensorRT's builder comes from (PyPI's ``tensorrt`` is a stub that downloads from here).
INSTALL_COMMAND = "pip install tensorrt --extra-index-url https://pypi.nvidia.com"

#: The one line ``xvdeploy build`` prints (and ``bench`` shows as the skip reason) without TensorRT.
NOT_INSTALLED = (
    "TensorRT is not installed; install NVIDIA's 'tensorrt' package from NVIDIA's index with: "
    f"{INSTALL_COMMAND} (meanwhile the ONNX file written by 'xvdeploy export' runs in any ONNX runtime, "
    "e.g. onnxruntime)"
)

SUPPORTED_MAJORS = (10, 11)


class TensorRTUnavailable(XVDeployError):
    """TensorRT (or the GPU it needs) is missing; ``reason`` is the one-line explanation."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _import_tensorrt() -> tuple[ModuleType | None, str | None]:
    try:
        trt = importlib.import_module("tensorrt")
    except (ImportError, OSError) as exc:
        if importlib.util.find_spec("tensorrt") is None:
            return None, NOT_INSTALLED
        # the Python bindings are there but a library (libnvinfer, CUDA) does not load
        detail = " ".join(str(exc).split())
        return None, f"TensorRT is installed but does not import ({detail}); reinstall it with: {INSTALL_COMMAND}"
    version = getattr(trt, "__version__", "")
    major = version_major(version)
    if major not in SUPPORTED_MAJORS:
        return None, (
            f"TensorRT {version or '(unknown version)'} is installed; xvdeploy needs TensorRT 10.x or 11.x: "
            f"{INSTALL_COMMAND}"
        )
    if not hasattr(trt, "Builder"):  # e.g. a lean or dispatch runtime only
        return None, f"the installed TensorRT {version} has no builder (runtime-only package); {INSTALL_COMMAND}"
    return trt, None


def _gpu_reason() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return ("no CUDA GPU is visible (torch.cuda.is_available() is False); "
                "TensorRT builds and runs engines on an NVIDIA GPU")
    return None


def availability(check_gpu: bool = True) -> str | None:
    """``None`` if TensorRT can build and run engines here, else the one-line reason it cannot."""
    _, reason = _import_tensorrt()
    if reason is None and check_gpu:
        reason = _gpu_reason()
    return reason


def require_tensorrt(check_gpu: bool = True) -> ModuleType:
    """Import ``tensorrt`` (10.x or 11.x) or raise :class:`TensorRTUnavailable` with the reason."""
    trt, reason = _import_tensorrt()
    if reason is None and check_gpu:
        reason = _gpu_reason()
    if reason is not None:
        raise TensorRTUnavailable(reason)
    return trt


def version_major(version: str) -> int | None:
    """``"10.3.0.26"`` → ``10``; ``None`` if the string does not start with a number."""
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def strongly_typed_only(trt: ModuleType) -> bool:
    """TensorRT 11 removed ``BuilderFlag.FP16``: every network is strongly typed, so FP16 comes from the ONNX."""
    return (version_major(trt.__version__) or 0) >= 11 or not hasattr(trt.BuilderFlag, "FP16")


__all__ = [
    "INSTALL_COMMAND",
    "NOT_INSTALLED",
    "TensorRTUnavailable",
    "availability",
    "require_tensorrt",
    "strongly_typed_only",
    "version_major",
]
