"""The openvino bench backend: fp32 really fp32, bf16 its own row, int8 really int8, unreadable models skipped with OpenVINO's
reason."""
from __future__ import annotations

import numpy as np
import pytest

from tests.cli.conftest import assert_one_line_error, invoke
from xvdeploy.bench.backends.base import BackendUnavailable, RunnerSpec
from xvdeploy.bench.core import BenchConfig, run_bench

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'xvdeploy[openvino]')")

from xvdeploy.bench.backends.openvino_backend import OpenVINORunner  # noqa: E402


def test_digits_model_in_openvino_fp32_and_bf16():
    """The shipped model: 0.9911 held-out accuracy in OpenVINO fp32 (hint f32, read back) and a real bf16 row."""
    # batch 32: the held-out split in 15 chunks (batch 1 would be 449 PyTorch reference calls)
    report = run_bench(BenchConfig(backends=["openvino"], precisions=["fp32", "bf16"], batches=[32], iters=3,
                                   warmup=1))
    rows = {r.precision: r for r in report.results}
    fp32 = rows["fp32"]
    assert fp32.backend == "openvino" and fp32.options["inference_precision"] == "f32"
    assert fp32.status == "PASS" and fp32.parity["rel_l2"] <= 1e-5
    assert round(fp32.accuracy, 4) == 0.9911 and fp32.input_shape == [32, 1, 8, 8]
    if "bf16" in rows:  # a CPU with bf16 (AMX / AVX-512 BF16): OpenVINO's own default there
        bf16 = rows["bf16"]
        assert bf16.options["inference_precision"] == "bf16" and 1e-4 < bf16.parity["rel_l2"] <= 1e-2
    else:
        (skip,) = [s for s in report.skipped if s["precision"] == "bf16"]
        assert "compiled the model in f32" in skip["reason"]


def test_digits_model_in_openvino_int8_runs_int8_layers_and_keeps_the_accuracy():
    """The int8 row: the bench's Q/DQ file (signed int8, zero point 0) runs with OpenVINO's int8 kernels (read back
    from the compiled model), within the int8 tolerance and 0.5 points of the float accuracy (0.9911)."""
    report = run_bench(BenchConfig(backends=["openvino"], precisions=["int8"], batches=[32], iters=3, warmup=1))
    (row,) = report.results
    assert row.precision == "int8" and row.status == "PASS" and 1e-4 < row.parity["rel_l2"] <= 5e-2
    assert row.options["inference_precision"] == "f32"  # what stays float is f32, not the CPU's bf16 default
    assert row.options["int8_layers"] == "5/5 Convolution, 1/1 FullyConnected"  # every compute layer
    assert row.accuracy >= 0.9911 - 0.005 and "digits training split" in report.calibration


def test_dynamic_shapes_stay_dynamic(tmp_path, digits_checkpoint):
    """One compiled model, several batch sizes and image sizes (the export's dynamic axes)."""
    onnx_path = tmp_path / "d.onnx"
    assert invoke("export", digits_checkpoint, "-o", onnx_path, "--no-compare", "--no-check").exit_code == 0
    runner = OpenVINORunner(RunnerSpec("openvino", "onnx"), onnx_path)
    with runner:
        for shape in ((1, 1, 8, 8), (5, 1, 8, 8), (2, 1, 12, 10)):
            y = runner.infer(np.zeros(shape, np.float32))
            assert y.shape == (shape[0], 10)
        assert len(runner.time(np.zeros((3, 1, 8, 8), np.float32), warmup=1, iters=2)) == 2


def test_a_model_openvino_cannot_read_is_a_skipped_row(tmp_path):
    """Pad(mode=wrap): onnxruntime runs the file, the openvino row is skipped with OpenVINO's reason."""
    import onnx

    from tests.export.conftest import conv_net

    tiny_onnx = tmp_path / "wrap.onnx"
    onnx.save(conv_net(), str(tiny_onnx))
    result = invoke("bench", tiny_onnx, "--backends", "onnxruntime,openvino", "--iters", "2", "--quiet",
                    "--json", tmp_path / "b.json")
    assert result.exit_code == 0, result.output
    assert "skipped: openvino" in result.output and "Unsupported padding mode: [wrap]" in result.output
    import json

    data = json.loads((tmp_path / "b.json").read_text())
    assert [r["backend"] for r in data["results"]] == ["onnxruntime"]


def test_unsupported_precision_and_device_say_why():
    with pytest.raises(BackendUnavailable, match="not offered by the openvino backend"):
        OpenVINORunner(RunnerSpec("openvino", "onnx", "fp16", "cpu"), "x.onnx")
    with pytest.raises(BackendUnavailable, match="int8 needs calibration inputs"):
        OpenVINORunner(RunnerSpec("openvino", "onnx", "int8", "cpu"), "x.onnx")
    with pytest.raises(BackendUnavailable, match="CPU plugin; cuda is not offered"):
        OpenVINORunner(RunnerSpec("openvino", "onnx", "fp32", "cuda"), "x.onnx")


def test_missing_openvino_names_the_extra(monkeypatch):
    import xvdeploy.bench.core as core

    monkeypatch.setattr(core, "available", lambda name: name != "openvino")
    assert_one_line_error(invoke("bench", "--backends", "openvino", "--iters", "1", "--quiet"),
                          "backend 'openvino' was asked for but", "pip install 'xvdeploy[openvino]'")
