"""benchmarks/runtimes.py: the document rendered from fixed results, and the pins .ci/run reads."""
from __future__ import annotations

import subprocess
import sys

from benchmarks import runtimes as script

META = {"cpu": "Test CPU", "cpu_count": 2, "os": "Linux", "python": "3.11", "date": "2026-01-01T00:00:00+00:00",
        "xvdeploy": "0.1.0", "torch": "2.13.0", "onnx": "1.23.2", "install_s": {"openvino": 21.5, "mnn": None}}


def _row(model, form, runtime, status, **kw):
    return dict(model=model, form=form, runtime=runtime, status=status, shape=[1, 1, 8, 8], nodes=27, opset=17,
                date="2026-01-01", **kw)


def test_render_names_versions_failures_and_what_was_not_run():
    results = [
        _row("xv_digits", "pad", "onnxruntime", "ran", rel_l2=2e-7, version="1.32.0"),
        _row("xv_digits", "pad", "openvino", "failed", reason="Unsupported padding mode: [wrap]", version="2026.4.1"),
        _row("xv_digits", "pad", "mnn", "failed", reason="MNNConvert wrote no model"),
        _row("xv_digits", "portable", "onnxruntime", "ran", rel_l2=2e-7, version="1.32.0"),
        _row("xv_digits", "portable", "openvino", "ran", rel_l2=1.6e-7, version="2026.4.1"),
        _row("xv_digits", "portable", "mnn", "ran", rel_l2=6.6e-7, version="3.6.1"),
        _row("xv_digits", "portable", "tflite", "skipped", reason="onnx2tf is not installed"),
        _row("xv_digits", "portable", "tensorrt_rtx", "parsed", reason="parsed", version="1.7.1.116"),
    ]
    doc = script.render(results, META)
    assert "| `openvino` | 2026.4.1 | `openvino==2026.4.1` | 22 s |" in doc
    assert "| `mnn` | 3.6.1 | `mnn==3.6.1` | already present |" in doc
    assert "| `xv_digits` | 27 nodes, 1x1x8x8 | ran 2.0e-07 | not run | **failed** (1) | not run | **failed** (2)" in doc
    assert "1. Unsupported padding mode: [wrap]\n2. MNNConvert wrote no model" in doc
    assert "| `xv_digits` | 27 nodes, 1x1x8x8 | ran 2.0e-07 | not run | ran 1.6e-07 | not run | ran 6.6e-07 | " \
           "skipped | parsed |" in doc
    assert "In the default form (`portable`) every installed runtime ran (TensorRT-RTX: parsed) every network" in doc
    assert "`pad` | 1 | `onnxruntime` | `openvino` (1/1), `mnn` (1/1)" in doc
    assert "not run in the stored results" in doc and "`xv_resnet50_s3`" in doc
    assert "Forms not run for a measured network: `xv_digits` static." in doc
    assert "Test CPU, 2 logical CPUs" in doc and "2026-01-01" in doc


def test_a_runtime_run_on_fewer_networks_says_so():
    rows = [_row(n, "portable", "onnxruntime", "ran", rel_l2=1e-7) for n in ("xv_digits", "resnet50")]
    doc = script.render(rows + [_row("xv_digits", "portable", "tflite", "ran", rel_l2=1e-7)], META)
    assert "`onnxruntime`, `tflite` (the 1 it was run on)" in doc


def test_a_failure_in_the_default_form_is_said_in_the_summary():
    doc = script.render([_row("xv_digits", "portable", "mnn", "failed", reason="x")], META)
    assert "In the default form (`portable`) some runtimes failed: `mnn` (1/1)" in doc


def test_pins_for_ci_print_without_importing_the_project():
    out = subprocess.run([sys.executable, script.__file__, "--pins", "ci"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == script.CI_PINS and all("==" in p for p in script.CI_PINS)
