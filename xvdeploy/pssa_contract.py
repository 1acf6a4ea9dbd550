"""The PSSA contract: what every PSSA implementation agrees on (see docs/design.md (PSSA)).

One home for the facts the reference op (:mod:`xvdeploy.ops.pssa`), the Triton
kernel, the torch custom ops, the custom ONNX node and the TensorRT plugin
(:mod:`xvdeploy.plugins`) share:

* the modes, ``"sum"`` (``T = X ⊙ Σ_s roll_s X``) and ``"concat"``
  (``T = concat_s X ⊙ roll_s X``), and :func:`check_mode`;
* shifts: ``S_L`` (:func:`default_shifts`), validation and resolution
  (:func:`resolve_shifts`), the flat form ``[dy0, dx0, dy1, dx1, …]``
  (:func:`flat_shifts`, :func:`shift_pairs`) and its text form
  ``"dy0,dx0,…"`` (:func:`shifts_to_str`, :func:`shifts_from_str`). Shifts
  follow :func:`torch.roll`: ``roll_s(X)[i] = X[i - s]``, cyclic, so any
  integer works (wrapped modulo ``H`` / ``W``);
* the names: ONNX ``op_type`` per mode (= TensorRT plugin name), ONNX domain
  and opset version, TensorRT plugin namespace and version, torch op names;
* the output-channel order of "concat": the reference order is ``s·C + c``
  (shift-major); the folded modules, and every plugin asked for
  ``channel_major``, use ``c·|S| + s`` (:func:`to_channel_major`,
  :func:`to_shift_major`);
* the reference math, :func:`pssa_transform` (the roll form).

Core layer: imports torch and :mod:`xvdeploy.errors` only.
"""
from __future__ import annotations

import operator
from typing import Iterable, Sequence

import torch

from xvdeploy.errors import XVDeployError

Shift = tuple[int, int]

# --------------------------------------------------------------------------- modes

MODES = ("sum", "concat")


def check_mode(mode: str) -> str:
    """``mode`` if it is a PSSA mode, else a one-line :class:`XVDeployError`."""
    if mode not in MODES:
        raise XVDeployError(f"unknown PSSA mode {mode!r}; expected one of {', '.join(MODES)}")
    return mode


# --------------------------------------------------------------------------- names

#: mode -> ONNX ``op_type`` of the custom node (= the TensorRT plugin name).
OP_TYPES = {"sum": "PSSA", "concat": "PSSAConcat"}
#: ONNX ``op_type`` -> mode.
MODE_OF_OP_TYPE = {v: k for k, v in OP_TYPES.items()}
#: the custom nodes' ONNX domain: onnxruntime-extensions registers its Python ops there.
ONNX_DOMAIN = "ai.onnx.contrib"
#: the version of :data:`ONNX_DOMAIN` the nodes' schemas are registered under.
ONNX_OPSET_VERSION = 1
#: TensorRT plugin namespace (the node's ``plugin_namespace`` attribute) and version.
PLUGIN_NAMESPACE = "xvdeploy"
PLUGIN_VERSION = "1"
#: the torch custom ops' namespace (``torch.ops.xvdeploy``) and, per mode, op name.
TORCH_NAMESPACE = "xvdeploy"
TORCH_OPS = {"sum": "pssa", "concat": "pssa_concat"}


def op_type(mode: str) -> str:
    """The ONNX ``op_type`` of a mode: ``"PSSA"`` / ``"PSSAConcat"``."""
    return OP_TYPES[check_mode(mode)]


def plugin_id(mode: str = "sum") -> str:
    """The TensorRT plugin id of a mode: ``"xvdeploy::PSSA"`` / ``"xvdeploy::PSSAConcat"``."""
    return f"{PLUGIN_NAMESPACE}::{op_type(mode)}"


def torch_op_name(mode: str = "sum") -> str:
    """The qualified torch op name of a mode: ``"xvdeploy::pssa"`` / ``"xvdeploy::pssa_concat"``."""
    return f"{TORCH_NAMESPACE}::{TORCH_OPS[check_mode(mode)]}"


# --------------------------------------------------------------------------- shifts


def _integer(v) -> int:
    """``v`` as an ``int`` (any integer type but ``bool``); ``TypeError`` otherwise."""
    if isinstance(v, bool):
        raise TypeError(v)
    return operator.index(v)


def _pair(s) -> Shift:
    try:
        dy, dx = s
        return _integer(dy), _integer(dx)
    except (TypeError, ValueError):
        raise XVDeployError(f"each PSSA shift must be a pair of integers (dy, dx), got {s!r}") from None


