"""FP16 ONNX conversion (for TensorRT 11, whose networks are always strongly typed, and onnxruntime).

TensorRT 11 removed ``BuilderFlag.FP16``: a tensor runs in the type the ONNX
graph gives it. FP16 therefore means converting the graph's float tensors,
weights and constants to float16 before parsing. The conversion is
onnxconverter-common's ``convert_float_to_float16`` (the converter ONNX
Runtime and Polygraphy use) with:

* ``keep_io_types=True``: the engine keeps float32 inputs/outputs, with a
  ``Cast`` at each end, so callers feed the same arrays as for fp32;
* the float16 range (``65504``, subnormal minimum ``2**-24``) as the clamp
  bounds for weights instead of the converter's narrower defaults;
* :data:`FP32_OPS` kept in float32 (with casts around them): ops whose
  float16 result can overflow or lose the precision they need —
  normalisations, ``Exp``/``Pow``/``Log``, sums of squares — plus the
  converter's own block list (``Resize``, ``Range``, ``TopK``, …);
* explicit ``Cast(to=FLOAT)`` nodes in the graph retargeted to float16, and
  float initializers read by both kinds of op duplicated, so the graph's
  types stay consistent (the converter leaves both cases mixed).

The result is checked with ``onnx.checker`` and strict type inference; an
inconsistent graph raises :class:`~xvdeploy.errors.XVDeployError` instead of
reaching the TensorRT parser.
"""
from __future__ import annotations

import warnings
from typing import Iterable

from xvdeploy._lazy import require
from xvdeploy.errors import XVDeployError
from xvdeploy.fileio import atomic_path

#: Ops kept in float32 in an FP16 graph (besides the converter's DEFAULT_OP_BLOCK_LIST).
FP32_OPS: tuple[str, ...] = (
    "BatchNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "InstanceNormalization",
    "ReduceSumSquare",
    "ReduceL2",
    "ReduceLogSumExp",
    "ReduceProd",
    "Pow",
    "Exp",
    "Log",
)

FP16_MAX = 65504.0
FP16_MIN_SUBNORMAL = 2.0 ** -24  # 5.96e-08


def _converter():
    """onnxconverter-common's ``float16`` module (a missing package names the extra to install)."""
    return require("onnxconverter_common.float16", "FP16 ONNX conversion")


def _retarget_float_casts(graph, blocked_ops: set[str], FLOAT: int, FLOAT16: int) -> None:
    """``Cast(to=FLOAT)`` in a converted region must produce float16, like the tensors around it."""
    for node in graph.node:
        if node.op_type in blocked_ops:
            continue
        if node.op_type == "Cast" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "to" and attr.i == FLOAT:
                    attr.i = FLOAT16
        for attr in node.attribute:  # subgraphs (If/Loop/Scan)
            if attr.g.node:
                _retarget_float_casts(attr.g, blocked_ops, FLOAT, FLOAT16)
            for g in attr.graphs:
                _retarget_float_casts(g, blocked_ops, FLOAT, FLOAT16)


def _split_shared_initializers(graph, blocked_ops: set[str], FLOAT: int) -> None:
    """Give float32-kept ops their own copy of a float initializer that converted ops also read.

    The converter keeps such an initializer float32 for both, which leaves the
    converted consumer with mixed input types.
    """
    floats = {init.name: init for init in graph.initializer if init.data_type == FLOAT}
    readers: dict[str, set[bool]] = {}
    for node in graph.node:
        for name in node.input:
            if name in floats:
                readers.setdefault(name, set()).add(node.op_type in blocked_ops)
    shared = {name for name, kinds in readers.items() if kinds == {True, False}}
    for name in shared:
        copy = graph.initializer.add()
        copy.CopyFrom(floats[name])
        copy.name = f"{name}__fp32"
    for node in graph.node:
        if node.op_type in blocked_ops:
            for i, name in enumerate(node.input):
                if name in shared:
                    node.input[i] = f"{name}__fp32"


_STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")


