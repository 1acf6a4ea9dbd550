"""Summaries of checkpoints and ONNX files for ``xvdeploy inspect``."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from xvdeploy import zoo
from xvdeploy._lazy import require
from xvdeploy.checkpoint import is_safetensors, read_safetensors, read_state_dict
from xvdeploy.errors import XVDeployError
from xvdeploy.export.census import census, non_standard
from xvdeploy.export.onnxfile import load_model
from xvdeploy.format import format_table
from xvdeploy.trt.report import format_report
from xvdeploy.trt.sidecar import read_sidecar


def _shape(value) -> str:
    dims = value.type.tensor_type.shape.dim
    return "x".join(d.dim_param or str(d.dim_value) for d in dims) or "?"


def inspect_onnx(path: Path) -> list[str]:
    """Inputs/outputs with shapes, op census, metadata, parameter count of an ONNX file."""
    onnx = require("onnx", "Inspecting ONNX files")
    proto = load_model(path)
    elem = {v: k for k, v in onnx.TensorProto.DataType.items()}
    params = sum(int(np.prod(t.dims)) for t in proto.graph.initializer)
    opsets = ", ".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in proto.opset_import)
    lines = [f"ONNX model {path}", f"  IR version {proto.ir_version}, opsets {opsets}, producer "
             f"{proto.producer_name} {proto.producer_version}".rstrip(),
             f"  {len(proto.graph.node)} nodes, {params:,} parameters in {len(proto.graph.initializer)} initializers"]
    for kind, values in (("input", proto.graph.input), ("output", proto.graph.output)):
        for v in values:
            lines.append(f"  {kind} {v.name}: {elem.get(v.type.tensor_type.elem_type, '?')} {_shape(v)}")
    for p in proto.metadata_props:
        lines.append(f"  metadata {p.key} = {p.value}")
    counts = census(proto)
    lines += ["  " + line for line in format_table(["op", "domain", "count"],
                                                   [[c.op_type, c.domain or "ai.onnx", c.count] for c in counts]).splitlines()]
    custom = non_standard(counts)
    lines.append("  operator domains: " + ("standard ONNX only" if not custom else
                                            ", ".join(f"{c.domain}::{c.op_type}" for c in custom)))
    return lines


def inspect_checkpoint(path: Path, state_key: str | None = None) -> list[str]:
    """Metadata, tensors and parameter count of a checkpoint (safetensors or state dict)."""
    meta: dict[str, str] = {}
    unwrapped = None
    if is_safetensors(path):
        state, meta = read_safetensors(path)
        kind = "safetensors checkpoint"
    else:
        state, unwrapped = read_state_dict(path, state_key)
        kind = "PyTorch state dict (loaded with weights_only=True)"
    params = sum(t.numel() for t in state.values() if t.is_floating_point())
    lines = [f"{kind} {path}", f"  {len(state)} tensors, {params:,} parameters"]
    if unwrapped:
        lines.append(f"  {unwrapped}")
    for key in sorted(meta):
        lines.append(f"  metadata {key} = {meta[key]}")
    if meta.get("arch"):
        if meta["arch"] in zoo.names():
            lines.append(f"  input (C, H, W) = {zoo.input_shape(meta['arch'])}: {zoo.description(meta['arch'])}")
    return lines


def inspect_path(path: Path, state_key: str | None = None) -> list[str]:
    if path.is_dir():
        raise XVDeployError(f"{path} is a directory; expected a checkpoint or an ONNX file")
    if not path.is_file():
        raise XVDeployError(f"{path}: no such file; expected a checkpoint or an ONNX file")
    if path.suffix == ".onnx":
        return inspect_onnx(path)
    if path.suffix in (".plan", ".engine"):
        return inspect_engine(path)
    return inspect_checkpoint(path, state_key)


def inspect_engine(path: Path) -> list[str]:
    """What the sidecar JSON written by ``xvdeploy build`` says about an engine (no TensorRT needed):
    flavour, version, where it was built and for which GPUs, what the parser made of the graph, every field."""
    record = read_sidecar(path)
    lines = [f"TensorRT engine {path}, {path.stat().st_size:,} bytes"]
    if record is None:
        return lines + ["  no sidecar JSON beside it (built outside xvdeploy?)"]
    lines.append(f"  {record.summary()}")
    lines += [f"  note: {note}" for note in record.notes]
    if record.network_report:
        lines += [f"  {line}" for line in format_report(record.network_report, record.platform.label)]
    skip = {"network_report", "notes"}
    return lines + [f"  {key} = {json.dumps(value)}" for key, value in asdict(record).items() if key not in skip]
