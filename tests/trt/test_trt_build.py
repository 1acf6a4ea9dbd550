"""Real engine builds with each TensorRT flavour that can build here (in CI: TensorRT-RTX, without a GPU).

These run the real builder and parser (``tensorrt_rtx``'s CPU-only ahead-of-time
build); running the engines needs a GPU the flavour supports (test_trt_gpu.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.cli.conftest import assert_one_line_error
from xvdeploy.cli import main
from xvdeploy.trt.sidecar import read_sidecar, sidecar_path


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16"])
def test_digits_builds_at_each_precision(build_flavour, digits_onnx, tmp_path, precision):
    plan = tmp_path / f"digits-{precision}.plan"
    result = invoke("build", digits_onnx, "-o", plan, "--runtime", build_flavour, "--precision", precision)
    assert result.exit_code == 0, result.output
    assert plan.stat().st_size > 10_000
    record = read_sidecar(plan)
    assert record.flavour == build_flavour and record.precision == precision
    assert record.profiles == [{"input": {"min": [1, 1, 8, 8], "opt": [2, 1, 8, 8], "max": [8, 1, 8, 8]}}]
    assert result.stdout.startswith(f"wrote {plan} (") and f"{precision}, {record.platform.label}" in result.stdout
    if build_flavour == "tensorrt-rtx":
        assert record.strongly_typed and record.compute_capabilities == ["8.0", "8.6", "8.9", "12.0", "12.1"]
        if record.built_without_gpu:
            assert record.compute_capability == "" and "built without a GPU" in result.stdout
    if precision == "fp16" and record.strongly_typed:
        assert "converting the ONNX graph to float16" in result.stderr
    assert files(tmp_path) == {plan.name, plan.name + ".json"}  # no temporary file left behind


def test_report_maps_the_pssa_steps_to_layers(build_flavour, digits_onnx, tmp_path):
    """The digits model's two X-volution blocks: each PSSA step became wrap slice → depthwise conv → product."""
    plan = tmp_path / "digits.plan"
    result = invoke("build", digits_onnx, "-o", plan, "--runtime", build_flavour, "--report")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{read_sidecar(plan).platform.label} parsed ") and "SLICE 2" in lines[0]
    assert lines[1] == "PSSA steps (Pad wrap → depthwise shift Conv → Mul): 2, each became:"
    assert lines[2] == "  2 × SLICE (mode WRAP) → CONVOLUTION (16 groups, 3x3) → ELEMENTWISE (PROD)"
    assert lines[3].startswith("plugin layers: none")
    report = read_sidecar(plan).network_report
    assert report["census"]["CONVOLUTION"] == 5 and report["plugin_layers"] == []
    assert [step["nodes"][0].startswith("node_pad") for step in report["pssa_steps"]] == [True, True]
    shown = invoke("inspect", plan).stdout  # inspect shows the same, from the sidecar
    assert "SLICE (mode WRAP) → CONVOLUTION (16 groups, 3x3) → ELEMENTWISE (PROD)" in shown
    assert read_sidecar(plan).summary() in shown


def test_profiles_are_honoured(build_flavour, dynamic_onnx, tmp_path):
    plan = tmp_path / "dyn.plan"
    result = invoke("build", dynamic_onnx, "-o", plan, "--runtime", build_flavour,
                    "--min-shape", "x:1x3x16x16", "--opt-shape", "x:4x3x16x16", "--max-shape", "x:8x3x16x16",
                    "--min-shape", "x:16x3x16x16", "--opt-shape", "x:16x3x16x16", "--max-shape", "x:32x3x16x16")
    assert result.exit_code == 0, result.output
    profiles = read_sidecar(plan).profiles
    assert profiles == [{"x": {"min": [1, 3, 16, 16], "opt": [4, 3, 16, 16], "max": [8, 3, 16, 16]}},
                        {"x": {"min": [16, 3, 16, 16], "opt": [16, 3, 16, 16], "max": [32, 3, 16, 16]}}]


