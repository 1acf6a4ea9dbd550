"""The custom ONNX node of the PSSA plugin (``xvdeploy export --pssa-plugin``); see docs/design.md (PSSA).

Each PSSA step becomes exactly one node; everything else stays standard ONNX.
Names and shift forms are those of :mod:`xvdeploy.pssa_contract`:

=================  ==========================================================
``op_type``        ``"PSSA"`` ("sum") or ``"PSSAConcat"`` ("concat")
                   (:data:`~xvdeploy.pssa_contract.OP_TYPES`)
``domain``         ``"ai.onnx.contrib"`` (:data:`~xvdeploy.pssa_contract.ONNX_DOMAIN`)
``shifts``         INTS ``[dy0, dx0, dy1, dx1, …]`` (TensorRT's parser hands
                   INTS to the plugin as an int32 array)
``shifts_str``     STRING ``"dy0,dx0,dy1,dx1,…"`` (onnxruntime-extensions
                   Python ops take only int64/float/string attributes)
``plugin_namespace``  STRING ``"xvdeploy"`` (:data:`~xvdeploy.pssa_contract.PLUGIN_NAMESPACE`)
``plugin_version``    STRING ``"1"``
``channel_major``  INT 0/1, ``PSSAConcat`` only: output channel ``s·C + c`` (0,
                   the reference order) or ``c·|S| + s`` (1, the folded modules')
=================  ==========================================================

Domain choice: onnxruntime-extensions registers every Python op in its own
domain, ``ai.onnx.contrib`` (``onnx_op`` takes no domain argument in 0.15), so
the node lives there to run in onnxruntime on CPU. TensorRT's ONNX parser does
not need the domain: an unknown ``op_type`` goes to its fallback plugin
importer, which looks the plugin up by ``op_type`` (= plugin name),
``plugin_version`` and the ``plugin_namespace`` attribute (the node's domain is
only a fallback when that lookup fails), and passes exactly the attributes the
plugin declares (here ``shifts``). An optional INT attribute ``aot`` (see
:func:`mark_aot`) makes the parser pick the plugin's AOT (or JIT)
implementation.

Export (``torch.onnx.export(..., dynamo=True)``) of a model whose PSSA steps
call ``torch.ops.xvdeploy.pssa*`` (:func:`xvdeploy.folding.use_pssa_plugin`
switches a folded model's X-volutions to them, in place)::

    from xvdeploy.folding import use_pssa_plugin
    from xvdeploy.plugins.onnx_node import custom_translation_table
    use_pssa_plugin(folded)
    torch.onnx.export(folded, args, dynamo=True, custom_translation_table=custom_translation_table())

Run in onnxruntime (CPU, float32)::

    from xvdeploy.export.onnxfile import ort_session
    sess = ort_session("model.onnx")   # registers the op below when the graph holds PSSA nodes
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from xvdeploy._lazy import require
from xvdeploy.errors import XVDeployError
from xvdeploy.plugins.torch_op import op_overload
from xvdeploy.pssa_contract import (
    MODE_OF_OP_TYPE,
    ONNX_DOMAIN,
    ONNX_OPSET_VERSION,
    OP_TYPES,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    flat_shifts,
    op_type,
    pssa_transform,
    shift_pairs,
    shifts_from_str,
    shifts_to_str,
)

_state: dict[str, Any] = {}


# --------------------------------------------------------------------------- attributes


def node_attributes(shifts: Sequence[int] | Sequence[Sequence[int]], channel_major: bool | None = None) -> dict[str, Any]:
    """The attributes of a PSSA node for ``shifts`` (flat or pairs); ``channel_major`` for ``PSSAConcat``."""
    flat = list(flat_shifts(shifts))
    attrs: dict[str, Any] = {
        "shifts": flat,
        "shifts_str": shifts_to_str(flat),
        "plugin_namespace": PLUGIN_NAMESPACE,
        "plugin_version": PLUGIN_VERSION,
    }
    if channel_major is not None:
        attrs["channel_major"] = int(bool(channel_major))
    return attrs


def make_node(inp: str, out: str, shifts: Sequence[int] | Sequence[Sequence[int]], mode: str = "sum",
              name: str | None = None, channel_major: bool = False):
    """An ``onnx.NodeProto`` of the plugin form (for graph surgery and tests)."""
    kind = op_type(mode)
    onnx = require("onnx", "ONNX export")
    attrs = node_attributes(shifts, channel_major if mode == "concat" else None)
    return onnx.helper.make_node(kind, [inp], [out], name=name, domain=ONNX_DOMAIN, **attrs)


def is_plugin_node(node) -> bool:
    """Whether an ``onnx.NodeProto`` is a PSSA plugin node."""
    return node.op_type in MODE_OF_OP_TYPE and node.domain == ONNX_DOMAIN


def plugin_nodes(model) -> list:
    """The PSSA plugin nodes of a model's main graph."""
    return [n for n in model.graph.node if is_plugin_node(n)]


def mark_aot(model, aot: bool | None = True):
    """Set (``True``/``False``) or remove (``None``) the ``aot`` attribute of every PSSA node, in place.

    TensorRT's parser reads it per node: 1 → the plugin's AOT implementation
    (the engine runs without Python), 0 → the JIT (Python) one; without it the
    network's ``PREFER_AOT/JIT_PYTHON_PLUGINS`` flag decides.
    """
    onnx = require("onnx", "ONNX export")
    for node in plugin_nodes(model):
        kept = [a for a in node.attribute if a.name != "aot"]
        del node.attribute[:]
        node.attribute.extend(kept)
        if aot is not None:
            node.attribute.append(onnx.helper.make_attribute("aot", int(bool(aot))))
    return model


# --------------------------------------------------------------------------- ONNX schema + export


