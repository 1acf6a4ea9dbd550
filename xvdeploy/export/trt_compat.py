"""Static check of an ONNX graph against TensorRT 10.x's ONNX parser (no TensorRT needed).

TensorRT cannot be installed everywhere, so before a build we compare the
exported graph with what the parser documents and implements. The tables
(supported ops and their restrictions, the release that added an op, data
types, Pad modes, inputs that must be constant) are data in
:mod:`xvdeploy.export.trt_ops`, which names its sources and their version.
This module is the logic, following the parser's code (``ModelImporter.cpp``,
``onnxOpImporters.cpp``, ``importerUtils.cpp`` of ``onnx/onnx-tensorrt``):
dispatch on ``op_type`` alone (the domain is ignored unless the
node has a ``plugin_namespace`` attribute), builtin importer, then local
function, then the fallback plugin importer (plugin name = ``op_type``,
``plugin_version`` default ``"1"``, ``plugin_namespace`` default ``""``,
then the node's domain); ``Pad`` maps ``constant/reflect/edge/wrap`` to
``ISliceLayer`` ``kFILL/kREFLECT/kCLAMP/kWRAP`` on any axes, with ``pads``
from an initializer or a run-time tensor; ``convertDtype`` maps DOUBLE to
FLOAT and rejects types TensorRT has no equivalent for.

This is a static check: it cannot see shapes the builder infers, plugin
registries, or builder-time limits. ``trtexec --onnx`` or
``polygraphy inspect capability`` on a machine with TensorRT is the final word.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from xvdeploy._lazy import require
from xvdeploy.export.census import DEFAULT_DOMAINS, iter_nodes
from xvdeploy.export.trt_ops import (
    CONSTANT_INPUTS,
    DOC_SOURCE,
    DOC_VERSION,
    NARROWED_DTYPES,
    ONNX_EXTRA_DOMAINS,
    OPSET_MAX,
    OPSET_MAX_10_0,
    OPSET_MIN,
    PAD_MODES,
    RESIZE_COORDINATE_MODES,
    RESIZE_MODES,
    RESIZE_NEAREST_MODES,
    SINCE,
    SUPPORTED_OPS,
    TRT_DTYPES,
    UNSUPPORTED_OPS,
)
from xvdeploy.format import format_table

if TYPE_CHECKING:
    import onnx

SEVERITIES = ("error", "warning", "ok")
PLUGIN_MESSAGE = "needs a TensorRT plugin named"


@dataclass(frozen=True)
class Finding:
    """One line of the check: ``severity`` in :data:`SEVERITIES`; ``op_type`` is "" for model-level findings."""

    severity: str
    op_type: str
    domain: str
    count: int
    message: str


@dataclass
class TrtCompatReport:
    """Findings of :func:`check_trt_compat`; ``ok`` means no error (warnings allowed)."""

    findings: list[Finding]
    opset: int

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    @property
    def op_types(self) -> list[tuple[str, str]]:
        """Distinct ``(domain, op_type)`` pairs of the graph."""
        return sorted({(f.domain, f.op_type) for f in self.findings if f.op_type})

    def to_dict(self) -> dict:
        return {"target": f"TensorRT 10.x ONNX parser (table of {DOC_VERSION})", "source": DOC_SOURCE,
                "opset": self.opset, "ok": self.ok, "verdict": self.verdict(),
                "findings": [asdict(f) for f in self.findings]}

    def verdict(self) -> str:
        """One line: will it parse, and how many op types need what."""
        types = self.op_types
        failing = sorted({f.op_type for f in self.findings if f.severity == "error" and f.op_type})
        other_errors = sum(1 for f in self.findings if f.severity == "error" and not f.op_type)
        plugins = sorted({f.op_type for f in self.findings if f.message.startswith(PLUGIN_MESSAGE)})
        warnings = sum(1 for f in self.findings if f.severity == "warning")
        head = "TensorRT 10.x ONNX parser: "
        if not self.ok:
            parts = []
            if failing:
                parts.append(f"{len(failing)} of {len(types)} op types fail ({', '.join(failing)})")
            if other_errors:
                parts.append(f"{other_errors} model-level error{'s' * (other_errors != 1)}")
            head += "will not parse: " + ", ".join(parts)
        else:
            head += f"all {len(types)} op types supported"
            if plugins:
                head += f", {len(plugins)} through a plugin ({', '.join(plugins)})"
        if warnings:
            head += f"; {warnings} warning{'s' * (warnings != 1)}"
        return head + " (static check)"

    def format_lines(self, *, show_ok: bool = True) -> list[str]:
        """The verdict, then a table of findings (errors first)."""
        rows = [[f.severity, f.op_type or "(model)", _domain_label(f.domain) if f.op_type else "", f.count,
                 f.message] for f in self.findings if show_ok or f.severity != "ok"]
        if not rows:
            return [self.verdict()]
        table = format_table(["status", "op", "domain", "count", "note"], rows)
        return [self.verdict()] + ["  " + line for line in table.splitlines()]


def check_trt_compat(model: onnx.ModelProto) -> TrtCompatReport:
    """Check an ``onnx.ModelProto`` against TensorRT 10.x's ONNX parser, statically (see the module docstring)."""
    opset = default_opset(model)
    consts = constant_tensors(model)
    functions = {fn.name for fn in model.functions}
    raw: list[tuple[str, str, str, str]] = []  # (severity, op_type, domain, message), one per node and issue
    for node in _all_nodes(model):
        for severity, message in node_findings(node, opset, consts, functions):
            raw.append((severity, node.op_type, node.domain, message))
    findings = [Finding(s, op, dom, n, msg) for (s, op, dom, msg), n in Counter(raw).items()]
    findings += opset_findings(model, opset) + dtype_findings(model) + input_findings(model)
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    # stable: within an op type the support line comes first, then notes in node order
    findings.sort(key=lambda f: (rank[f.severity], f.op_type == "", f.op_type, f.domain))
    return TrtCompatReport(findings, opset)