def _infer_types(onnx, model):
    """ONNX type inference, with custom-domain ops (plugins such as ``xvdeploy::PSSA``, which
    ONNX has no schema for) assumed to output their first input's element type, so the
    tensors after them are typed too."""
    def infer(m):
        try:
            return onnx.shape_inference.infer_shapes(m)
        except onnx.shape_inference.InferenceError as exc:
            raise XVDeployError(f"ONNX type inference failed on the model before FP16 conversion: {exc}") from exc

    work = infer(model)
    for _ in range(len(work.graph.node)):
        graph = work.graph
        typed = {vi.name: vi.type.tensor_type.elem_type
                 for vi in list(graph.input) + list(graph.value_info) + list(graph.output)
                 if vi.type.tensor_type.elem_type}
        typed.update({init.name: init.data_type for init in graph.initializer})
        added = False
        for node in graph.node:
            if node.domain in _STANDARD_DOMAINS or not node.input or node.input[0] not in typed:
                continue
            for out in node.output:
                if out and out not in typed:
                    graph.value_info.append(onnx.helper.make_tensor_value_info(out, typed[node.input[0]], None))
                    typed[out] = typed[node.input[0]]
                    added = True
        if not added:
            break
        work = infer(work)
    return work


def convert_model_to_fp16(model, keep_fp32_ops: Iterable[str] | None = None):
    """Return a float16 copy of ``model`` (an ``onnx.ModelProto``) with float32 inputs and outputs.

    ``keep_fp32_ops`` replaces :data:`FP32_OPS` (the converter's default block
    list is always added).
    """
    onnx = require("onnx", "FP16 conversion")
    float16 = _converter()
    TensorProto = onnx.TensorProto
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT16:
            raise XVDeployError(
                f"the model's {'input' if vi in model.graph.input else 'output'} {vi.name!r} is already float16; "
                "expected a float32 model (the FP16 conversion is done once, here)"
            )
    blocked = set(float16.DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS if keep_fp32_ops is None else keep_fp32_ops)
    # infer types while the graph is still all float32: the converter decides where to cast from them
    work = _infer_types(onnx, model)
    _retarget_float_casts(work.graph, blocked, TensorProto.FLOAT, TensorProto.FLOAT16)
    _split_shared_initializers(work.graph, blocked, TensorProto.FLOAT)
    try:
        with warnings.catch_warnings():
            # the converter warns for every weight it clamps to the float16 range
            warnings.simplefilter("ignore")
            converted = float16.convert_float_to_float16(
                work,
                min_positive_val=FP16_MIN_SUBNORMAL,
                max_finite_val=FP16_MAX,
                keep_io_types=True,
                disable_shape_infer=True,
                op_block_list=sorted(blocked),
                check_fp16_ready=False,
            )
    except (ValueError, AssertionError, KeyError) as exc:
        raise XVDeployError(f"converting the ONNX graph to float16 failed: {exc}") from exc
    _restore_float32_outputs(onnx, model, converted)
    check_typed(converted)
    return converted


def _restore_float32_outputs(onnx, original, converted) -> None:
    """Make every originally float32 graph output float32 again.

    The converter leaves an output float16 when a float32-kept op produces it
    (it casts back to float16 after the op); retarget that cast, or add one.
    """
    FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    was_float = {vi.name for vi in original.graph.output if vi.type.tensor_type.elem_type == FLOAT}
    producers = {out: node for node in converted.graph.node for out in node.output}
    for vi in converted.graph.output:
        if vi.name not in was_float or vi.type.tensor_type.elem_type != FLOAT16:
            continue
        node = producers.get(vi.name)
        cast_to = [a for a in node.attribute if a.name == "to"] if node is not None and node.op_type == "Cast" else []
        if cast_to:
            cast_to[0].i = FLOAT
        else:
            inner = f"{vi.name}__fp16"
            if node is not None:
                node.output[list(node.output).index(vi.name)] = inner
            converted.graph.node.append(
                onnx.helper.make_node("Cast", [inner], [vi.name], to=FLOAT, name=f"{vi.name}__to_fp32"))
        vi.type.tensor_type.elem_type = FLOAT


def check_typed(model) -> None:
    """``onnx.checker`` plus strict type inference: every node's inputs have the types it accepts."""
    onnx = require("onnx", "FP16 conversion")
    try:
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        message = " ".join(str(exc).split())
        raise XVDeployError(f"the float16 ONNX graph is inconsistent ({message}); build with --precision fp32 "
                            "or report the model") from exc


def convert_file_to_fp16(src, dst, keep_fp32_ops: Iterable[str] | None = None) -> None:
    """Convert the ONNX file ``src`` to a float16 ONNX file ``dst`` (weights stored inline)."""
    onnx = require("onnx", "FP16 conversion")
    converted = convert_model_to_fp16(onnx.load(str(src)), keep_fp32_ops)
    with atomic_path(dst) as tmp:
        onnx.save(converted, str(tmp))
