"""INT8 post-training quantization: float ONNX → calibrated Q/DQ ONNX (onnxruntime's quantization tools).

See :mod:`xvdeploy.quant.core` for the layout and the X-volution placement,
:mod:`xvdeploy.quant.options` for what a quantization is asked for,
:mod:`xvdeploy.quant.calibration` for calibration sources,
:mod:`xvdeploy.quant.sensitivity` for the per-layer report. The names below
are imported on first use (PEP 562), so ``xvdeploy.quant.options`` costs no
onnx, numpy or torch.
"""
from __future__ import annotations

import importlib as _importlib

#: public name -> module defining it
_LAZY = {
    "CalibrationSet": "xvdeploy.quant.calibration", "load_calibration": "xvdeploy.quant.calibration",
    "PSSABlock": "xvdeploy.quant.pssa_graph", "find_pssa_blocks": "xvdeploy.quant.pssa_graph",
    "ACTIVATIONS": "xvdeploy.quant.options", "DEFAULT_PLACEMENT": "xvdeploy.quant.options",
    "METHODS": "xvdeploy.quant.options", "PLACEMENTS": "xvdeploy.quant.options",
    "QuantizeOptions": "xvdeploy.quant.options",
    "QuantizeReport": "xvdeploy.quant.quantize", "quantize_onnx": "xvdeploy.quant.quantize",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'xvdeploy.quant' has no attribute {name!r}")
    value = getattr(_importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(_LAZY)