# --------------------------------------------------------------------------- graph walking


def _onnx() -> Any:
    return require("onnx", "The TensorRT compatibility check")


def default_opset(model: Any) -> int:
    """The model's ``ai.onnx`` opset (0 if it imports none)."""
    return next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 0)


def _all_nodes(model: Any) -> Iterator[Any]:
    """Nodes of the graph, its subgraphs and its local functions (as in the export census)."""
    yield from iter_nodes(model.graph)
    for fn in model.functions:
        yield from iter_nodes(fn)


def _all_graphs(model: Any) -> Iterator[Any]:
    """The main graph and every If/Loop/Scan body (each is an attribute of a node :func:`_all_nodes` yields)."""
    yield model.graph
    for node in _all_nodes(model):
        for attr in node.attribute:
            yield from ([attr.g] if attr.HasField("g") else attr.graphs)


def constant_tensors(model: Any) -> dict[str, Any]:
    """Name -> ``TensorProto`` of every initializer and every ``Constant`` output (graph, subgraphs, functions)."""
    onnx = _onnx()
    out: dict[str, Any] = {}
    for graph in _all_graphs(model):
        out.update({t.name: t for t in graph.initializer})
    for node in _all_nodes(model):
        if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS and node.output:
            tensor = _constant_value(node, onnx)
            if tensor is not None:
                out[node.output[0]] = tensor
    return out


def _constant_value(node: Any, onnx: Any) -> Any:
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        if attr.name == "value":
            return value
        if attr.name in ("value_int", "value_ints", "value_float", "value_floats"):
            dtype = np.int64 if "int" in attr.name else np.float32
            return onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype))
    return None


def _values(name: str, consts: dict[str, Any]) -> list | None:
    """The values of a constant input as a flat list (None if not constant or not loadable)."""
    tensor = consts.get(name)
    if tensor is None:
        return None
    onnx = _onnx()
    try:
        return onnx.numpy_helper.to_array(tensor).reshape(-1).tolist()
    except Exception:  # external data not loaded, exotic dtype: treat as unknown
        return None


def _attr(node: Any, name: str, default: Any = None) -> Any:
    onnx = _onnx()
    for attr in node.attribute:
        if attr.name == name:
            value = onnx.helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _input(node: Any, index: int) -> str:
    return node.input[index] if len(node.input) > index else ""


def _domain_label(domain: str) -> str:
    return domain or "ai.onnx"


# --------------------------------------------------------------------------- per node


def node_findings(node: Any, opset: int, consts: dict[str, Any], functions: set[str]) -> list[tuple[str, str]]:
    """``(severity, message)`` pairs for one node, following the parser's dispatch order (ModelImporter.cpp)."""
    op, domain = node.op_type, node.domain
    namespace = _attr(node, "plugin_namespace")
    if op in SUPPORTED_OPS:
        first = _support_finding(op)
        if namespace is not None:
            first = ("warning", f"has plugin_namespace {namespace!r}: TensorRT 10.15 imports it as a plugin when "
                                f"one named {op} is registered, else with the builtin importer")
        elif domain not in DEFAULT_DOMAINS:
            first = ("warning", f"domain {domain!r} is ignored: the parser dispatches on op_type, so the builtin "
                                f"{op} importer takes this node; check that it means ONNX {op}")
        return [first] + op_findings(node, opset, consts)
    if namespace is not None:
        return [_plugin_finding(node)]
    if op in functions:
        return [("ok", "local function: the parser imports its body node by node")]
    if domain in DEFAULT_DOMAINS:
        if op in UNSUPPORTED_OPS:
            return [("error", "not supported by TensorRT (operators.md marks it N); without a plugin of that "
                              "name the parser fails")]
        return [("error", "not in TensorRT's ONNX operator table; the parser would look for a plugin named "
                          f"{op} and fail without one")]
    if domain in ONNX_EXTRA_DOMAINS:
        return [("error", f"{domain} operators are not supported by TensorRT's ONNX parser")]
    return [_plugin_finding(node)]


