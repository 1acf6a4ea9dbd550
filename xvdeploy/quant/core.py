"""Static post-training INT8 quantization of an ONNX file into Q/DQ ONNX (onnxruntime's quantization tools).

Layout (QDQ format): per-channel symmetric INT8 weights (``DequantizeLinear``
with ``axis=0`` on constant INT8 initializers), per-tensor activations, float
biases. ``activations="int8"`` (default) is signed INT8 with zero point 0 —
the explicit-quantization layout TensorRT reads (it accepts no other) and
OpenVINO reads; ``"uint8"`` is asymmetric UINT8 activations, onnxruntime's
CPU layout (U8S8: a ReLU folds into the quantize, so every convolution fuses
into one ``QLinearConv``), which TensorRT does not read.

Calibration runs once per model (onnxruntime's calibrators, in passes sized to memory);
the ranges are then handed to onnxruntime's ``QDQQuantizer`` — what
``quantize_static`` does after its own calibration — so the sensitivity
report and the placement comparison reuse one calibration. ``entropy`` is
onnxruntime's KL-divergence search over a :data:`ENTROPY_BINS`-bin histogram
(its default of 128 bins and 128 quantized bins leaves one candidate, the
min/max range, so that would be minmax again); ``percentile`` keeps
onnxruntime's defaults (2048 bins, 99.999 %). docs/benchmarks.md has both
against minmax on the digits model.

X-volution placement (see :mod:`xvdeploy.quant.pssa_graph`, docs/benchmarks.md for the measurements):

* ``split-scales`` (default): ``X`` and ``T`` get separate scales inside the
  merged convolution's one INT8 input (``T`` rescaled by
  ``α = range(X) / range(T)``, the merged weights by ``1/α``); the PSSA
  product ops are quantized too.
* ``float-pssa``: Pad, the shift convolution, Mul and the concat stay float;
  the merged convolution quantizes ``concat[X, T]`` with one scale, which
  ``T`` (about the square of ``X``'s range) dominates.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xvdeploy._lazy import require
from xvdeploy.errors import XVDeployError, first_line
from xvdeploy.export.onnxfile import header_of, load_model, ort_session
from xvdeploy.fileio import atomic_path
from xvdeploy.quant.calibration import batch_size_for, readers
from xvdeploy.quant.options import QuantizeOptions
from xvdeploy.quant.pssa_graph import PSSABlock, find_pssa_blocks, rescale_t

METADATA_KEY = "xvdeploy.quantization"


@dataclass
class ModelInput:
    name: str
    shape: tuple[int | None, int | None, int | None] | None  # (C, H, W), None where dynamic
    fixed_batch: int | None
    example: tuple[int, int, int] | None = None  # (C, H, W): the fixed shape, else the one export recorded


@dataclass
class Prepared:
    """A float model ready to quantize: pre-processed, placement applied, calibrated."""

    model: object  # onnx.ModelProto (after rescaling, for split-scales)
    input: ModelInput
    blocks: list[PSSABlock]
    ranges: object  # onnxruntime TensorsData of ``model``
    alphas: dict[str, float] = field(default_factory=dict)
    options: QuantizeOptions = field(default_factory=QuantizeOptions)
    calibration_samples: int = 0
    calibration_passes: int = 1

    def excluded_nodes(self) -> list[str]:
        """Nodes kept in float: the placement's and ``--keep-float``'s."""
        names = [n for b in self.blocks for n in b.nodes] if self.options.placement == "float-pssa" else []
        names += resolve_keep_float(self.model, self.options.keep_float, self.blocks)
        return list(dict.fromkeys(names))


# -- reading and checking the float model ---------------------------------------------------------------------


def load_float_model(path: str | os.PathLike):
    """The ONNX model at ``path``, or one clear error if it cannot be quantized."""
    model = load_model(path)
    header = header_of(model)
    if {n.op_type for n in model.graph.node} & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul"}:
        raise XVDeployError(f"{path} is already quantized (it holds QuantizeLinear/DequantizeLinear nodes); "
                            "expected a float model")
    if header.custom_ops:
        ops = ", ".join(f"{d}::{op}" for d, op in header.custom_ops)
        raise XVDeployError(f"{path} holds custom ops ({ops}; e.g. from export --pssa-plugin); quantize the "
                            "standard-op export instead")
    if len(header.inputs) != 1:
        raise XVDeployError(f"{path} has {len(header.inputs)} inputs; quantization needs a model with one "
                            "N×C×H×W input")
    return model


def model_input(model) -> ModelInput:
    """Name, ``(C, H, W)`` (None where dynamic), fixed batch and example shape of the model's one input."""
    header = header_of(model)
    ((name, dims),) = header.inputs.items()
    if header.input_types[name] != 1:  # TensorProto.FLOAT
        raise XVDeployError(f"input {name!r} is not float32; expected a float32 N×C×H×W input")
    if len(dims) != 4:
        raise XVDeployError(f"input {name!r} has rank {len(dims)}; expected an N×C×H×W input")
    batch, *chw = (d if d > 0 else None for d in dims)
    shape = tuple(chw)
    example = shape if None not in shape else None
    recorded = header.example_shape()  # metadata: untrusted, so checked against the graph's own dims
    if example is None and recorded is not None and len(recorded) == 4 and \
            all(s is None or s == r for s, r in zip(shape, recorded[1:])):
        example = tuple(recorded[1:])
    return ModelInput(name, shape, batch, example)  # type: ignore[arg-type]


