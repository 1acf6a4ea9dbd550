"""The ``torch`` backend: a PyTorch module (training or folded form) on CPU or CUDA.

Options: ``torch.compile``, CUDA graphs (GPU), precision fp32 / tf32 (CUDA
matmul+conv TF32) / fp16 / bf16 (``torch.autocast``: convolutions and matrix
products in the reduced type, precision-sensitive ops in float32, as PyTorch
runs mixed precision; fp16 on CUDA only).
"""
from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch
from torch import nn

from xvdeploy.bench.backends.base import BackendUnavailable, Runner, RunnerSpec

_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def torch_support(precision: str, device: str) -> str | None:
    """None if this precision runs on this device, else the reason it does not."""
    if device == "cuda" and not torch.cuda.is_available():
        return "no CUDA device"
    if precision not in _DTYPES:
        return f"precision {precision} is not supported by torch"
    if device == "cpu" and precision in ("tf32", "fp16"):
        return f"{precision} needs a CUDA device in the torch backend"
    if device == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        return "this GPU has no bf16 support"
    return None


class TorchRunner(Runner):
    """Runs an ``nn.Module`` (it is copied; the caller's model is never changed)."""

    def __init__(self, spec: RunnerSpec, model: nn.Module, compile: bool = False, cuda_graph: bool = False) -> None:
        super().__init__(spec)
        reason = torch_support(spec.precision, spec.device)
        if reason:
            raise BackendUnavailable("torch", reason)
        if cuda_graph and spec.device != "cuda":
            raise BackendUnavailable("torch", "CUDA graphs need a CUDA device")
        self.source = model
        self.compile = compile
        self.cuda_graph = cuda_graph
        spec.options.update(compile=compile, cuda_graph=cuda_graph)

    def activate_impl(self) -> None:
        self.device = torch.device(self.spec.device)
        self.dtype = torch.float32  # module and inputs; fp16/bf16 run under autocast
        self.autocast = _DTYPES[self.spec.precision] if self.spec.precision in ("fp16", "bf16") else None
        self.model = copy.deepcopy(self.source).eval().to(self.device, self.dtype)
        if self.device.type == "cuda":
            self._tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
            allow = self.spec.precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
        self.fn = self.model
        if self.compile:
            from torch import _dynamo

            _fresh_dynamo()
            cfg = _dynamo.config
            self._fail_on_limit = getattr(cfg, "fail_on_recompile_limit_hit", None)
            if self._fail_on_limit is not None:  # a runner past the limit fails instead of quietly running eager
                cfg.fail_on_recompile_limit_hit = True
            self.fn = torch.compile(self.model)
        self.graph = None

    def _to_device(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(self.device, self.dtype)

    def _precision(self):
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    @torch.no_grad()
    def infer_impl(self, x: np.ndarray) -> np.ndarray:
        with self._precision():
            return self.fn(self._to_device(x)).float().cpu().numpy()

    @torch.no_grad()
    def prepare_impl(self, x: np.ndarray) -> None:
        self.x = self._to_device(x)
        self.graph = None
        if self.cuda_graph:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), self._precision():
                for _ in range(3):  # warm up on a side stream before capture, as PyTorch's docs ask
                    self.fn(self.x)
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph), self._precision():
                self.y = self.fn(self.x)

    @torch.no_grad()
    def run_prepared_impl(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            with self._precision():
                self.y = self.fn(self.x)

    def synchronize_impl(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timer(self, fn) -> float:
        if self.device.type != "cuda":
            return super().timer(fn)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    def deactivate_impl(self) -> None:
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self._tf32
        self.model = self.fn = self.graph = self.x = self.y = None
        if self.compile:
            from torch import _dynamo

            _fresh_dynamo()
            if self._fail_on_limit is not None:
                _dynamo.config.fail_on_recompile_limit_hit = self._fail_on_limit
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _fresh_dynamo() -> None:
    """Forget compiled code between runners.

    Every runner compiles a copy of the same ``forward`` (one class for both
    forms, every precision, every network of a family), and dynamo keeps one
    cache per code object with ``recompile_limit`` (8) entries: a few runners in,
    it would quietly run eager.
    """
    from torch import _dynamo

    _dynamo.reset()
