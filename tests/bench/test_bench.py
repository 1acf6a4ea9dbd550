from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

from tests.cli.conftest import assert_one_line_error, invoke, time_limit
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
    report = run_bench(BenchConfig(model=str(onnx_path), backends=["onnxruntime"], batches=[1, 3], iters=2, warmup=1,
                                   data="random"))
    assert [r.batch for r in report.results] == [1, 3]
    # the file's metadata names the shipped model: that is the reference (it used to be the file itself)
    assert "shipped xv_digits checkpoint" in report.reference and all(r.status == "PASS" for r in report.results)
    assert report.data.startswith("random normal")


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
    (["--input-shape", "1x1x1x8x8"], ["three or four positive sizes, CxHxW or NxCxHxW"]),
    (["--input-shape", "2x1x8x8", "--batch", "4"], ["says batch 2 but --batch says 4"]),
    (["--data", "foo"], ["unknown --data 'foo'"]),
    (["--data", "images:no/such/dir"], ["existing folder"]),
    (["--batch", "x"], ["expected positive integers"]),
    (["--input-shape", "3x8x8"], ["cannot take input shape 1x3x8x8"]),
    (["no/such/model.safetensors"], ["no such file"]),
    (["--precision", "fp16", "--backends", "torch", "--device", "cpu"], ["nothing could run", "needs a CUDA device"]),
    (["--warmup", "abc"], ["expected a number of iterations"]),
    (["--seed", "-1"], ["'--seed'"]),  # numpy's ValueError traceback
    (["--seed", "99999999999999999999999"], ["'--seed'"]),
    (["--threads", "99999999999"], ["'--threads'"]),
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


# --- issue 12: no hang, no tautology, one line for every fault ------------------------------------------------


@pytest.mark.parametrize("args", [["--duration", "inf"], ["--duration", "nan"], ["--warmup", "infs"],
                                  ["--warmup", "nans"], ["--warmup", "1e999s"], ["--duration", "1e9"],
                                  ["--warmup", "99999999999"]])
def test_endless_timing_is_refused_at_once(args):
    """These used to run forever (and leave xvdeploy-bench-*/model.onnx behind when killed)."""
    with time_limit(120, f"bench {' '.join(args)}"):
        result = invoke("bench", "--backends", "torch", "--data", "random", *args, "--quiet")
    assert_one_line_error(result, "finite")


def test_the_runner_refuses_endless_timing_too():
    with TorchRunner(RunnerSpec("torch", "folded"), torch.nn.Identity()) as runner, time_limit(60, "Runner.time"):
        for kwargs in ({"duration_s": float("inf")}, {"warmup_s": float("inf")}, {"iters": float("inf")}):
            with pytest.raises(Exception, match="must be a finite number"):
                runner.time(np.ones((1, 1, 2, 2), np.float32), **kwargs)


def test_time_based_defaults_like_trtexec():
    timing = BenchConfig().timing()
    assert timing == {"warmup": None, "warmup_s": 0.2, "iters": 10, "duration_s": 3.0}
    assert BenchConfig(iters=5).timing() == {"warmup": None, "warmup_s": 0.2, "iters": 5, "duration_s": None}
    with TorchRunner(RunnerSpec("torch", "folded"), torch.nn.Identity()) as runner:
        times = runner.time(np.ones((1, 1, 2, 2), np.float32), warmup_s=0.05, iters=3, duration_s=0.2)
        assert len(times) >= 3 and runner.timing["timed_seconds"] >= 0.2 and runner.timing["warmup_iterations"] > 0
        assert len(runner.time(np.ones((1, 1, 2, 2), np.float32), warmup=2, iters=7)) == 7


