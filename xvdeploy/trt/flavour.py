"""The two TensorRT flavours behind one builder and runtime: TensorRT and TensorRT-RTX.

=====================  ===========================================  ============================================
                       TensorRT 10.x / 11.x (``tensorrt``)          TensorRT-RTX 1.x (``tensorrt_rtx``)
=====================  ===========================================  ============================================
for                    data-centre GPUs; build on the target GPU    RTX desktops/workstations; portable engines
                                                                     built on CPU build servers
install                NVIDIA's index (``pip install tensorrt       PyPI: ``pip install 'xvdeploy[rtx]'``
                       --extra-index-url https://pypi.nvidia.com``  (``tensorrt-rtx-cu12``)
build needs a GPU      yes (the engine is for that GPU)             no (CPU-only ahead-of-time build, default)
targets                the build GPU's compute capability           ``--compute-capability`` (default: 8.0, 8.6,
                                                                     8.9, 12.0 and later; 7.5 only if asked)
FP16                   ``BuilderFlag.FP16`` (10) / FP16 ONNX (11)   FP16 ONNX (strongly typed networks only)
INT8 (Q/DQ ONNX)       explicit quantization, strongly typed        parsed and built (INT8 weights), but its
                                                                     INT8 is weight-only GEMM (support matrix)
timing cache           used                                         ignored (no-op since RTX 1.2): not written
PSSA plugin            ``tensorrt.plugin`` (JIT + AOT)              Python ``IPluginV3`` (no ``tensorrt_rtx.plugin``)
=====================  ===========================================  ============================================

Everything that differs between them is here; :mod:`xvdeploy.trt.builder`
and :mod:`xvdeploy.trt.runtime` call these functions and are otherwise one
code path (TensorRT-RTX's Python API is TensorRT 11's). The packages are
imported through :func:`xvdeploy._lazy.require`, on first use.
"""
from __future__ import annotations

import ctypes
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from xvdeploy._lazy import install_command, installed, require
from xvdeploy.errors import MissingDependencyError, XVDeployError


@dataclass(frozen=True)
class Flavour:
    """One TensorRT distribution: how it is imported, named, installed and what it needs."""

    name: str  # the --runtime value
    module: str  # the import name
    label: str  # how it is called in messages
    majors: tuple[int, ...]  # supported major versions
    builds_without_gpu: bool

    @property
    def install(self) -> str:
        return install_command(self.module)

    @property
    def is_rtx(self) -> bool:
        return self is TENSORRT_RTX


TENSORRT = Flavour("tensorrt", "tensorrt", "TensorRT", (10, 11), builds_without_gpu=False)
TENSORRT_RTX = Flavour("tensorrt-rtx", "tensorrt_rtx", "TensorRT-RTX", (1,), builds_without_gpu=True)
#: --runtime name -> flavour; the order is the default's preference (TensorRT first).
FLAVOURS = {f.name: f for f in (TENSORRT, TENSORRT_RTX)}
NAMES = tuple(FLAVOURS)

#: the one line shown when neither flavour is installed
NONE_INSTALLED = (
    "no TensorRT builder is installed: install TensorRT (data-centre GPUs, builds on the target GPU) with: "
    f"{TENSORRT.install}, or TensorRT-RTX (RTX GPUs, builds on a CPU) with: {TENSORRT_RTX.install} "
    "(meanwhile the ONNX file written by 'xvdeploy export' runs in any ONNX runtime, e.g. onnxruntime)"
)


class TensorRTUnavailable(XVDeployError):
    """A TensorRT flavour (or the GPU it needs) is missing; ``reason`` is the one-line explanation."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- choosing and importing -------------------------------------------------------------------------------
def get(name: str) -> Flavour:
    """The flavour called ``name`` (``tensorrt`` or ``tensorrt-rtx``)."""
    flavour = FLAVOURS.get(name)
    if flavour is None:
        raise XVDeployError(f"unknown TensorRT runtime {name!r}; expected one of {', '.join(NAMES)}")
    return flavour


def default() -> Flavour:
    """The installed flavour, TensorRT first; :class:`TensorRTUnavailable` if neither is installed."""
    for flavour in FLAVOURS.values():
        if installed(flavour.module):
            return flavour
    raise TensorRTUnavailable(NONE_INSTALLED)


def resolve(name: str | None) -> Flavour:
    """``name``'s flavour, or the default one for ``None``."""
    return get(name) if name else default()


def version_major(version: str) -> int | None:
    """``"10.3.0.26"`` → ``10``; ``None`` if the string does not start with a number."""
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def load(flavour: Flavour) -> ModuleType:
    """Import ``flavour``'s module, checking its version and that it has a builder."""
    try:
        trt = require(flavour.module, flavour.label)
    except MissingDependencyError as exc:
        raise TensorRTUnavailable(str(exc)) from None
    version = getattr(trt, "__version__", "")
    if version_major(version) not in flavour.majors:
        majors = " or ".join(f"{m}.x" for m in flavour.majors)
        raise TensorRTUnavailable(f"{flavour.label} {version or '(unknown version)'} is installed; xvdeploy needs "
                                  f"{flavour.label} {majors}: {flavour.install}")
    if not hasattr(trt, "Builder"):  # e.g. a lean or dispatch runtime only
        raise TensorRTUnavailable(f"the installed {flavour.label} {version} has no builder (runtime-only package); "
                                  f"{flavour.install}")
    return trt


