"""Shape arithmetic that converters can follow (docs/design.md, Export).

With dynamic height and width, ``torch.onnx.export(dynamo=True)`` writes the
target of every reshape as a Shape → Squeeze → arithmetic → Concat chain,
even where the values are static or a plain ``0`` (copy this input dim) /
``-1`` (infer) would say the same; and it marks every Reshape
``allowzero=1``. Compiler-style runtimes and converters (OpenVINO's shape
inference, onnx2torch, onnx2tf, MNN) follow constants, not chains.
:func:`simplify_shapes` rewrites, using the exporter's own symbolic shapes
(every value's ``value_info``, e.g. ``s31 × 8 × ((s16 + 1)//2) × …``):

* a Reshape target becomes a constant of ints, ``0`` where the output dim is
  the input dim at the same position and ``-1`` for the one dim left; where
  two dims are dynamic (an un-flatten of H·W), all but the last are read
  with one ``Shape(start, end)`` of a value that already has that size;
* ``allowzero=1`` becomes 0 where the target holds no 0 written by the
  exporter (every constant target here; a dim read from a Shape is 0 only for
  an empty tensor);
* Shape nodes of static dims become constants, integer arithmetic on
  constants is folded, and what no output needs any more is removed.

Nothing here changes a value: the export's checks (``onnx.checker``,
onnxruntime and ``onnx.reference`` parity) run on the result.
"""
from __future__ import annotations

import numpy as np

from xvdeploy._lazy import require
from xvdeploy.export.onnxfile import add_initializer, graph_constants, graph_dims, node_attr, unique_name

#: integer shape-arithmetic operators folded when every input is a constant
_FOLDABLE = {"Shape", "Gather", "Squeeze", "Unsqueeze", "Concat", "Cast", "Add", "Sub", "Mul", "Div", "Slice",
             "Reshape", "Identity", "Neg", "Floor"}
_MAX_FOLD = 64  # elements: shape tensors, not data


def simplify_shapes(proto) -> list[str]:
    """Rewrite ``proto`` in place (see the module docstring); returns one note on what changed, or none."""
    graph = proto.graph
    counts = {"static reshape targets": _static_reshape_targets(graph),
              "constant shape values": _fold_constants(graph),
              "allowzero=1 → 0": _relax_allowzero(graph)}
    removed = _remove_dead(graph)
    done = [f"{n} {what}" for what, n in counts.items() if n]
    if removed:
        done.append(f"{removed} shape nodes removed")
    return [f"shape arithmetic simplified: {', '.join(done)}"] if done else []


# -- helpers ------------------------------------------------------------------------------------------------


def _set_attr(node, name: str, value) -> None:
    onnx = require("onnx", "ONNX export")
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep + [onnx.helper.make_attribute(name, value)])


# -- passes -------------------------------------------------------------------------------------------------


def _static_reshape_targets(graph) -> int:
    """Computed Reshape targets → constants with 0 (copy) / -1 (infer), or one Shape read per extra dynamic dim."""
    dims, consts = graph_dims(graph), graph_constants(graph)
    available = {vi.name for vi in graph.input}  # values defined before the node being rewritten
    new_nodes, changed = [], 0
    for node in graph.node:
        if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] not in consts:
            extra = _reshape_target(graph, node, dims, available)
            if extra is not None:
                new_nodes += extra
                changed += 1
        new_nodes.append(node)
        available.update(node.output)
    del graph.node[:]
    graph.node.extend(new_nodes)
    return changed


