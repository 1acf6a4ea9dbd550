"""Numeric proof of a fold: per-layer and whole-model relative L2 error on a probe input.

Per-layer errors are measured on a float64 fold of the model (they isolate
the fold's algebra from rounding): each folded layer gets the input its training-form layer saw, and its output
is compared with the training layer's output after the BatchNorm it absorbed.
The whole-model errors compare that float64 fold, and ``folded`` itself run
in float32, with the float64 training form. Deep random networks are badly
conditioned in float32 (ResNet-50 at random init: ~3e-5 from float64 before
any fold), so the float32 error is judged against the training form's own
float32 error as well as against an absolute tolerance.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from xvdeploy.folding.core import FoldRecord, fold


def rel_l2(y: torch.Tensor, ref: torch.Tensor) -> float:
    """``‖y − ref‖ / ‖ref‖`` in float64 (0 when both are zero)."""
    y, ref = y.double(), ref.double()
    denom = ref.norm()
    diff = (y - ref).norm()
    return float(diff / denom) if denom > 0 else float(diff)


@dataclass
class LayerCheck:
    record: FoldRecord
    rel_error: float


@dataclass
class FoldCheck:
    layers: list[LayerCheck] = field(default_factory=list)
    total_float64: float = 0.0
    total_float32: float = 0.0
    #: the training form's own float32 rounding error (the floor ``total_float32`` is judged against)
    train_float32: float = 0.0

    def float32_ok(self, tolerance: float = 1e-5, headroom: float = 2.0) -> bool:
        """Folded float32 error within ``tolerance`` or within ``headroom``× the training form's own."""
        return self.total_float32 <= max(tolerance, headroom * self.train_float32)

    def worst_layer(self) -> float:
        errors = [layer.rel_error for layer in self.layers]
        return float("nan") if any(e != e for e in errors) else max(errors, default=0.0)  # NaN is never "best"


def _clone(value):
    """Detached copies of the tensors in a forward's args (tuple) or kwargs (dict)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple):
        return tuple(_clone(v) for v in value)
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


def _run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out if isinstance(out, torch.Tensor) else torch.as_tensor(out)


@torch.no_grad()
def check_fold(model: nn.Module, folded: nn.Module, records: list[FoldRecord], probe: torch.Tensor) -> FoldCheck:
    """Compare ``folded`` with the training-form ``model`` on ``probe`` (N×C×H×W)."""
    ref64 = copy.deepcopy(model).double().eval()
    fold64 = fold(ref64)  # the fold's algebra in float64; ``folded`` itself is checked in float32 below
    x64 = probe.double()
    captured: dict[str, list] = {}
    handles = []
    for rec in records:
        entry = captured.setdefault(rec.name, [None, None])
        handles.append(ref64.get_submodule(rec.name).register_forward_hook(  # every input (Swin: the mask too)
            lambda m, args, kwargs, out, entry=entry: entry.__setitem__(0, (_clone(args), _clone(kwargs))),
            with_kwargs=True))
        last = rec.bn or rec.name
        handles.append(ref64.get_submodule(last).register_forward_hook(
            lambda m, args, out, entry=entry: entry.__setitem__(1, out.detach().clone())))
    try:
        y_ref = _run(ref64, x64)
    finally:
        for h in handles:
            h.remove()
    result = FoldCheck()
    for rec in records:
        inp, out = captured[rec.name]
        if inp is None:  # layer not reached by this input
            continue
        args, kwargs = inp
        result.layers.append(LayerCheck(rec, rel_l2(fold64.get_submodule(rec.name)(*args, **kwargs), out)))
    result.total_float64 = rel_l2(_run(fold64, x64), y_ref)
    fold32 = copy.deepcopy(folded).float().eval()
    result.total_float32 = rel_l2(_run(fold32, probe.float()), y_ref)
    result.train_float32 = rel_l2(_run(copy.deepcopy(model).float().eval(), probe.float()), y_ref)
    return result
