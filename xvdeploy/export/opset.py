"""Down-conversion of an exported graph to an older ONNX opset (docs/design.md, Export).

``torch.onnx.export(dynamo=True)`` writes opset 18 natively; below that it
asks onnx's C version converter, which has no adapters for the changes the
exporter's graphs carry (Reduce* axes as an input, Split ``num_outputs``, Pad
with its optional ``axes``) and then leaves the model at 18 without saying so.
:func:`downgrade` rewrites exactly the operators whose signature changed
between the target opset and 18 and refuses, with the operator's name, any it
has no rule for; every other operator only widened its types in between and
keeps its node. The result is checked by the caller (``onnx.checker`` and the
parity gate).
"""
from __future__ import annotations

import functools
import importlib

import numpy as np

from xvdeploy._lazy import require
from xvdeploy.errors import XVDeployError
from xvdeploy.export.onnxfile import drop_unused_initializers, graph_constants, graph_dims, node_attr

#: Reduce operators whose ``axes`` moved from an attribute to an input at opset 18
_REDUCE_18 = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
              "ReduceLogSumExp", "ReduceSumSquare")


@functools.lru_cache(maxsize=1)
def max_opset() -> int:
    """The newest opset both onnx (the checker, the exporter's converter) and onnxruntime's CPU kernels know.

    onnxruntime's kernel registry says which operator versions it implements;
    where it cannot be read, onnx's own newest opset counts.
    """
    newest = require("onnx", "ONNX export").defs.onnx_opset_version()
    try:
        state = importlib.import_module("onnxruntime.capi.onnxruntime_pybind11_state")
        ort = max(k.version_range[0] for k in state.get_all_opkernel_def()
                  if k.provider == "CPUExecutionProvider" and k.domain in ("", "ai.onnx"))
    except Exception:  # no onnxruntime, or a build without the registry call
        return newest
    return min(newest, ort)


