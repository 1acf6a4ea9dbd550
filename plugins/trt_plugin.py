"""The PSSA step as a TensorRT plugin (``tensorrt.plugin``, "quickly deployable plugins"); see docs/design.md (PSSA).

:func:`register_trt_plugin` registers two plugins, ``xvdeploy::PSSA`` ("sum",
``T = X ⊙ Σ_s roll_s X``) and ``xvdeploy::PSSAConcat`` ("concat",
``concat_s X ⊙ roll_s X``), with the attribute ``shifts`` (int32 array, flat
``[dy0, dx0, …]``) and, for ``PSSAConcat``, ``channel_major`` (a one-element
int32 array: output channel ``c·|S| + s`` if 1, ``s·C + c`` if 0); names from
:mod:`xvdeploy.pssa_contract`. TensorRT's ONNX parser maps the
custom nodes of :mod:`xvdeploy.plugins.onnx_node` to them (``op_type`` =
plugin name, ``plugin_namespace`` attribute = ``"xvdeploy"``; it passes only
the declared attributes, INTS and INT both as int32 arrays). Call it before
parsing (``xvdeploy build --pssa-plugin``).

* ``register``: output descriptor (same shape, or ``C·|S|`` channels);
* ``autotune``: FP32 / FP16 / BF16 in = out, LINEAR, two tactics (block of
  256 or 1024 pixels per program);
* ``impl`` (JIT): launches the Triton kernel on TensorRT's stream through
  ``torch.cuda.ExternalStream`` + ``torch.as_tensor`` (NVIDIA's samples);
* ``aot_impl`` (TensorRT ≥ 10.9): the Triton-compiled PTX with its launch
  parameters, so the engine runs without Python (e.g. in ``trtexec``).

With both implementations registered TensorRT needs a preference: either the
network flag (:func:`network_creation_flags`) or the node attribute ``aot``
(:func:`xvdeploy.plugins.onnx_node.mark_aot`).

AOT kernel ABI: TensorRT launches ``kernel(inputs…, extra int32 args…,
outputs…)``; the kernel's arguments are ``(x, C, H, W, NBLK, out)``. Triton
(≥ 3.3) appends hidden ``global_scratch`` / ``profile_scratch`` pointer
parameters that TensorRT does not pass; this kernel needs no scratch, so
:func:`compile_aot` removes them from the PTX entry (after checking they are
unused).

tensorrt and triton are imported inside the functions (through
:func:`xvdeploy._lazy.require`); this module imports with torch and numpy only.
"""
from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt
import torch

from xvdeploy._lazy import available, require
from xvdeploy.errors import XVDeployError
from xvdeploy.plugins.pssa_triton import kernel_mode, num_warps_for, pick_block, pssa_triton
from xvdeploy.pssa_contract import MODES, flat_shifts, plugin_id

#: autotune tactic -> pixels per program.
TACTIC_BLOCKS = {1: 256, 2: 1024}
_DEFAULT_TACTIC = 2
#: number of user parameters of the kernel entry: x, C, H, W, NBLK, out.
_KERNEL_PARAMS = 6
_TRT_TO_TRITON = {"FLOAT": "fp32", "HALF": "fp16", "BF16": "bf16"}

_state: dict[str, Any] = {}


# --------------------------------------------------------------------------- AOT compile (triton only)


@dataclass(frozen=True)
class AOTKernel:
    """A Triton-compiled PSSA kernel for TensorRT: entry name, PTX and launch facts."""

    name: str
    ptx: str
    num_warps: int
    shared: int
    block: int


