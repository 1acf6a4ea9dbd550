"""INT8 post-training quantization: float ONNX → calibrated Q/DQ ONNX (onnxruntime's quantization tools).

See :mod:`xvdeploy.quant.core` for the layout and the X-volution placement,
:mod:`xvdeploy.quant.calibration` for calibration sources,
:mod:`xvdeploy.quant.sensitivity` for the per-layer report.
"""
from __future__ import annotations

from xvdeploy.quant.calibration import CalibrationSet, load_calibration
from xvdeploy.quant.pssa_graph import PSSABlock, find_pssa_blocks
from xvdeploy.quant.core import ACTIVATIONS, DEFAULT_PLACEMENT, METHODS, PLACEMENTS, QuantizeOptions
from xvdeploy.quant.quantize import QuantizeReport, quantize_onnx

__all__ = ["ACTIVATIONS", "CalibrationSet", "DEFAULT_PLACEMENT", "METHODS", "PLACEMENTS", "PSSABlock",
           "QuantizeOptions", "QuantizeReport", "find_pssa_blocks", "load_calibration", "quantize_onnx"]