def default_opset(proto) -> int:
    """The model's default-domain (``ai.onnx``) opset version."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def downgrade(proto, target: int) -> list[str]:
    """Rewrite ``proto`` (in place) from its opset to ``target`` (< its opset); returns notes on what changed.

    Raises :class:`XVDeployError` naming the first operator that does not
    exist at ``target`` or whose newer form has no rule here.
    """
    onnx = require("onnx", "ONNX export")
    source = default_opset(proto)
    if target >= source:
        return []
    graph = proto.graph
    consts = graph_constants(graph)
    shapes = graph_dims(graph)
    new_nodes = []
    changed: dict[str, int] = {}
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            new_nodes.append(node)
            continue
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise XVDeployError(f"--opset {target}: {node.op_type} holds a subgraph, which the opset "
                                f"down-conversion does not handle; export at opset {source} or newer")
        old, new = _since(node.op_type, source), _since(node.op_type, target)
        if new is None:
            first = _first_version(node.op_type)
            raise XVDeployError(f"--opset {target} is too old for this network: ONNX has no {node.op_type} before "
                                f"opset {first}; use --opset {first} or newer")
        if old == new:
            new_nodes.append(node)
            continue
        rule = _RULES.get(node.op_type) or (_reduce if node.op_type in _REDUCE_18 else None)
        if rule is None:
            if not _same_signature(node.op_type, old, new):
                raise XVDeployError(f"--opset {target}: {node.op_type}-{old} has no down-conversion to "
                                    f"{node.op_type}-{new} here; use --opset {old} or newer")
            new_nodes.append(node)  # only the type lists changed between the two versions
            continue
        new_nodes += rule(node, target, consts, shapes, graph)
        changed[node.op_type] = changed.get(node.op_type, 0) + 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    drop_unused_initializers(graph)  # e.g. the axes inputs that became attributes
    for o in proto.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = target
    if not changed:
        return []
    return [f"opset {source} → {target}: rewrote " + ", ".join(f"{n}×{op}" for op, n in sorted(changed.items()))]


def _since(op_type: str, opset: int) -> int | None:
    defs = require("onnx", "ONNX export").defs
    try:
        return defs.get_schema(op_type, opset).since_version
    except Exception:  # no such operator at that opset
        return None


def _first_version(op_type: str) -> int:
    defs = require("onnx", "ONNX export").defs
    for v in range(1, defs.onnx_opset_version() + 1):
        if _since(op_type, v) is not None:
            return v
    return defs.onnx_opset_version()


def _same_signature(op_type: str, old: int, new: int) -> bool:
    """Whether two versions of an operator have the same inputs, outputs and attributes (types aside)."""
    defs = require("onnx", "ONNX export").defs
    a, b = defs.get_schema(op_type, old), defs.get_schema(op_type, new)
    return ([i.name for i in a.inputs] == [i.name for i in b.inputs]
            and [o.name for o in a.outputs] == [o.name for o in b.outputs]
            and set(a.attributes) == set(b.attributes))


def _drop_attrs(node, *names: str) -> None:
    keep = [a for a in node.attribute if a.name not in names]
    del node.attribute[:]
    node.attribute.extend(keep)


def _const_input(node, index: int, consts: dict, target: int, what: str):
    if len(node.input) <= index or not node.input[index]:
        return None
    name = node.input[index]
    if name not in consts:
        raise XVDeployError(f"--opset {target}: {node.op_type} {node.name or node.output[0]} takes its {what} "
                            "from the graph, not a constant; export at opset 18 or newer")
    return consts[name]


def _reduce(node, target, consts, shapes, graph):
    """Reduce*-18 (axes input) → Reduce*-13 (axes attribute)."""
    onnx = require("onnx", "ONNX export")
    axes = _const_input(node, 1, consts, target, "axes")
    if node_attr(node, "noop_with_empty_axes", 0) and (axes is None or axes.size == 0):
        raise XVDeployError(f"--opset {target}: {node.op_type} with noop_with_empty_axes=1 has no equivalent "
                            "before opset 18")
    _drop_attrs(node, "noop_with_empty_axes")
    del node.input[1:]
    if axes is not None and axes.size:
        node.attribute.append(onnx.helper.make_attribute("axes", [int(a) for a in axes.reshape(-1)]))
    return [node]


def _split(node, target, consts, shapes, graph):
    """Split-18 (``num_outputs``) → Split-13 (equal parts, or a constant ``split`` input)."""
    onnx = require("onnx", "ONNX export")
    n = node_attr(node, "num_outputs")
    _drop_attrs(node, "num_outputs")
    if n is None:
        return [node]
    axis = node_attr(node, "axis", 0)
    dims = shapes.get(node.input[0])
    size = dims[axis] if dims and -len(dims) <= axis < len(dims) else None
    if isinstance(size, int) and size % n == 0:
        return [node]  # Split-13 without a split input cuts equal parts
    if not isinstance(size, int):
        raise XVDeployError(f"--opset {target}: Split into {n} parts of a dynamic axis has no equivalent before "
                            "opset 18; export at opset 18 or newer")
    chunk = -(-size // n)
    sizes = [chunk] * (n - 1) + [size - chunk * (n - 1)]
    name = f"{node.output[0]}_split_sizes"
    graph.initializer.append(onnx.numpy_helper.from_array(np.array(sizes, "int64"), name))
    del node.input[1:]
    node.input.append(name)
    return [node]


def _pad(node, target, consts, shapes, graph):
    """Pad-18/19 → Pad-13: only without the ``axes`` input and not mode=wrap."""
    if len(node.input) > 3 and node.input[3]:
        raise XVDeployError(f"--opset {target}: Pad with an axes input has no equivalent before opset 18")
    mode = node_attr(node, "mode", b"constant")
    if mode in (b"wrap", "wrap"):
        raise XVDeployError(f"--opset {target}: Pad mode=wrap needs opset ≥ 19; export with --portable")
    return [node]


def _reshape(node, target, consts, shapes, graph):
    """Reshape-14 (``allowzero``) → Reshape-13: allowzero=1 only where the target shape holds no 0."""
    if node_attr(node, "allowzero", 0):
        shape = consts.get(node.input[1])
        if shape is None or (shape == 0).any():
            raise XVDeployError(f"--opset {target}: Reshape with allowzero=1 and a computed or zero-holding "
                                "target shape has no equivalent before opset 14")
    _drop_attrs(node, "allowzero")
    return [node]


def _shape(node, target, consts, shapes, graph):
    """Shape-15 (``start``/``end``) → Shape-13 followed by a Slice."""
    onnx = require("onnx", "ONNX export")
    start, end = node_attr(node, "start", 0), node_attr(node, "end")
    _drop_attrs(node, "start", "end")
    if start == 0 and end is None:
        return [node]
    out = node.output[0]
    full = f"{out}_full"
    node.output[0] = full
    names = [f"{out}_starts", f"{out}_ends"]
    graph.initializer.extend([onnx.numpy_helper.from_array(np.array([start], "int64"), names[0]),
                              onnx.numpy_helper.from_array(np.array([end if end is not None else 2**63 - 1], "int64"),
                                                           names[1])])
    return [node, onnx.helper.make_node("Slice", [full, *names], [out], name=f"{node.name or out}_slice")]


def _cast(node, target, consts, shapes, graph):
    """Cast-19 (``saturate``, float8 only) → Cast-13."""
    _drop_attrs(node, "saturate")
    return [node]


def _average_pool(node, target, consts, shapes, graph):
    """AveragePool-19 (``dilations``) → AveragePool-11 where every dilation is 1."""
    if any(d != 1 for d in node_attr(node, "dilations", []) or []):
        raise XVDeployError(f"--opset {target}: a dilated AveragePool needs opset ≥ 19")
    _drop_attrs(node, "dilations")
    return [node]


_RULES = {"Split": _split, "Pad": _pad, "Reshape": _reshape, "Shape": _shape, "Cast": _cast,
          "AveragePool": _average_pool}