# -- GPUs -------------------------------------------------------------------------------------------------
def local_gpu(device: int | None = None) -> tuple[str, str] | None:
    """``(name, "M.m")`` of the current (or given) CUDA device, ``None`` without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    if device is None:
        device = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(device)
    return torch.cuda.get_device_name(device), f"{major}.{minor}"


def gpu_reason(flavour: Flavour, trt: ModuleType | None, build: bool) -> str | None:
    """Why ``flavour`` cannot build (``build``) or run engines on this machine's GPU, or ``None``."""
    if build and flavour.builds_without_gpu:
        return None
    gpu = local_gpu()
    if not flavour.is_rtx:
        if gpu is None:
            return ("no CUDA GPU is visible (torch.cuda.is_available() is False); TensorRT builds and runs engines "
                    "on an NVIDIA GPU (--runtime tensorrt-rtx builds without one)")
        return None
    supported = ", ".join(supported_compute_capabilities(trt)) if trt is not None else "7.5 and up"
    version = getattr(trt, "__version__", "")
    if gpu is None:
        return (f"no CUDA GPU is visible (torch.cuda.is_available() is False); TensorRT-RTX {version} runs engines on "
                f"RTX-class GPUs of compute capability {supported}")
    name, cc = gpu
    if trt is not None and cc not in supported_compute_capabilities(trt):
        return (f"this GPU, {name}, has compute capability {cc}; TensorRT-RTX {version} runs engines on compute "
                f"capability {supported} only (data-centre GPUs such as Hopper need TensorRT)")
    return None


# -- precision --------------------------------------------------------------------------------------------
def strongly_typed_only(flavour: Flavour, trt: ModuleType) -> bool:
    """Whether every network is strongly typed (TensorRT 11 and TensorRT-RTX have no ``BuilderFlag.FP16``):
    FP16 then comes from the ONNX graph."""
    if flavour.is_rtx:
        return True
    return (version_major(trt.__version__) or 0) >= 11 or not hasattr(trt.BuilderFlag, "FP16")


def network_flags(flavour: Flavour, trt: ModuleType, precision: str) -> int:
    """``create_network`` flags: a Q/DQ (int8) graph is built strongly typed (explicit quantization,
    NVIDIA's advice: "use explicit quantization with strong typing"; 11 and RTX are always strongly typed)."""
    if precision != "int8" or strongly_typed_only(flavour, trt):
        return 0
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


#: what TensorRT-RTX makes of --precision int8 (its support matrix: "INT8 WoQ GEMM", none for 7.5)
RTX_INT8_NOTE = ("TensorRT-RTX's INT8 is weight-only quantized GEMM (its support matrix lists 'INT8 WoQ GEMM' on "
                 "compute capability 8.6 and up, none on 7.5): it parses and builds this Q/DQ graph and stores the "
                 "weights as INT8, but INT8 convolutions and INT8 activations are not among its supported precisions, "
                 "so expect no INT8 compute speed-up; for INT8 convolutions build with --runtime tensorrt")


def precision_notes(flavour: Flavour, precision: str) -> list[str]:
    """Honest remarks on what ``precision`` means for ``flavour`` (shown by build, kept in the sidecar)."""
    if flavour.is_rtx and precision == "int8":
        return [RTX_INT8_NOTE]
    return []


# -- compute capabilities (TensorRT-RTX build targets) ----------------------------------------------------
def _cc_of(member_name: str) -> str | None:
    """``"SM86"`` → ``"8.6"``, ``"SM120"`` → ``"12.0"``; ``None`` for NONE/CURRENT."""
    if not member_name.startswith("SM") or not member_name[2:].isdigit():
        return None
    digits = member_name[2:]
    return f"{int(digits[:-1])}.{digits[-1]}"


def supported_compute_capabilities(trt: ModuleType) -> tuple[str, ...]:
    """The compute capabilities TensorRT-RTX can target (its ``ComputeCapability`` enum), ascending."""
    enum = getattr(trt, "ComputeCapability", None)
    if enum is None:
        return ()
    ccs = {_cc_of(name) for name in enum.__members__}
    ccs.discard(None)
    return tuple(sorted(ccs, key=lambda c: tuple(int(p) for p in c.split("."))))


def default_compute_capabilities(trt: ModuleType) -> tuple[str, ...]:
    """What a TensorRT-RTX engine built without targets runs on: every supported one but Turing (7.5)
    (NVIDIA: "by default ... compute capability 8.0, 8.6, 8.9, 12.0, and later")."""
    return tuple(cc for cc in supported_compute_capabilities(trt) if cc != "7.5")


