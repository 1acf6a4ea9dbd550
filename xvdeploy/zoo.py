"""The model zoo: ``names()``, ``create(name, **kwargs)``, ``input_shape(name)``, ``summary(name)``.

Models are defined in :mod:`xvdeploy.models` (the top-level ``models/``
folder of the repository) and created in training form.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
from torch import nn

import xvdeploy.models  # noqa: F401  (registers every model)
from xvdeploy.errors import XVDeployError, first_line
from xvdeploy.folding import fold
from xvdeploy.memory import check_fits
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


#: the largest integer argument an untrusted ``arch_kwargs`` may give (a width, a class count)
MAX_INT_KWARG = 1 << 16
_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def check_kwargs(name: str, kwargs, source: str = "arch_kwargs") -> dict:
    """Validate untrusted builder arguments (a checkpoint's ``arch_kwargs`` metadata) for architecture ``name``.

    Only parameters the architecture leaves open (named in its builder's
    signature, not fixed by its registry entry) with scalar values of their
    default's type are accepted; integers lie in 1..:data:`MAX_INT_KWARG`; and
    the model they describe must fit in memory (counted on the ``meta`` device,
    where nothing is allocated). Returns ``kwargs``; raises one
    :class:`XVDeployError` line naming ``source`` otherwise.
    """
    entry = registry.entry(name)
    params = {p.name: p for p in inspect.signature(entry.builder).parameters.values()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in entry.kwargs}
    open_ = ", ".join(f"{k} ({_KINDS[type(p.default)]})" for k, p in params.items()
                      if isinstance(p.default, (bool, int, float, str))) or "none"
    if not isinstance(kwargs, dict):
        json_type = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(
            type(kwargs), "null" if kwargs is None else type(kwargs).__name__)
        raise XVDeployError(f"{source} is a JSON {json_type}; expected an object of {name}'s arguments: {open_}")
    for key, value in kwargs.items():
        param = params.get(key)
        default = param.default if param is not None else None
        if param is None or not isinstance(default, (bool, int, float, str)):
            raise XVDeployError(f"{source}: {key!r} is not an argument {name} takes from a file; expected some of: {open_}")
        kind = type(default)
        ok = type(value) is kind or (kind is float and type(value) is int)
        if ok and kind is int:
            ok = 1 <= value <= MAX_INT_KWARG
        elif ok and kind is float:
            ok = math.isfinite(value) and abs(value) <= 1e6
        elif ok and kind is str:
            ok = len(value) <= 200
        if not ok:
            bounds = f" from 1 to {MAX_INT_KWARG}" if kind is int else ""
            raise XVDeployError(f"{source}: {key}={value!r} is out of bounds; expected {_KINDS[kind]}{bounds}")
    try:
        with torch.device("meta"):
            skeleton = entry.builder(**{**entry.kwargs, **kwargs})
    except Exception as exc:  # noqa: BLE001 - the builder refused these arguments
        raise XVDeployError(f"{source}: {name} cannot be built with {kwargs} ({first_line(exc)})") from None
    n_bytes = sum(t.numel() * t.element_size() for t in (*skeleton.parameters(), *skeleton.buffers()))
    check_fits(3 * n_bytes, f"{source} {kwargs}: {name} with these arguments ({sum(p.numel() for p in skeleton.parameters()):,} "
               "parameters, the model and its folded copy)", "the arguments are not those of a model that fits here")
    return kwargs


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
