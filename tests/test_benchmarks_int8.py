"""The INT8 benchmark script's rendering from fixed numbers and its marked block (nothing is measured)."""
from __future__ import annotations

import pytest

from benchmarks import docblock, int8, int8_render

ENV = {"date": "2026-01-02T03:04:05+00:00", "os": "Linux-test", "python": "3.11.7", "cpu": "Test CPU", "cpu_count": 2,
       "torch_threads": 2, "gpu": None, "versions": {"xvdeploy": "0.1.0", "torch": "2.13.0+cpu", "numpy": "2.4.6",
                                                     "onnx": "1.23.2", "onnxscript": "0.7.2", "onnxruntime": "1.32.0"}}


def _row(activations, placement, method, bins=None, rel=2e-2, acc=0.9889):
    return {"activations": activations, "placement": placement, "method": method, "bins": bins, "seconds": 3.0,
            "rel_l2": rel, "top1_agreement": 0.9978, "accuracy_float": 0.9911, "accuracy_int8": acc}


def _sens(worst):
    layer = {"layer": worst, "op": "Conv", "weight": "xv1.conv.weight", "nodes": [worst], "rel_l2": 1.3e-2,
             "top1_agreement": 1.0, "accuracy": 0.9911}
    return {"data": "d", "float_accuracy": 0.9911, "whole": {**layer, "layer": "(all layers)", "weight": ""},
            "layers": [layer]}


def run(accuracy=0.9889, speedup=2.3):
    variants = {label: {"median_s": 1.0 / (speedup if "U8S8 split" in label else 1.0), "quartiles_s": (0.9, 1.1),
                        "speedup": (speedup if "U8S8 split" in label else 1.0, 0.9, 1.1), "rel_l2": 1e-2, "runs": 6}
                for label in int8_render.LATENCY_VARIANTS}
    return {"environment": ENV, "ort_threads": 2, "load_start": (1.0, 1.0, 1.0), "load_end": (2.0, 2.0, 2.0),
            "quick": False, "rounds": 6, "wall_s": 600.0, "cpu_flags": ["amx_int8", "amx_bf16"],
            "digits": {"calibration": "digits training split (1348 images)", "evaluation": "digits held-out split",
                       "rows": [_row("int8", "split-scales", "minmax", acc=accuracy),
                                _row("int8", "float-pssa", "minmax", rel=8.4e-2),
                                _row("int8", "split-scales", "entropy", bins=128),
                                _row("int8", "split-scales", "entropy", bins=2048, rel=1.27e-1)],
                       "sensitivity": {"split-scales": _sens("node_conv2d_2"), "float-pssa": _sens("node_conv2d_4")},
                       "load_1min": 1.5},
            "resnet": {"name": "xv_resnet50_s3", "calibration_inputs": 8, "eval_inputs": 8, "load_1min": 1.5,
                       "rows": [{"activations": "uint8", "placement": "split-scales", "alphas": {"a": 0.2},
                                 "seconds": 60.0, "rel_l2": 1.1e-2, "top1_agreement": 1.0}],
                       "latency": {"batch": 8, "rounds": 6, "variants": variants, "openvino": "2026.4",
                                   "openvino_onnx_error": "Unsupported padding mode: [wrap]", "load_1min": 1.5}}}


def test_block_has_markers_sections_and_verdicts():
    block = int8_render.render_int8(run())
    assert block.startswith(int8_render.BEGIN) and block.endswith(int8_render.END)
    for heading in ("### 1. The shipped digits model", "### 2. `xv_resnet50_s3`", "### 3. `xv_resnet50_s3` at batch 8"):
        assert heading in block
    assert "| int8 | split-scales (default) | minmax | 2.00e-02 |" in block
    assert "| int8 | split-scales | entropy (2048 bins) | 1.27e-01 |" in block
    assert "the min/max one: rel-L2 2.00e-02 against minmax's 2.00e-02" in block and "2048 bins: 1.27e-01" in block
    assert "0.22 points below — **met**" in block and "2.30× [0.90–1.10] — **met**" in block
    assert "Unsupported padding mode: [wrap]" in block and "amx_int8, amx_bf16" in block
    assert block.count("Per-layer sensitivity") == 2


@pytest.mark.parametrize("accuracy, speedup, fragments", [
    (0.9844, 2.3, ["0.67 points below — **not met**"]),
    (0.9889, 1.4, ["1.40× [0.90–1.10] — **not met**"]),
])
def test_goals_follow_the_numbers(accuracy, speedup, fragments):
    block = int8_render.render_int8(run(accuracy, speedup))
    assert all(f in block for f in fragments)


def test_write_block_keeps_the_other_sections(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text("# B\n\n<!-- cpu:begin -->\nCPU\n<!-- cpu:end -->\n\n" + int8_render.BEGIN + "\nOLD-INT8-BLOCK\n"
                   + int8_render.END + "\n\n## GPU\n")
    docblock.write_block(doc, int8_render.BEGIN, int8_render.END, int8_render.render_int8(run()))
    text = doc.read_text()
    assert "OLD-INT8-BLOCK" not in text and "CPU\n<!-- cpu:end -->" in text and text.rstrip().endswith("## GPU")
    assert text.index("<!-- cpu:end -->") < text.index(int8_render.BEGIN) < text.index("## GPU")


def test_options():
    args = int8.parse_args(["--quick"])
    assert args.output is None and args.rounds == 2
    assert int8.parse_args([]).output == docblock.DOC and int8.parse_args([]).rounds == int8_render.DEFAULT_ROUNDS
    with pytest.raises(SystemExit):
        int8.parse_args(["--rounds", "0"])
