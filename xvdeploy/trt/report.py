"""What TensorRT's ONNX parser made of the graph (``xvdeploy build --report``, kept in the sidecar).

The census counts the parsed network's layers by type
(``network.num_layers``, ``network.get_layer(i).type``). The PSSA step of
X-volution is exported as ``Pad(mode=wrap) → Conv(group=C, fixed shift
kernel) → Mul`` (see docs/design.md);
:func:`xvdeploy.export.census.pssa_steps` finds those node triples in the ONNX
graph (the file header carries them) and :func:`network_report` maps each node to the
layers the parser made of it, using the layer metadata TensorRT 10+ writes
(``"[ONNX Layer: NODE]"``), else the layer name. TensorRT makes a wrap-mode
``Pad`` an ``ISliceLayer`` with ``SampleMode.WRAP``, the shift convolution an
``IConvolutionLayer`` with ``num_groups = C``, the product an
``IElementWiseLayer`` with ``PROD``. Plugin layers are listed by name: with
``--pssa-plugin`` they are the PSSA plugin, otherwise there should be none
(nothing fell back to a plugin).
"""
from __future__ import annotations

import re
from collections import Counter
from types import ModuleType
from typing import Any

PLUGIN_LAYER_TYPES = ("PLUGIN", "PLUGIN_V2", "PLUGIN_V3")
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]+)\]")


def _as(trt: ModuleType, layer: Any, cls_name: str) -> Any:
    """The layer with its typed interface (the bindings return ``ILayer``; Polygraphy's idiom)."""
    cls = getattr(trt, cls_name, None)
    if cls is not None:
        try:
            layer.__class__ = cls
        except TypeError:
            pass
    return layer


def describe_layer(trt: ModuleType, layer: Any) -> str:
    """``"SLICE (mode WRAP)"``, ``"CONVOLUTION (16 groups, 3x3)"``, ``"ELEMENTWISE (PROD)"``, …"""
    kind = layer.type.name
    detail = ""
    try:
        if kind == "SLICE":
            detail = f"mode {_as(trt, layer, 'ISliceLayer').mode.name}"
        elif kind == "CONVOLUTION":
            conv = _as(trt, layer, "IConvolutionLayer")
            kernel = "x".join(str(k) for k in conv.kernel_size_nd)
            detail = f"{conv.num_groups} groups, {kernel}" if conv.num_groups > 1 else kernel
        elif kind == "ELEMENTWISE":
            detail = _as(trt, layer, "IElementWiseLayer").op.name
    except (AttributeError, RuntimeError):
        detail = ""
    return f"{kind} ({detail})" if detail else kind


def onnx_sources(layer: Any) -> list[str]:
    """The ONNX node(s) a layer came from: its metadata (``[ONNX Layer: …]``), else its name."""
    found = _ONNX_LAYER.findall(str(getattr(layer, "metadata", "") or ""))
    return found or [layer.name]


def network_report(trt: ModuleType, network: Any, steps: list[tuple[str, str, str]]) -> dict:
    """Layer census, PSSA steps mapped to layers, and plugin layers of a parsed network (JSON-ready)."""
    census: Counter = Counter()
    by_node: dict[str, list[Any]] = {}
    plugins = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        census[layer.type.name] += 1
        for source in onnx_sources(layer):
            by_node.setdefault(source, []).append(layer)
        if layer.type.name in PLUGIN_LAYER_TYPES:
            plugins.append(layer.name)
    mapped = [{"nodes": list(step), "layers": [[describe_layer(trt, layer) for layer in by_node.get(node, [])]
                                               for node in step]} for step in steps]
    return {
        "layers": network.num_layers,
        "census": dict(sorted(census.items(), key=lambda kv: (-kv[1], kv[0]))),
        "pssa_steps": mapped,
        "plugin_layers": plugins,
    }


def pssa_summary(report: dict) -> Counter:
    """How often each (pad, conv, mul) layer-type triple occurs among the PSSA steps."""
    return Counter(tuple(" + ".join(layers) or "(no layer)" for layers in step["layers"])
                   for step in report.get("pssa_steps", []))


def format_report(report: dict, label: str = "TensorRT") -> list[str]:
    """Readable lines of :func:`network_report`'s result."""
    census = report.get("census", {})
    ordered = sorted(census.items(), key=lambda kv: (-kv[1], kv[0]))  # the sidecar's JSON sorts keys by name
    lines = [f"{label} parsed {report.get('layers', sum(census.values()))} layers: "
             + ", ".join(f"{kind} {n}" for kind, n in ordered)]
    steps = report.get("pssa_steps", [])
    if steps:
        lines.append(f"PSSA steps (Pad wrap → depthwise shift Conv → Mul): {len(steps)}, each became:")
        for (pad, conv, mul), n in pssa_summary(report).items():
            lines.append(f"  {n} × {pad} → {conv} → {mul}")
    else:
        lines.append("PSSA steps (Pad wrap → depthwise shift Conv → Mul): none in this graph")
    plugins = report.get("plugin_layers", [])
    if plugins:
        lines.append(f"plugin layers: {len(plugins)} ({', '.join(plugins[:4])}{', …' if len(plugins) > 4 else ''})")
    else:
        lines.append("plugin layers: none (every ONNX node became a built-in layer; nothing fell back to a plugin)")
    return lines
