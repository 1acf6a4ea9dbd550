"""Op census of an ONNX graph and its difference against a plain-convolution twin.

The census is the plug-and-play proof: an X-volution network's graph differs
from the same network with plain convolutions only by standard ops (Pad, Mul,
Concat); see docs/design.md (plug-and-play export).
"""
from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xvdeploy._lazy import require
from xvdeploy.ops.base import FoldedOp

DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class OpCount:
    op_type: str
    domain: str
    count: int

    def to_dict(self) -> dict:
        return {"op_type": self.op_type, "domain": self.domain or "ai.onnx", "count": self.count}


def iter_nodes(graph):
    """Every node of ``graph`` and of its subgraphs (If/Loop/Scan bodies)."""
    onnx = require("onnx", "Reading ONNX graphs")

    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from iter_nodes(g)


def census(model) -> list[OpCount]:
    """``(op_type, domain, count)`` for every node, local functions included, most frequent first."""
    counts: Counter = Counter()
    for node in iter_nodes(model.graph):
        counts[(node.op_type, node.domain)] += 1
    for fn in model.functions:
        for node in iter_nodes(fn):
            counts[(node.op_type, node.domain)] += 1
    return [OpCount(op, dom, n) for (op, dom), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def non_standard(counts: list[OpCount]) -> list[OpCount]:
    """Ops outside the default ONNX domain."""
    return [c for c in counts if c.domain not in DEFAULT_DOMAINS]


def census_diff(counts: list[OpCount], plain: list[OpCount]) -> dict[str, list[str]]:
    """Op types only in ``counts`` ("extra") and only in ``plain`` ("missing")."""
    ours = {c.op_type for c in counts}
    theirs = {c.op_type for c in plain}
    return {"extra": sorted(ours - theirs), "missing": sorted(theirs - ours)}


def pssa_steps(model: Any) -> list[tuple[str, str, str]]:
    """``(pad, conv, mul)`` node names of every PSSA step in an ONNX ``ModelProto``.

    A step is a cyclic pad (:func:`wrap_pad_source`) whose output feeds a
    grouped ``Conv`` (one group per input channel) whose output is multiplied
    (``Mul``) with the pad's own input, or in "concat" mode with its repeat
    conv (docs/design.md, plug-and-play export);
    in the portable form the pad named is its last Concat. ``xvdeploy build
    --report`` maps them to the TensorRT layers they became (:mod:`xvdeploy.trt.report`).
    """
    helper = require("onnx.helper", "Reading the model's PSSA steps")

    nodes = list(model.graph.node)
    consumers: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producers = {o: n for n in nodes for o in n.output}
    weights = {init.name: tuple(init.dims) for init in model.graph.initializer}
    steps = []
    for pad in nodes:
        found = wrap_pad_source(pad, producers)
        if found is None:
            continue
        x = found[0]
        for conv in consumers.get(pad.output[0], []):
            if conv.op_type != "Conv" or len(conv.input) < 2:
                continue
            group = next((helper.get_attribute_value(a) for a in conv.attribute if a.name == "group"), 1)
            shape = weights.get(conv.input[1])
            if group <= 1 or (shape is not None and shape[1] != 1):  # depthwise: one input channel per group
                continue
            for mul in consumers.get(conv.output[0], []):
                if mul.op_type == "Mul" and any(i == x or _repeats(producers.get(i), x) for i in mul.input):
                    steps.append((pad.name, conv.name, mul.name))
    return steps


def _repeats(node: Any, x: str) -> bool:
    """Whether ``node`` is a "concat"-mode block's repeat conv of ``x`` (a grouped 1×1 Conv reading ``x``)."""
    return node is not None and node.op_type == "Conv" and node.input[0] == x


def wrap_pad_source(node: Any, producers: dict[str, Any]) -> tuple[str, list[str]] | None:
    """``(X, the pad's node names)`` if ``node`` ends a cyclic pad of ``X``, else None.

    Either ``Pad(mode=wrap)``, or the portable form the default export writes
    (docs/design.md, the cyclic pad): ``Concat(Slice(Y), Y, Slice(Y))`` on one
    axis or on two (rows around columns); ``producers`` maps a value name to
    the node that writes it.
    """
    if node.op_type == "Pad":
        helper = require("onnx.helper", "Reading the model's PSSA steps")
        mode = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "mode"), b"constant")
        return (node.input[0], [node.name]) if (mode.decode() if isinstance(mode, bytes) else mode) == "wrap" else None
    names: list[str] = []
    x, cur = None, node
    for _ in range(2):
        if cur is None or cur.op_type != "Concat" or len(cur.input) != 3:
            break
        first, mid, last = cur.input
        a, b = producers.get(first), producers.get(last)
        if not (a is not None and b is not None and a.op_type == b.op_type == "Slice" and a.input[0] == mid
                and b.input[0] == mid):
            break
        names = [a.name, b.name, cur.name] + names
        x, cur = mid, producers.get(mid)
    return (x, names) if names else None


def _is_operator(module: nn.Module) -> bool:
    return isinstance(module, FoldedOp) or callable(getattr(module, "fold", None))


@torch.no_grad()
def plain_counterpart(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """``model`` with every operator (X-volution, X-volution(SA), ACmix, any form) replaced by a 3×3 conv.

    Channels and stride of each replacement are read from the operator's input
    and output on ``example``, so this works for any network. An operator with
    a ``plain_counterpart()`` method (Swin window attention with ACmix) is
    replaced by what that returns instead (plain window attention).
    """
    shapes: dict[str, tuple] = {}
    own: dict[str, nn.Module] = {}
    handles = []
    for name, module in model.named_modules():
        if not name or not _is_operator(module) or any(name.startswith(p + ".") for p in (*shapes, *own)):
            continue
        if callable(getattr(module, "plain_counterpart", None)):
            own[name] = module.plain_counterpart()
        else:
            shapes[name] = ()
            handles.append(module.register_forward_hook(
                lambda m, args, out, name=name: shapes.__setitem__(name, (args[0].shape, out.shape))))
    try:
        model.eval()(example)
    finally:
        for h in handles:
            h.remove()
    twin = copy.deepcopy(model)
    like = next(model.parameters())
    for name, plain in own.items():
        twin.set_submodule(name, plain.eval())
    for name, io in shapes.items():
        if not io:
            continue
        (_, cin, h, _), (_, cout, oh, _) = io
        stride = max(1, round(h / oh))
        conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=True).to(like.device, like.dtype)
        twin.set_submodule(name, conv)
    return twin.eval()