def register_onnx_schemas() -> None:
    """Register ``ai.onnx.contrib::PSSA`` / ``PSSAConcat`` with :mod:`onnx.defs` (once per process).

    The dynamo exporter builds nodes from ONNX schemas, and ``onnx.checker``
    then validates the custom nodes' attributes and types too.
    """
    if _state.get("schemas"):
        return
    defs = require("onnx", "ONNX export").defs
    attr, attr_type, param = defs.OpSchema.Attribute, defs.OpSchema.AttrType, defs.OpSchema.FormalParameter
    types = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)", "tensor(double)"]
    docs = {
        "sum": "T = X * sum_s roll_s(X) (cyclic shifts, torch.roll semantics); xvdeploy PSSA plugin.",
        "concat": "T = concat_s(X * roll_s(X)) along channels; xvdeploy PSSA plugin.",
    }
    for mode, doc in docs.items():
        if defs.has(OP_TYPES[mode], ONNX_OPSET_VERSION, ONNX_DOMAIN):
            continue
        attributes = [
            attr("shifts", attr_type.INTS, "flat shift list [dy0, dx0, dy1, dx1, ...]", required=True),
            attr("shifts_str", attr_type.STRING, "the shift list as 'dy0,dx0,...'", required=True),
            attr("plugin_namespace", attr_type.STRING, "TensorRT plugin namespace", required=True),
            attr("plugin_version", attr_type.STRING, "TensorRT plugin version", required=True),
            attr("aot", attr_type.INT, "TensorRT: 1 = AOT, 0 = JIT implementation", required=False),
        ]
        if mode == "concat":
            attributes.append(attr("channel_major", attr_type.INT,
                                   "1: output channel c*|S| + s; 0: s*C + c", required=True))
        schema = defs.OpSchema(
            OP_TYPES[mode], ONNX_DOMAIN, ONNX_OPSET_VERSION, doc,
            inputs=[param("X", "T", "N×C×H×W input")],
            outputs=[param("Y", "T", "PSSA output")],
            type_constraints=[("T", types, "floating-point tensors")],
            attributes=attributes,
        )
        defs.register_schema(schema)
    _state["schemas"] = True


def _opset():
    register_onnx_schemas()
    values = require("onnxscript", "ONNX export").values
    return values.Opset(ONNX_DOMAIN, ONNX_OPSET_VERSION)


def pssa_translation(x, shifts):
    """``torch.ops.xvdeploy.pssa.default`` → one ``PSSA`` node (for ``custom_translation_table``)."""
    return getattr(_opset(), OP_TYPES["sum"])(x, **node_attributes(list(shifts)))


def pssa_concat_translation(x, shifts, channel_major=False):
    """``torch.ops.xvdeploy.pssa_concat.default`` → one ``PSSAConcat`` node."""
    return getattr(_opset(), OP_TYPES["concat"])(x, **node_attributes(list(shifts), bool(channel_major)))


def custom_translation_table() -> dict[Any, Callable]:
    """``{OpOverload: translation}`` for ``torch.onnx.export(..., dynamo=True, custom_translation_table=...)``.

    Registers the ONNX schemas first (the torch ops are registered on import).
    """
    register_onnx_schemas()
    return {
        op_overload("sum"): pssa_translation,
        op_overload("concat"): pssa_concat_translation,
    }


#: the name ``xvdeploy.export`` imports.
translation_table = custom_translation_table


# --------------------------------------------------------------------------- onnxruntime (CPU)


def pssa_numpy(x: np.ndarray, shifts: Sequence[int], concat: bool = False, channel_major: bool = False) -> np.ndarray:
    """:func:`~xvdeploy.pssa_contract.pssa_transform` on a numpy array (the ORT Python ops' body)."""
    pairs = shift_pairs(shifts)
    out = pssa_transform(torch.from_numpy(np.ascontiguousarray(x)), shifts=pairs,
                         mode="concat" if concat else "sum", channel_major=channel_major)
    return out.numpy()


def register_ort_ops() -> str:
    """Register the PSSA / PSSAConcat Python ops with onnxruntime-extensions (once); return its library path.

    float32 only (Python ops have fixed input types). The ops live in
    onnxruntime-extensions' domain :data:`~xvdeploy.pssa_contract.ONNX_DOMAIN`.
    """
    ortx = _require_ortx()
    if not _state.get("ort_ops"):
        if ortx.default_opset_domain() != ONNX_DOMAIN:
            raise XVDeployError(
                f"onnxruntime-extensions registers Python ops in {ortx.default_opset_domain()!r}, "
                f"but PSSA nodes use {ONNX_DOMAIN!r}; this onnxruntime-extensions version is not supported"
            )
        dt = ortx.PyCustomOpDef

        def pssa_body(x, shifts_str):
            return pssa_numpy(np.asarray(x, dtype=np.float32), shifts_from_str(shifts_str)).astype(np.float32)

        def concat_body(x, shifts_str, channel_major=0):
            y = pssa_numpy(np.asarray(x, dtype=np.float32), shifts_from_str(shifts_str), True, bool(channel_major))
            return y.astype(np.float32)

        ortx.onnx_op(op_type=OP_TYPES["sum"], inputs=[dt.dt_float], outputs=[dt.dt_float],
                     attrs={"shifts_str": dt.dt_string})(pssa_body)
        ortx.onnx_op(op_type=OP_TYPES["concat"], inputs=[dt.dt_float], outputs=[dt.dt_float],
                     attrs={"shifts_str": dt.dt_string, "channel_major": dt.dt_int64})(concat_body)
        _state["ort_ops"] = True
    return ortx.get_library_path()


def _require_ortx():
    return require("onnxruntime_extensions", "The PSSA custom ONNX op in onnxruntime")

