"""The one place that reads ONNX files: headers, metadata keys, operator domains, onnxruntime sessions.

Every command that takes an ``.onnx`` file reads it here (docs/design.md,
File formats): :func:`read_header` parses a file once per file version
(a ResNet-50 is ~100 MB of protobuf) and returns its inputs, outputs,
metadata and custom operators; :func:`load_model` loads the whole graph with
one error message for a file that is not ONNX; :func:`ort_session` is the one
onnxruntime session factory (graphs holding PSSA plugin nodes get the
onnxruntime-extensions op registered).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from xvdeploy._lazy import available, require
from xvdeploy.errors import XVDeployError, first_line
from xvdeploy.export.census import census, pssa_steps
from xvdeploy.plugins import onnx_node
from xvdeploy.pssa_contract import ONNX_DOMAIN

#: metadata_props keys written by ``xvdeploy export``
META_INPUT_SHAPE = "xvdeploy.input_shape"  # the example shape, NxCxHxW
META_ARCH = "xvdeploy.arch"  # zoo architecture name, "" if none
META_FORM = "xvdeploy.form"  # "train" or "folded"
META_WEIGHTS = "xvdeploy.weights"  # where the weights came from: xvdeploy.loading.WEIGHTS_* ("pretrained", …)

#: operator domains every ONNX runtime implements
STANDARD_DOMAINS = ("", "ai.onnx")
#: the domain of the PSSA plugin's custom node (``export --pssa-plugin``)
PSSA_DOMAIN = ONNX_DOMAIN

Dims = tuple[int, ...]  # -1 where an axis is dynamic


@dataclass(frozen=True)
class OnnxHeader:
    """What the commands need to know of an ONNX file without running it."""

    inputs: dict[str, Dims]  # graph inputs, initializers excluded
    outputs: dict[str, Dims]
    input_types: dict[str, int]  # onnx.TensorProto element type of each input
    metadata: dict[str, str]
    opsets: dict[str, int]  # domain ("" = ai.onnx) -> version
    custom_ops: tuple[tuple[str, str], ...] = field(default=())  # (domain, op_type) outside the standard domains
    op_types: frozenset[str] = field(default=frozenset())  # of the main graph's nodes
    pssa_steps: tuple[tuple[str, str, str], ...] = field(default=())  # census.pssa_steps: (pad, conv, mul) names
    output_types: dict[str, int] = field(default_factory=dict)  # onnx.TensorProto element type of each output
    external_data: bool = False  # weights kept in separate files, which must travel with the model
    quantized_types: frozenset[int] = field(default=frozenset())  # element types QuantizeLinear nodes write

    @property
    def plugin(self) -> bool:
        """Whether the graph holds PSSA plugin nodes."""
        return any(op.startswith("PSSA") for _, op in self.custom_ops)

    def example_shape(self) -> Dims | None:
        """The export's example input shape (metadata :data:`META_INPUT_SHAPE`), if it is well formed."""
        text = self.metadata.get(META_INPUT_SHAPE, "")
        try:
            dims = tuple(int(v) for v in text.split("x"))
        except ValueError:
            return None
        return dims if dims and all(d > 0 for d in dims) else None


def _dims(value_info) -> Dims:
    return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim)


def header_of(model) -> OnnxHeader:
    """The :class:`OnnxHeader` of a loaded ``onnx.ModelProto``."""
    initializers = {init.name for init in model.graph.initializer}
    tensors = [vi for vi in model.graph.input if vi.name not in initializers and vi.type.HasField("tensor_type")]
    custom = tuple(sorted({(c.domain, c.op_type) for c in census(model) if c.domain not in STANDARD_DOMAINS}))
    return OnnxHeader(
        inputs={vi.name: _dims(vi) for vi in tensors},
        outputs={vi.name: _dims(vi) for vi in model.graph.output},
        input_types={vi.name: vi.type.tensor_type.elem_type for vi in tensors},
        metadata={p.key: p.value for p in model.metadata_props},
        opsets={o.domain: o.version for o in model.opset_import},
        custom_ops=custom,
        output_types={vi.name: vi.type.tensor_type.elem_type for vi in model.graph.output},
        external_data=any(init.data_location == 1 for init in model.graph.initializer),  # TensorProto.EXTERNAL
        op_types=frozenset(node.op_type for node in model.graph.node),
        pssa_steps=tuple(pssa_steps(model)),
        quantized_types=_quantized_types(model.graph),
    )