def test_rtx_compute_capability_targets(rtx, tiny_onnx, tmp_path):
    ampere, default = tmp_path / "ampere.plan", tmp_path / "default.plan"
    assert invoke("build", tiny_onnx, "-o", ampere, "--runtime", "tensorrt-rtx", "--compute-capability", "sm_86"
                  ).exit_code == 0
    assert invoke("build", tiny_onnx, "-o", default, "--runtime", "tensorrt-rtx").exit_code == 0
    assert read_sidecar(ampere).targets == ["8.6"] and read_sidecar(default).targets == ["8.0", "8.6", "8.9", "12.0",
                                                                                           "12.1"]
    # the targets live in the plan's header (4 bytes differ here: the kernels are compiled on the GPU at run time)
    assert ampere.read_bytes()[:64] != default.read_bytes()[:64]
    shown = invoke("inspect", ampere).stdout
    assert "built with TensorRT-RTX" in shown and "for compute capability 8.6" in shown


def test_rtx_turing_target_refuses_fp32_gemm(rtx, tiny_onnx, tmp_path):
    """TensorRT-RTX's support matrix footnotes FP32 on Turing; its builder refuses the FP32 GEMM: one line."""
    result = invoke("build", tiny_onnx, "-o", tmp_path / "t.plan", "--runtime", "tensorrt-rtx",
                    "--compute-capability", "7.5")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1].startswith(f"error: TensorRT-RTX could not build an engine from {tiny_onnx}")
    assert "FP32 GEMM is not supported" in result.stderr.splitlines()[-1]
    assert files(tmp_path) == {"tiny.onnx"}
    result = invoke("build", tiny_onnx, "-o", tmp_path / "t.plan", "--runtime", "tensorrt-rtx",
                    "--compute-capability", "7.5", "--precision", "fp16")
    assert result.exit_code == 0 and read_sidecar(tmp_path / "t.plan").targets == ["7.5"]


def test_rtx_ignores_the_timing_cache_and_says_so(rtx, tiny_onnx, tmp_path):
    cache = tmp_path / "timing.cache"
    result = invoke("build", tiny_onnx, "-o", tmp_path / "a.plan", "--runtime", "tensorrt-rtx", "--timing-cache", cache)
    assert result.exit_code == 0
    assert "TensorRT-RTX ignores timing caches" in result.stderr and "is neither read nor written" in result.stderr
    assert not cache.exists()
    cache.write_bytes(b"not a timing cache" * 10)  # a corrupt file is left alone
    result = invoke("build", tiny_onnx, "-o", tmp_path / "b.plan", "--runtime", "tensorrt-rtx", "--timing-cache", cache)
    assert result.exit_code == 0 and cache.read_bytes() == b"not a timing cache" * 10


def test_unparsable_onnx_gives_the_parser_errors_in_one_block(build_flavour, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="ok_node"),
         helper.make_node("NoSuchOp", ["r"], ["y"], domain="nowhere", name="bogus_node")],
        "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid("nowhere", 1)])
    model.ir_version = 10
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    result = invoke("build", path, "-o", tmp_path / "bad.plan", "--runtime", build_flavour)
    assert result.exit_code == 2 and "Traceback" not in result.output
    err = result.stderr.splitlines()
    parser_lines = [line for line in err if line.startswith("  node 'bogus_node' (NoSuchOp)")]
    assert parser_lines, result.stderr
    label = "TensorRT-RTX" if build_flavour == "tensorrt-rtx" else "TensorRT"
    assert err[-1].startswith(f"error: {label} could not parse {path}: node 'bogus_node' (NoSuchOp)")
    assert err.index(parser_lines[0]) == len(err) - 2  # the parser's block, then the one error line
    assert files(tmp_path) == {"bad.onnx"}