def parse_compute_capability(text: str) -> str:
    """``"8.6"``/``"86"``/``"sm_86"`` → ``"8.6"`` (format only; the flavour decides what is supported)."""
    raw = text.strip().lower().removeprefix("sm_").removeprefix("sm")
    if "." in raw:
        major, _, minor = raw.partition(".")
    else:
        major, minor = raw[:-1], raw[-1:]
    if not (major.isdigit() and minor.isdigit() and len(minor) == 1):
        raise XVDeployError(f"--compute-capability {text!r} is not a compute capability; expected e.g. 8.6 or 12.0")
    return f"{int(major)}.{minor}"


def check_compute_capabilities(flavour: Flavour, trt: ModuleType, ccs: Sequence[str]) -> tuple[str, ...]:
    """The build targets: ``ccs`` checked against what ``flavour`` supports, or its default for none."""
    if not flavour.is_rtx:
        if ccs:
            raise XVDeployError("--compute-capability is for TensorRT-RTX (--runtime tensorrt-rtx); TensorRT builds "
                                "for the GPU it runs on")
        return ()
    supported = supported_compute_capabilities(trt)
    bad = [cc for cc in ccs if cc not in supported]
    if bad:
        raise XVDeployError(f"--compute-capability {', '.join(bad)}: TensorRT-RTX {trt.__version__} targets compute "
                            f"capability {', '.join(supported)}; expected some of them")
    return tuple(dict.fromkeys(ccs)) or default_compute_capabilities(trt)


def apply_compute_capabilities(trt: ModuleType, config: Any, ccs: Sequence[str], explicit: bool) -> None:
    """Set TensorRT-RTX's target compute capabilities on ``config`` (nothing for its default)."""
    if not explicit:
        return
    config.num_compute_capabilities = len(ccs)
    for i, cc in enumerate(ccs):
        member = getattr(trt.ComputeCapability, "SM" + cc.replace(".", ""))
        if not config.set_compute_capability(member, i):
            raise XVDeployError(f"TensorRT-RTX refused target compute capability {cc}")


# -- what else differs ------------------------------------------------------------------------------------
def timing_cache_note(flavour: Flavour) -> str | None:
    """TensorRT-RTX keeps the timing-cache API but ignores it (its bindings warn "Timing cache operations are
    no-ops in TensorRT-RTX", deprecated since 1.2)."""
    if flavour.is_rtx:
        return ("note: TensorRT-RTX ignores timing caches (its bindings: 'Timing cache operations are no-ops in "
                "TensorRT-RTX', since 1.2; it compiles kernels on the target GPU, see its runtime cache)")
    return None


def plugin_import_problem(flavour: Flavour, trt: ModuleType) -> str | None:
    """Why TensorRT-RTX's ONNX parser would abort on a plugin node, or ``None``.

    Found by trying (TensorRT-RTX 1.7.1.116, Linux): importing a plugin node, the
    parser dlopens ``libtensorrt_rtx.so``; the wheel ships only
    ``libtensorrt_rtx.so.1``, the load throws inside a ``noexcept`` function and
    the process ends in ``std::terminate``. With a ``libtensorrt_rtx.so`` link on
    the library path the Python ``IPluginV3`` registers, parses and builds.
    """
    if not flavour.is_rtx or not sys.platform.startswith("linux"):
        return None
    try:
        libs = Path(importlib.import_module("tensorrt_rtx_libs").__file__).parent
    except (ImportError, TypeError):
        return None  # not the PyPI wheels: a system install has its own links
    if (libs / "libtensorrt_rtx.so").exists():
        return None
    try:
        ctypes.CDLL("libtensorrt_rtx.so")  # LD_LIBRARY_PATH, the loader cache and default folders, as dlopen searches
        return None
    except OSError:
        pass
    real = sorted(libs.glob("libtensorrt_rtx.so.*"))
    target = real[0] if real else libs / "libtensorrt_rtx.so.1"
    return (f"TensorRT-RTX {trt.__version__}'s ONNX parser loads 'libtensorrt_rtx.so' to import a plugin node and the "
            f"tensorrt-rtx wheel ships only {target.name} (the parser would abort the process); link it and put the "
            f"link on the library path, then rerun: mkdir -p ~/.local/lib/xvdeploy && ln -sf {target} "
            "~/.local/lib/xvdeploy/libtensorrt_rtx.so && export LD_LIBRARY_PATH=~/.local/lib/xvdeploy:$LD_LIBRARY_PATH")


def engine_validity_problem(trt: ModuleType, runtime: Any, blob: bytes) -> str | None:
    """TensorRT-RTX's own verdict on a plan for this GPU (``Runtime.get_engine_validity``), or ``None`` if valid."""
    check = getattr(runtime, "get_engine_validity", None)
    if check is None:
        return None
    try:
        validity, diagnostics = check(blob)
    except Exception:  # noqa: BLE001 - an unreadable header is reported by deserialization itself
        return None
    if validity != trt.EngineValidity.INVALID:
        return None
    reasons = [name.lower().replace("_", " ") for name, member in trt.EngineInvalidityDiagnostics.__members__.items()
               if int(diagnostics) & int(member)]
    return "TensorRT-RTX says the engine is invalid here" + (f" ({', '.join(reasons)})" if reasons else "")
