"""The model-level fold (timm's ``reparameterize_model`` idea; docs/design.md, The model-level fold).

Every training-form operator (any module with a ``fold(bn=None)`` method:
X-volution, X-volution(SA), ACmix) is replaced by its inference form, and
every BatchNorm that provably follows a convolution or an operator is folded
into it. "Provably" means: in the ``torch.fx`` graph of the model the BN's
only input is that module's output, the module's output feeds nothing else,
and each is called exactly once. Where the model cannot be traced, pairs are
taken from ``nn.Sequential`` containers (whose order is their semantics).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import fx, nn

from xvdeploy.ops.bn import fold_conv_bn
from xvdeploy.ops.base import FoldedOp
from xvdeploy.ops.xvolution import XVolutionFolded


@dataclass
class FoldRecord:
    """One folded layer: where, what, whether its branches became one conv."""

    name: str
    operator: str
    merged: bool
    note: str
    bn: str | None = None


def is_foldable_op(module: nn.Module) -> bool:
    return callable(getattr(module, "fold", None)) and not isinstance(module, FoldedOp)


def _foldable_bn(module: nn.Module) -> bool:
    return isinstance(module, nn.BatchNorm2d) and module.running_mean is not None and module.running_var is not None


def _producer_channels(module: nn.Module) -> int | None:
    return getattr(module, "out_channels", None) or getattr(module, "out_planes", None)


class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return is_foldable_op(m) or isinstance(m, (FoldedOp, nn.Conv2d, nn.BatchNorm2d)) or super().is_leaf_module(m, qualname)


def _pairs_from_graph(model: nn.Module) -> dict[str, str] | None:
    try:
        graph = _LeafTracer().trace(model)
    except Exception:  # untraceable control flow: fall back to Sequential order
        return None
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs: dict[str, str] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not _foldable_bn(model.get_submodule(node.target)):
            continue
        if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], fx.Node):
            continue
        src = node.args[0]
        if src.op != "call_module" or len(src.users) != 1:
            continue
        if calls[src.target] != 1 or calls[node.target] != 1:
            continue
        pairs[src.target] = node.target
    return pairs


def _pairs_from_sequentials(model: nn.Module) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for prefix, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            if _foldable_bn(seq._modules[b]):
                pairs[f"{prefix}.{a}" if prefix else a] = f"{prefix}.{b}" if prefix else b
    return pairs


def find_bn_pairs(model: nn.Module) -> dict[str, str]:
    """``{producer name: BatchNorm name}`` for every BN that provably follows a conv or operator."""
    pairs = _pairs_from_graph(model)
    if pairs is None:
        pairs = _pairs_from_sequentials(model)
    out = {}
    for src, bn_name in pairs.items():
        src_mod, bn = model.get_submodule(src), model.get_submodule(bn_name)
        producer = is_foldable_op(src_mod) or (isinstance(src_mod, nn.Conv2d) and type(src_mod).forward is nn.Conv2d.forward)
        if producer and _producer_channels(src_mod) == bn.num_features:
            out[src] = bn_name
    return out


@torch.no_grad()
def fold_with_records(model: nn.Module, inplace: bool = False) -> tuple[nn.Module, list[FoldRecord]]:
    """:func:`fold` that also returns one :class:`FoldRecord` per folded layer."""
    target = model if inplace else copy.deepcopy(model)
    target.eval()
    if is_foldable_op(target):  # a bare operator: the model *is* the block (inplace cannot swap it)
        folded = target.fold().eval()
        folded.xvdeploy_folded = True
        return folded, [FoldRecord("", folded.operator, folded.merged, folded.note, None)]
    pairs = find_bn_pairs(target)
    records: list[FoldRecord] = []
    done: list[str] = []
    for name, module in list(target.named_modules()):
        if not name or not (is_foldable_op(module) or name in pairs):
            continue
        if any(name.startswith(prefix + ".") for prefix in done):
            continue  # inside an operator that was already folded
        done.append(name)
        bn_name = pairs.get(name)
        bn = target.get_submodule(bn_name) if bn_name else None
        if is_foldable_op(module):
            folded = module.fold(bn)
            records.append(FoldRecord(name, folded.operator, folded.merged, folded.note, bn_name))
        else:
            folded = fold_conv_bn(module, bn)
            records.append(FoldRecord(name, "Conv2d+BN", True, "BN folded into conv", bn_name))
        target.set_submodule(name, folded.eval())
        if bn_name:
            target.set_submodule(bn_name, nn.Identity())
    target.xvdeploy_folded = True
    return target, records


def fold(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Inference form of ``model``: operators folded, BatchNorms merged where provably safe.

    Returns a folded deep copy in eval mode (``inplace=True`` folds ``model``
    itself; a bare X-volution, X-volution(SA) or ACmix block is returned as its
    folded module, which ``inplace`` cannot put in the caller's place). Idempotent: folding a folded model changes nothing. BatchNorm
    running statistics (eval mode) are used.
    """
    return fold_with_records(model, inplace)[0]


def use_pssa_plugin(model: nn.Module, enabled: bool = True) -> int:
    """Make every folded X-volution compute its PSSA step with ``torch.ops.xvdeploy.pssa`` (in place).

    The one plugin swap (``xvdeploy export --pssa-plugin``, ``bench``): the
    fused op runs the Triton kernel on CUDA and the reference math on CPU
    (identical results to the depthwise-shift subgraph, up to float rounding),
    and exports as one custom ONNX node per step
    (:func:`xvdeploy.plugins.onnx_node.custom_translation_table`). Deep-copy the
    model first to keep the original; ``enabled=False`` switches back. Returns
    how many blocks were switched (0: the model has no folded X-volution).
    """
    blocks = [m for m in model.modules() if isinstance(m, XVolutionFolded)]
    for m in blocks:
        m.use_plugin = enabled
    return len(blocks)
