"""The ``onnxruntime`` backend: CPU execution provider, CUDA provider with I/O binding when present.

``int8`` quantizes the ONNX file first (:mod:`xvdeploy.quant`, the default
placement) with the calibration inputs the bench hands over, in onnxruntime's
CPU layout: uint8 activations, int8 per-channel weights (U8S8), where every
convolution fuses into one ``QLinearConv``. The TensorRT layout (int8
activations, zero point 0) runs slower than float32 in onnxruntime's CPU
provider here (docs/benchmarks.md): a ReLU between its Q/DQ pairs does not fuse.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xvdeploy.bench.backends.base import BackendUnavailable, Runner, RunnerSpec
from xvdeploy.export.onnxfile import device_providers, device_unavailable, ort_session, provider_problem
from xvdeploy.quant.quantize import quantize_for_bench


def ort_support(precision: str, device: str, plugin: bool = False) -> str | None:
    """None if onnxruntime can run this precision on this device, else why not."""
    reason = device_unavailable(device)
    if reason:
        return reason
    if plugin and device != "cpu":
        return ("the PSSA plugin node runs in onnxruntime only as onnxruntime-extensions' Python op on the CPU; "
                "on CUDA run the standard graph, or the plugin graph with --backends tensorrt --pssa-plugin")
    if precision == "tf32":
        return "onnxruntime has no tf32 mode to ask for; its CUDA provider runs fp32 here (use_tf32=0)"
    if precision == "bf16":
        return "onnxruntime bf16 graphs are not supported by xvdeploy"
    if precision == "fp16" and device == "cpu":
        return "onnxruntime's CPU provider has no fp16 convolution kernels on x86"
    if precision == "int8" and device != "cpu":
        return "onnxruntime's CUDA provider has no int8 convolution kernels (a Q/DQ graph runs dequantized); " \
               "TensorRT runs int8 on a GPU"
    if precision == "int8" and plugin:
        return "a graph with custom PSSA nodes cannot be quantized; bench int8 without --pssa-plugin"
    return None


#: activation layout of the onnxruntime CPU int8 rows (see the module docstring)
INT8_ACTIVATIONS = "uint8"


class OrtRunner(Runner):
    """Runs an ONNX file; ``fp16`` converts it first, ``int8`` quantizes it first with ``calibration``
    (inputs and outputs stay float32)."""

    def __init__(self, spec: RunnerSpec, onnx_path: str | os.PathLike, threads: int | None = None,
                 plugin: bool = False, calibration: np.ndarray | None = None) -> None:
        super().__init__(spec)
        reason = ort_support(spec.precision, spec.device, plugin)
        if reason:
            raise BackendUnavailable("onnxruntime", reason)
        if spec.precision == "int8" and calibration is None:
            raise BackendUnavailable("onnxruntime", "int8 needs calibration inputs")
        self.onnx_path = Path(onnx_path)
        self.threads = threads
        self.plugin = plugin
        self.calibration = calibration

    def activate_impl(self) -> None:
        path = self.onnx_path
        self.binding = self.x = None
        if self.spec.precision == "fp16":
            from xvdeploy.export.fp16 import convert_file_to_fp16

            path = self.temporary_model("fp16", lambda p: convert_file_to_fp16(self.onnx_path, p))
        elif self.spec.precision == "int8":
            path = self.temporary_model("int8", lambda p: quantize_for_bench(self.onnx_path, p, self.calibration,
                                                                             INT8_ACTIVATIONS))
        self.session = ort_session(path, device_providers(self.spec.device), threads=self.threads, plugin=self.plugin)
        problem = provider_problem(self.session, self.spec.device)
        if problem:
            self.deactivate_impl()
            raise BackendUnavailable("onnxruntime", problem)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.binding = None

    def infer_impl(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def prepare_impl(self, x: np.ndarray) -> None:
        self.x = x
        if self.spec.device == "cuda":  # I/O binding: input uploaded once, output stays on the device
            import onnxruntime as ort

            self.x_dev = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
            self.binding = self.session.io_binding()
            self.binding.bind_ortvalue_input(self.input_name, self.x_dev)
            self.binding.bind_output(self.output_name, "cuda", 0)

    def run_prepared_impl(self) -> None:
        if self.binding is not None:
            self.session.run_with_iobinding(self.binding)
        else:
            self.session.run([self.output_name], {self.input_name: self.x})

    def synchronize_impl(self) -> None:
        if self.binding is not None:
            self.binding.synchronize_outputs()

    def deactivate_impl(self) -> None:
        self.session = self.binding = self.x = None
        self.drop_temporary()
