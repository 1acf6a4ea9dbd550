"""TensorRT: engine build (``xvdeploy build``) and engine loading for the ``tensorrt`` bench backends.

Two flavours share one code path (:mod:`xvdeploy.trt.flavour`): NVIDIA's
TensorRT 10.x/11.x (``tensorrt``, data-centre GPUs, from NVIDIA's index) and
TensorRT-RTX 1.x (``tensorrt_rtx``, RTX GPUs, from PyPI: ``xvdeploy[rtx]``,
which builds engines without a GPU). Both are imported lazily, through
:func:`xvdeploy._lazy.require`: ``import xvdeploy.trt`` works without them,
and :func:`availability` says why a flavour cannot run (for ``bench`` to list
it as skipped).

Modules: ``flavour`` (the calls that differ), ``shapes`` (trtexec-style shape
specs → optimization profiles), ``fp16`` (FP16 ONNX for strongly typed
networks), ``builder``, ``report`` (what the parser made of the graph),
``sidecar`` (the ``<plan>.json`` build record), ``runtime`` (engine loading with
a flavour/version/GPU check), ``cache`` (engines reused by ``bench``).
"""
from __future__ import annotations

from types import ModuleType

from xvdeploy.trt.flavour import (
    NONE_INSTALLED,
    TENSORRT,
    Flavour,
    TensorRTUnavailable,
    gpu_reason,
    load,
    resolve,
    version_major,
)

#: Where TensorRT's builder comes from (PyPI's ``tensorrt`` is a stub that downloads from here).
INSTALL_COMMAND = TENSORRT.install
#: The one line ``xvdeploy build`` prints (and ``bench`` shows as the skip reason) without any TensorRT.
NOT_INSTALLED = NONE_INSTALLED

SUPPORTED_MAJORS = TENSORRT.majors


def require_flavour(name: str | None = None, *, build: bool = False, check_gpu: bool = True) -> tuple[Flavour, ModuleType]:
    """The flavour ``name`` (default: the installed one) and its module, or :class:`TensorRTUnavailable`.

    ``check_gpu`` also checks the GPU: for building (``build``; TensorRT-RTX needs
    none) or for running engines.
    """
    flavour = resolve(name)
    trt = load(flavour)
    if check_gpu:
        reason = gpu_reason(flavour, trt, build=build)
        if reason is not None:
            raise TensorRTUnavailable(reason)
    return flavour, trt


def availability(name: str | None = None, check_gpu: bool = True, build: bool = False) -> str | None:
    """``None`` if the flavour ``name`` (default: the installed one) can run (``build``: build) engines here,
    else the one-line reason it cannot."""
    try:
        require_flavour(name, build=build, check_gpu=check_gpu)
    except TensorRTUnavailable as exc:
        return exc.reason
    return None


def require_tensorrt(check_gpu: bool = True, name: str | None = None) -> ModuleType:
    """The module of the flavour ``name`` (default: the installed one), checked; see :func:`require_flavour`."""
    return require_flavour(name, check_gpu=check_gpu)[1]


__all__ = [
    "INSTALL_COMMAND",
    "NOT_INSTALLED",
    "TensorRTUnavailable",
    "availability",
    "require_flavour",
    "require_tensorrt",
    "version_major",
]
