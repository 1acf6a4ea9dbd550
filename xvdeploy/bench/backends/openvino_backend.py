"""The ``openvino`` backend: an ONNX file compiled by OpenVINO for its CPU plugin.

Precision rows (:data:`xvdeploy.export.runtimes.OPENVINO_PRECISIONS`): ``fp32``
sets ``INFERENCE_PRECISION_HINT=f32`` — on CPUs with AMX or AVX-512 BF16,
OpenVINO's default is bf16 (rel-L2 ~3e-3 against fp32), which is reported
only as the ``bf16`` row. The precision OpenVINO actually compiled with is
read back and kept in the row's options; a row whose precision the CPU
cannot run is skipped, not silently run in another one. Dynamic batch,
height and width stay dynamic (OpenVINO infers shapes per request). A model
OpenVINO cannot read (custom PSSA nodes, an operator it lacks) is a skipped
row carrying OpenVINO's own reason.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xvdeploy._lazy import available
from xvdeploy.bench.backends.base import BackendUnavailable, Runner, RunnerSpec
from xvdeploy.export.runtimes import OPENVINO_PRECISIONS, complaint, openvino_compile

def openvino_support(precision: str, device: str) -> str | None:
    """None if the openvino backend offers this precision on this device, else why not."""
    if not available("openvino"):
        return "openvino is not installed; install it with: pip install 'xvdeploy[openvino]'"
    if device != "cpu":
        return f"the openvino backend runs OpenVINO's CPU plugin; {device} is not offered"
    if precision not in OPENVINO_PRECISIONS:
        return (f"precision {precision} is not offered by the openvino backend "
                f"(it runs {', '.join(OPENVINO_PRECISIONS)})")
    return None


class OpenVINORunner(Runner):
    """Runs an ONNX file in OpenVINO (CPU), at the precision of ``spec``."""

    def __init__(self, spec: RunnerSpec, onnx_path: str | os.PathLike, threads: int | None = None) -> None:
        super().__init__(spec)
        reason = openvino_support(spec.precision, spec.device)
        if reason:
            raise BackendUnavailable("openvino", reason)
        self.onnx_path = Path(onnx_path)
        self.threads = threads

    def activate_impl(self) -> None:
        config = {"INFERENCE_NUM_THREADS": int(self.threads)} if self.threads else None
        try:
            self.compiled, self.ov = openvino_compile(self.onnx_path, self.spec.precision, config=config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with its own message
            raise BackendUnavailable("openvino", f"OpenVINO cannot read or compile the model: {complaint(str(exc))}") from None
        used = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "f32", "bf16", ...
        self.spec.options["inference_precision"] = used
        if used != OPENVINO_PRECISIONS[self.spec.precision]:
            self.compiled = None
            raise BackendUnavailable("openvino", f"{self.spec.precision} asked for, but OpenVINO compiled the model "
                                                 f"in {used} on this CPU")
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
