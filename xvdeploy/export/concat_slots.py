"""A merged "concat"-mode X-volution block without its Concat node (docs/design.md, Export).

The folded block computes ``Conv_m(concat[X, T])`` with ``T = R ⊙ A``: ``A``
the depthwise shift conv of the cyclic pad of ``X`` (``|S|`` one-hot filters
per channel, output ``c·|S| + s``) and ``R`` the grouped 1×1 conv of ones that
repeats each channel of ``X`` ``|S|`` times. :func:`carry_x_through_product`
rewrites that in the exported graph as::

    A' = Conv(pad(X), W', B', group=C)   per channel: the |S| shift filters, then one zero filter of bias 1
    R' = Conv(X, ones, group=C)          C·(|S|+1) channels
    T' = R' ⊙ A'                         channel c·(|S|+1) + |S| is X_c · 1 = X_c (exact)
    Y  = Conv_m'(T')                     the merged weights' input channels in T''s order

so ``concat[X, T]`` is never written: one node fewer (the portable form's
block is 10 nodes, like a "sum" block), and no copy of ``X``. The values are
the same: the slot is ``X`` times exactly 1.0, the other channels and the
permuted merged weights are the same numbers. The torch module and its state
dict keep the reference layout; only the ONNX graph changes, and the export's
parity gate runs on the result.
"""
from __future__ import annotations

import numpy as np

from xvdeploy._lazy import require
from xvdeploy.export.census import wrap_pad_source
from xvdeploy.export.onnxfile import add_initializer, drop_unused_initializers, graph_constants, node_attr


def carry_x_through_product(proto) -> list[str]:
    """Rewrite every merged "concat"-mode block of ``proto`` in place; one note on what changed, or none."""
    graph = proto.graph
    blocks = _blocks(graph)
    for block in blocks:  # disjoint: each has its own Concat, Mul, shift and repeat convs, merged convs
        _rewrite(graph, *block[1:])
    if blocks:
        drop = {id(b[0]) for b in blocks}  # the Concats, removed once every rewrite has run (removing
        keep = [n for n in graph.node if id(n) not in drop]  # rebuilds graph.node, copying its nodes)
        used = {i for n in keep for i in n.input} | {o.name for o in graph.output}
        keep = [n for n in keep if n.op_type != "Constant" or n.output[0] in used]  # weights held in Constants
        del graph.node[:]
        graph.node.extend(keep)
        drop_unused_initializers(graph)
    return [f"{len(blocks)} \"concat\"-mode block(s) carry X through the product (no Concat)"] if blocks else []


def _blocks(graph) -> list[tuple]:
    """Every merged "concat"-mode block: ``(concat, t_pos, shift, repeat, mul, merged convs, constants)``.

    The graph's constants are read only once a block's structure is found (most graphs have none)."""
    consts = None
    producer = {o: n for n in graph.node for o in n.output}
    users: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    found = []
    for concat in graph.node:
        if concat.op_type != "Concat" or node_attr(concat, "axis") != 1 or len(concat.input) != 2:
            continue
        for t_pos in (0, 1):
            x, t = concat.input[1 - t_pos], concat.input[t_pos]
            mul = producer.get(t)
            if mul is None or mul.op_type != "Mul" or len(users.get(t, [])) != 1:
                continue
            convs = [c for c in (producer.get(i) for i in mul.input) if c is not None and c.op_type == "Conv"]
            shift = next((c for c in convs if _pads(producer.get(c.input[0]), producer) == x), None)
            repeat = next((c for c in convs if c is not shift and c.input[0] == x), None)
            if shift is None or repeat is None or len(shift.input) != 2 or len(repeat.input) != 2:
                continue  # a bias already there: not the exported form
            consts = graph_constants(graph) if consts is None else consts
            w, ones = consts.get(shift.input[1]), consts.get(repeat.input[1])
            group = node_attr(shift, "group", 1)
            if (w is None or ones is None or w.ndim != 4 or w.shape[1] != 1 or group < 1 or w.shape[0] % group
                    or w.shape[0] == group or ones.shape != (w.shape[0], 1, 1, 1) or not np.all(ones == 1)
                    or node_attr(repeat, "group", 1) != group
                    or any(len(users.get(o.output[0], [])) != 1 for o in (shift, repeat))):
                continue
            merged = users.get(concat.output[0], [])
            if not merged or not all(m.op_type == "Conv" and m.input[0] == concat.output[0] and len(m.input) > 1
                                     and consts.get(m.input[1]) is not None for m in merged):
                continue
            found.append((concat, t_pos, shift, repeat, mul, merged, consts))
            break
    return found


def _pads(node, producer: dict) -> str | None:
    """The value ``node`` cyclically pads, if it ends a cyclic pad."""
    found = wrap_pad_source(node, producer) if node is not None else None
    return found[0] if found else None


def _rewrite(graph, t_pos: int, shift, repeat, mul, merged: list, consts: dict) -> None:
    w = consts[shift.input[1]]
    channels = int(node_attr(shift, "group"))
    taps = w.shape[0] // channels  # |S|
    slots = taps + 1
    w_new = np.zeros((channels * slots, *w.shape[1:]), w.dtype)
    bias = np.zeros(channels * slots, w.dtype)
    for c in range(channels):
        w_new[c * slots: c * slots + taps] = w[c * taps: (c + 1) * taps]
        bias[c * slots + taps] = 1
    _set_weight(graph, shift, 1, w_new)
    shift.input.append(add_initializer(graph, f"{shift.input[1]}.slot_bias", bias))
    _set_weight(graph, repeat, 1, np.ones((channels * slots, 1, 1, 1), w.dtype))
    # merged conv input channel of each T' channel: X_c at the slot, T_(c·|S|+s) at c·(|S|+1)+s
    x_offset, t_offset = (taps * channels, 0) if t_pos == 0 else (0, channels)
    order = np.empty(channels * slots, np.int64)
    for c in range(channels):
        order[c * slots: c * slots + taps] = t_offset + c * taps + np.arange(taps)
        order[c * slots + taps] = x_offset + c
    for conv in merged:
        conv.input[0] = mul.output[0]
        _set_weight(graph, conv, 1, consts[conv.input[1]][:, order])
    for vi in graph.value_info:  # the three values now carry C·(|S|+1) channels
        if vi.name in (shift.output[0], repeat.output[0], mul.output[0]):
            dims = vi.type.tensor_type.shape.dim
            if len(dims) > 1:
                dims[1].Clear()
                dims[1].dim_value = channels * slots


def _set_weight(graph, node, index: int, value: np.ndarray) -> None:
    """Input ``index`` of ``node`` becomes ``value``: its initializer rewritten in place where nothing else reads
    it (so the name, which labels the block, stays), else a new one."""
    onnx = require("onnx", "ONNX export")
    name = node.input[index]
    readers = sum(name == i for n in graph.node for i in n.input)
    init = next((t for t in graph.initializer if t.name == name), None)
    if init is not None and readers == 1:
        init.CopyFrom(onnx.numpy_helper.from_array(np.ascontiguousarray(value), name))
        infos = [vi for vi in graph.value_info if vi.name != name]  # its recorded shape is the old one
        del graph.value_info[:]
        graph.value_info.extend(infos)
    else:
        node.input[index] = add_initializer(graph, name, value)
