"""ONNX export (standard ops by default), op census and static TensorRT compatibility check."""
from xvdeploy.export.onnx_export import ExportReport, ParityResult, export_onnx

__all__ = ["ExportReport", "ParityResult", "export_onnx"]