def default_shifts(distance: int = 1) -> list[Shift]:
    """``S_L``: the 8 directions at distance ``L`` (row-major, centre excluded)."""
    if not isinstance(distance, int) or distance < 1:
        raise XVDeployError(f"PSSA distance must be a positive integer, got {distance!r}")
    return [(distance * dy, distance * dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def resolve_shifts(distance: int = 1, shifts: Iterable[Sequence[int]] | None = None) -> list[Shift]:
    """The shift list of a PSSA step as ``(dy, dx)`` pairs: ``shifts`` if given, else ``S_distance``."""
    if shifts is None:
        return default_shifts(distance)
    out = [_pair(s) for s in shifts]
    if not out:
        raise XVDeployError("the PSSA shift list is empty; expected at least one (dy, dx) pair")
    return out


def flat_shifts(shifts: Sequence[int] | Sequence[Sequence[int]]) -> tuple[int, ...]:
    """A shift list as the flat tuple ``(dy0, dx0, dy1, dx1, …)`` (kernel constexpr, node attribute, op argument).

    Accepts the flat form or ``(dy, dx)`` pairs; rejects an empty or odd-length
    list and non-integers with an :class:`XVDeployError`.
    """
    items = list(shifts)
    if items and all(isinstance(s, (tuple, list)) for s in items):
        return tuple(v for s in items for v in _pair(s))
    if not items:
        raise XVDeployError("the PSSA shift list is empty; expected [dy0, dx0, dy1, dx1, ...]")
    if len(items) % 2:
        raise XVDeployError(
            f"the PSSA shift list has odd length {len(items)}; expected pairs [dy0, dx0, dy1, dx1, ...]"
        )
    out = []
    for v in items:
        try:
            out.append(_integer(v))
        except TypeError:
            raise XVDeployError(f"PSSA shifts must be integers, got {v!r} in {items!r}") from None
    return tuple(out)


def shift_pairs(shifts: Sequence[int] | Sequence[Sequence[int]]) -> list[Shift]:
    """A shift list (flat or pairs) as ``(dy, dx)`` pairs: the inverse of :func:`flat_shifts`."""
    flat = flat_shifts(shifts)
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def shifts_to_str(shifts: Sequence[int] | Sequence[Sequence[int]]) -> str:
    """``[-1, -1, 0, 1]`` (or pairs) → ``"-1,-1,0,1"`` (the nodes' ``shifts_str`` attribute)."""
    return ",".join(str(v) for v in flat_shifts(shifts))


def shifts_from_str(text: str | bytes) -> list[int]:
    """Parse a ``shifts_str`` attribute back into the flat list (clear error if malformed)."""
    if isinstance(text, bytes):
        text = text.decode()
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise XVDeployError(
            f"bad PSSA shifts_str attribute {text!r}; expected comma-separated integers 'dy0,dx0,dy1,dx1,...'"
        ) from None
    return list(flat_shifts(values))


# --------------------------------------------------------------------------- input and channel order

#: dtypes every PSSA implementation (torch op, Triton kernel, plugins) reads and writes.
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _check_4d(x: torch.Tensor, what: str) -> None:
    if x.dim() != 4:
        raise XVDeployError(f"{what} expects an N×C×H×W tensor, got shape {tuple(x.shape)}")


def check_input(x: torch.Tensor, what: str = "PSSA") -> None:
    """Reject what no PSSA plugin takes: not a tensor, not 4-D, not a float dtype we support."""
    if not isinstance(x, torch.Tensor):
        raise XVDeployError(f"{what} expects a torch.Tensor, got {type(x).__name__}")
    _check_4d(x, what)
    if x.dtype not in SUPPORTED_DTYPES:
        names = ", ".join(str(d).replace("torch.", "") for d in SUPPORTED_DTYPES)
        raise XVDeployError(f"{what} supports dtypes {names}; got {str(x.dtype).replace('torch.', '')}")


def to_channel_major(t: torch.Tensor, num_shifts: int) -> torch.Tensor:
    """Channels (dim 1) ``s·C + c`` → ``c·|S| + s``: "concat" output, or the input channels of a conv weight over it."""
    n, sc, *rest = t.shape
    return t.reshape(n, num_shifts, sc // num_shifts, *rest).transpose(1, 2).reshape(t.shape)


def to_shift_major(t: torch.Tensor, num_shifts: int) -> torch.Tensor:
    """Channels (dim 1) ``c·|S| + s`` → ``s·C + c`` (the inverse of :func:`to_channel_major`)."""
    n, sc, *rest = t.shape
    return t.reshape(n, sc // num_shifts, num_shifts, *rest).transpose(1, 2).reshape(t.shape)


# --------------------------------------------------------------------------- reference math


def pssa_transform(
    x: torch.Tensor,
    distance: int = 1,
    shifts: Iterable[Sequence[int]] | None = None,
    mode: str = "sum",
    *,
    channel_major: bool = False,
) -> torch.Tensor:
    """Reference PSSA: ``T = X ⊙ Σ_s roll_s(X)`` ("sum") or ``concat_s(X ⊙ roll_s(X))`` ("concat").

    ``x`` is ``N×C×H×W``; shifts are cyclic, with :func:`torch.roll` semantics
    (``shifts`` as ``(dy, dx)`` pairs, default ``S_distance``). "concat" output
    channels are ordered ``s·C + c``, or ``c·|S| + s`` with ``channel_major``.
    """
    check_mode(mode)
    shift_list = resolve_shifts(distance, shifts)
    _check_4d(x, "PSSA")
    rolled = [torch.roll(x, shifts=s, dims=(2, 3)) for s in shift_list]
    if mode == "sum":
        return x * torch.stack(rolled).sum(0) if len(rolled) > 1 else x * rolled[0]
    out = torch.cat([x * r for r in rolled], dim=1)
    return to_channel_major(out, len(rolled)) if channel_major else out
