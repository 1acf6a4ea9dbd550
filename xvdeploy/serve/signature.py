"""The inputs and outputs of an ONNX file (names, element types, dimensions): what a server must be told.

Read from the graph header only (``onnx.load(..., load_external_data=False)``);
a dimension is ``-1`` where the file leaves it dynamic (a ``dim_param`` or no
value), as Triton's ``config.pbtxt`` writes it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from xvdeploy._lazy import require
from xvdeploy.errors import XVDeployError, first_line


#: ONNX operator domains every runtime implements
STANDARD_DOMAINS = {"", "ai.onnx", "ai.onnx.ml"}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output."""

    name: str
    elem_type: str  # ONNX TensorProto data type name: "FLOAT", "FLOAT16", "INT64", …
    dims: tuple[int, ...]  # -1 where dynamic

    @property
    def numpy_dtype(self) -> str:
        """``"float32"`` for ``FLOAT`` and so on (``"object"`` for strings)."""
        onnx = require("onnx", "Reading the model's inputs and outputs")
        value = onnx.TensorProto.DataType.Value(self.elem_type)
        return str(onnx.helper.tensor_dtype_to_np_dtype(value))

    def describe(self) -> str:
        dims = "x".join(str(d) if d >= 0 else "?" for d in self.dims) or "scalar"
        return f"{self.name} {self.elem_type} {dims}"


@dataclass(frozen=True)
class Signature:
    """A model's inputs and outputs, in graph order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    metadata: tuple[tuple[str, str], ...] = ()
    external_data: bool = False  # tensors kept in separate files, which must travel with the model
    custom_domains: tuple[str, ...] = ()  # operator domains beyond the standard ones (custom ops)

    @property
    def batch_dynamic(self) -> bool:
        """Whether every input and output has a dynamic first dimension (a batch a server may stack)."""
        tensors = self.inputs + self.outputs
        return bool(tensors) and all(t.dims and t.dims[0] < 0 for t in tensors)

    def meta(self, key: str) -> str | None:
        return dict(self.metadata).get(key)


def read_signature(path: str | os.PathLike) -> Signature:
    """Inputs (initializers excluded), outputs and metadata of the ONNX file ``path``."""
    onnx = require("onnx", "Reading the model's inputs and outputs")
    path = Path(path)
    if not path.is_file():
        raise XVDeployError(f"model file {path} does not exist; expected an .onnx file such as 'xvdeploy export' writes")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise XVDeployError(f"{path} is not an ONNX model ({first_line(exc)}); "
                            "expected an .onnx file such as 'xvdeploy export' writes") from None
    if not model.graph.node:
        raise XVDeployError(f"{path} is not an ONNX model (no graph nodes); expected an .onnx file")
    names = {v: k for k, v in onnx.TensorProto.DataType.items()}
    initializers = {init.name for init in model.graph.initializer}

    def spec(vi) -> TensorSpec:
        if not vi.type.HasField("tensor_type"):
            raise XVDeployError(f"{path}: graph input/output {vi.name!r} is not a tensor; expected tensors only")
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
        return TensorSpec(vi.name, names.get(tt.elem_type, "UNDEFINED"), dims)

    inputs = tuple(spec(vi) for vi in model.graph.input if vi.name not in initializers)
    outputs = tuple(spec(vi) for vi in model.graph.output)
    from onnx.external_data_helper import uses_external_data

    external = any(uses_external_data(t) for t in model.graph.initializer)
    custom = tuple(sorted({o.domain for o in model.opset_import} - STANDARD_DOMAINS))
    return Signature(inputs, outputs, tuple((p.key, p.value) for p in model.metadata_props), external, custom)
