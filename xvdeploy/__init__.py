"""xvdeploy: fold, export, build and benchmark X-volution / X-volution(SA) / ACmix networks.

``import xvdeploy`` needs only torch, click, safetensors and numpy; ONNX,
onnxruntime, TensorRT and Triton are imported when first used.
"""
from __future__ import annotations

from pathlib import Path as _Path

from xvdeploy._version import __version__  # noqa: E402,F401

# In a source checkout the sub-packages ``xvdeploy.models`` and
# ``xvdeploy.plugins`` live in the top-level ``models/`` and ``plugins/``
# folders (pyproject maps them when installing); make them importable when
# running from the checkout too, e.g. ``python cli.py``.
_root = _Path(__file__).resolve().parent.parent
if (_root / "pyproject.toml").is_file() and (_root / "models" / "__init__.py").is_file():
    __path__.append(str(_root))  # type: ignore[name-defined]  # noqa: F821

from xvdeploy import zoo  # noqa: E402
from xvdeploy.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from xvdeploy.errors import XVDeployError  # noqa: E402
from xvdeploy.folding import fold  # noqa: E402
from xvdeploy.ops import ACmix, XVolution, XVolutionSA, pssa_transform  # noqa: E402


def export_onnx(model, path, input_shape, **kwargs):
    """Export to ONNX with checks; see :func:`xvdeploy.export.onnx_export.export_onnx`."""
    from xvdeploy.export import export_onnx as _export_onnx

    return _export_onnx(model, path, input_shape, **kwargs)


__all__ = [
    "ACmix", "XVDeployError", "XVolution", "XVolutionSA", "__version__", "export_onnx", "fold",
    "load_checkpoint", "pssa_transform", "save_checkpoint", "zoo",
]
import xvdeploy.plugins  # noqa: E402,F401  (registers torch.ops.xvdeploy.pssa; needs no triton)