def _support_finding(op: str) -> tuple[str, str]:
    note = SUPPORTED_OPS[op]
    if op in SINCE:
        return ("warning", f"supported from TensorRT {SINCE[op]} (Changelog.md); older 10.x parsers reject it"
                           + (f"; {note}" if note else ""))
    return ("ok", "supported" + (f"; restrictions: {note}" if note else ""))


def _plugin_finding(node: Any) -> tuple[str, str]:
    """The fallback plugin importer looks up (op_type, plugin_version or "1", plugin_namespace or "")."""
    version = _attr(node, "plugin_version", "1")
    namespace = _attr(node, "plugin_namespace")
    if namespace is None:
        where = f"namespace '' or, from TensorRT 10.10, the node domain {node.domain!r}"
    else:
        where = f"namespace {namespace!r}"
    return ("warning", f"{PLUGIN_MESSAGE} {node.op_type} (version {version}, {where}) registered at build time")


def op_findings(node: Any, opset: int, consts: dict[str, Any]) -> list[tuple[str, str]]:
    """Attribute and input checks for a supported op (the restrictions that matter for exported graphs)."""
    out = [(sev, f"input {i} is computed at run time; {need}")
           for (op, i), (sev, need) in CONSTANT_INPUTS.items()
           if op == node.op_type and _input(node, i) and _input(node, i) not in consts]
    check = _OP_CHECKS.get(node.op_type)
    return out + (check(node, opset, consts) if check else [])


