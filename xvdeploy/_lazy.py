"""Lazy imports of heavy optional packages (Polygraphy's ``lazy_import`` idea).

A missing package raises :class:`MissingDependencyError` naming the extra to
install; the user's environment is never changed.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from xvdeploy.errors import MissingDependencyError

#: import name -> (pip extra, human name of what needs it)
_EXTRAS = {
    "onnx": ("onnx", "ONNX export and inspection"),
    "onnxscript": ("onnx", "ONNX export"),
    "onnxruntime": ("onnx", "The onnxruntime backend"),
    "onnxruntime_extensions": ("onnx", "The PSSA custom ONNX op in onnxruntime"),
    "onnxconverter_common": ("onnx", "FP16 ONNX conversion"),
    "tensorrt": ("gpu", "TensorRT"),
    "triton": ("gpu", "The Triton PSSA kernel"),
    "matplotlib": ("bench", "Plotting"),
    "PIL": ("bench", "Reading images"),
    "sklearn": ("train", "The digits data set"),
    "ray": ("serve", "Ray Serve (xvdeploy serve)"),
    "tritonclient": ("serve", "Writing a Triton model repository"),
    "google": ("serve", "Protocol buffers (Triton model configurations)"),
}


def require(name: str, purpose: str | None = None) -> ModuleType:
    """Import ``name`` or raise a one-line error naming the extra that provides it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        top = name.split(".")[0]
        extra, default_purpose = _EXTRAS.get(top, ("all", "This feature"))
        err = MissingDependencyError(top, extra, purpose or default_purpose)
        raise err from exc


def available(name: str) -> bool:
    """Whether ``name`` can be imported (imports it once if so)."""
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