def _qdq_model(tmp_path: Path, make_conv_net, quantize_bias: bool = False) -> Path:
    """The conv net quantized by onnxruntime's real tool: static QDQ, per-channel int8 weights, per-tensor int8
    activations, all symmetric (TensorRT's parser refuses a non-zero zero point); the bias stays float unless
    ``quantize_bias`` (onnxruntime's default: int32)."""
    onnx = pytest.importorskip("onnx")
    quantization = pytest.importorskip("onnxruntime.quantization")

    float_path, qdq_path = tmp_path / "float.onnx", tmp_path / f"qdq{'-int32-bias' if quantize_bias else ''}.onnx"
    onnx.save(make_conv_net(batch=1), str(float_path))

    class Reader(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)

    quantization.quantize_static(str(float_path), str(qdq_path), Reader(), quant_format=quantization.QuantFormat.QDQ,
                                 per_channel=True, activation_type=quantization.QuantType.QInt8,
                                 weight_type=quantization.QuantType.QInt8,
                                 extra_options={"QuantizeBias": quantize_bias, "ActivationSymmetric": True,
                                                "WeightSymmetric": True})
    float_path.unlink()
    return qdq_path


def test_int8_builds_the_qdq_graph(build_flavour, tmp_path, make_conv_net):
    qdq = _qdq_model(tmp_path, make_conv_net)
    plan = tmp_path / "q.plan"
    result = invoke("build", qdq, "-o", plan, "--runtime", build_flavour, "--precision", "int8", "--report")
    assert result.exit_code == 0, result.output
    record = read_sidecar(plan)
    assert record.precision == "int8" and record.strongly_typed
    census = record.network_report["census"]
    assert census["QUANTIZE"] >= 1 and census["DEQUANTIZE"] >= 2
    if build_flavour == "tensorrt-rtx":  # said, not pretended
        assert "TensorRT-RTX's INT8 is weight-only quantized GEMM" in result.stderr
        assert record.notes and "weight-only" in record.notes[0]
        assert "note: TensorRT-RTX's INT8 is weight-only" in invoke("inspect", plan).stdout
    else:
        assert record.notes == []
    result = invoke("build", qdq, "-o", tmp_path / "h.plan", "--runtime", build_flavour, "--precision", "fp16")
    assert_one_line_error(result, "is a Q/DQ (quantized) graph; build it with --precision int8")


def test_int32_quantized_bias_is_refused_by_the_parser(build_flavour, tmp_path, make_conv_net):
    """onnxruntime quantizes biases to int32 by default; TensorRT's DequantizeLinear takes 8-bit (and FP8/4-bit)
    inputs only, and its parser says so: the parser's error, one line, nothing written."""
    qdq = _qdq_model(tmp_path, make_conv_net, quantize_bias=True)
    result = invoke("build", qdq, "-o", tmp_path / "q.plan", "--runtime", build_flavour, "--precision", "int8")
    assert result.exit_code == 2
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: ") and "could not parse" in last and "input has type Int32" in last
    assert files(tmp_path) == {qdq.name}


def test_sidecar_is_written_with_the_plan(build_flavour, tiny_onnx, tmp_path):
    plan = tmp_path / "t.engine"
    assert invoke("build", tiny_onnx, "-o", plan, "--runtime", build_flavour).exit_code == 0
    data = json.loads(sidecar_path(plan).read_text())
    for key in ("flavour", "tensorrt_version", "compute_capabilities", "built_without_gpu", "network_report",
                "onnx_sha256", "profiles"):
        assert key in data
    import xvdeploy.trt.sidecar as sidecar

    assert data["tensorrt_version"] == __import__(sidecar.FLAVOURS[build_flavour].module).__version__


def test_cache_builds_once(build_flavour, tiny_onnx, tmp_path):
    from xvdeploy.trt import require_flavour
    from xvdeploy.trt.builder import BuildSettings
    from xvdeploy.trt.cache import get_or_build
    from xvdeploy.trt.runtime import current_platform

    here = current_platform(*require_flavour(build_flavour, build=True))
    lines: list[str] = []
    first = get_or_build(tiny_onnx, BuildSettings("fp16"), here, tmp_path / "cache", lines.append)
    second = get_or_build(tiny_onnx, BuildSettings("fp16"), here, tmp_path / "cache", lines.append)
    assert first == second and any(line.startswith("reusing cached engine") for line in lines)
    assert read_sidecar(first).flavour == build_flavour