def _quantized_types(graph) -> frozenset[int]:
    """What QuantizeLinear writes: its zero point's element type (UINT8 without one, as ONNX defines)."""
    inits = {init.name: init.data_type for init in graph.initializer}
    out = set()
    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            zero_point = node.input[2] if len(node.input) > 2 and node.input[2] else None
            out.add(inits.get(zero_point, 0) if zero_point else 2)  # 2: TensorProto.UINT8; 0: not a constant
    return frozenset(out)


def graph_dims(graph) -> dict[str, list]:
    """Name → dims (int, or the symbol's string; None where unknown) of every value with a recorded shape."""
    out = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
    return out


def graph_constants(graph) -> dict:
    """Name → numpy value of every initializer and ``Constant`` node output of ``graph``."""
    onnx = require("onnx", "Reading ONNX files")
    out = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            out[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    return out


def node_attr(node, name: str, default=None):
    """The value of ``node``'s attribute ``name``, or ``default``."""
    onnx = require("onnx", "Reading ONNX files")
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def unique_name(graph, base: str) -> str:
    """``base``, or ``base_N``: a name no value or initializer of ``graph`` has."""
    taken = {n for node in graph.node for n in (*node.input, *node.output)} | {i.name for i in graph.initializer}
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    return name


def add_initializer(graph, base: str, value) -> str:
    """Add ``value`` (a numpy array) to ``graph`` as an initializer of a fresh name (:func:`unique_name`)."""
    onnx = require("onnx", "Writing ONNX files")
    import numpy as np

    name = unique_name(graph, base)
    graph.initializer.append(onnx.numpy_helper.from_array(np.ascontiguousarray(value), name))
    return name


def drop_unused_initializers(graph) -> int:
    """Remove the initializers no node (or graph output) reads; returns how many went."""
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [i for i in graph.initializer if i.name in used]
    removed = len(graph.initializer) - len(keep)
    if removed:
        del graph.initializer[:]
        graph.initializer.extend(keep)
    return removed


class _NotOnnx(Exception):
    pass


@functools.lru_cache(maxsize=8)
def _cached_header(path: str, _mtime_ns: int, _size: int) -> OnnxHeader:
    """Parsed once per file version; raises :class:`_NotOnnx` with the reason (failures are not cached)."""
    return header_of(_load(path, external_data=False))


def _load(path: str, external_data: bool = True):
    onnx = require("onnx", "Reading ONNX files")
    try:
        model = onnx.load(path, load_external_data=external_data)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise _NotOnnx(first_line(exc)) from None
    if not model.opset_import or not model.graph.node:
        raise _NotOnnx("no opset or no nodes")
    return model


def _checked(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        raise XVDeployError(f"{path} is a directory; expected an .onnx file such as 'xvdeploy export' writes")
    if not path.is_file():
        raise XVDeployError(f"{path}: no such file; expected an .onnx file such as 'xvdeploy export' writes")
    return path


def _not_onnx(path: Path, exc: _NotOnnx) -> XVDeployError:
    return XVDeployError(f"{path} is not an ONNX model ({exc}); expected an .onnx file such as 'xvdeploy export' writes")


def read_header(path: str | os.PathLike) -> OnnxHeader:
    """Inputs, outputs, metadata and custom operators of the ONNX file at ``path`` (one clear error if it is none)."""
    path = _checked(path)
    st = path.stat()
    try:
        return _cached_header(str(path.resolve()), st.st_mtime_ns, st.st_size)
    except _NotOnnx as exc:  # named here with the user's own path
        raise _not_onnx(path, exc) from None


def load_model(path: str | os.PathLike, external_data: bool = True):
    """The whole ``onnx.ModelProto`` at ``path`` (one clear error if it is not ONNX)."""
    path = _checked(path)
    try:
        return _load(str(path), external_data)
    except _NotOnnx as exc:
        raise _not_onnx(path, exc) from None


#: onnxruntime's execution provider for each device
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def device_providers(device: str) -> list:
    """The ``providers`` argument of :func:`ort_session` for ``device`` (``cpu`` or ``cuda``).

    The CUDA provider enables TF32 by default; fp32 means fp32, so it is switched off. (onnxruntime's
    cuDNN-frontend convolutions may ignore use_tf32 and follow NVIDIA_TF32_OVERRIDE=0 instead, which cuDNN
    reads when it loads: not set here, as it would also switch off the torch backend's tf32 runs. The fp32
    parity tolerance, 1e-5, reports it as a FAIL if TF32 slips through.)
    """
    if device == "cuda":
        return [(ORT_PROVIDERS["cuda"], {"device_id": "0", "use_tf32": "0"})]
    return [ORT_PROVIDERS[device]]


def device_unavailable(device: str) -> str | None:
    """Why onnxruntime cannot run on ``device`` here (not installed, no such provider), or ``None``."""
    if not available("onnxruntime"):
        return "onnxruntime is not installed (pip install 'xvdeploy[onnx]')"
    ort = require("onnxruntime", "The onnxruntime backend")
    if ORT_PROVIDERS.get(device) not in ort.get_available_providers():
        return (f"onnxruntime has no {ORT_PROVIDERS.get(device, device)} "
                "(install onnxruntime-gpu: pip install 'xvdeploy[gpu]')")
    return None


def provider_problem(session: Any, device: str) -> str | None:
    """Why ``session`` does not run on ``device``'s provider (onnxruntime falls back to the CPU quietly when a
    provider cannot start, e.g. without cuDNN), or ``None``."""
    used = session.get_providers()
    if not used or used[0] != ORT_PROVIDERS[device]:
        return f"{ORT_PROVIDERS[device]} did not start in onnxruntime (the session runs on {', '.join(used) or 'nothing'})"
    return None


def ort_session(model: str | os.PathLike | bytes | Any, providers: Sequence[Any] | None = None,
                options: Any = None, threads: int | None = None, plugin: bool | None = None):
    """An ``onnxruntime.InferenceSession`` (CPU by default): the one session factory of the package.

    ``model`` is a path, serialized bytes or an ``onnx.ModelProto``. Graphs with
    PSSA plugin nodes (``plugin``; ``None`` reads a path's header to find out)
    get the onnxruntime-extensions op registered. ``options`` is a prepared
    ``SessionOptions``; ``threads`` sets its intra-op thread count.
    """
    ort = require("onnxruntime", "The onnxruntime backend")
    if isinstance(model, (str, os.PathLike)):
        path = _checked(model)
        if plugin is None:
            plugin = read_header(path).plugin
        source: Any = os.fspath(path)
    elif isinstance(model, (bytes, bytearray)):
        source = bytes(model)
        if plugin is None:
            plugin = header_of(require("onnx", "Reading ONNX files").load_model_from_string(source)).plugin
    elif hasattr(model, "SerializeToString"):
        if plugin is None:
            plugin = header_of(model).plugin
        source = model.SerializeToString()
    else:
        raise XVDeployError(f"an onnxruntime session needs a path, bytes or onnx.ModelProto, got {type(model).__name__}")
    opts = options if options is not None else ort.SessionOptions()
    if options is None:
        opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    if plugin:
        opts.register_custom_ops_library(onnx_node.register_ort_ops())
    return ort.InferenceSession(source, sess_options=opts, providers=list(providers or ["CPUExecutionProvider"]))
