"""The runtime matrix for xv_digits (what CI runs; the zoo-wide matrix is benchmarks/runtimes.py → docs/runtimes.md)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.cli.conftest import assert_one_line_error, invoke
from xvdeploy.export import runtimes
from xvdeploy.export.onnxfile import ort_session
from xvdeploy.export.runtimes import ADAPTERS, check_runtimes, complaint

#: the runtimes .ci/run installs (benchmarks/runtimes.py --pins ci) or the test extra brings
CI_RUNTIMES = ("onnxruntime", "onnx.reference", "openvino", "onnx2torch", "mnn")


def _installed(name: str) -> None:
    reason = ADAPTERS[name].missing()
    if reason:
        pytest.skip(f"{name}: {reason}")


@pytest.fixture(scope="module")
def digits_default(tmp_path_factory, digits_checkpoint):
    """The shipped digits model exported as `xvdeploy export` does by default, and PyTorch's output on the held-out set."""
    from xvdeploy import fold, load_checkpoint
    from xvdeploy.data import digits_split

    import torch

    path = tmp_path_factory.mktemp("rt") / "digits.onnx"
    model = fold(load_checkpoint(digits_checkpoint))
    from xvdeploy import export_onnx

    export_onnx(model, path, (1, 1, 8, 8), compare_plain=False, check=False)
    _, _, x, labels = digits_split()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    return path, x, labels, ref


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_digits_default_export_runs_in_every_runtime(name, digits_default):
    """The default export (opset 17, Slice+Concat cyclic pad) on all 449 held-out images: same logits, same accuracy."""
    _installed(name)
    path, x, labels, ref = digits_default
    (result,) = check_runtimes(path, [name], x, ref)
    if ADAPTERS[name].parse_only:
        assert result.status == "parsed", result.format_line()
        return
    assert result.status == "ran", result.format_line()
    assert result.rel_l2 <= 1e-5 and result.version


def test_digits_accuracy_is_the_same_in_openvino(digits_default):
    _installed("openvino")
    path, x, labels, _ = digits_default
    y = ADAPTERS["openvino"].run(path, x, None)
    assert round(float(np.mean(y.argmax(1) == labels)), 4) == 0.9911


def test_pad_wrap_graph_fails_with_each_runtimes_own_reason(tiny_onnx):
    """A graph with Pad(mode=wrap) (opset 19): onnxruntime runs it, the others say why not in one line."""
    session = ort_session(tiny_onnx)
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16), dtype=np.float32)
    ref = session.run(None, {"x": x})[0]
    names = [n for n in ("onnxruntime", "openvino", "onnx2torch", "mnn") if not ADAPTERS[n].missing()]
    results = {r.runtime: r for r in check_runtimes(tiny_onnx, names, x, ref)}
    assert results["onnxruntime"].status == "ran"
    expected = {"openvino": "Unsupported padding mode: [wrap]", "onnx2torch": "operation_type='Pad', version=19",
                "mnn": "MNNConvert wrote no model"}
    for name, fragment in expected.items():
        if name in results:
            r = results[name]
            assert r.status == "failed" and fragment in r.reason and "\n" not in r.reason, r.format_line()


def test_a_runtime_that_is_not_installed_is_named_as_skipped(monkeypatch, tiny_onnx):
    monkeypatch.setattr(runtimes, "_onnx2tf", lambda: None)
    (r,) = check_runtimes(tiny_onnx, ["tflite"], np.zeros((1, 3, 16, 16), np.float32), np.zeros((1, 5), np.float32))
    assert r.status == "skipped" and "onnx2tf is not installed" in r.format_line() and not r.failed


def test_wrong_output_is_a_failure_not_a_run(tiny_onnx):
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16), dtype=np.float32)
    ref = ort_session(tiny_onnx).run(None, {"x": x})[0]
    (r,) = check_runtimes(tiny_onnx, ["onnx.reference"], x, ref * 1.01)
    assert r.failed and "over the 0.0001 limit" in r.reason and r.rel_l2 == pytest.approx(0.0099, rel=0.01)


@pytest.mark.parametrize("text, expected", [
    ("Exception from src/inference/src/cpp/core.cpp:84:\nCheck 'false' failed at x.cpp:151:\nFrontEnd API failed with "
     "OpConversionFailure:\n-- Pad-19 with a message:\nWhile validating ONNX node '<Node(Pad): pad>':\n"
     "Unsupported padding mode: [wrap]\n\nSummary:\n-- Conversion is failed for: Pad-19\n",
     "Unsupported padding mode: [wrap] (failed: Pad-19)"),
    ("ERROR: The trace log is below.\nTraceback (most recent call last):\n  File \"x.py\", line 1\n"
     "ValueError: Exception encountered when calling layer \"tf.pad\" (type TFOpLambda).\n\n"
     "Value of argument `mode` expected to be one of \"CONSTANT\". Received `mode` = WRAP\n\n"
     "Call arguments received by layer \"tf.pad\":\nERROR: onnx_op_name: node_pad\n",
     "Exception encountered when calling layer \"tf.pad\" (type TFOpLambda). Value of argument `mode` expected to be "
     "one of \"CONSTANT\". Received `mode` = WRAP (ONNX node node_pad)"),
    ("[22:45:01] :41: MNN only support ['constant', 'reflect'] Pad mode\n[22:45:01] :220: These Op Not Support: "
     "ONNX::Pad \nConverted Failed!\n", "These Op Not Support: ONNX::Pad"),
    ("", "no output"),
])
def test_complaint_is_the_line_that_says_what_went_wrong(text, expected):
    assert complaint(text) == expected


def test_cli_check_runtimes_prints_one_line_each(tmp_path, digits_checkpoint):
    src = tmp_path / "digits.safetensors"
    shutil.copy(digits_checkpoint, src)
    out, rep = tmp_path / "d.onnx", tmp_path / "r.json"
    result = invoke("export", src, "-o", out, "--no-compare", "--check-runtimes", "onnxruntime,onnx.reference,tflite",
                    "--report", rep)
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("runtime ")]
    assert len(lines) == 3 and lines[0].startswith("runtime onnxruntime ") and ": ran, rel-L2 " in lines[0]
    assert lines[1].startswith("runtime onnx.reference ") and ": ran, rel-L2 " in lines[1]
    assert lines[2].startswith("runtime tflite") and (": ran" in lines[2] or ": skipped: " in lines[2])
    data = json.loads(rep.read_text())
    assert [r["runtime"] for r in data["runtimes"]] == ["onnxruntime", "onnx.reference", "tflite"]


def test_cli_check_runtimes_failure_exits_1_and_keeps_the_file(tmp_path):
    _installed("openvino")
    out = tmp_path / "w.onnx"
    result = invoke("export", "xv_digits", "-o", out, "--opset", "19", "--no-compare", "--check-runtimes", "openvino")
    assert result.exit_code == 1, result.output
    assert "runtime openvino" in result.output and "failed: Unsupported padding mode: [wrap]" in result.output
    assert out.is_file() and "was written, but openvino failed to run it" in result.output


def test_cli_check_runtimes_unknown_name_is_a_usage_error(tmp_path):
    assert_one_line_error(invoke("export", "xv_digits", "-o", tmp_path / "x.onnx", "--check-runtimes", "tvm"),
                          "unknown runtime 'tvm'", "onnxruntime")
    assert list(tmp_path.iterdir()) == []
