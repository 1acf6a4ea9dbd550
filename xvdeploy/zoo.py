"""The model zoo: ``names()``, ``create(name, **kwargs)``, ``input_shape(name)``, ``summary(name)``.

Models are defined in :mod:`xvdeploy.models` (the top-level ``models/``
folder of the repository) and created in training form.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import xvdeploy.models  # noqa: F401  (registers every model)
from xvdeploy.errors import XVDeployError
from xvdeploy.folding import fold
from xvdeploy.models import registry
from xvdeploy.ops.xvolution import XVolution


def names() -> list[str]:
    """Registered architecture names."""
    return registry.names()


def create(name: str, **kwargs) -> nn.Module:
    """A new training-form model of architecture ``name`` (random weights, eval mode off)."""
    entry = registry.entry(name)
    try:
        model = entry.builder(**{**entry.kwargs, **kwargs})
    except TypeError as exc:
        raise XVDeployError(f"bad arguments for architecture {name!r}: {exc}") from None
    model.xvdeploy_arch = name
    model.xvdeploy_arch_kwargs = dict(kwargs)
    return model


#: weight of every X-volution's attention-branch BatchNorm in :func:`create_random`
ATTENTION_BRANCH_SCALE = 0.1


def create_random(name: str, seed: int = 0, **kwargs) -> nn.Module:
    """The training form with random weights (``torch.manual_seed(seed)``), in eval mode: what
    ``xvdeploy export/bench/fold NAME`` use for a zoo name without a shipped checkpoint.

    BatchNorm statistics stay fresh (0/1: nothing is normalised, so float32
    stays ~2e-7 from float64 — measured statistics make random ResNets 1e-5-ish
    ill-conditioned), and every X-volution's attention branch starts at
    :data:`ATTENTION_BRANCH_SCALE`: PSSA squares its input, and at full scale
    the unnormalised product overflows (xv_resnet34_s3/s4 went to NaN within
    one stage). The branch still contributes, so folding it is still exercised.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = create(name, **kwargs)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, XVolution):
                m.attn_bn.weight.fill_(ATTENTION_BRANCH_SCALE)
    return model.eval()


def input_shape(name: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of the model's default input."""
    return registry.entry(name).input_shape


def pretrained(name: str):
    """Path of the trained checkpoint shipped for ``name``, or None."""
    return registry.entry(name).checkpoint


def description(name: str) -> str:
    return registry.entry(name).description


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of convolutions and matrix products for one input of ``shape`` (N×C×H×W).

    Counted with :class:`torch.utils.flop_counter.FlopCounterMode` (FLOPs / 2);
    element-wise work (the PSSA products, BN, activations) is not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters(), None)
    x = torch.zeros(shape, dtype=param.dtype if param is not None else torch.float32)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(x)
    return counter.get_total_flops() // 2


@dataclass
class ZooSummary:
    name: str
    input_shape: tuple[int, int, int]
    parameters: int
    macs: int
    folded_parameters: int
    folded_macs: int
    description: str


def summary(name: str) -> ZooSummary:
    """Parameters and MACs of ``name`` at its default input, in training and folded form."""
    model = create(name).eval()
    shape = (1, *input_shape(name))
    folded = fold(model)
    return ZooSummary(name, input_shape(name), count_parameters(model), count_macs(model, shape),
                      count_parameters(folded), count_macs(folded, shape), description(name))
