"""Per-layer INT8 sensitivity: quantize one layer at a time, measure the output against float.

As Polygraphy's precision debugging does for FP16, this shows which layers
cost accuracy, so a user knows what to pass to ``--keep-float``. A layer is a
weighted op (Conv, Gemm, MatMul) or one X-volution block's PSSA product
subgraph (Pad, shift conv, Mul, Concat) as a unit. Every row reuses the one
calibration of :class:`~xvdeploy.quant.core.Prepared` (with the chosen
placement applied), so rows differ only in what is quantized.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from xvdeploy.errors import XVDeployError
from xvdeploy.fileio import write_text_atomic
from xvdeploy.format import format_table, markdown_table
from xvdeploy.progress import step
from xvdeploy.quant.evaluate import output_metrics, run_model, session
from xvdeploy.quant.core import Prepared, quantize_prepared
from xvdeploy.quant.pssa_graph import RESCALED

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
HEADERS = ["layer", "op", "weight", "nodes", "rel-L2", "top-1 agree", "accuracy"]


@dataclass
class LayerSensitivity:
    layer: str
    op: str
    weight: str
    nodes: list[str]
    rel_l2: float
    top1_agreement: float | None
    accuracy: float | None


@dataclass
class SensitivityReport:
    data: str
    float_accuracy: float | None
    whole: LayerSensitivity  # every layer quantized (the placement's float nodes stay float)
    layers: list[LayerSensitivity]

    def rows(self) -> list[list[str]]:
        def fmt(v, spec):
            return "—" if v is None else format(v, spec)

        return [[r.layer, r.op, r.weight or "—", str(len(r.nodes)) if r.nodes else "all", f"{r.rel_l2:.2e}", fmt(r.top1_agreement, ".4f"), fmt(r.accuracy, ".4f")]
                for r in [self.whole, *self.layers]]

    def text(self) -> str:
        head = f"per-layer sensitivity on {self.data} (one layer quantized at a time, worst first)"
        if self.float_accuracy is not None:
            head += f"; float accuracy {self.float_accuracy:.4f}"
        return head + "\n" + format_table(HEADERS, self.rows())

    def markdown(self) -> str:
        head = f"# INT8 sensitivity\n\nOne layer quantized at a time, worst first; data: {self.data}"
        if self.float_accuracy is not None:
            head += f"; float accuracy {self.float_accuracy:.4f}"
        return head + ".\n\n" + markdown_table(HEADERS, self.rows()) + "\n"

    def to_dict(self) -> dict:
        return {"data": self.data, "float_accuracy": self.float_accuracy, "whole": asdict(self.whole),
                "layers": [asdict(r) for r in self.layers]}

    def write(self, path: Path) -> None:
        """Markdown for ``.md``, JSON for ``.json``."""
        text = json.dumps(self.to_dict(), indent=2) + "\n" if path.suffix.lower() == ".json" else self.markdown()
        write_text_atomic(path, text)


def layers(prep: Prepared) -> list[tuple[str, str, str, list[str]]]:
    """``(label, op, weight name, node names)`` of every layer that can be quantized on its own, in graph order."""
    pssa = {n: b for b in prep.blocks for n in b.nodes}
    seen, out = set(), []
    excluded = set(prep.excluded_nodes())
    for node in prep.model.graph.node:
        if node.name in excluded:
            continue
        block = pssa.get(node.name)
        if block is not None:
            if block.label not in seen:
                seen.add(block.label)
                nodes = [n for n in block.nodes if n not in excluded]
                if nodes:
                    out.append((f"{block.label} PSSA", "Pad+Conv+Mul+Concat", "", nodes))
        elif node.op_type in WEIGHTED_OPS:
            weight = node.input[1] if len(node.input) > 1 else ""
            out.append((node.name, node.op_type, weight.removesuffix(RESCALED), [node.name]))
    return out


def sensitivity(prep: Prepared, x: np.ndarray, labels: np.ndarray | None, data: str) -> SensitivityReport:
    """Quantize each layer of :func:`layers` alone and the whole model; measure each against float on ``x``."""
    units = layers(prep)
    if not units:
        raise XVDeployError("the graph has no layer to quantize (no Conv, Gemm, MatMul or PSSA block)")
    fixed = prep.input.fixed_batch
    ref = run_model(session(prep.model), x, fixed)

    def measure(label: str, op: str, weight: str, nodes: list[str] | None) -> LayerSensitivity:
        qmodel = quantize_prepared(prep, nodes_to_quantize=nodes)
        m = output_metrics(run_model(session(qmodel), x, fixed), ref, labels)
        return LayerSensitivity(label, op, weight, nodes or [], m["rel_l2"], m["top1_agreement"], m["accuracy_int8"])

    with step("quantize: sensitivity, one layer at a time", total=len(units) + 1, unit="layers") as task:
        whole = measure("(all layers)", "—", "", None)
        task.advance()
        rows = []
        for unit in units:
            rows.append(measure(*unit))
            task.advance()
    rows.sort(key=lambda r: -r.rel_l2)
    float_accuracy = float(np.mean(ref.argmax(1) == labels)) if labels is not None and ref.ndim == 2 else None
    return SensitivityReport(data, float_accuracy, whole, rows)
