"""The ``tensorrt`` and ``tensorrt-rtx`` bench backends: a :class:`~xvdeploy.bench.backends.base.Runner`
over a TensorRT or TensorRT-RTX engine (one runner, the flavour from :mod:`xvdeploy.trt.flavour`).

Engine I/O are torch CUDA tensors: ``context.set_tensor_address(name,
tensor.data_ptr())`` (TensorRT 10's name-based I/O; no binding indices), run by
``context.execute_async_v3(stream.cuda_stream)`` on a non-default
``torch.cuda.Stream``. Tensors are allocated while that stream is current, and
the runner keeps its input tensor referenced until the stream is synchronised.
Dynamic shapes go through ``set_input_shape``; outputs are allocated from
``context.get_tensor_shape``. With ``cuda_graph=True`` the prepared
``execute_async_v3`` is captured once into a ``torch.cuda.CUDAGraph`` (after
one plain run, as TensorRT's guide asks) and replayed while timing. Timing
uses CUDA events recorded on the runner's stream. TensorRT-RTX compiles its
kernels for the GPU when the execution context is made; the runner keeps them
in a runtime cache file (``IRuntimeConfig.set_runtime_cache``) in the engine
cache folder, so the next run on the same GPU and version starts faster.
Where the flavour or its GPU is missing (TensorRT-RTX: no RTX-class GPU, e.g.
no GPU at all or a Hopper), ``activate`` raises
:class:`~xvdeploy.bench.backends.base.BackendUnavailable` with the reason (the
compute capability seen and the ones supported): a skipped row.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from xvdeploy.bench.backends.base import BackendUnavailable, Runner, RunnerSpec
from xvdeploy.errors import XVDeployError
from xvdeploy.fileio import write_bytes_atomic
from xvdeploy.trt import availability, require_flavour
from xvdeploy.trt.builder import BuildSettings, read_onnx_inputs
from xvdeploy.trt.cache import get_or_build, runtime_cache_path
from xvdeploy.trt.flavour import NAMES, Flavour
from xvdeploy.trt.runtime import current_platform, last_errors, load_engine
from xvdeploy.trt.shapes import format_shape, static_profile
from xvdeploy.trt.sidecar import check_flavour, read_sidecar

_TORCH_DTYPES = {  # TensorRT DataType name → torch dtype name
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}


def torch_dtype(trt: Any, dtype: Any):
    """The torch dtype of a ``trt.DataType`` (compared by enum name, never by number)."""
    import torch

    for trt_name, torch_name in _TORCH_DTYPES.items():
        member = getattr(trt.DataType, trt_name, None)
        if member is not None and dtype == member:
            return getattr(torch, torch_name)
    raise XVDeployError(f"engine tensor type {dtype} has no torch equivalent; "
                        "expected float, half, bf16 or an integer type")


class TensorRTRunner(Runner):
    """Runs a TensorRT or TensorRT-RTX plan, or builds one (cached, see :mod:`xvdeploy.trt.cache`) from ``onnx``.

    The flavour is ``spec.backend`` (``"tensorrt"`` or ``"tensorrt-rtx"``); a
    plan of the other flavour is refused with one line. ``spec.precision``
    chooses the build precision; ``input_shape`` sets a static optimization
    profile when the ONNX input is dynamic.
    """

    def __init__(self, spec: RunnerSpec | None = None, plan: str | os.PathLike | None = None, *,
                 onnx: str | os.PathLike | None = None, input_shape: tuple[int, ...] | None = None,
                 cuda_graph: bool = False, cache_dir: str | os.PathLike | None = None,
                 workspace_mib: int | None = None, opt_level: int | None = None, pssa_plugin: bool = False,
                 progress=None) -> None:
        if plan is None and onnx is None:
            raise XVDeployError("TensorRTRunner needs an engine plan or an ONNX model to build one from")
        spec = spec or RunnerSpec(backend="tensorrt", form="engine", precision="fp32", device="cuda")
        if spec.backend not in NAMES:
            raise XVDeployError(f"TensorRTRunner runs the backends {', '.join(NAMES)}, got {spec.backend!r}")
        spec.options.setdefault("cuda_graph", cuda_graph)
        super().__init__(spec)
        self.plan = Path(plan) if plan is not None else None
        self.onnx = Path(onnx) if onnx is not None else None
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.cuda_graph = cuda_graph
        self.cache_dir = cache_dir
        self.workspace_mib = workspace_mib
        self.opt_level = opt_level
        self.pssa_plugin = pssa_plugin
        self.progress = progress
        self._reset_state()

    def _reset_state(self) -> None:
        self.loaded = None
        self.context = None
        self.stream = None
        self._graph = None
        self._input = None
        self._outputs: dict[str, Any] = {}
        self._events = None
        self._profile = 0  # a new context starts on profile 0
        self._runtime_cache = None  # TensorRT-RTX: (IRuntimeCache, file, IRuntimeConfig)

    # -- lifecycle --------------------------------------------------------------------------------------
    def _resolve_plan(self, flavour: Flavour, trt: Any) -> Path:
        if self.plan is not None:
            return self.plan
        inputs = read_onnx_inputs(self.onnx)
        profiles = ()
        if self.input_shape is not None and len(inputs) == 1:
            (name, declared), = inputs.items()
            if any(d < 0 for d in declared):
                profiles = (static_profile({name: self.input_shape}),)
        here = current_platform(flavour, trt)
        targets = (here.compute_capability,) if flavour.is_rtx else ()  # this GPU only: a smaller, faster build
        settings = BuildSettings(self.spec.precision, profiles, self.workspace_mib, self.opt_level, self.pssa_plugin,
                                 flavour.name, targets)
        return get_or_build(self.onnx, settings, here, self.cache_dir, self.progress)

    def activate_impl(self) -> None:
        if self.plan is not None and self.plan.is_file():
            record = read_sidecar(self.plan)
            if record is not None:  # an engine of the other flavour is bad input, not a skipped row
                check_flavour(record, self.spec.backend, self.plan)
        reason = availability(self.spec.backend)
        if reason is not None:
            raise BackendUnavailable(self.spec.backend, reason)
        import torch

        flavour, trt = require_flavour(self.spec.backend)
        self.device = torch.device(self.spec.device if str(self.spec.device).startswith("cuda") else "cuda")
        with torch.cuda.device(self.device):
            self.loaded = load_engine(self._resolve_plan(flavour, trt), flavour=flavour.name)
            for message in self.loaded.warnings:
                warnings.warn(message, stacklevel=2)
            engine = self.loaded.engine
            self.context = self._create_context(flavour, trt, engine)
            if self.context is None:
                raise XVDeployError(f"{flavour.label} could not create an execution context: "
                                    f"{last_errors(self.loaded.logger) or 'no reason logged'}")
            self.stream = torch.cuda.Stream(device=self.device)
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not self.output_names:
            raise XVDeployError(f"{self.name}: expected an engine with one input and at least one output, "
                                f"got inputs {inputs} and outputs {self.output_names}")
        self.input_name = inputs[0]
        if engine.is_shape_inference_io(self.input_name):
            raise XVDeployError(f"{self.name}: input {self.input_name!r} is a shape tensor; expected an image tensor")
        self.input_dtype = torch_dtype(trt, engine.get_tensor_dtype(self.input_name))
        self.output_dtypes = {n: torch_dtype(trt, engine.get_tensor_dtype(n)) for n in self.output_names}

    def _create_context(self, flavour: Flavour, trt: Any, engine: Any):
        """An execution context; TensorRT-RTX's with a runtime cache (its JIT-compiled kernels) from the cache folder."""
        if not flavour.is_rtx or not hasattr(engine, "create_runtime_config"):
            return engine.create_execution_context()
        config = engine.create_runtime_config()
        cache = config.create_runtime_cache()
        path = runtime_cache_path(current_platform(flavour, trt), self.cache_dir)
        if path.is_file() and not cache.deserialize(path.read_bytes()):
            warnings.warn(f"{self.name}: runtime cache {path} does not fit this GPU/driver/version; starting anew",
                          stacklevel=3)
        config.set_runtime_cache(cache)
        self._runtime_cache = (cache, path, config)  # the config lives as long as the context
        return engine.create_execution_context(config)

    def _save_runtime_cache(self) -> None:
        if self._runtime_cache is None:
            return
        cache, path, _ = self._runtime_cache
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, bytes(cache.serialize()))
        except (OSError, RuntimeError, AttributeError) as exc:
            warnings.warn(f"{self.name}: could not save the runtime cache to {path}: {exc}", stacklevel=3)

    def deactivate_impl(self) -> None:
        try:
            if self.stream is not None:
                self.stream.synchronize()
            self._save_runtime_cache()
        finally:
            # drop references in dependency order: graph and buffers, context, then engine/runtime
            self._graph = None
            self._outputs = {}
            self._input = None
            self.context = None
            self.loaded = None
            self._reset_state()

    # -- binding ----------------------------------------------------------------------------------------
    def _select_profile(self, shape: tuple[int, ...]) -> None:
        engine, name = self.loaded.engine, self.input_name
        ranges = [engine.get_tensor_profile_shape(name, p) for p in range(engine.num_optimization_profiles)]
        fits = [p for p, (lo, _, hi) in enumerate(ranges)
                if len(lo) == len(shape) and all(a <= d <= b for a, d, b in zip(lo, shape, hi))]
        if not fits:
            allowed = "; ".join(f"{format_shape(lo)} to {format_shape(hi)}" for lo, _, hi in ranges)
            raise XVDeployError(f"{self.name}: input shape {format_shape(shape)} is outside the engine's "
                                f"optimization profile(s) ({allowed}); "
                                "rebuild with --min-shape/--max-shape covering it")
        if self._profile not in fits:
            try:
                ok = self.context.set_optimization_profile_async(fits[0], self.stream.cuda_stream)
            except RuntimeError:  # the bindings raise instead of returning False
                ok = False
            if not ok:
                raise XVDeployError(f"{self.name}: TensorRT could not switch to optimization profile {fits[0]}")
            self._profile = fits[0]

    def _upload(self, x: np.ndarray):
        import torch

        with torch.cuda.stream(self.stream):
            # TensorRT reads a dense row-major buffer from data_ptr(): no strided views
            return torch.from_numpy(np.ascontiguousarray(x)).to(self.device, non_blocking=True).to(
                self.input_dtype).contiguous()

    def _bind(self, x_dev) -> None:
        """Set the input shape and address, (re)allocate outputs from the context's shapes."""
        import torch

        shape = tuple(x_dev.shape)
        self._select_profile(shape)
        if not self.context.set_input_shape(self.input_name, shape):
            raise XVDeployError(f"{self.name}: TensorRT rejected input shape {format_shape(shape)}")
        self._set_address(self.input_name, x_dev)
        self._input = x_dev  # referenced until the stream is synchronised
        with torch.cuda.stream(self.stream):
            for name in self.output_names:
                out_shape = tuple(self.context.get_tensor_shape(name))
                if any(d < 0 for d in out_shape):
                    raise XVDeployError(f"{self.name}: output {name!r} has a data-dependent shape "
                                        f"{format_shape(out_shape)}; expected shapes known from the input")
                buf = self._outputs.get(name)
                if buf is None or tuple(buf.shape) != out_shape:
                    buf = torch.empty(out_shape, dtype=self.output_dtypes[name], device=self.device)
                    self._outputs[name] = buf
                self._set_address(name, buf)

    def _set_address(self, name: str, tensor) -> None:
        if self.context.set_tensor_address(name, tensor.data_ptr()) is False:  # wrong name or misaligned
            raise XVDeployError(f"{self.name}: TensorRT refused the buffer of tensor {name!r}")

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            why = last_errors(self.loaded.logger) or "no reason logged"
            raise XVDeployError(f"{self.name}: execute_async_v3 failed: {why}")

    # -- work -------------------------------------------------------------------------------------------
    def infer_impl(self, x: np.ndarray) -> np.ndarray:
        import torch

        self._graph = None  # addresses change: a captured graph would be stale
        with torch.cuda.device(self.device):
            self._bind(self._upload(x))
            self._execute()
            with torch.cuda.stream(self.stream):
                host = self._outputs[self.output_names[0]].float().cpu()
            self.stream.synchronize()
        return host.numpy()

    def prepare_impl(self, x: np.ndarray) -> None:
        import torch

        with torch.cuda.device(self.device):
            self._prepare(x)

    def _prepare(self, x: np.ndarray) -> None:
        import torch

        self._graph = None
        self._bind(self._upload(x))
        self._execute()  # one plain run first: TensorRT finishes shape-dependent setup before capture
        if self.cuda_graph:
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, stream=self.stream):
                    self._execute()
            except (RuntimeError, XVDeployError) as exc:
                reason = " ".join(str(exc).split())
                self.spec.options["cuda_graph"] = f"off (capture failed: {reason})"
                warnings.warn(f"{self.name}: CUDA graph capture failed, timing without it: {reason}", stacklevel=2)
            else:
                self._graph = graph
                self.spec.options["cuda_graph"] = True
        self.stream.synchronize()

    def run_prepared_impl(self) -> None:
        if self._graph is not None:
            import torch

            with torch.cuda.stream(self.stream):
                self._graph.replay()
        else:
            self._execute()

    def synchronize_impl(self) -> None:
        self.stream.synchronize()

    def timer(self, fn) -> float:
        """Milliseconds between CUDA events recorded on the runner's stream around ``fn``."""
        start, end = self._events
        start.record(self.stream)
        fn()
        end.record(self.stream)
        end.synchronize()
        return start.elapsed_time(end)