def resolve_keep_float(model, names: tuple[str, ...] | list[str], blocks: list[PSSABlock] = ()) -> list[str]:
    """Node names for ``--keep-float`` entries: a node name, an op type (all its nodes) or a PSSA block's
    label (its Pad, shift conv, Mul and Concat; the labels ``xvdeploy quantize`` prints)."""
    nodes = list(model.graph.node)
    by_name = {n.name for n in nodes}
    by_label = {b.label: b.nodes for b in blocks}
    out = []
    for entry in names:
        label = entry[:-len(" PSSA")] if entry.endswith(" PSSA") else entry
        if entry in by_name:
            out.append(entry)
        elif label in by_label:
            out += by_label[label]
        elif any(n.op_type == entry for n in nodes):
            out += [n.name for n in nodes if n.op_type == entry]
        else:
            ops = ", ".join(sorted({n.op_type for n in nodes}))
            labels = f"; PSSA blocks: {', '.join(by_label)}" if by_label else ""
            raise XVDeployError(f"--keep-float {entry!r} is neither a node name nor an op type of the graph "
                                f"(op types: {ops}{labels}; node names: see the --sensitivity report)")
    return out


# -- calibration ------------------------------------------------------------------------------------------------


def _ort_quant():
    return require("onnxruntime.quantization", "INT8 quantization")


def preprocess(model, workdir: Path):
    """onnxruntime's quantization pre-processing (shape inference, basic graph optimisation)."""
    onnx = require("onnx", "Quantization")
    q = _ort_quant()
    src, dst = workdir / "float.onnx", workdir / "preprocessed.onnx"
    onnx.save(model, str(src))
    with _quiet():
        try:
            q.quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        except Exception as exc:
            raise XVDeployError(f"onnxruntime's quantization pre-processing failed: {first_line(exc)}") from None
    return onnx.load(str(dst))


#: histogram bins of ``--method entropy`` (onnxruntime's default 128 equals its 128 quantized bins: no search)
ENTROPY_BINS = 512
#: memory for the intermediate outputs of one calibration pass (onnxruntime's calibrators hold them all)
CALIBRATION_PASS_BYTES = 1 << 30


def calibrate(model, inp: ModelInput, x: np.ndarray, method: str, symmetric: bool, workdir: Path,
              calibrator_options: dict | None = None):
    """``(ranges, passes)``: ranges of every float tensor of ``model`` on ``x`` (onnxruntime ``TensorsData``),
    and how many calibrator passes the inputs took.

    As many inputs go into one pass as :data:`CALIBRATION_PASS_BYTES` holds
    (measured on one batch). That matters for the histogram methods:
    onnxruntime's histogram keeps the bin width of its first pass and adds
    bins as the range grows, so with several passes their ranges depend on
    the split.
    ``calibrator_options`` go to onnxruntime's ``create_calibrator`` (e.g. ``num_bins``)."""
    onnx = require("onnx", "Quantization")
    q = _ort_quant()
    batch = batch_size_for(len(x), inp.fixed_batch)
    if len(x) < batch:
        raise XVDeployError(f"the model takes a fixed batch of {batch}; the calibration data has only {len(x)} "
                            "inputs")
    path = workdir / "calibrate.onnx"
    onnx.save(model, str(path))
    cal_method = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
                  "percentile": q.CalibrationMethod.Percentile}[method]
    extra = {"symmetric": symmetric, **({"num_bins": ENTROPY_BINS} if method == "entropy" else {}),
             **(calibrator_options or {})}
    with _quiet():
        calibrator = q.create_calibrator(str(path), [], augmented_model_path=str(workdir / "augmented.onnx"),
                                         calibrate_method=cal_method, extra_options=extra,
                                         providers=["CPUExecutionProvider"])
        try:
            per_pass = _inputs_per_pass(workdir / "augmented.onnx", inp, x, batch)
            passes = 0
            for reader in readers(inp.name, x, batch, per_pass):
                calibrator.collect_data(reader)
                passes += 1
            ranges = calibrator.compute_data()
        except XVDeployError:
            raise
        except Exception as exc:  # the model cannot take these inputs
            raise XVDeployError(f"calibration failed on inputs of shape {'x'.join(map(str, x.shape[1:]))}: "
                                f"{first_line(exc)}") from None
    return ranges, passes


