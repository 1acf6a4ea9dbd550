from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

from tests.cli.conftest import assert_one_line_error, invoke
from xvdeploy.bench.backends.base import BackendUnavailable, RunnerSpec
from xvdeploy.bench.backends.ort_backend import OrtRunner
from xvdeploy.bench.backends.torch_backend import TorchRunner
from xvdeploy.bench.core import BenchConfig, run_bench
from xvdeploy.bench.metrics import latency_stats, parity, status


def test_parity_metrics():
    ref = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 0.0]], dtype=np.float32)
    y = ref.copy()
    y[1, 1] = 4.0  # flips the second row's argmax
    p = parity(y, ref)
    assert p["max_abs"] == pytest.approx(3.0)
    assert p["rel_l2"] == pytest.approx(3.0 / np.linalg.norm(ref))
    assert p["top1_agreement"] == 0.5 and 0 < p["cosine"] < 1
    assert status(p, "fp32") == "FAIL" and status(parity(ref, ref), "fp32") == "PASS"
    assert status({"rel_l2": float("nan")}, "fp16") == "FAIL"


def test_latency_stats():
    s = latency_stats([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["p50"] == 3.0 and s["min"] == 1.0 and s["max"] == 100.0 and s["mean"] == 22.0


def test_runner_lifecycle_and_timing():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten())
    runner = TorchRunner(RunnerSpec("torch", "folded"), model)
    x = np.ones((2, 1, 4, 4), np.float32)
    with pytest.raises(Exception, match="not active"):
        runner.infer(x)
    with runner:
        np.testing.assert_allclose(runner.infer(x), model(torch.from_numpy(x)).detach().numpy(), rtol=1e-6)
        times = runner.time(x, warmup=2, iters=5)
        assert len(times) == 5 and all(t > 0 for t in times)
        start = time.perf_counter()
        timed = runner.time(x, warmup_s=0.05, duration_s=0.1)
        assert len(timed) > 0 and time.perf_counter() - start >= 0.15
    assert not runner.is_active


def test_fp16_on_cpu_is_unavailable_with_reason():
    with pytest.raises(BackendUnavailable, match="needs a CUDA device"):
        TorchRunner(RunnerSpec("torch", "train", "fp16", "cpu"), torch.nn.Identity())
    with pytest.raises(BackendUnavailable, match="no fp16"):
        OrtRunner(RunnerSpec("onnxruntime", "onnx", "fp16", "cpu"), "x.onnx")


def test_default_bench_runs_the_digits_model_everywhere(tmp_path):
    out_json, out_md, out_png = tmp_path / "b.json", tmp_path / "b.md", tmp_path / "b.png"
    result = invoke("bench", "--iters", "3", "--warmup", "1", "--json", out_json, "--markdown", out_md,
                    "--plot", out_png, "--quiet")
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    assert {"environment", "results"} <= set(data)
    rows = {(r["backend"], r["form"]): r for r in data["results"]}
    assert {("torch", "train"), ("torch", "folded"), ("onnxruntime", "onnx")} <= set(rows)
    accuracies = {r["accuracy"] for r in data["results"]}
    assert len(accuracies) == 1 and accuracies.pop() >= 0.95  # identical accuracy in every form and backend
    for r in data["results"]:
        assert r["status"] == "PASS" and r["parity"]["top1_agreement"] == 1.0
        assert set(r["latency_ms"]) == {"p50", "p90", "p99", "mean", "min", "max"} and r["throughput"] > 0
    if "tensorrt" not in {r["backend"] for r in data["results"]}:
        assert any(s["backend"] == "tensorrt" and "TensorRT" in s["reason"] for s in data["skipped"])
        assert "skipped: tensorrt" in result.output
    md_lines = [line for line in out_md.read_text().splitlines() if line.startswith("|")]
    cells = {line.replace("\\|", "").count("|") for line in md_lines}  # every row as wide as the header
    assert "| backend |" in md_lines[0] and len(cells) == 1, md_lines[:3]
    assert out_png.read_bytes()[:4] == b"\x89PNG"


def test_bench_onnx_file_batches_and_random_data(tmp_path, digits_checkpoint):
    onnx_path = tmp_path / "d.onnx"
    assert invoke("export", digits_checkpoint, "-o", onnx_path, "--no-compare").exit_code == 0
    report = run_bench(BenchConfig(model=str(onnx_path), backends=["onnxruntime"], batches=[1, 3], iters=2, warmup=1))
    assert [r.batch for r in report.results] == [1, 3]
    assert "no PyTorch model given" in report.reference and all(r.status == "PASS" for r in report.results)


def test_bench_static_onnx_uses_its_fixed_batch(tmp_path, digits_checkpoint):
    """A --static export fixes the batch: bench uses it (padding the last chunk of the digits split)."""
    onnx_path = tmp_path / "d4.onnx"
    assert invoke("export", digits_checkpoint, "-o", onnx_path, "--static", "--input-shape", "4x1x8x8",
                  "--no-compare").exit_code == 0
    result = invoke("bench", onnx_path, "--backends", "onnxruntime", "--data", "digits", "--iters", "2", "--quiet")
    assert result.exit_code == 0 and "0.9911" in result.output, result.output
    other = invoke("bench", onnx_path, "--backends", "onnxruntime", "--batch", "1,8", "--iters", "1", "--quiet")
    assert_one_line_error(other, "fixed batch of 4", "--batch 4")


def test_bench_images_folder(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((12, 10)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    report = run_bench(BenchConfig(data="images", images_dir=folder, backends=["torch"], iters=2, warmup=0))
    assert "3 images" in report.data and all(r.input_shape == [1, 1, 8, 8] for r in report.results)


def test_bench_failure_exit_code(tmp_path, monkeypatch):
    import xvdeploy.bench.metrics as metrics

    monkeypatch.setitem(metrics.TOLERANCES, "fp32", -1.0)  # nothing can pass: the FAIL path must be reported
    result = invoke("bench", "--backends", "torch", "--iters", "2", "--quiet")
    assert result.exit_code == 1 and "FAIL" in result.output


@pytest.mark.parametrize("args, fragments", [
    (["--backends", "tvm"], ["unknown backend 'tvm'"]),
    (["--backends", "tensorrt"], ["backend 'tensorrt' was asked for but", "pip install"]),
    (["--precision", "fp8"], ["unknown precision 'fp8'"]),
    (["--batch", "0"], ["expected positive integers"]),
    (["--batch", "1,-2"], ["expected positive integers"]),
    (["--device", "tpu"], ["unknown device 'tpu'"]),
    (["--warmup", "-1"], ["not negative"]),
    (["--duration", "0"], ["'--duration'", "--help"]),  # click's own check, also one line
    (["--threads", "0"], ["'--threads'"]),
    (["--batch", "1,,2"], ["expected positive integers"]),
    (["--cuda-graphs"], ["--cuda-graphs needs a CUDA device"]),
    (["--input-shape", "1x1x8x8"], ["three positive sizes C×H×W"]),
    (["--data", "foo"], ["unknown --data 'foo'"]),
    (["--data", "images:no/such/dir"], ["existing folder"]),
    (["--batch", "x"], ["expected positive integers"]),
    (["--input-shape", "3x8x8"], ["cannot take input shape 1x3x8x8"]),
    (["no/such/model.safetensors"], ["no such file"]),
    (["--precision", "fp16", "--backends", "torch", "--device", "cpu"], ["nothing could run", "needs a CUDA device"]),
    (["--warmup", "abc"], ["expected a number of iterations"]),
])
def test_bench_bad_input(args, fragments, tmp_path):
    if args == ["--cuda-graphs"] and torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    if args == ["--backends", "tensorrt"]:
        from xvdeploy.trt import availability

        if availability("tensorrt") is None:
            pytest.skip("TensorRT is usable here")
    result = invoke("bench", *args, "--iters", "1", "--quiet")
    assert_one_line_error(result, *fragments)


def test_bench_model_cannot_take_shape():
    result = invoke("bench", "xv_resnet34_s3", "--input-shape", "4x32x32", "--backends", "torch", "--iters", "1",
                    "--quiet", "--data", "random")
    assert_one_line_error(result, "cannot take batch 1 of 4x32x32")


def test_compiled_runners_one_after_another_stay_compiled():
    """Every runner compiles the same forward; dynamo's per-code cache (8 entries) must not fill up.

    Twelve networks sharing one ``forward`` (as resnet50 and xv_resnet50_s3, or a
    training and a folded form, do): without a reset per runner the recompile
    limit is hit after eight, which the runner turns into an error instead of
    dynamo's quiet fall-back to eager.
    """
    from torch import _dynamo

    before = _dynamo.config.fail_on_recompile_limit_hit
    x = np.ones((2, 1, 4, 4), np.float32)
    for width in range(1, 13):
        model = torch.nn.Sequential(torch.nn.Conv2d(1, width, 3), torch.nn.Flatten())
        ref = model(torch.from_numpy(x)).detach().numpy()
        with TorchRunner(RunnerSpec("torch", "folded", "fp32", "cpu"), model, compile=True) as runner:
            np.testing.assert_allclose(runner.infer(x), ref, rtol=1e-5, atol=1e-6)
    assert _dynamo.config.fail_on_recompile_limit_hit == before


def test_ort_cuda_provider_that_does_not_start_is_skipped_not_faked(monkeypatch, tmp_path):
    """onnxruntime quietly falls back to the CPU when a provider cannot start: the runner says so instead.

    Here the CUDA provider is claimed available but cannot start (CPU-only
    onnxruntime), as when cuDNN is missing on a GPU machine.
    """
    import onnxruntime as ort

    from xvdeploy import export_onnx
    from xvdeploy.bench.backends.ort_backend import ort_support

    path = tmp_path / "tiny.onnx"
    export_onnx(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)).eval(), path, (1, 1, 5, 5), compare_plain=False,
                check=False)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert "CPU" in ort_support("fp32", "cuda", plugin=True)  # the plugin op exists only on the CPU
    runner = OrtRunner(RunnerSpec("onnxruntime", "onnx", "fp32", "cuda"), path)
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider did not start"):
        runner.activate()
    assert not runner.is_active


def test_bf16_torch_runs_mixed_precision_within_tolerance():
    """bf16 is torch.autocast (as PyTorch runs it); casting the whole training form drifted to 1.01e-2."""
    report = run_bench(BenchConfig(backends=["torch"], precisions=["bf16"], iters=1, warmup=0))
    assert {(r.form, r.status) for r in report.results} == {("train", "PASS"), ("folded", "PASS")}
    assert all(1e-4 < r.parity["rel_l2"] <= 1e-2 for r in report.results)  # really reduced precision
    assert {r.accuracy for r in report.results} == {report.results[0].accuracy}


def test_int8_status_has_its_own_tolerance_and_accuracy_goal():
    close, far = {"rel_l2": 2e-2}, {"rel_l2": 8e-2}
    assert status(close, "int8") == "PASS" and status(far, "int8") == "FAIL" and status(close, "fp16") == "FAIL"
    assert status(close, "int8", accuracy=0.9889, reference_accuracy=0.9911) == "PASS"  # 0.22 points
    assert status(close, "int8", accuracy=0.9844, reference_accuracy=0.9911) == "FAIL"  # 0.67 points


def test_bench_int8_row_on_onnxruntime_cpu():
    """int8 quantizes the exported digits model (calibrated on the training split) and keeps its accuracy."""
    report = run_bench(BenchConfig(backends=["onnxruntime"], precisions=["fp32", "int8"], batches=[8], iters=2,
                                   warmup=1))
    rows = {r.precision: r for r in report.results}
    assert set(rows) == {"fp32", "int8"} and "digits training split" in report.calibration
    int8 = rows["int8"]
    assert int8.options == {"u8s8": True} and int8.status == "PASS"
    assert 1e-4 < int8.parity["rel_l2"] < 5e-2 and int8.parity["top1_agreement"] > 0.99  # really quantized
    assert int8.accuracy >= rows["fp32"].accuracy - 0.005
    with pytest.raises(BackendUnavailable, match="custom PSSA nodes cannot be quantized"):
        OrtRunner(RunnerSpec("onnxruntime", "onnx-plugin", "int8", "cpu"), "x.onnx", plugin=True)
