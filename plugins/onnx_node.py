"""The custom ONNX node of the PSSA plugin (``xvdeploy export --pssa-plugin``), DESIGN §6.

Each PSSA step becomes exactly one node; everything else stays standard ONNX:

=================  ==========================================================
``op_type``        ``"PSSA"`` ("sum") or ``"PSSAConcat"`` ("concat")
``domain``         ``"ai.onnx.contrib"`` (:data:`DOMAIN`)
``shifts``         INTS ``[dy0, dx0, dy1, dx1, …]`` (TensorRT's parser hands
                   INTS to the plugin as an int32 array)
``shifts_str``     STRING ``"dy0,dx0,dy1,dx1,…"`` (onnxruntime-extensions
                   Python ops take only int64/float/string attributes)
``plugin_namespace``  STRING ``"xvdeploy"`` (:data:`PLUGIN_NAMESPACE`)
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
call ``torch.ops.xvdeploy.pssa*`` (:func:`plugin_model` makes such a copy of a
folded model)::

    from xvdeploy.plugins.onnx_node import custom_translation_table, plugin_model
    torch.onnx.export(plugin_model(folded), args, dynamo=True,
                      custom_translation_table=custom_translation_table())

Run in onnxruntime (CPU, float32)::

    from xvdeploy.plugins.onnx_node import make_session
    sess = make_session("model.onnx")
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from xvdeploy.errors import XVDeployError

DOMAIN = "ai.onnx.contrib"
OPSET_VERSION = 1
PLUGIN_NAMESPACE = "xvdeploy"
PLUGIN_VERSION = "1"
#: mode -> ONNX op_type (= TensorRT plugin name).
OP_TYPES = {"sum": "PSSA", "concat": "PSSAConcat"}
_MODE_OF = {v: k for k, v in OP_TYPES.items()}

_state: dict[str, Any] = {}


# --------------------------------------------------------------------------- attributes


def _flat(shifts: Sequence[int] | Sequence[Sequence[int]]) -> list[int]:
    from xvdeploy.plugins.pssa_triton import flat_shifts

    return list(flat_shifts(shifts))


def shifts_to_str(shifts: Sequence[int] | Sequence[Sequence[int]]) -> str:
    """``[-1, -1, 0, 1]`` → ``"-1,-1,0,1"`` (the ``shifts_str`` attribute)."""
    return ",".join(str(v) for v in _flat(shifts))


def shifts_from_str(text: str) -> list[int]:
    """Parse a ``shifts_str`` attribute back into the flat list (clear error if malformed)."""
    if isinstance(text, bytes):
        text = text.decode()
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise XVDeployError(
            f"bad PSSA shifts_str attribute {text!r}; expected comma-separated integers 'dy0,dx0,dy1,dx1,...'"
        ) from None
    return _flat(values)


def node_attributes(shifts: Sequence[int] | Sequence[Sequence[int]], channel_major: bool | None = None) -> dict[str, Any]:
    """The attributes of a PSSA node for ``shifts`` (flat or pairs); ``channel_major`` for ``PSSAConcat``."""
    flat = _flat(shifts)
    attrs: dict[str, Any] = {
        "shifts": flat,
        "shifts_str": ",".join(str(v) for v in flat),
        "plugin_namespace": PLUGIN_NAMESPACE,
        "plugin_version": PLUGIN_VERSION,
    }
    if channel_major is not None:
        attrs["channel_major"] = int(bool(channel_major))
    return attrs


def make_node(inp: str, out: str, shifts: Sequence[int] | Sequence[Sequence[int]], mode: str = "sum",
              name: str | None = None, channel_major: bool = False):
    """An ``onnx.NodeProto`` of the plugin form (for graph surgery and tests)."""
    import onnx

    if mode not in OP_TYPES:
        raise XVDeployError(f"unknown PSSA mode {mode!r}; expected one of {', '.join(OP_TYPES)}")
    attrs = node_attributes(shifts, channel_major if mode == "concat" else None)
    return onnx.helper.make_node(OP_TYPES[mode], [inp], [out], name=name, domain=DOMAIN, **attrs)


def is_plugin_node(node) -> bool:
    """Whether an ``onnx.NodeProto`` is a PSSA plugin node."""
    return node.op_type in _MODE_OF and node.domain == DOMAIN


def plugin_nodes(model) -> list:
    """The PSSA plugin nodes of a model's main graph."""
    return [n for n in model.graph.node if is_plugin_node(n)]


