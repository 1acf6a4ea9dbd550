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

TensorRT-RTX 1.7 has no ``tensorrt_rtx.plugin``: :func:`register_v3_plugin`
registers the same two plugins there as Python ``IPluginV3`` classes (JIT only;
see the section at the end).

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
from xvdeploy.pssa_contract import MODES, OP_TYPES, PLUGIN_NAMESPACE, PLUGIN_VERSION, flat_shifts, plugin_id

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


# --------------------------------------------------------------------------- Python IPluginV3 (TensorRT-RTX)
#
# TensorRT-RTX 1.7 has no tensorrt_rtx.plugin (its shim imports tensorrt_rtx_bindings.plugin, which the wheel
# lacks), but its bindings keep TensorRT's Python plugin interfaces. One class per mode implements IPluginV3
# with IPluginV3OneCore/OneBuild/OneRuntime (NVIDIA's samples/python/python_plugin, multi-tactic sample) and an
# IPluginCreatorV3One creator; the parser imports the ONNX node with it (the network API of the RTX bindings has
# no add_plugin_v3). The kernel is the Triton one, launched from enqueue on TensorRT's stream (a JIT plugin: the
# engine needs this Python process at run time). Written against the shared API, so it registers with either
# flavour's module; TensorRT 10/11 keep the tensorrt.plugin version above (it has an AOT implementation).

_TYPESTR = {"FLOAT": "<f4", "HALF": "<f2", "BF16": "<i2"}  # BF16 through an int16 view


def _cuda_tensor(ptr: int, dims, dtype) -> Any:
    """A zero-copy, contiguous torch CUDA tensor over TensorRT's buffer ``ptr`` of ``dims`` and ``dtype``."""
    kind = str(dtype).rsplit(".", 1)[-1]
    if kind not in _TYPESTR:
        raise XVDeployError(f"the PSSA TensorRT plugin supports FP32, FP16 and BF16, got {dtype}")

    class _Interface:
        __cuda_array_interface__ = {"shape": tuple(int(d) for d in dims), "typestr": _TYPESTR[kind],
                                    "data": (int(ptr), False), "strides": None, "version": 3}

    t = torch.as_tensor(_Interface(), device="cuda")
    return t.view(torch.bfloat16) if kind == "BF16" else t


def _v3_classes(trt: Any) -> tuple[type, type]:
    """``(Plugin, Creator)`` classes over ``trt``'s plugin interfaces (``tensorrt`` or ``tensorrt_rtx``)."""
    bases = (trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime)
    floats = {trt.DataType.FLOAT, trt.DataType.HALF} | ({trt.DataType.BF16} if hasattr(trt.DataType, "BF16") else set())

    class PSSAPluginV3(*bases):
        """``xvdeploy::PSSA`` / ``xvdeploy::PSSAConcat``: one input N×C×H×W, one output (C or C·|S| channels)."""

        def __init__(self, mode: str = "sum", shifts=(), channel_major: bool = False, phase=None) -> None:
            for base in bases:
                base.__init__(self)
            self.mode = mode
            self.shifts = np.asarray(shifts, dtype=np.int32).reshape(-1)
            self.channel_major = bool(channel_major)
            self.phase = phase
            self.num_outputs = 1
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.plugin_name = OP_TYPES[mode]
            self.plugin_version = PLUGIN_VERSION

        # IPluginV3 / OneCore
        def get_capability_interface(self, capability_type):
            return self

        def clone(self):
            twin = PSSAPluginV3(self.mode, self.shifts, self.channel_major, self.phase)
            return twin

        # OneBuild
        def get_output_data_types(self, input_types):
            return [input_types[0]]

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            out = trt.DimsExprs(inputs[0])
            if self.mode == "concat":
                s = expr_builder.constant(int(self.shifts.size) // 2)
                out[1] = expr_builder.operation(trt.DimensionOperation.PROD, inputs[0][1], s)
            return [out]

        def supports_format_combination(self, pos, in_out, num_inputs):
            desc = in_out[pos].desc
            if desc.format != trt.TensorFormat.LINEAR or desc.type not in floats:
                return False
            return pos == 0 or desc.type == in_out[0].desc.type

        def configure_plugin(self, inputs, outputs):
            pass

        def get_workspace_size(self, inputs, outputs):
            return 0

        def get_valid_tactics(self):
            return []  # one implementation; the block size follows H·W (pssa_triton.pick_block)

        # OneRuntime
        def set_tactic(self, tactic):
            pass

        def on_shape_change(self, inputs, outputs):
            pass

        def attach_to_context(self, context):
            return self.clone()

        def get_fields_to_serialize(self):
            fields = [trt.PluginField("shifts", self.shifts, trt.PluginFieldType.INT32)]
            if self.mode == "concat":
                fields.append(trt.PluginField("channel_major", np.array([int(self.channel_major)], np.int32),
                                              trt.PluginFieldType.INT32))
            return trt.PluginFieldCollection(fields)

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
                x = _cuda_tensor(inputs[0], input_desc[0].dims, input_desc[0].type)
                y = _cuda_tensor(outputs[0], output_desc[0].dims, output_desc[0].type)
                pssa_triton(x, [int(v) for v in self.shifts], self.mode, channel_major=self.channel_major, out=y)

    class PSSACreatorV3(trt.IPluginCreatorV3One):
        """Makes :class:`PSSAPluginV3` from the ONNX node's ``shifts`` (and ``channel_major``) attributes."""

        def __init__(self, mode: str) -> None:
            trt.IPluginCreatorV3One.__init__(self)
            self.mode = mode
            self.name = OP_TYPES[mode]
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.plugin_version = PLUGIN_VERSION
            names = ["shifts"] + (["channel_major"] if mode == "concat" else [])
            self.field_names = trt.PluginFieldCollection(
                [trt.PluginField(n, np.array([], np.int32), trt.PluginFieldType.INT32) for n in names])

        def create_plugin(self, name, field_collection, phase):
            values = {f.name: np.asarray(f.data).reshape(-1) for f in field_collection}
            channel_major = values.get("channel_major", np.zeros(1, np.int32))
            return PSSAPluginV3(self.mode, values.get("shifts", ()), bool(channel_major.size and channel_major[0]),
                                phase)

    return PSSAPluginV3, PSSACreatorV3


def register_v3_plugin(trt: Any) -> dict[str, list[str]]:
    """Register ``xvdeploy::PSSA`` and ``xvdeploy::PSSAConcat`` as Python ``IPluginV3`` plugins with ``trt``
    (once per process and module). Returns ``{plugin_id: ["IPluginV3"]}``."""
    key = f"v3:{trt.__name__}"
    if key in _state:
        return _state[key]["registered"]
    _, creator_cls = _v3_classes(trt)
    registry = trt.get_plugin_registry()
    creators, out = [], {}
    for mode in MODES:
        creator = creator_cls(mode)
        if not registry.register_creator(creator, PLUGIN_NAMESPACE):
            raise XVDeployError(f"{trt.__name__} already has a plugin {plugin_id(mode)} "
                                "registered; register the PSSA plugin once per process")
        creators.append(creator)  # the registry holds a pointer: keep the Python object alive
        out[plugin_id(mode)] = ["IPluginV3"]
    _state[key] = {"registered": out, "creators": creators}
    return out
