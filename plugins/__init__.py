"""The fused PSSA plugin (see docs/design.md (PSSA)): one Triton kernel used three ways.

* :mod:`.torch_op` — ``torch.ops.xvdeploy.pssa`` / ``pssa_concat`` custom ops
  (CPU: reference math; CUDA: the Triton kernel; fake impls for
  ``torch.export`` / ``torch.compile``), registered on import of this package;
* :mod:`.onnx_node` — the one-node custom ONNX form for
  ``xvdeploy export --pssa-plugin`` and its onnxruntime-extensions CPU op;
* :mod:`.trt_plugin` — the TensorRT plugin (``tensorrt.plugin``).

All of them follow the one PSSA contract, :mod:`xvdeploy.pssa_contract`
(modes, shifts, names, channel order, reference math). Importing this package
needs only torch: triton, onnx, onnxruntime and tensorrt are imported when
first used.
"""
from __future__ import annotations

from xvdeploy.plugins.torch_op import pssa, pssa_concat, pssa_op  # noqa: F401  (registers the ops)

__all__ = ["pssa", "pssa_concat", "pssa_op"]