def _check_pad(node: Any, opset: int, consts: dict[str, Any]) -> list[tuple[str, str]]:
    """Pad -> ISliceLayer with a SampleMode; any axes, static or run-time pads (onnxOpImporters.cpp, Pad)."""
    mode = _attr(node, "mode", "constant")
    if mode not in PAD_MODES:
        return [("error", f"mode={mode!r} is not one of {', '.join(PAD_MODES)} (importer: 'Unsupported pad mode')")]
    text = f"mode={mode} -> ISliceLayer {PAD_MODES[mode]}" + (" (TensorRT >= 10.0)" if mode == "wrap" else "")
    out = []
    pads = _attr(node, "pads") if opset < 11 else _values(_input(node, 1), consts)
    axes_name = _input(node, 3)
    axes = _values(axes_name, consts) if axes_name else None
    if axes_name and axes_name not in consts:
        out.append(("warning", "axes is a run-time tensor: supported from TensorRT 10.4 (Changelog.md)"))
    if pads is None:
        text += "; pads computed at run time (supported)"
    else:
        axes = axes if axes is not None else list(range(len(pads) // 2))
        n = len(pads) // 2
        padded = [a for i, a in enumerate(axes[:n]) if pads[i] or pads[i + n]]
        text += f"; pads on axes {padded}" if padded else "; all pads zero (imported as an identity)"
    return [("ok", text)] + out


def _spatial_dims(node: Any, consts: dict[str, Any]) -> int | None:
    kernel = _attr(node, "kernel_shape")
    if kernel:
        return len(kernel)
    weight = consts.get(_input(node, 1))
    return len(weight.dims) - 2 if weight is not None else None


def _check_conv(node: Any, opset: int, consts: dict[str, Any]) -> list[tuple[str, str]]:
    """IConvolutionLayer / IDeconvolutionLayer are 2D or 3D; 1D inputs are unsqueezed to 2D by the importer."""
    out = []
    spatial = _spatial_dims(node, consts)
    if spatial is not None and spatial > 3:
        out.append(("error", f"{spatial}D convolution: TensorRT convolutions are 2D or 3D"))
    elif spatial == 1:
        out.append(("ok", "1D: the importer unsqueezes it to 2D"))
    group = _attr(node, "group", 1)
    if group > 1:
        out.append(("ok", f"grouped (group={group}) -> nbGroups"))
    if _input(node, 1) not in consts:
        out.append(("ok", "weights are a run-time tensor: imported as a multi-input convolution"))
    return out


def _check_pool(node: Any, opset: int, consts: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    spatial = len(_attr(node, "kernel_shape", []) or [])
    if spatial > 3:
        out.append(("error", f"{spatial}D pooling: operators.md allows 2D or 3D only"))
    elif spatial == 1 and node.op_type != "LpPool":
        out.append(("warning", "1D pooling: operators.md lists 2D or 3D only"))
    if any(d != 1 for d in _attr(node, "dilations", []) or []):
        out.append(("error", "dilations must be empty or all ones"))
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        out.append(("error", "the Indices output is unsupported"))
    return out


def _check_softmax(node: Any, opset: int, consts: dict[str, Any]) -> list[tuple[str, str]]:
    """Softmax-13 normalises one axis (any axis); Softmax-1/11 flattens to 2D at ``axis`` (default 1)."""
    if opset >= 13:
        return []
    return [("ok", f"opset {opset} semantics: input coerced to 2D at axis={_attr(node, 'axis', 1)} "
                   "(reproduced by the importer)")]


def _check_resize(node: Any, opset: int, consts: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    mode = _attr(node, "mode", "nearest")
    if mode not in RESIZE_MODES:
        out.append(("error", f"mode={mode!r}: operators.md lists {', '.join(RESIZE_MODES)}"))
    if opset >= 11:
        coord = _attr(node, "coordinate_transformation_mode", "half_pixel")
        if coord not in RESIZE_COORDINATE_MODES:
            out.append(("error", f"coordinate_transformation_mode={coord!r} is unsupported"))
        nearest = _attr(node, "nearest_mode", "round_prefer_floor")
        if mode == "nearest" and nearest not in RESIZE_NEAREST_MODES:
            out.append(("error", f"nearest_mode={nearest!r} is unsupported"))
    if _attr(node, "antialias", 0):
        out.append(("error", "antialiasing is unsupported"))
    policy = _attr(node, "keep_aspect_ratio_policy", "stretch")
    if policy != "stretch":
        out.append(("error", f"keep_aspect_ratio_policy={policy!r}: only stretch is supported"))
    return out


def _check_cast(node: Any, opset: int, consts: dict[str, Any]) -> list[tuple[str, str]]:
    name = _dtype_name(_attr(node, "to", 1))
    severity, message = _dtype_verdict(name)
    return [] if severity == "ok" else [(severity, f"cast to {name}: {message}")]


def _check_constant(node: Any, opset: int, consts: dict[str, Any]) -> list[tuple[str, str]]:
    bad = [a.name for a in node.attribute if a.name in ("sparse_value", "value_string", "value_strings")]
    return [("error", f"{bad[0]} is unsupported")] if bad else []


def _check_topk(node: Any, opset: int, consts: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    if not _attr(node, "sorted", 1):
        out.append(("error", "sorted=0 is unsupported"))
    k = _values(_input(node, 1), consts)
    if k and k[0] >= 3840:
        out.append(("error", f"K={k[0]}: must be below 3840"))
    return out


def _check_scatter_nd(node: Any, opset: int, consts: dict[str, Any]) -> list[tuple[str, str]]:
    reduction = _attr(node, "reduction", "none")
    return [("error", f"reduction={reduction!r}: only none is supported")] if reduction != "none" else []


def _check_layernorm(node: Any, opset: int, consts: dict[str, Any]) -> list[tuple[str, str]]:
    extra = [o for o in node.output[1:] if o]
    return [("error", "only the first output Y is supported (Mean / InvStdDev are used)")] if extra else []


def _check_lstm(node: Any, opset: int, consts: dict[str, Any]) -> list[tuple[str, str]]:
    bad = [f"{a}={_attr(node, a)}" for a in ("input_forget", "layout") if _attr(node, a, 0)]
    return [("error", f"{', '.join(bad)}: must be 0")] if bad else []


def _check_dropout(node: Any, opset: int, consts: dict[str, Any]) -> list[tuple[str, str]]:
    values = _values(_input(node, 2), consts)
    return [("error", "is_training must evaluate to False")] if values and any(values) else []


def _check_zero_point(node: Any, opset: int, consts: dict[str, Any]) -> list[tuple[str, str]]:
    values = _values(_input(node, 2), consts)
    if values and any(values):
        return [("error", "the zero point must be 0")]
    return []


_OP_CHECKS: dict[str, Callable[[Any, int, dict[str, Any]], list[tuple[str, str]]]] = {
    "Pad": _check_pad, "Conv": _check_conv, "ConvTranspose": _check_conv,
    "MaxPool": _check_pool, "AveragePool": _check_pool, "LpPool": _check_pool,
    "Softmax": _check_softmax, "LogSoftmax": _check_softmax, "Hardmax": _check_softmax,
    "Resize": _check_resize, "Cast": _check_cast, "Constant": _check_constant, "TopK": _check_topk,
    "ScatterND": _check_scatter_nd, "LayerNormalization": _check_layernorm, "LSTM": _check_lstm,
    "Dropout": _check_dropout, "QuantizeLinear": _check_zero_point, "DequantizeLinear": _check_zero_point,
}


# --------------------------------------------------------------------------- model level


def opset_findings(model: Any, opset: int) -> list[Finding]:
    """The default-domain opset against the documented range (ModelImporter only warns below opset 7)."""
    if not opset:
        return [Finding("error", "", "", 1, "the model imports no ai.onnx opset")]
    if opset < OPSET_MIN:
        return [Finding("warning", "", "", 1, f"opset {opset} is below TensorRT's documented range "
                                              f"{OPSET_MIN}-{OPSET_MAX}; re-export with opset >= {OPSET_MIN}")]
    if opset > OPSET_MAX:
        return [Finding("warning", "", "", 1, f"opset {opset} is above the range documented for TensorRT "
                                              f"{DOC_VERSION} ({OPSET_MIN}-{OPSET_MAX}); newer op versions "
                                              "may be rejected or misread")]
    if opset > OPSET_MAX_10_0:
        return [Finding("warning", "", "", 1, f"opset {opset}: TensorRT 10.0 documented opsets up to "
                                              f"{OPSET_MAX_10_0}, {DOC_VERSION} up to {OPSET_MAX}; "
                                              "use a recent 10.x")]
    return [Finding("ok", "", "", 1, f"opset {opset} within the documented range {OPSET_MIN}-{OPSET_MAX}")]


def _dtype_name(code: int) -> str:
    onnx = _onnx()
    try:
        return onnx.TensorProto.DataType.Name(code)
    except ValueError:
        return f"dtype {code}"


def _dtype_verdict(name: str) -> tuple[str, str]:
    if name in TRT_DTYPES:
        return ("ok", "")
    if name in NARROWED_DTYPES:
        return ("warning", f"TensorRT has no {name}; the parser narrows it to {NARROWED_DTYPES[name]} "
                           "(clamping to +-FLT_MAX)")
    return ("error", f"TensorRT has no {name} type ('Unsupported ONNX data type')")


def dtype_findings(model: Any) -> list[Finding]:
    """Element types of initializers, Constant values, graph inputs and outputs, value_info."""
    constant_outputs = {node.output[0] for node in _all_nodes(model) if node.op_type == "Constant" and node.output}
    inits = {t.name for g in _all_graphs(model) for t in g.initializer}
    where: Counter = Counter()
    for name, tensor in constant_tensors(model).items():
        kind = "initializer" if name in inits and name not in constant_outputs else "Constant value"
        where[(kind, _dtype_name(tensor.data_type))] += 1
    for kind, infos in (("graph input", model.graph.input), ("graph output", model.graph.output),
                        ("value_info", model.graph.value_info)):
        for info in infos:
            if info.name in inits or not info.type.HasField("tensor_type"):
                continue
            where[(kind, _dtype_name(info.type.tensor_type.elem_type))] += 1
    out = []
    for (kind, name), n in sorted(where.items()):
        severity, message = _dtype_verdict(name)
        if severity != "ok":
            out.append(Finding(severity, "", "", n, f"{n} {kind}{'s' * (n != 1)} of type {name}: {message}"))
    return out


def input_findings(model: Any) -> list[Finding]:
    """Dynamic dimensions (-1 / named) of network inputs need an optimization profile at build time."""
    inits = {t.name for t in model.graph.initializer}
    out = []
    for info in model.graph.input:
        if info.name in inits or not info.type.HasField("tensor_type"):
            continue
        tensor_type = info.type.tensor_type
        if not tensor_type.HasField("shape"):
            out.append(Finding("warning", "", "", 1, f"input {info.name!r} has no shape; TensorRT needs the rank "
                                                     "of every network input"))
            continue
        dims = [d.dim_param or (str(d.dim_value) if d.HasField("dim_value") and d.dim_value >= 0 else "?")
                for d in tensor_type.shape.dim]
        dynamic = [d for d in dims if not d.isdigit()]
        if dynamic:
            out.append(Finding("ok", "", "", 1, f"input {info.name!r} [{', '.join(dims)}] has dynamic dims "
                                                f"{', '.join(dynamic)}: build with an optimization profile "
                                                "(min/opt/max)"))
    return out