# -- an RTX engine where it cannot run (no GPU, or not an RTX-class one) ----------------------------------
@pytest.fixture
def rtx_engine(rtx, tiny_onnx, tmp_path):
    from xvdeploy.trt import availability

    if availability("tensorrt-rtx") is None:
        pytest.skip("an RTX GPU is here: the engine runs (test_trt_gpu.py)")
    plan = tmp_path / "tiny.engine"
    assert invoke("build", tiny_onnx, "-o", plan, "--runtime", "tensorrt-rtx").exit_code == 0
    return plan


def test_rtx_engine_without_its_gpu_is_a_skipped_row_with_the_reason(rtx_engine):
    from xvdeploy.bench.backends.base import BackendUnavailable, RunnerSpec
    from xvdeploy.bench.backends.trt_backend import TensorRTRunner

    runner = TensorRTRunner(RunnerSpec("tensorrt-rtx", "engine", "fp32", "cuda"), rtx_engine)
    with pytest.raises(BackendUnavailable) as err:
        runner.activate()
    assert "TensorRT-RTX" in err.value.reason and "7.5, 8.0, 8.6, 8.9, 12.0, 12.1" in err.value.reason
    result = invoke("bench", rtx_engine, "--quiet", "--iters", "1")  # the reference: the ONNX file it came from
    assert result.exit_code == 0, result.output
    assert "skipped: tensorrt-rtx * * *: " in result.stdout and "onnxruntime  onnx" in result.stdout


def test_rtx_engine_given_to_the_other_flavour_is_one_line(rtx_engine, tiny_onnx):
    from xvdeploy.bench.backends.base import RunnerSpec
    from xvdeploy.bench.backends.trt_backend import TensorRTRunner
    from xvdeploy.trt.sidecar import EngineMismatchError

    with pytest.raises(EngineMismatchError, match="was built with TensorRT-RTX 1.*, not TensorRT: load it with "
                                                  "--runtime tensorrt-rtx"):
        TensorRTRunner(RunnerSpec("tensorrt", "engine", "fp32", "cuda"), rtx_engine).activate()
    before = files(rtx_engine.parent)
    for args in (["bench", rtx_engine, "--backends", "tensorrt"],
                 ["bench", tiny_onnx, "--engine", rtx_engine, "--backends", "onnxruntime,tensorrt"]):
        result = invoke(*args, "--quiet", "--iters", "1")
        assert_one_line_error(result, f"engine {rtx_engine} was built with TensorRT-RTX; --backends",
                              "cannot run it: use --backends tensorrt-rtx")
    assert files(rtx_engine.parent) == before


def test_rtx_engine_load_without_gpu_says_why(rtx_engine):
    from xvdeploy.trt import TensorRTUnavailable
    from xvdeploy.trt.runtime import load_engine

    with pytest.raises(TensorRTUnavailable, match="TensorRT-RTX .* runs engines on"):
        load_engine(rtx_engine)


def test_build_stages_are_shown_and_quiet_hides_them(build_flavour, tiny_onnx, tmp_path):
    loud = invoke("build", tiny_onnx, "-o", tmp_path / "a.plan", "--runtime", build_flavour)
    assert loud.exit_code == 0 and loud.stderr.strip(), loud.output  # the build's stage lines
    quiet = invoke("build", tiny_onnx, "-o", tmp_path / "b.plan", "--runtime", build_flavour, "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout.startswith(f"wrote {tmp_path / 'b.plan'}")
    assert_one_line_error(invoke("build", tiny_onnx, "-o", tmp_path / "c.plan", "--quiet", "--verbose"),
                          "--quiet and --verbose contradict each other")
    assert not (tmp_path / "c.plan").exists()