def mark_aot(model, aot: bool | None = True):
    """Set (``True``/``False``) or remove (``None``) the ``aot`` attribute of every PSSA node, in place.

    TensorRT's parser reads it per node: 1 → the plugin's AOT implementation
    (the engine runs without Python), 0 → the JIT (Python) one; without it the
    network's ``PREFER_AOT/JIT_PYTHON_PLUGINS`` flag decides.
    """
    import onnx

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
    from xvdeploy._lazy import require

    defs = require("onnx", "ONNX export").defs
    attr, attr_type, param = defs.OpSchema.Attribute, defs.OpSchema.AttrType, defs.OpSchema.FormalParameter
    types = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)", "tensor(double)"]
    docs = {
        "PSSA": "T = X * sum_s roll_s(X) (cyclic shifts, torch.roll semantics); xvdeploy PSSA plugin.",
        "PSSAConcat": "T = concat_s(X * roll_s(X)) along channels; xvdeploy PSSA plugin.",
    }
    for op_type, doc in docs.items():
        if defs.has(op_type, OPSET_VERSION, DOMAIN):
            continue
        attributes = [
            attr("shifts", attr_type.INTS, "flat shift list [dy0, dx0, dy1, dx1, ...]", required=True),
            attr("shifts_str", attr_type.STRING, "the shift list as 'dy0,dx0,...'", required=True),
            attr("plugin_namespace", attr_type.STRING, "TensorRT plugin namespace", required=True),
            attr("plugin_version", attr_type.STRING, "TensorRT plugin version", required=True),
            attr("aot", attr_type.INT, "TensorRT: 1 = AOT, 0 = JIT implementation", required=False),
        ]
        if op_type == "PSSAConcat":
            attributes.append(attr("channel_major", attr_type.INT,
                                   "1: output channel c*|S| + s; 0: s*C + c", required=True))
        schema = defs.OpSchema(
            op_type, DOMAIN, OPSET_VERSION, doc,
            inputs=[param("X", "T", "N×C×H×W input")],
            outputs=[param("Y", "T", "PSSA output")],
            type_constraints=[("T", types, "floating-point tensors")],
            attributes=attributes,
        )
        defs.register_schema(schema)
    _state["schemas"] = True


def _opset():
    from xvdeploy._lazy import require

    register_onnx_schemas()
    values = require("onnxscript", "ONNX export").values
    return values.Opset(DOMAIN, OPSET_VERSION)


def pssa_translation(x, shifts):
    """``torch.ops.xvdeploy.pssa.default`` → one ``PSSA`` node (for ``custom_translation_table``)."""
    return _opset().PSSA(x, **node_attributes(list(shifts)))


def pssa_concat_translation(x, shifts, channel_major=False):
    """``torch.ops.xvdeploy.pssa_concat.default`` → one ``PSSAConcat`` node."""
    return _opset().PSSAConcat(x, **node_attributes(list(shifts), bool(channel_major)))


def custom_translation_table() -> dict[Any, Callable]:
    """``{OpOverload: translation}`` for ``torch.onnx.export(..., dynamo=True, custom_translation_table=...)``.

    Registers the torch ops and the ONNX schemas first.
    """
    import torch

    import xvdeploy.plugins  # noqa: F401  (registers torch.ops.xvdeploy.*)

    register_onnx_schemas()
    return {
        torch.ops.xvdeploy.pssa.default: pssa_translation,
        torch.ops.xvdeploy.pssa_concat.default: pssa_concat_translation,
    }


#: the name ``xvdeploy.export`` imports.
translation_table = custom_translation_table


def _is_folded_pssa_step(module) -> bool:
    """A folded operator whose ``pssa(x)`` computes the depthwise-shift PSSA (``XVolutionFolded``)."""
    from xvdeploy.ops.pssa import ShiftKernel

    return (isinstance(getattr(module, "shift_kernel", None), ShiftKernel)
            and getattr(module, "mode", None) in OP_TYPES and callable(getattr(module, "pssa", None)))


def plugin_model(model):
    """A deep copy of a folded model whose PSSA steps call the custom ops (one plugin node each).

    Each folded X-volution's ``pssa`` becomes ``torch.ops.xvdeploy.pssa`` (or
    ``pssa_concat`` with ``channel_major=True``, the folded modules' channel
    order), so :func:`custom_translation_table` exports it as one node. The
    results are identical (same function). Raises :class:`XVDeployError` when
    the model has no folded PSSA step.
    """
    import copy

    import torch

    import xvdeploy.plugins  # noqa: F401  (registers torch.ops.xvdeploy.*)

    if not isinstance(model, torch.nn.Module):
        raise XVDeployError(f"plugin_model expects a torch.nn.Module, got {type(model).__name__}")
    twin = copy.deepcopy(model)
    steps = [m for m in twin.modules() if _is_folded_pssa_step(m)]
    if not steps:
        raise XVDeployError(
            "the model has no folded PSSA step (X-volution); fold it first (xvdeploy fold), "
            "or export without --pssa-plugin"
        )
    for m in steps:
        flat = _flat(list(m.shift_kernel.shifts))
        if m.mode == "sum":
            m.pssa = _SumStep(flat)
        else:
            m.pssa = _ConcatStep(flat)
    return twin


