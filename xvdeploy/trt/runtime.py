"""Loading TensorRT engines: logger, platform identity, plan deserialization with a flavour/version/GPU check.

API (TensorRT 10.x/11.x and TensorRT-RTX 1.x Python bindings): ``trt.ILogger``
subclassed with ``log(severity, msg)`` (``trt.ILogger.Severity`` names),
``trt.Runtime(logger)`` and ``runtime.deserialize_cuda_engine(buffer)``, which
returns ``None`` on failure (the reason goes to the logger). TensorRT-RTX
adds ``Runtime.get_engine_validity`` (a verdict with diagnostics, asked
before deserializing).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from xvdeploy.errors import XVDeployError
from xvdeploy.plugins import trt_plugin
from xvdeploy.trt import require_flavour
from xvdeploy.trt.flavour import Flavour, engine_validity_problem, local_gpu, plugin_import_problem
from xvdeploy.trt.sidecar import NO_GPU, EngineRecord, Platform, check_flavour, check_platform, read_sidecar

Sink = Callable[[str], None]


_LOGGER: dict[Any, Any] = {}


def make_logger(trt: ModuleType, verbose: bool = False, sink: Sink | None = None):
    """The process's ``trt.ILogger``: keeps every error (for exception messages) and warning, and
    forwards warnings and errors — everything with ``verbose`` — to ``sink``.

    One instance per process and flavour, re-pointed at each call (its error
    list starts empty): TensorRT keeps the first logger it is given as its global one (the
    plugin library registered by ``init_libnvinfer_plugins`` logs through it),
    so a second logger draws a warning and a collected first one would dangle.
    """
    S = trt.ILogger.Severity
    errors = {S.INTERNAL_ERROR, S.ERROR}
    labels = {S.INTERNAL_ERROR: "internal error", S.ERROR: "error", S.WARNING: "warning",
              S.INFO: "info", S.VERBOSE: "verbose"}
    source = "TensorRT-RTX" if trt.__name__ == "tensorrt_rtx" else "TensorRT"
    logger = _LOGGER.get(trt.__name__)  # one per flavour module
    if logger is None:
        class Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)  # required by the bindings for Python subclasses
                self.errors: list[str] = []
                self.warnings: list[str] = []
                self.shown: set = set()
                self.sink: Sink | None = None

            def log(self, severity, msg) -> None:
                if severity in errors:
                    self.errors.append(msg)
                elif severity == S.WARNING:
                    self.warnings.append(msg)
                if self.sink is not None and severity in self.shown:
                    self.sink(f"[{source} {labels.get(severity, 'log')}] {msg}")

        logger = _LOGGER[trt.__name__] = Logger()
    logger.errors = []
    logger.warnings = []
    logger.shown = errors | {S.WARNING} | ({S.INFO, S.VERBOSE} if verbose else set())
    logger.sink = sink
    return logger


def last_errors(logger: Any, n: int = 3) -> str:
    """The logger's last ``n`` errors on one line ("" if none)."""
    msgs = [" ".join(m.split()) for m in getattr(logger, "errors", [])[-n:]]
    return "; ".join(msgs)


def current_platform(flavour: Flavour, trt: ModuleType, device: int | None = None) -> Platform:
    """Flavour, its version, GPU name and compute capability of ``device`` (default: the current CUDA device);
    ``gpu_name`` :data:`~xvdeploy.trt.sidecar.NO_GPU` and no compute capability without a GPU."""
    gpu = local_gpu(device)
    name, cc = gpu if gpu is not None else (NO_GPU, "")
    return Platform(trt.__version__, name, cc, flavour.name)


def register_pssa_plugin(flavour: Flavour, trt: ModuleType) -> int:
    """Register the PSSA TensorRT plugin (``xvdeploy.plugins.trt_plugin``) with ``flavour``; return the network
    creation flags it asks for (TensorRT: prefer its ahead-of-time implementation where it has both)."""
    if flavour.is_rtx:
        problem = plugin_import_problem(flavour, trt)
        if problem is not None:
            raise XVDeployError(problem)
        trt_plugin.register_v3_plugin(trt)
        return 0
    trt_plugin.register_trt_plugin()
    return trt_plugin.network_creation_flags()


@dataclass
class LoadedEngine:
    """A deserialized engine with what must stay alive alongside it."""

    engine: Any
    runtime: Any
    logger: Any
    record: EngineRecord | None
    warnings: list[str] = field(default_factory=list)
    flavour: Flavour | None = None


def load_engine(plan: str | os.PathLike, *, check: bool = True, verbose: bool = False,
                sink: Sink | None = None, flavour: str | None = None) -> LoadedEngine:
    """Deserialize ``plan`` after checking its sidecar against this machine's TensorRT flavour and GPU.

    The flavour is the sidecar's (``flavour`` insists on one: an engine of the
    other flavour is refused), else the installed one. Raises
    :class:`~xvdeploy.trt.sidecar.EngineMismatchError` for a plan built
    elsewhere, :class:`XVDeployError` for a missing or unreadable plan,
    :class:`~xvdeploy.trt.TensorRTUnavailable` when the flavour or its GPU is missing.
    """
    plan = Path(plan)
    if not plan.is_file():
        raise XVDeployError(f"engine file {plan} does not exist; build one with: xvdeploy build MODEL.onnx -o {plan}")
    record = read_sidecar(plan)
    if record is not None and flavour is not None:
        check_flavour(record, flavour, plan)
    chosen, trt = require_flavour(flavour or (record.flavour if record is not None else None))
    here = current_platform(chosen, trt)
    warnings: list[str] = []
    if check and record is not None:
        warnings = check_platform(record, here, plan)
    if record is not None and record.pssa_plugin:
        register_pssa_plugin(chosen, trt)
    logger = make_logger(trt, verbose, sink)
    if hasattr(trt, "init_libnvinfer_plugins"):
        trt.init_libnvinfer_plugins(logger, "")
    runtime = trt.Runtime(logger)
    blob = plan.read_bytes()
    invalid = engine_validity_problem(trt, runtime, blob) if chosen.is_rtx else None
    engine = runtime.deserialize_cuda_engine(blob) if invalid is None else None
    if engine is None:
        why = invalid or last_errors(logger) or f"{chosen.label} gave no reason"
        hint = ("" if record is not None else
                f"; it has no sidecar {plan.name}.json, so it may come from another TensorRT version, flavour or GPU")
        raise XVDeployError(f"{here.label} could not load engine {plan} ({why}){hint}; "
                            f"rebuild it with: xvdeploy build MODEL.onnx -o {plan} --runtime {chosen.name}")
    return LoadedEngine(engine, runtime, logger, record, warnings, chosen)
