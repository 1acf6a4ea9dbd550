"""The PSSA subgraph of an exported X-volution block, found in an ONNX graph, and its T-rescaling.

``xvdeploy export`` writes each folded X-volution block (docs/design.md, the
depthwise-shift form) as::

    X ─ Pad(mode=wrap) ─ Conv(group=C, fixed one-hot shift kernel) ─ A     (the default export: the wrap pad
                                                                          as Concat(Slice, ·, Slice) per axis)
    X ─────────────────────────────────────────────── Mul(X, A) ─ T        ("concat" mode: Mul(RepeatConv(X), A))
    Concat(X, T) ─ Conv (the merged convolution)                          (unmerged blocks: T ─ Conv, X ─ Conv, Add)

A merged "concat"-mode block has no Concat (:mod:`xvdeploy.export.concat_slots`):
its shift conv has one zero filter of bias 1 per channel, so ``T`` carries
``X`` in those "slot" channels and feeds the merged convolution directly.

``T = X ⊙ Σ_s roll_s(X)`` spans roughly the square of ``X``'s range, so one
per-tensor INT8 scale over ``concat[X, T]`` leaves ``X`` a handful of levels.
:func:`rescale_t` gives ``X`` and ``T`` separate scales inside that one
tensor: it multiplies the shift kernel by ``α`` (so the graph computes ``αT``)
and divides the merged convolution's ``T`` input channels by ``α`` — the same
function in float, no extra node.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xvdeploy._lazy import require
from xvdeploy.export.census import wrap_pad_source


#: suffix of the initializers :func:`rescale_t` writes
RESCALED = ".rescaled"


@dataclass
class PSSABlock:
    """One PSSA step: node names, the tensors ``X`` and ``T``, and where ``T`` goes."""

    label: str
    pad: str
    shift_conv: str
    mul: str
    x: str
    t: str
    t_channels: int
    mode: str  # "sum" or "concat"
    repeat_conv: str | None = None
    pad_nodes: list[str] = field(default_factory=list)  # every node of the cyclic pad (Pad, or Slices + Concats)
    concat: str | None = None  # Concat(X, T) feeding merged convolutions
    merged_convs: list[str] = field(default_factory=list)
    t_offset: int = 0  # first input channel of T in the merged convolution
    t_index: list[int] | None = None  # or T's input channels there, where T carries X's slots (no concat)

    @property
    def merged(self) -> bool:
        return bool(self.merged_convs)

    @property
    def nodes(self) -> list[str]:
        """The PSSA product subgraph (and the concat): what ``float-pssa`` keeps in float."""
        names = (self.pad_nodes or [self.pad]) + [self.shift_conv] + ([self.repeat_conv] if self.repeat_conv else [])
        names += [self.mul]
        return names + ([self.concat] if self.concat else [])

    def to_dict(self) -> dict:
        return {"label": self.label, "mode": self.mode, "merged": self.merged, "x": self.x, "t": self.t,
                "nodes": self.nodes, "merged_convs": self.merged_convs}


class _Graph:
    def __init__(self, model) -> None:
        onnx = require("onnx", "Reading ONNX files")
        self.numpy_helper = onnx.numpy_helper
        self.graph = model.graph
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in model.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.init = {t.name: t for t in model.graph.initializer}
        for n in model.graph.node:  # Constant nodes hold weights in some exports
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.init.setdefault(n.output[0], n.attribute[0].t)

    def const(self, name: str) -> np.ndarray | None:
        t = self.init.get(name)
        return None if t is None else self.numpy_helper.to_array(t)

    def attr(self, node, name: str, default=None):
        for a in node.attribute:
            if a.name == name:
                return require("onnx", "Reading ONNX files").helper.get_attribute_value(a)
        return default


def _is_shift_kernel(w: np.ndarray | None, slots: np.ndarray | None = None) -> bool:
    """A fixed shift kernel: depthwise (1 input channel per group), entries 0 or one common positive value;
    every filter has a tap, except the ``slots`` (a mask over the filters) which have none."""
    if w is None or w.ndim != 4 or w.shape[1] != 1:
        return False
    values = np.unique(w)
    if len(values) != 2 or values[0] != 0 or values[1] <= 0:
        return False
    taps = (w.reshape(len(w), -1) != 0).any(axis=1)
    return bool(np.array_equal(taps, ~slots) if slots is not None else taps.all())


def _slots(g: _Graph, conv, w: np.ndarray | None) -> np.ndarray | None:
    """The filters of a shift conv that carry ``X`` (no tap, bias 1; the rest bias 0), or None without a bias."""
    bias = g.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
    if bias is None or w is None or bias.shape != (len(w),) or not np.isin(bias, (0, 1)).all():
        return None
    return bias == 1


def find_pssa_blocks(model) -> list[PSSABlock]:
    """Every PSSA step of an exported X-volution network (see the module docstring), in graph order."""
    g = _Graph(model)
    blocks = []
    for pad in g.graph.node:
        found = _wrap_pad(g, pad)
        if found is None:
            continue
        x, pad_nodes = found
        for conv in g.consumers.get(pad.output[0], []):
            w = g.const(conv.input[1]) if conv.op_type == "Conv" and len(conv.input) > 1 else None
            slots = _slots(g, conv, w)
            if not _is_shift_kernel(w, slots):
                continue
            group = int(g.attr(conv, "group", 1))
            for mul in g.consumers.get(conv.output[0], []):
                if mul.op_type != "Mul":
                    continue
                other = mul.input[1] if mul.input[0] == conv.output[0] else mul.input[0]
                block = _block(g, pad, conv, mul, other, x, w, group, slots)
                if block is not None:
                    block.pad_nodes = pad_nodes
                    blocks.append(block)
    labels = [b.label for b in blocks]
    for b in blocks:  # labels name blocks on the command line: keep them unique
        if labels.count(b.label) > 1:
            b.label = b.mul
    return blocks


def _wrap_pad(g: _Graph, node) -> tuple[str, list[str]] | None:
    """``(X, the pad's node names)`` if ``node`` ends a cyclic pad (:func:`xvdeploy.export.census.wrap_pad_source`)."""
    return wrap_pad_source(node, g.producer)


def _block(g: _Graph, pad, conv, mul, other: str, x: str, w: np.ndarray, group: int,
           slots: np.ndarray | None = None) -> PSSABlock | None:
    repeat = None
    if other == x and w.shape[0] == group and slots is None:
        mode = "sum"
    else:
        node = g.producer.get(other)
        ones = g.const(node.input[1]) if node is not None and node.op_type == "Conv" and len(node.input) > 1 else None
        if node is None or node.input[0] != x or ones is None or not np.all(ones == 1) or ones.shape[2:] != (1, 1):
            return None
        mode, repeat = "concat", node.name
    t = mul.output[0]
    block = PSSABlock(label=mul.name, pad=pad.name, shift_conv=conv.name, mul=mul.name, x=x, t=t,
                      t_channels=int(w.shape[0] - (slots.sum() if slots is not None else 0)), mode=mode,
                      repeat_conv=repeat)
    users = g.consumers.get(t, [])
    if slots is not None:  # T carries X's slots into the merged convolutions
        if not users or not all(c.op_type == "Conv" and c.input[0] == t and g.const(c.input[1]) is not None
                                for c in users):
            return None
        block.merged_convs = [c.name for c in users]
        block.t_index = [int(i) for i in np.flatnonzero(~slots)]
        block.label = _label(users[0].input[1]) or mul.name
    elif len(users) == 1 and users[0].op_type == "Concat" and int(g.attr(users[0], "axis", 0)) == 1 \
            and len(users[0].input) == 2 and x in users[0].input:
        concat = users[0]
        convs = g.consumers.get(concat.output[0], [])
        if convs and all(c.op_type == "Conv" and c.input[0] == concat.output[0] and g.const(c.input[1]) is not None
                         for c in convs):
            block.concat = concat.name
            block.merged_convs = [c.name for c in convs]
            weight = g.const(convs[0].input[1])
            block.t_offset = 0 if concat.input[0] == t else int(weight.shape[1]) - block.t_channels
            block.label = _label(convs[0].input[1]) or mul.name
    elif len(users) == 1 and users[0].op_type == "Conv" and len(users[0].input) > 1:  # unmerged: T ─ attention conv
        block.label = _label(users[0].input[1]) or mul.name
    return block


def _label(weight_name: str) -> str | None:
    """``xv1.conv.weight`` / ``xv1.attn_conv.weight`` -> ``xv1``: the module the exporter named the weight after."""
    weight_name = weight_name.removesuffix(RESCALED)
    for suffix in (".attn_conv.weight", ".conv.weight"):
        if weight_name.endswith(suffix):
            return weight_name[: -len(suffix)]
    return None


def rescale_t(model, blocks: list[PSSABlock], alphas: dict[str, float]):
    """A copy of ``model`` computing ``α·T`` in place of ``T`` for each merged block in ``alphas`` (by label),
    with the merged convolutions' ``T`` input channels divided by ``α``: the same function in float."""
    onnx = require("onnx", "Quantization")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = _Graph(out)
    nodes = {n.name: n for n in out.graph.node}
    inits = {t.name: t for t in out.graph.initializer}
    for block in blocks:
        alpha = alphas.get(block.label)
        if alpha is None or not block.merged:
            continue
        conv = nodes[block.shift_conv]
        kernel = g.const(conv.input[1]).astype(np.float32) * np.float32(alpha)
        name = _fresh(inits, f"{block.label}.shift_weight{RESCALED}")
        inits[name] = _add_initializer(out, kernel, name)
        conv.input[1] = name
        for conv_name in block.merged_convs:
            merged = nodes[conv_name]
            w = g.const(merged.input[1]).astype(np.float32).copy()
            t_in = block.t_index if block.t_index is not None else slice(block.t_offset,
                                                                        block.t_offset + block.t_channels)
            w[:, t_in] /= np.float32(alpha)
            name = _fresh(inits, f"{merged.input[1]}{RESCALED}")
            inits[name] = _add_initializer(out, w, name)
            merged.input[1] = name
    used = {i for n in out.graph.node for i in n.input}
    keep = [t for t in out.graph.initializer if t.name in used or t.name in {i.name for i in out.graph.input}]
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep)
    return out


def _fresh(existing: dict, name: str) -> str:
    candidate, i = name, 1
    while candidate in existing:
        candidate, i = f"{name}.{i}", i + 1
    return candidate


def _add_initializer(model, array: np.ndarray, name: str):
    tensor = require("onnx", "Quantization").numpy_helper.from_array(array, name)
    model.graph.initializer.append(tensor)
    return tensor