class _SumStep:
    """``x ↦ torch.ops.xvdeploy.pssa(x, shifts)`` (a picklable callable for :func:`plugin_model`)."""

    def __init__(self, flat: list[int]) -> None:
        self.flat = list(flat)

    def __call__(self, x):
        import torch

        return torch.ops.xvdeploy.pssa(x, self.flat)


class _ConcatStep(_SumStep):
    """``x ↦ torch.ops.xvdeploy.pssa_concat(x, shifts, channel_major=True)``."""

    def __call__(self, x):
        import torch

        return torch.ops.xvdeploy.pssa_concat(x, self.flat, True)


# --------------------------------------------------------------------------- onnxruntime (CPU)


def pssa_numpy(x: np.ndarray, shifts: Sequence[int], concat: bool = False, channel_major: bool = False) -> np.ndarray:
    """Reference PSSA in numpy (``np.roll`` = ``torch.roll``), the ORT Python ops' body."""
    flat = _flat(shifts)
    if x.ndim != 4:
        raise XVDeployError(f"PSSA expects an N×C×H×W tensor, got shape {tuple(x.shape)}")
    rolled = [np.roll(x, (flat[i], flat[i + 1]), axis=(2, 3)) for i in range(0, len(flat), 2)]
    if concat:
        if channel_major:  # channel c·|S| + s
            return np.stack([x * r for r in rolled], axis=2).reshape(x.shape[0], -1, *x.shape[2:])
        return np.concatenate([x * r for r in rolled], axis=1)
    acc = rolled[0].copy()
    for r in rolled[1:]:
        acc += r
    return x * acc


def register_ort_ops() -> str:
    """Register the PSSA / PSSAConcat Python ops with onnxruntime-extensions (once); return its library path.

    float32 only (Python ops have fixed input types). The ops live in
    onnxruntime-extensions' domain :data:`DOMAIN`.
    """
    ortx = _require_ortx()
    if not _state.get("ort_ops"):
        if ortx.default_opset_domain() != DOMAIN:
            raise XVDeployError(
                f"onnxruntime-extensions registers Python ops in {ortx.default_opset_domain()!r}, "
                f"but PSSA nodes use {DOMAIN!r}; this onnxruntime-extensions version is not supported"
            )
        dt = ortx.PyCustomOpDef

        def pssa_body(x, shifts_str):
            return pssa_numpy(np.asarray(x, dtype=np.float32), shifts_from_str(shifts_str)).astype(np.float32)

        def concat_body(x, shifts_str, channel_major=0):
            y = pssa_numpy(np.asarray(x, dtype=np.float32), shifts_from_str(shifts_str), True, bool(channel_major))
            return y.astype(np.float32)

        ortx.onnx_op(op_type="PSSA", inputs=[dt.dt_float], outputs=[dt.dt_float],
                     attrs={"shifts_str": dt.dt_string})(pssa_body)
        ortx.onnx_op(op_type="PSSAConcat", inputs=[dt.dt_float], outputs=[dt.dt_float],
                     attrs={"shifts_str": dt.dt_string, "channel_major": dt.dt_int64})(concat_body)
        _state["ort_ops"] = True
    return ortx.get_library_path()


def _require_ortx():
    from xvdeploy._lazy import require

    return require("onnxruntime_extensions", "The PSSA custom ONNX op in onnxruntime")


def make_session(model: str | os.PathLike | bytes | Any, sess_options=None, providers: Sequence[str] | None = None):
    """An ``onnxruntime.InferenceSession`` that runs PSSA plugin nodes (onnxruntime-extensions).

    ``model`` is a path, serialized bytes or an ``onnx.ModelProto``;
    ``providers`` defaults to ``["CPUExecutionProvider"]``.
    """
    from xvdeploy._lazy import require

    ort = require("onnxruntime", "The onnxruntime backend")
    lib = register_ort_ops()
    so = sess_options if sess_options is not None else ort.SessionOptions()
    so.register_custom_ops_library(lib)
    if isinstance(model, (str, os.PathLike)):
        if not Path(model).is_file():
            raise XVDeployError(f"no ONNX file at {os.fspath(model)!r}")
        source: Any = os.fspath(model)
    elif isinstance(model, (bytes, bytearray)):
        source = bytes(model)
    elif hasattr(model, "SerializeToString"):
        source = model.SerializeToString()
    else:
        raise XVDeployError(f"make_session expects a path, bytes or onnx.ModelProto, got {type(model).__name__}")
    return ort.InferenceSession(source, sess_options=so, providers=list(providers or ["CPUExecutionProvider"]))