def _strip_hidden_params(ptx: str, name: str, keep: int) -> str:
    """Drop the entry parameters after the first ``keep`` (Triton's unused scratch pointers)."""
    m = re.search(r"\.entry\s+" + re.escape(name) + r"\s*\((.*?)\)", ptx, flags=re.S)
    if m is None:
        raise XVDeployError(f"cannot find the entry of kernel {name!r} in the Triton PTX")
    params = [p.strip() for p in m.group(1).split(",") if p.strip()]
    if len(params) <= keep:
        return ptx
    for p in params[keep:]:
        pname = p.split()[-1]
        if len(re.findall(r"\b" + re.escape(pname) + r"\b", ptx)) != 1:
            raise XVDeployError(
                f"the Triton PSSA kernel uses its hidden parameter {pname}; it cannot run as a TensorRT AOT plugin"
            )
    body = ",\n\t".join(params[:keep])
    return ptx[:m.start(1)] + "\n\t" + body + "\n" + ptx[m.end(1):]


def driver_ptx_version() -> int | None:
    """The newest PTX ISA the installed CUDA driver can JIT (e.g. 84 for a 12.4 driver), or ``None``."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
            return None
    except (OSError, AttributeError):
        return None
    nvidia = require("triton.backends.nvidia.compiler", "The TensorRT AOT PSSA plugin")
    return nvidia.ptx_get_version(f"{version.value // 1000}.{version.value % 1000 // 10}")


def compile_aot(
    dtype: str,
    shifts: Sequence[int],
    concat: bool = False,
    block: int = 1024,
    capability: int | None = None,
    ptx_version: int | None = None,
    channel_major: bool = False,
) -> AOTKernel:
    """Compile the PSSA kernel ahead of time to PTX (no GPU needed if ``capability`` is given).

    ``dtype`` is ``"fp32"``, ``"fp16"`` or ``"bf16"``; ``shifts`` the flat list;
    ``concat`` / ``channel_major`` the mode (see :func:`~xvdeploy.plugins.pssa_triton.pssa_triton`);
    ``capability`` the SM version as an int (``90`` for H100), default: the current CUDA device.
    ``ptx_version`` (e.g. ``84`` for ISA 8.4) defaults to the newest one both Triton and the
    installed driver support: TensorRT hands the PTX to the driver's JIT, which rejects newer ISAs.
    """
    triton = require("triton", "The TensorRT AOT PSSA plugin")
    GPUTarget = require("triton.backends.compiler").GPUTarget
    JITFunction = require("triton.runtime.jit").JITFunction
    nvidia = require("triton.backends.nvidia.compiler")
    from xvdeploy.plugins import _pssa_kernel  # imports triton: lazy

    if dtype not in ("fp32", "fp16", "bf16"):
        raise XVDeployError(f"the PSSA TensorRT plugin supports fp32, fp16 and bf16, got {dtype!r}")
    flat = flat_shifts(shifts)
    block = pick_block(block, block)
    if capability is None:
        if not torch.cuda.is_available():
            raise XVDeployError("compiling the PSSA kernel for TensorRT needs a CUDA device or an explicit capability")
        major, minor = torch.cuda.get_device_capability()
        capability = major * 10 + minor
    fn = _pssa_kernel.pssa_kernel
    if not isinstance(fn, JITFunction):
        raise XVDeployError(
            "cannot compile the PSSA kernel ahead of time with TRITON_INTERPRET=1 set; unset it (or run in a subprocess)"
        )
    signature = {
        "x_ptr": f"*{dtype}", "C": "i32", "H": "i32", "W": "i32", "NBLK": "i32", "out_ptr": f"*{dtype}",
        "SHIFTS": "constexpr", "NUM_SHIFTS": "constexpr", "MODE": "constexpr", "BLOCK": "constexpr",
    }
    mode = kernel_mode("concat" if concat else "sum", channel_major)
    constexprs = {"SHIFTS": flat, "NUM_SHIFTS": len(flat) // 2, "MODE": mode, "BLOCK": block}
    options: dict[str, Any] = {"num_warps": num_warps_for(block)}
    if ptx_version is None:
        driver = driver_ptx_version()
        ptx_version = nvidia.ptx_get_version(nvidia.get_ptxas(int(capability)).version)
        if driver is not None:
            ptx_version = min(ptx_version, driver)
    options["ptx_version"] = int(ptx_version)
    src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs)
    compiled = triton.compile(src, target=GPUTarget("cuda", int(capability), 32), options=options)
    meta = compiled.metadata
    for field in ("global_scratch_size", "profile_scratch_size"):
        if getattr(meta, field, 0):
            raise XVDeployError(f"the Triton PSSA kernel needs {field}={getattr(meta, field)}; not supported by TensorRT AOT")
    ptx = _strip_hidden_params(compiled.asm["ptx"], meta.name, _KERNEL_PARAMS)
    return AOTKernel(meta.name, ptx, int(meta.num_warps), int(meta.shared), block)


# --------------------------------------------------------------------------- TensorRT registration


def _torch_view(t: Any):
    """A zero-copy torch CUDA tensor over a ``tensorrt.plugin.Tensor`` (BF16 through an int16 view)."""
    if str(t.dtype).endswith("BF16"):
        class _Interface:
            __cuda_array_interface__ = {
                "shape": tuple(int(d) for d in t.shape),
                "typestr": "<i2",
                "data": (int(t.data_ptr), False),
                "strides": tuple(int(s) * 2 for s in t.strides),
                "version": 3,
            }

        return torch.as_tensor(_Interface(), device="cuda").view(torch.bfloat16)
    return torch.as_tensor(t, device="cuda")


def _make_defs(trtp: Any, mode: str) -> dict[str, Any]:
    """The decorated functions of one plugin (annotations set explicitly: TensorRT inspects real types)."""
    concat = mode == "concat"
    pid = plugin_id(mode)
    shifts_type = npt.NDArray[np.int32]

    def out_desc(inp0, shifts):
        if concat:
            e = inp0.shape_expr
            s = int(np.size(shifts)) // 2
            return trtp.from_shape_expr((e[0], e[1] * s, e[2], e[3]), dtype=inp0.dtype)
        return inp0.like()

    def autotune(inp0, outputs):
        return [trtp.AutoTuneCombination("FP32|FP16|BF16, FP32|FP16|BF16", "LINEAR", list(TACTIC_BLOCKS))]

    def launch_jit(inp0, shifts, channel_major, outputs, stream, tactic):
        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            x = _torch_view(inp0)
            y = _torch_view(outputs[0])
            hw = int(x.shape[2]) * int(x.shape[3])
            block = min(TACTIC_BLOCKS.get(int(tactic), TACTIC_BLOCKS[_DEFAULT_TACTIC]), pick_block(hw))
            pssa_triton(x, [int(v) for v in shifts], mode, channel_major=_flag(channel_major), block=block, out=y)

    def launch_aot(inp0, shifts, channel_major, tactic):
        dtype = _TRT_TO_TRITON.get(str(inp0.dtype).split(".")[-1])
        if dtype is None:
            raise XVDeployError(f"the PSSA TensorRT plugin supports FP32, FP16 and BF16, got {inp0.dtype}")
        block = TACTIC_BLOCKS.get(int(tactic), TACTIC_BLOCKS[_DEFAULT_TACTIC])
        k = _aot_cached(dtype, tuple(int(v) for v in shifts), concat, block, _flag(channel_major))
        e = inp0.shape_expr
        nblk = trtp.cdiv(e[2] * e[3], block)
        launch = trtp.KernelLaunchParams()
        launch.grid_x = e[0] * e[1] * nblk
        launch.block_x = k.num_warps * 32
        launch.shared_mem = k.shared
        extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(v) for v in (e[1], e[2], e[3], nblk)])
        return k.name.encode(), k.ptx.encode(), launch, extra

    # tensorrt.plugin matches argument names and checks annotations with issubclass, so the
    # signatures are spelled out per mode and the annotations are real objects (not strings).
    if concat:
        def desc(inp0, shifts, channel_major):
            return out_desc(inp0, shifts)

        def impl(inp0, shifts, channel_major, outputs, stream, tactic):
            launch_jit(inp0, shifts, channel_major, outputs, stream, tactic)

        def aot_impl(inp0, shifts, channel_major, outputs, tactic):
            return launch_aot(inp0, shifts, channel_major, tactic)

        # an ONNX INT attribute reaches the plugin as a one-element int32 field; tensorrt.plugin builds
        # the value with annotation(field) and int(1-element array) raises on NumPy 2: take an array
        attrs = {"shifts": shifts_type, "channel_major": shifts_type}
    else:
        def desc(inp0, shifts):
            return out_desc(inp0, shifts)

        def impl(inp0, shifts, outputs, stream, tactic):
            launch_jit(inp0, shifts, False, outputs, stream, tactic)

        def aot_impl(inp0, shifts, outputs, tactic):
            return launch_aot(inp0, shifts, False, tactic)

        attrs = {"shifts": shifts_type}

    desc.__annotations__ = {"inp0": trtp.TensorDesc, **attrs, "return": trtp.TensorDesc}
    autotune.__annotations__ = {"inp0": trtp.TensorDesc, "outputs": Tuple[trtp.TensorDesc],
                                "return": List[trtp.AutoTuneCombination]}
    impl.__annotations__ = {"inp0": trtp.Tensor, **attrs, "outputs": Tuple[trtp.Tensor],
                            "stream": int, "tactic": int, "return": None}
    defs = {"register": (trtp.register, desc), "autotune": (trtp.autotune, autotune), "impl": (trtp.impl, impl)}
    if hasattr(trtp, "aot_impl"):
        aot_impl.__annotations__ = {
            "inp0": trtp.TensorDesc, **attrs, "outputs": Tuple[trtp.TensorDesc], "tactic": int,
            "return": Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs],
        }
        defs["aot_impl"] = (trtp.aot_impl, aot_impl)
    return {k: dec(pid)(fn) for k, (dec, fn) in defs.items()}


def _flag(value) -> bool:
    """A flag given as a Python bool/int or as TensorRT's one-element attribute array."""
    return bool(np.asarray(value).reshape(-1)[0]) if np.ndim(value) else bool(value)


