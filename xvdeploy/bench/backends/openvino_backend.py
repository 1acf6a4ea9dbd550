"""The ``openvino`` backend: an ONNX file compiled by OpenVINO for its CPU plugin.

Precision rows (:data:`xvdeploy.export.runtimes.OPENVINO_PRECISIONS`): ``fp32``
sets ``INFERENCE_PRECISION_HINT=f32`` — on CPUs with AMX or AVX-512 BF16,
OpenVINO's default is bf16 (rel-L2 ~3e-3 against fp32), which is reported
only as the ``bf16`` row. The precision OpenVINO actually compiled with is
read back and kept in the row's options; a row whose precision the CPU
cannot run is skipped, not silently run in another one. ``int8`` quantizes
the ONNX file first (:mod:`xvdeploy.quant`, the default placement) with the
bench's calibration inputs in the layout OpenVINO's low-precision
transformations read (signed int8 activations with zero point 0, per-channel
int8 weights), compiles it with the f32 hint for what stays float, and reads
back from the compiled model how many of its Convolution / FullyConnected /
MatMul layers run in int8 (the row's ``int8_layers``); none is a skipped row. Dynamic batch,
height and width stay dynamic (OpenVINO infers shapes per request). A model
OpenVINO cannot read (custom PSSA nodes, an operator it lacks) is a skipped
row carrying OpenVINO's own reason.
"""
from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np

from xvdeploy._lazy import available
from xvdeploy.bench.backends.base import BackendUnavailable, Runner, RunnerSpec
from xvdeploy.export.runtimes import OPENVINO_PRECISIONS, complaint, openvino_compile
from xvdeploy.quant.quantize import quantize_for_bench

#: activation layout of the OpenVINO int8 rows (see the module docstring)
INT8_ACTIVATIONS = "int8"
#: the layers whose runtime precision says whether OpenVINO runs the model in int8
COMPUTE_LAYERS = ("Convolution", "FullyConnected", "MatMul")

def openvino_support(precision: str, device: str) -> str | None:
    """None if the openvino backend offers this precision on this device, else why not."""
    if not available("openvino"):
        return "openvino is not installed; install it with: pip install 'xvdeploy[openvino]'"
    if device != "cpu":
        return f"the openvino backend runs OpenVINO's CPU plugin; {device} is not offered"
    if precision not in (*OPENVINO_PRECISIONS, "int8"):
        return (f"precision {precision} is not offered by the openvino backend "
                f"(it runs {', '.join((*OPENVINO_PRECISIONS, 'int8'))})")
    return None


def int8_layers(compiled) -> tuple[int, str]:
    """How many compute layers of a compiled model run in int8, and a summary (``"5/5 Convolution, 1/1 ..."``)."""
    total, int8 = collections.Counter(), collections.Counter()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else ""
        if kind in COMPUTE_LAYERS:
            total[kind] += 1
            if "runtimePrecision" in info and info["runtimePrecision"].astype(str) in ("i8", "u8"):
                int8[kind] += 1
    return sum(int8.values()), ", ".join(f"{int8[k]}/{total[k]} {k}" for k in COMPUTE_LAYERS if total[k])


class OpenVINORunner(Runner):
    """Runs an ONNX file in OpenVINO (CPU), at the precision of ``spec``."""

    def __init__(self, spec: RunnerSpec, onnx_path: str | os.PathLike, threads: int | None = None,
                 calibration: np.ndarray | None = None) -> None:
        super().__init__(spec)
        reason = openvino_support(spec.precision, spec.device)
        if reason:
            raise BackendUnavailable("openvino", reason)
        if spec.precision == "int8" and calibration is None:
            raise BackendUnavailable("openvino", "int8 needs calibration inputs")
        self.onnx_path = Path(onnx_path)
        self.threads = threads
        self.calibration = calibration

    def activate_impl(self) -> None:
        config = {"INFERENCE_NUM_THREADS": int(self.threads)} if self.threads else None
        path, hint = self.onnx_path, self.spec.precision
        if self.spec.precision == "int8":
            hint = "fp32"  # what stays float runs in f32, not bf16
            path = self.temporary_model("int8", lambda p: quantize_for_bench(self.onnx_path, p, self.calibration,
                                                                             INT8_ACTIVATIONS))
        try:
            self.compiled, self.ov = openvino_compile(path, hint, config=config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with its own message
            self.deactivate_impl()
            raise BackendUnavailable("openvino", f"OpenVINO cannot read or compile the model: {complaint(str(exc))}") from None
        used = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "f32", "bf16", ...
        self.spec.options["inference_precision"] = used
        if used != OPENVINO_PRECISIONS[hint]:
            self.deactivate_impl()
            raise BackendUnavailable("openvino", f"{self.spec.precision} asked for, but OpenVINO compiled the model "
                                                 f"in {used} on this CPU")
        if self.spec.precision == "int8":
            count, summary = int8_layers(self.compiled)
            self.spec.options["int8_layers"] = summary
            if not count:
                self.deactivate_impl()
                raise BackendUnavailable("openvino", f"OpenVINO compiled the Q/DQ model without int8 layers ({summary})")
        self.output = self.compiled.outputs[0]
        self.request = None

    def infer_impl(self, x: np.ndarray) -> np.ndarray:
        return self.compiled(x)[self.output]

    def prepare_impl(self, x: np.ndarray) -> None:
        self.request = self.compiled.create_infer_request()
        self.request.set_input_tensor(self.ov.Tensor(x))

    def run_prepared_impl(self) -> None:
        self.request.infer()

    def deactivate_impl(self) -> None:
        self.compiled = self.request = None
        self.drop_temporary()