def test_json_records_command_line_timing_and_variation(tmp_path):
    out = tmp_path / "r.json"
    result = invoke("bench", "--backends", "torch,torch", "--iters", "4", "--warmup", "2", "--data", "random",
                    "--json", out, "--quiet")
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["command"] == ["xvdeploy", "bench", "--backends", "torch,torch", "--iters", "4", "--warmup", "2",
                               "--data", "random", "--json", str(out), "--quiet"]
    assert data["timing"] == {"warmup": 2, "warmup_s": None, "iters": 4, "duration_s": None}
    assert len(data["results"]) == 2 and "2 passed, 0 failed" in result.output  # torch,torch: no duplicate rows
    for row in data["results"]:
        assert row["iterations"] == 4 and row["timing"]["warmup_iterations"] == 2
        assert row["cv"] is not None and row["cv"] >= 0 and row["unstable"] == (row["cv"] > data["unstable_cv"])
        assert -1.0 <= row["parity"]["cosine"] <= 1.0
    assert "CV" in result.output and "timing per row: warm-up 2 iterations, then 4 iterations" in result.output


def test_cosine_is_clamped_and_variation_is_std_over_mean():
    from xvdeploy.bench.metrics import variation

    y = np.full((3, 1000), 0.1, dtype=np.float32)  # float64 rounding puts this at 1 + 2e-16 unclamped
    assert parity(y, y)["cosine"] == 1.0
    assert parity(-y, y)["cosine"] == -1.0
    assert variation([1.0, 1.0, 1.0]) == 0.0 and variation([1.0]) is None
    assert variation([1.0, 3.0]) == pytest.approx(np.std([1.0, 3.0], ddof=1) / 2.0)


def _custom_op_onnx(path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("MyOp", ["input"], ["output"], domain="com.example")
    graph = helper.make_graph([node], "custom", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid("com.example", 1)])
    model.ir_version = 10
    onnx.save(model, str(path))


def test_a_custom_op_no_runtime_provides_is_named(tmp_path):
    """Was an onnxruntime traceback ("com.example:MyOp(-1) is not a registered function/op")."""
    _custom_op_onnx(tmp_path / "custom.onnx")
    result = invoke("bench", tmp_path / "custom.onnx", "--iters", "1", "--quiet")
    assert_one_line_error(result, "operator 'MyOp' of domain 'com.example'", "no installed runtime provides")


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory, digits_checkpoint):
    path = tmp_path_factory.mktemp("digits") / "digits.onnx"
    result = invoke("export", digits_checkpoint, "-o", path, "--no-compare", "--quiet")
    assert result.exit_code == 0, result.output
    return path


def test_torch_on_an_onnx_file_says_why_nothing_ran(digits_onnx):
    """`--backends torch` on an ONNX file said "nothing could run:" with nothing after it."""
    result = invoke("bench", digits_onnx, "--backends", "torch", "--iters", "1", "--quiet")
    assert_one_line_error(result, "nothing could run: torch: the torch backend runs PyTorch models",
                          "bench the checkpoint or zoo name")


def test_an_onnx_file_is_checked_against_the_model_its_metadata_names(digits_onnx):
    """Used to compare onnxruntime with itself on random data (rel-L2 0, PASS)."""
    report = run_bench(BenchConfig(model=str(digits_onnx), backends=["onnxruntime"], iters=1, warmup=0))
    assert "shipped xv_digits checkpoint" in report.reference and "xvdeploy.arch=xv_digits" in report.reference
    assert report.data.startswith("digits held-out split")
    (row,) = report.results
    assert row.status == "PASS" and row.accuracy == pytest.approx(445 / 449)
    assert 0 < row.parity["rel_l2"] < 1e-5  # a real comparison: onnxruntime is not bit-equal to PyTorch


def test_an_onnx_file_without_a_known_model_is_compared_with_itself_and_says_so(tmp_path):
    from xvdeploy import export_onnx

    path = tmp_path / "plain.onnx"
    export_onnx(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)).eval(), path, (1, 1, 8, 8), compare_plain=False,
                check=False)
    result = invoke("bench", path, "--backends", "onnxruntime", "--iters", "1", "--quiet")
    assert result.exit_code == 0, result.output
    assert "the ONNX file itself" in result.output and "proves nothing" in result.output
    assert "SELF" in result.output and "1 compared with the reference itself" in result.output


