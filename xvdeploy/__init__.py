"""xvdeploy: fold, export, build and benchmark X-volution / X-volution(SA) / ACmix networks.

``import xvdeploy`` needs only the standard library: the public names below
(and torch with them) are imported when first used, so ``xvdeploy --help``
starts without torch. ONNX, onnxruntime, TensorRT and Triton are imported
when first used, too.
"""
from __future__ import annotations

import importlib as _importlib
from pathlib import Path as _Path

from xvdeploy._version import __version__  # noqa: E402,F401
from xvdeploy.errors import XVDeployError  # noqa: E402,F401  (no torch)

# In a source checkout the sub-packages ``xvdeploy.models`` and
# ``xvdeploy.plugins`` live in the top-level ``models/`` and ``plugins/``
# folders (pyproject maps them when installing); make them importable when
# running from the checkout too, e.g. ``python cli.py``.
_root = _Path(__file__).resolve().parent.parent
if (_root / "pyproject.toml").is_file() and (_root / "models" / "__init__.py").is_file():
    __path__.append(str(_root))  # type: ignore[name-defined]  # noqa: F821

#: public name -> (module, attribute or None for the module itself), imported on first use (PEP 562)
_LAZY = {
    "zoo": ("xvdeploy.zoo", None),
    "load_checkpoint": ("xvdeploy.checkpoint", "load_checkpoint"),
    "save_checkpoint": ("xvdeploy.checkpoint", "save_checkpoint"),
    "fold": ("xvdeploy.folding", "fold"),
    "ACmix": ("xvdeploy.ops", "ACmix"),
    "XVolution": ("xvdeploy.ops", "XVolution"),
    "XVolutionSA": ("xvdeploy.ops", "XVolutionSA"),
    "pssa_transform": ("xvdeploy.ops", "pssa_transform"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'xvdeploy' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = _importlib.import_module(module_name)
    _importlib.import_module("xvdeploy.plugins")  # registers torch.ops.xvdeploy.pssa (needs no triton)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def export_onnx(model, path, input_shape, **kwargs):
    """Export to ONNX with checks; see :func:`xvdeploy.export.onnx_export.export_onnx`."""
    from xvdeploy.export import export_onnx as _export_onnx

    return _export_onnx(model, path, input_shape, **kwargs)


__all__ = [
    "ACmix", "XVDeployError", "XVolution", "XVolutionSA", "__version__", "export_onnx", "fold",
    "load_checkpoint", "pssa_transform", "save_checkpoint", "zoo",
]
