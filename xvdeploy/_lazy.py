"""Lazy imports of heavy optional packages (Polygraphy's ``lazy_import`` idea).

A missing package raises :class:`MissingDependencyError` naming the extra to
install (or, for a package no extra can provide, the install command); a
package that is installed but fails to import (a shared library that does not
load) says so with the same command. The user's environment is never changed.
"""
from __future__ import annotations

import importlib
import importlib.util
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
    "tensorrt_rtx": ("rtx", "TensorRT-RTX"),
    "triton": ("gpu", "The Triton PSSA kernel"),
    "matplotlib": ("bench", "Plotting"),
    "PIL": ("bench", "Reading images"),
    "sklearn": ("train", "The digits data set"),
    "ray": ("serve", "Ray Serve (xvdeploy serve)"),
    "tritonclient": ("serve", "Writing a Triton model repository"),
    "google": ("serve", "Protocol buffers (Triton model configurations)"),
    "openvino": ("openvino", "OpenVINO"),
    "rich": ("bench", "The progress display"),
}

#: import name -> install command, where the extra alone cannot install it
#: (TensorRT's builder wheels are published on NVIDIA's package index).
_INSTALL = {
    "tensorrt": "pip install tensorrt --extra-index-url https://pypi.nvidia.com",
}


def install_command(name: str) -> str:
    """How to install the package ``name`` is imported as: ``pip install 'xvdeploy[EXTRA]'`` or its own command."""
    top = name.split(".")[0]
    if top in _INSTALL:
        return _INSTALL[top]
    return f"pip install 'xvdeploy[{_EXTRAS.get(top, ('all', ''))[0]}]'"


def require(name: str, purpose: str | None = None) -> ModuleType:
    """Import ``name`` or raise a one-line error naming the extra (or the command) that provides it."""
    try:
        return importlib.import_module(name)
    except (ImportError, OSError) as exc:
        top = name.split(".")[0]
        extra, default_purpose = _EXTRAS.get(top, ("all", "This feature"))
        broken = isinstance(exc, OSError) or (installed(top) and getattr(exc, "name", None) != top)
        detail = " ".join(str(exc).split()) if broken else None
        raise MissingDependencyError(top, extra, purpose or default_purpose, install=install_command(top),
                                     broken=detail) from exc


def installed(name: str) -> bool:
    """Whether ``name`` is installed, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package that does not import
        return False


def available(name: str) -> bool:
    """Whether ``name`` can be imported (imports it once if so)."""
    try:
        importlib.import_module(name)
    except (ImportError, OSError):
        return False
    return True