def _aot_cached(dtype: str, shifts: tuple[int, ...], concat: bool, block: int, channel_major: bool) -> AOTKernel:
    cache = _state.setdefault("aot", {})
    key = (dtype, shifts, concat, block, channel_major)
    if key not in cache:
        cache[key] = compile_aot(dtype, shifts, concat, block, channel_major=channel_major)
    return cache[key]


def register_trt_plugin() -> dict[str, list[str]]:
    """Register ``xvdeploy::PSSA`` and ``xvdeploy::PSSAConcat`` with TensorRT (once per process).

    Returns ``{plugin_id: [registered parts]}`` (``aot_impl`` only on TensorRT ≥ 10.9).
    Raises :class:`XVDeployError` (naming the extra) when tensorrt is missing.
    """
    if "registered" in _state:
        return _state["registered"]
    require("tensorrt", "The TensorRT PSSA plugin")
    trtp = require("tensorrt.plugin", "The TensorRT PSSA plugin (tensorrt.plugin needs TensorRT >= 10.6)")
    out: dict[str, list[str]] = {}
    for mode in MODES:
        out[plugin_id(mode)] = list(_make_defs(trtp, mode))
    _state["registered"] = out
    return out


def has_aot() -> bool:
    """Whether the installed TensorRT offers ``tensorrt.plugin.aot_impl`` (TensorRT ≥ 10.9)."""
    return available("tensorrt.plugin") and hasattr(require("tensorrt.plugin"), "aot_impl")


def network_creation_flags(prefer_aot: bool = True) -> int:
    """Flags for ``builder.create_network``: prefer the AOT (or JIT) plugin implementation.

    Needed when both implementations are registered and the ONNX nodes carry no
    ``aot`` attribute; 0 where TensorRT has no such flags (before 10.9).
    """
    trt = require("tensorrt", "The TensorRT PSSA plugin")
    name = "PREFER_AOT_PYTHON_PLUGINS" if prefer_aot else "PREFER_JIT_PYTHON_PLUGINS"
    flag = getattr(trt.NetworkDefinitionCreationFlag, name, None)
    return 0 if flag is None else 1 << int(flag)