def _inputs_per_pass(augmented: Path, inp: ModelInput, x: np.ndarray, batch: int) -> int:
    """Whole batches of inputs whose intermediate outputs fit :data:`CALIBRATION_PASS_BYTES` (one batch measured)."""
    outputs = ort_session(augmented).run(None, {inp.name: x[:batch]})
    per_input = max(1.0, sum(o.nbytes for o in outputs) / batch)
    return max(batch, int(CALIBRATION_PASS_BYTES / per_input) // batch * batch)


def tensor_range(ranges, name: str) -> float:
    """``max |x|`` of tensor ``name`` in calibration ``ranges``."""
    lo, hi = ranges[name].range_value
    return float(max(abs(float(np.min(lo))), abs(float(np.max(hi)))))


def t_scales(blocks: list[PSSABlock], ranges) -> dict[str, float]:
    """``α = range(X) / range(T)`` per merged block: after rescaling, ``αT`` spans what ``X`` spans."""
    alphas = {}
    for b in blocks:
        if not b.merged:
            continue
        rx, rt = tensor_range(ranges, b.x), tensor_range(ranges, b.t)
        if rx > 0 and rt > 0 and np.isfinite(rx / rt):
            alphas[b.label] = rx / rt
    return alphas


def prepare(model, x: np.ndarray, options: QuantizeOptions, workdir: Path,
            calibrator_options: dict | None = None) -> Prepared:
    """Pre-process, apply the placement and calibrate (twice for ``split-scales``: before and after rescaling)."""
    options.validate()
    inp = model_input(model)
    resolve_keep_float(model, options.keep_float, find_pssa_blocks(model))  # bad names fail before any work
    model = preprocess(model, workdir)
    blocks = find_pssa_blocks(model)
    symmetric = options.activations == "int8"
    ranges, passes = calibrate(model, inp, x, options.method, symmetric, workdir, calibrator_options)
    alphas: dict[str, float] = {}
    if options.placement == "split-scales" and any(b.merged for b in blocks):
        alphas = t_scales(blocks, ranges)
        model = rescale_t(model, blocks, alphas)
        ranges, passes = calibrate(model, inp, x, options.method, symmetric, workdir, calibrator_options)
    batch = batch_size_for(len(x), inp.fixed_batch)
    return Prepared(model, inp, blocks, ranges, alphas, options, len(x) - len(x) % batch, passes)


# -- quantization --------------------------------------------------------------------------------------------------


def quantize_prepared(prep: Prepared, nodes_to_quantize: list[str] | None = None,
                      nodes_to_exclude: list[str] | None = None):
    """The Q/DQ model of ``prep`` (onnxruntime ``QDQQuantizer`` with ``prep``'s calibration ranges)."""
    onnx = require("onnx", "Quantization")
    q = _ort_quant()
    symmetric = prep.options.activations == "int8"
    extra = {"ActivationSymmetric": symmetric, "WeightSymmetric": True,
             # TensorRT reads no INT32 bias DequantizeLinear; onnxruntime quantizes a float bias when it fuses
             "QuantizeBias": False}
    model = onnx.ModelProto()
    model.CopyFrom(prep.model)
    exclude = prep.excluded_nodes() if nodes_to_exclude is None else nodes_to_exclude
    with _quiet():
        quantizer = q.QDQQuantizer(model, True, False, q.QuantType.QInt8,
                                   q.QuantType.QInt8 if symmetric else q.QuantType.QUInt8,
                                   prep.ranges, nodes_to_quantize or [], exclude, _op_types(), extra)
        quantizer.quantize_model()
        quantizer.model.topological_sort()  # what quantize_static's save does
    out = quantizer.model.model
    _prune_opset_imports(out)
    return out


def _op_types() -> list[str]:
    """Every op type onnxruntime can quantize (``quantize_static``'s default)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def _prune_opset_imports(model) -> None:
    """Drop the opset imports onnxruntime's pre-processing adds but no node uses (ai.onnx.ml, com.microsoft.nchwc, …)."""
    used = {n.domain for n in model.graph.node}
    keep = [o for o in model.opset_import if o.domain in ("", "ai.onnx") or o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def quantized_summary(model) -> tuple[dict[str, int], int]:
    """``(op type -> nodes fed by a DequantizeLinear, number of Q/DQ nodes)``."""
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    counts = Counter(n.op_type for n in model.graph.node
                     if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(i in dq_out for i in n.input))
    qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    return dict(sorted(counts.items())), qdq


def add_metadata(model, source_model, info: dict) -> None:
    existing = {p.key for p in model.metadata_props}
    for p in source_model.metadata_props:
        if p.key not in existing and not p.key.startswith("onnx.quant"):
            model.metadata_props.add(key=p.key, value=p.value)
    for p in list(model.metadata_props):
        if p.key.startswith("onnx.quant") or p.key == METADATA_KEY:
            model.metadata_props.remove(p)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(info, sort_keys=True))


def save_checked(model, path: Path) -> None:
    """onnx.checker (full check), then write ``path`` atomically."""
    onnx = require("onnx", "Quantization")
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except Exception as exc:
            raise XVDeployError(f"the quantized graph fails onnx.checker: {first_line(exc)}", exit_code=1) from None


@contextlib.contextmanager
def _quiet():
    """onnxruntime's calibrators print progress and log warnings (e.g. "consider pre-processing"): keep them off."""
    import io
    import logging

    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)
