"""``quantize_onnx``: float ONNX file → checked Q/DQ ONNX file, measured against the float model.

The layout and the X-volution placement are described in
:mod:`xvdeploy.quant.core`; the measurements behind the defaults are in
docs/benchmarks.md (INT8 section).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xvdeploy.fileio import check_output_path
from xvdeploy.progress import step
from xvdeploy.quant.calibration import CalibrationSet, check_calibration_array
from xvdeploy.quant.core import (
    add_metadata, load_float_model, model_input, prepare, quantize_prepared, quantized_summary,
    save_checked,
)
from xvdeploy.quant.evaluate import compare_models
from xvdeploy.quant.options import QuantizeOptions
from xvdeploy.quant.pssa_graph import PSSABlock
from xvdeploy.quant.sensitivity import SensitivityReport, sensitivity


@dataclass
class QuantizeReport:
    path: str
    options: QuantizeOptions
    calibration: str
    calibration_samples: int
    blocks: list[PSSABlock]
    alphas: dict[str, float]
    excluded: list[str]
    quantized: dict[str, int]  # op type -> nodes fed by a DequantizeLinear
    qdq_nodes: int
    evaluation: dict | None = None
    sensitivity: SensitivityReport | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"path": self.path, "method": self.options.method, "placement": self.options.placement,
                "activations": self.options.activations, "keep_float": list(self.options.keep_float),
                "calibration": self.calibration, "calibration_samples": self.calibration_samples,
                "pssa_blocks": [b.to_dict() for b in self.blocks], "t_scale": self.alphas,
                "kept_float": self.excluded, "quantized_ops": self.quantized, "qdq_nodes": self.qdq_nodes,
                "evaluation": self.evaluation,
                "sensitivity": self.sensitivity.to_dict() if self.sensitivity else None, "notes": self.notes}

    def format_lines(self) -> list[str]:
        o = self.options
        layout = ("int8 activations, zero point 0 (TensorRT's explicit-quantization layout)" if o.activations == "int8"
                  else "uint8 asymmetric activations (onnxruntime's CPU layout; TensorRT does not read it)")
        lines = [f"calibration: {self.calibration}, {self.calibration_samples} used; method {o.method}",
                 f"layout: Q/DQ, per-channel symmetric int8 weights, per-tensor {layout}, float biases"]
        if self.blocks:
            merged = [b.label for b in self.blocks if b.merged]
            lines.append(f"PSSA blocks: {len(self.blocks)} ({', '.join(b.label for b in self.blocks)}; "
                         f"{len(merged)} merged into one conv over concat[X, T])")
            if o.placement == "split-scales" and self.alphas:
                scales = ", ".join(f"{k} {v:.3g}" for k, v in self.alphas.items())
                lines.append(f"placement split-scales: X and T get separate scales (T rescaled by α = range X / "
                             f"range T: {scales})")
            elif o.placement == "float-pssa":
                lines.append("placement float-pssa: Pad, shift conv, Mul and Concat of every PSSA block stay float")
        else:
            lines.append("PSSA blocks: none found (the placement has nothing to do)")
        lines.append(f"kept in float: {', '.join(self.excluded) if self.excluded else 'nothing'}")
        ops = ", ".join(f"{k} {v}" for k, v in self.quantized.items())
        lines.append(f"quantized: {ops or 'nothing'} ({self.qdq_nodes} QuantizeLinear/DequantizeLinear nodes)")
        e = self.evaluation
        if e:
            line = f"vs float on {e['data']}: rel-L2 {e['rel_l2']:.2e}"
            if e["top1_agreement"] is not None:
                line += f", top-1 agreement {e['top1_agreement']:.4f}"
            if e["accuracy_int8"] is not None:
                line += f", accuracy {e['accuracy_int8']:.4f} (float {e['accuracy_float']:.4f})"
            lines.append(line)
        if self.sensitivity is not None:
            lines += self.sensitivity.text().splitlines()
        if o.activations == "int8":
            lines.append("note: onnxruntime's CPU provider runs this layout slower than float (its ReLUs stay between "
                         "Q/DQ pairs); for onnxruntime quantize with --activations uint8 (docs/benchmarks.md, INT8)")
        return lines + self.notes


def quantize_onnx(src: str | os.PathLike, dst: str | os.PathLike, calibration: CalibrationSet,
                  options: QuantizeOptions | None = None, with_sensitivity: bool = False,
                  inputs_to_protect: tuple = ()) -> QuantizeReport:
    """Quantize the float ONNX file ``src`` into the Q/DQ file ``dst`` (checked by onnx.checker, written atomically).

    The result is measured against the float model on ``calibration``'s
    held-out inputs (the digits test split), else on the calibration inputs
    themselves (and the report says so). ``with_sensitivity`` adds the
    per-layer report on the same data. Nothing is written on error.
    """
    options = options or QuantizeOptions()
    options.validate()
    dst = check_output_path(dst, src, *inputs_to_protect, suffixes=(".onnx",))
    model = load_float_model(src)
    inp = model_input(model)
    x = check_calibration_array(calibration.x, inp.shape, calibration.description)
    if calibration.eval_x is not None:
        ex, labels, what = calibration.eval_x, calibration.eval_labels, calibration.eval_description
        ex = check_calibration_array(ex, inp.shape, what)
    else:
        ex, labels, what = x, None, f"the calibration inputs (in-sample: {calibration.description})"
    with tempfile.TemporaryDirectory(prefix="xvdeploy-quant-") as tmp:
        with step(f"quantize: calibrating ({options.method}, {len(x)} inputs)"):
            prep = prepare(model, x, options, Path(tmp))
        with step("quantize: writing the Q/DQ graph"):
            qmodel = quantize_prepared(prep)
        quantized, qdq = quantized_summary(qmodel)
        add_metadata(qmodel, model, {"method": options.method, "placement": options.placement,
                                     "activations": options.activations, "calibration": calibration.description,
                                     "t_scale": prep.alphas, "kept_float": prep.excluded_nodes()})
        report = QuantizeReport(str(dst), options, calibration.description, prep.calibration_samples, prep.blocks,
                                prep.alphas, prep.excluded_nodes(), quantized, qdq)
        with step(f"quantize: comparing with the float model on {len(ex)} inputs"):
            report.evaluation = {"data": what, **compare_models(model, qmodel, ex, labels, inp)}
        if with_sensitivity:
            report.sensitivity = sensitivity(prep, ex, labels, what)
        if prep.calibration_passes > 1 and options.method != "minmax":
            report.notes.append(f"note: calibration took {prep.calibration_passes} passes (memory); {options.method}'s "
                                "histogram keeps its first pass's bin width, so its ranges depend on that split")
        if prep.calibration_samples < len(x):
            report.notes.append(f"note: the model's fixed batch {inp.fixed_batch} left "
                                f"{len(x) - prep.calibration_samples} calibration inputs unused")
        with step("quantize: onnx.checker and writing"):
            save_checked(qmodel, dst)
    return report


def quantize_for_bench(src: Path, dst: Path, x: np.ndarray, activations: str, method: str = "minmax") -> None:
    """The bench's INT8 model: default placement, ``x`` as calibration data (no evaluation, no report)."""
    model = load_float_model(src)
    options = QuantizeOptions(method=method, activations=activations)
    with tempfile.TemporaryDirectory(prefix="xvdeploy-quant-") as tmp:
        qmodel = quantize_prepared(prepare(model, check_calibration_array(x, model_input(model).shape, "calibration"),
                                           options, Path(tmp)))
    add_metadata(qmodel, model, {"method": method, "placement": options.placement, "activations": activations})
    save_checked(qmodel, dst)