def _reshape_target(graph, node, dims: dict, available: set) -> list | None:
    """Point ``node``'s shape input at a simpler target; returns the nodes to insert before it (None: unchanged)."""
    onnx = require("onnx", "ONNX export")
    src, out = dims.get(node.input[0]), dims.get(node.output[0])
    if not src or not out or None in src or None in out:
        return None
    target: list[int | None] = []
    unknown: list[int] = []
    for i, d in enumerate(out):
        if isinstance(d, int):
            if d == 0:
                return None  # an empty axis: keep the exporter's allowzero semantics
            target.append(d)
        elif i < len(src) and src[i] == d:
            target.append(0)  # copy the input's dim (allowzero=0)
        else:
            target.append(None)
            unknown.append(i)
    reads = {}
    for i in unknown[:-1]:  # each but the last comes from a value that already has that size
        where = next(((name, j) for name in _ordered(available, dims) for j, d in enumerate(dims[name])
                      if d == out[i]), None)
        if where is None:
            return None
        reads[i] = where
    if unknown:
        target[unknown[-1]] = -1
    _set_attr(node, "allowzero", 0)
    if not reads:
        node.input[1] = add_initializer(graph, f"{node.output[0]}_shape", np.array(target, np.int64))
        return []
    pieces, inserted, run = [], [], []
    for i, t in enumerate(target):
        if i in reads:
            if run:
                pieces.append(add_initializer(graph, f"{node.output[0]}_shape_part", np.array(run, np.int64)))
                run = []
            name, j = reads[i]
            dim = unique_name(graph, f"{node.output[0]}_dim{i}")
            inserted.append(onnx.helper.make_node("Shape", [name], [dim], start=j, end=j + 1, name=dim))
            pieces.append(dim)
        else:
            run.append(t)
    if run:
        pieces.append(add_initializer(graph, f"{node.output[0]}_shape_part", np.array(run, np.int64)))
    shape = unique_name(graph, f"{node.output[0]}_shape")
    inserted.append(onnx.helper.make_node("Concat", pieces, [shape], axis=0, name=shape))
    node.input[1] = shape
    return inserted


def _ordered(available: set, dims: dict) -> list[str]:
    return sorted((n for n in available if n in dims), key=lambda n: (len(n), n))


def _fold_constants(graph) -> int:
    """Shape of static dims → constant; integer arithmetic on small constants → constant (onnx.reference)."""
    onnx = require("onnx", "ONNX export")
    dims, consts = graph_dims(graph), graph_constants(graph)
    outputs = {o.name for o in graph.output}
    folded, keep = 0, []
    for node in graph.node:
        value = None
        if node.domain in ("", "ai.onnx") and node.op_type in _FOLDABLE and not (set(node.output) & outputs):
            if node.op_type == "Shape":
                d = dims.get(node.input[0])
                if d and all(isinstance(v, int) for v in d):
                    start, end = node_attr(node, "start", 0), node_attr(node, "end", None)
                    value = np.array(d[slice(start, end)], np.int64)
            elif all(i in consts for i in node.input if i) and all(consts[i].size <= _MAX_FOLD
                                                                 for i in node.input if i):
                value = _evaluate(node, consts)
        if value is not None and value.size <= _MAX_FOLD and len(node.output) == 1:
            consts[node.output[0]] = value
            graph.initializer.append(onnx.numpy_helper.from_array(value, node.output[0]))
            folded += 1
            continue
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    return folded


def _evaluate(node, consts: dict) -> np.ndarray | None:
    """One node on constant inputs with ``onnx.reference``; None if its result is not an integer tensor."""
    onnx = require("onnx", "ONNX export")
    from onnx.reference import ReferenceEvaluator

    inputs = [i for i in node.input if i]
    if not all(consts[i].dtype.kind in "iu" for i in inputs if node.op_type not in ("Cast", "Shape")):
        return None
    try:
        graph = onnx.helper.make_graph(
            [node], "fold",
            [onnx.helper.make_tensor_value_info(i, onnx.helper.np_dtype_to_tensor_dtype(consts[i].dtype), consts[i].shape)
             for i in dict.fromkeys(inputs)],
            [onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.UNDEFINED, None)])
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
        value = ReferenceEvaluator(model).run(None, {i: consts[i] for i in inputs})[0]
    except Exception:  # leave the node as it is
        return None
    value = np.asarray(value)
    return value if value.dtype.kind in "iu" else None


def _relax_allowzero(graph) -> int:
    """``allowzero=1`` → 0 on Reshapes whose constant target holds no 0 (the same reshape then)."""
    consts = graph_constants(graph)
    changed = 0
    for node in graph.node:
        if node.op_type == "Reshape" and node_attr(node, "allowzero", 0) == 1:
            shape = consts.get(node.input[1])
            if shape is not None and not (shape == 0).any():
                _set_attr(node, "allowzero", 0)
                changed += 1
    return changed


def _remove_dead(graph) -> int:
    """Drop nodes no graph output depends on, then unused initializers and value_info."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if set(node.output) & needed:
            keep.append(node)
            needed.update(i for i in node.input if i)
    removed = len(graph.node) - len(keep)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    produced = {o for n in graph.node for o in n.output}
    infos = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(infos)
    return removed
