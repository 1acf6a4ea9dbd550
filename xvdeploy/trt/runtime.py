"""Loading TensorRT engines: logger, platform identity, plan deserialization with a version/GPU check.

API (TensorRT 10.x/11.x Python bindings): ``trt.ILogger`` subclassed with
``log(severity, msg)`` (``trt.ILogger.Severity`` names), ``trt.Runtime(logger)``
and ``runtime.deserialize_cuda_engine(buffer)``, which returns ``None`` on
failure (the reason goes to the logger).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from xvdeploy.errors import XVDeployError
from xvdeploy.trt import require_tensorrt
from xvdeploy.trt.sidecar import EngineRecord, Platform, check_platform, read_sidecar

Sink = Callable[[str], None]


_LOGGER: dict[str, Any] = {}


def make_logger(trt: ModuleType, verbose: bool = False, sink: Sink | None = None):
    """The process's ``trt.ILogger``: keeps every error (for exception messages) and
    forwards warnings and errors — everything with ``verbose`` — to ``sink``.

    One instance per process, re-pointed at each call (its error list starts
    empty): TensorRT keeps the first logger it is given as its global one (the
    plugin library registered by ``init_libnvinfer_plugins`` logs through it),
    so a second logger draws a warning and a collected first one would dangle.
    """
    S = trt.ILogger.Severity
    errors = {S.INTERNAL_ERROR, S.ERROR}
    labels = {S.INTERNAL_ERROR: "internal error", S.ERROR: "error", S.WARNING: "warning",
              S.INFO: "info", S.VERBOSE: "verbose"}
    logger = _LOGGER.get("logger")
    if logger is None:
        class Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)  # required by the bindings for Python subclasses
                self.errors: list[str] = []
                self.shown: set = set()
                self.sink: Sink | None = None

            def log(self, severity, msg) -> None:
                if severity in errors:
                    self.errors.append(msg)
                if self.sink is not None and severity in self.shown:
                    self.sink(f"[TensorRT {labels.get(severity, 'log')}] {msg}")

        logger = _LOGGER["logger"] = Logger()
    logger.errors = []
    logger.shown = errors | {S.WARNING} | ({S.INFO, S.VERBOSE} if verbose else set())
    logger.sink = sink
    return logger


def last_errors(logger: Any, n: int = 3) -> str:
    """The logger's last ``n`` errors on one line ("" if none)."""
    msgs = [" ".join(m.split()) for m in getattr(logger, "errors", [])[-n:]]
    return "; ".join(msgs)


def current_platform(trt: ModuleType, device: int | None = None) -> Platform:
    """TensorRT version, GPU name and compute capability of ``device`` (default: the current CUDA device)."""
    import torch

    if device is None:
        device = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(device)
    return Platform(trt.__version__, torch.cuda.get_device_name(device), f"{major}.{minor}")


def register_pssa_plugin() -> int:
    """Register the PSSA TensorRT plugin (``xvdeploy.plugins.trt_plugin``); return the network
    creation flags it asks for (prefer its ahead-of-time implementation where TensorRT has both)."""
    try:
        from xvdeploy.plugins.trt_plugin import network_creation_flags, register_trt_plugin
    except ImportError as exc:
        raise XVDeployError(f"the PSSA TensorRT plugin cannot be loaded ({exc}); build without --pssa-plugin") from exc
    register_trt_plugin()
    return network_creation_flags()


@dataclass
class LoadedEngine:
    """A deserialized engine with what must stay alive alongside it."""

    engine: Any
    runtime: Any
    logger: Any
    record: EngineRecord | None
    warnings: list[str] = field(default_factory=list)


def load_engine(plan: str | os.PathLike, *, check: bool = True, verbose: bool = False,
                sink: Sink | None = None) -> LoadedEngine:
    """Deserialize ``plan`` after checking its sidecar against this machine's TensorRT and GPU.

    Raises :class:`~xvdeploy.trt.sidecar.EngineMismatchError` for a plan built
    elsewhere, :class:`XVDeployError` for a missing or unreadable plan.
    """
    plan = Path(plan)
    if not plan.is_file():
        raise XVDeployError(f"engine file {plan} does not exist; build one with: xvdeploy build MODEL.onnx -o {plan}")
    record = read_sidecar(plan)
    trt = require_tensorrt()
    here = current_platform(trt)
    warnings: list[str] = []
    if check and record is not None:
        warnings = check_platform(record, here, plan)
    if record is not None and record.pssa_plugin:
        register_pssa_plugin()
    logger = make_logger(trt, verbose, sink)
    if hasattr(trt, "init_libnvinfer_plugins"):
        trt.init_libnvinfer_plugins(logger, "")
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(plan.read_bytes())
    if engine is None:
        why = last_errors(logger) or "TensorRT gave no reason"
        hint = ("" if record is not None else
                f"; it has no sidecar {plan.name}.json, so it may come from another TensorRT version or GPU")
        raise XVDeployError(f"TensorRT {here.tensorrt_version} could not load engine {plan} ({why}){hint}; "
                            f"rebuild it with: xvdeploy build MODEL.onnx -o {plan}")
    return LoadedEngine(engine, runtime, logger, record, warnings)