def test_reference_gives_the_checkpoint_an_onnx_file_came_from(tmp_path):
    """A user's own weights: the file alone is compared with itself (SELF); --reference their checkpoint is a real
    check (PASS), and --reference the wrong weights (the shipped ones) FAILs — the reference is really used."""
    from xvdeploy import load_checkpoint, save_checkpoint, zoo

    mine = load_checkpoint(zoo.pretrained("xv_digits"))
    with torch.no_grad():
        for p in mine.parameters():
            p.mul_(1.1)  # "retrained": not the shipped weights
    save_checkpoint(mine, tmp_path / "mine.safetensors", arch="xv_digits")
    path = tmp_path / "mine.onnx"
    assert invoke("export", tmp_path / "mine.safetensors", "-o", path, "--no-compare", "--quiet").exit_code == 0
    common = ("--backends", "onnxruntime", "--iters", "2", "--quiet", "--batch", "64")
    alone = invoke("bench", path, *common)
    assert alone.exit_code == 0 and "SELF" in alone.output and "--reference CHECKPOINT" in alone.output, alone.output
    given = invoke("bench", path, *common, "--reference", tmp_path / "mine.safetensors")
    assert given.exit_code == 0, given.output
    assert "given by --reference" in given.output and "SELF" not in given.output and "1 passed" in given.output
    wrong = invoke("bench", path, *common, "--reference", "xv_digits")
    assert wrong.exit_code == 1 and "FAIL" in wrong.output, wrong.output
    assert_one_line_error(invoke("bench", tmp_path / "mine.safetensors", "--reference", "xv_digits", "--iters", "1"),
                          "--reference gives the PyTorch model of an ONNX file or engine")


def test_non_float_weights_do_not_pass(tmp_path):
    from safetensors.torch import save_file

    from xvdeploy import zoo

    state = {k: v.round().long() if v.is_floating_point() else v for k, v in zoo.create("xv_digits").state_dict().items()}
    save_file(state, str(tmp_path / "ints.safetensors"), metadata={"format": "xvdeploy", "arch": "xv_digits"})
    result = invoke("bench", tmp_path / "ints.safetensors", "--backends", "torch", "--iters", "1", "--quiet")
    assert_one_line_error(result, "is int64 in the file; expected floating-point weights")


def test_progress_off_a_terminal_is_plain_lines(monkeypatch):
    """A row timed for 2.5 s is a step over the 2 s delay: off a terminal it is told in plain stderr lines."""
    result = invoke("bench", "--backends", "torch", "--duration", "2.5", "--warmup", "0", "--data", "random")
    assert result.exit_code == 0, result.output
    progress = [line for line in result.stderr.splitlines() if line.startswith("xvdeploy: ")]
    assert any("timing torch/train/fp32/cpu batch 1" in line for line in progress), result.stderr
    assert any("done in" in line for line in progress)
    quiet = invoke("bench", "--backends", "torch", "--iters", "2", "--data", "random", "--quiet")
    assert quiet.stderr == ""


def test_metadata_naming_another_model_is_one_line(tmp_path):
    """An ONNX file whose xvdeploy.arch names a model it is not: outputs 2x6x6 vs 10 was a numpy traceback."""
    from xvdeploy import export_onnx

    path = tmp_path / "liar.onnx"
    export_onnx(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)).eval(), path, (1, 1, 8, 8), compare_plain=False,
                check=False, metadata={"xvdeploy.arch": "xv_digits", "xvdeploy.weights": "pretrained"})
    result = invoke("bench", path, "--backends", "onnxruntime", "--iters", "1", "--quiet")
    assert_one_line_error(result, "gives outputs of shape 2x6x6 per input, the reference 10", "not the same network")
