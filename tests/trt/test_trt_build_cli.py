"""``xvdeploy build``: input errors and missing flavours (exit 2, one line, nothing written), through the CLI."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.cli.conftest import assert_one_line_error
from xvdeploy._lazy import installed
from xvdeploy.cli import main
from xvdeploy.trt import NOT_INSTALLED, TensorRTUnavailable, availability, require_tensorrt

TRT_MISSING = not installed("tensorrt")
RTX_MISSING = not installed("tensorrt_rtx")


def invoke(*args: str):
    return CliRunner().invoke(main, ["build", *map(str, args)], catch_exceptions=False)


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.fixture
def no_flavour_installed(monkeypatch):
    """This machine as one without either TensorRT package (the lookup is the only thing patched)."""
    import xvdeploy.trt.flavour as flavour

    monkeypatch.setattr(flavour, "installed", lambda name: False)


def test_without_any_tensorrt_build_exits_2_with_both_install_hints(tiny_onnx, no_flavour_installed):
    folder = tiny_onnx.parent
    before = files(folder)
    result = invoke(tiny_onnx, "-o", folder / "tiny.plan", "--precision", "fp16", "--timing-cache", folder / "t.cache")
    assert_one_line_error(result, "no TensorRT builder is installed",
                          "pip install tensorrt --extra-index-url https://pypi.nvidia.com",
                          "pip install 'xvdeploy[rtx]'", "'xvdeploy export' runs in any ONNX runtime")
    assert files(folder) == before


def test_availability_reports_the_reason(no_flavour_installed):
    assert availability() == NOT_INSTALLED
    with pytest.raises(TensorRTUnavailable) as err:
        require_tensorrt()
    assert err.value.reason == NOT_INSTALLED and err.value.exit_code == 2


@pytest.mark.skipif(not TRT_MISSING, reason="TensorRT is installed here; this checks the machine without it")
def test_runtime_tensorrt_not_installed(tiny_onnx):
    before = files(tiny_onnx.parent)
    result = invoke(tiny_onnx, "-o", tiny_onnx.parent / "a.plan", "--runtime", "tensorrt")
    assert_one_line_error(result, "TensorRT needs the 'tensorrt' package, which is not installed",
                          "pip install tensorrt --extra-index-url https://pypi.nvidia.com")
    assert files(tiny_onnx.parent) == before


@pytest.mark.skipif(not RTX_MISSING, reason="TensorRT-RTX is installed here; this checks the machine without it")
def test_runtime_rtx_not_installed(tiny_onnx):
    result = invoke(tiny_onnx, "-o", tiny_onnx.parent / "a.plan", "--runtime", "tensorrt-rtx")
    assert_one_line_error(result, "TensorRT-RTX needs the 'tensorrt_rtx' package", "pip install 'xvdeploy[rtx]'")


def test_unknown_runtime(tiny_onnx):
    result = invoke(tiny_onnx, "-o", tiny_onnx.parent / "a.plan", "--runtime", "onnxruntime")
    assert_one_line_error(result, "'onnxruntime' is not one of 'tensorrt', 'tensorrt-rtx'")
    assert files(tiny_onnx.parent) == {"tiny.onnx"}


@pytest.mark.parametrize("options, fragment", [
    (["--compute-capability", "eight"], "'eight' is not a compute capability; expected e.g. 8.6"),
    (["--compute-capability", "8.6", "--runtime", "tensorrt"], "--compute-capability is for TensorRT-RTX"),
])
def test_bad_compute_capability(tiny_onnx, options, fragment):
    result = invoke(tiny_onnx, "-o", tiny_onnx.parent / "a.plan", *options)
    assert_one_line_error(result, fragment)
    assert files(tiny_onnx.parent) == {"tiny.onnx"}


def test_unsupported_compute_capability(tiny_onnx, rtx):
    result = invoke(tiny_onnx, "-o", tiny_onnx.parent / "a.plan", "--runtime", "tensorrt-rtx",
                    "--compute-capability", "8.6,9.0")
    assert_one_line_error(result, "--compute-capability 9.0: TensorRT-RTX", "targets compute capability 7.5, 8.0, 8.6")
    assert files(tiny_onnx.parent) == {"tiny.onnx"}


def test_missing_model(tmp_path):
    result = invoke(tmp_path / "nope.onnx", "-o", tmp_path / "a.plan")
    assert_one_line_error(result, "nope.onnx does not exist")
    assert files(tmp_path) == set()


def test_not_an_onnx_file(tmp_path):
    bogus = tmp_path / "model.onnx"
    bogus.write_text("this is not a protobuf\n" * 20)
    result = invoke(bogus, "-o", tmp_path / "a.plan")
    assert_one_line_error(result, "is not an ONNX model")
    assert files(tmp_path) == {"model.onnx"}


def test_output_is_the_input(tiny_onnx):
    result = invoke(tiny_onnx, "-o", tiny_onnx)
    assert_one_line_error(result, "is the input file")


def test_output_folder_missing(tiny_onnx):
    result = invoke(tiny_onnx, "-o", tiny_onnx.parent / "missing" / "a.plan")
    assert_one_line_error(result, "does not exist")
    assert not (tiny_onnx.parent / "missing").exists()


@pytest.mark.parametrize(
    "options, fragment",
    [
        (["--opt-shape", "x1x3x16x16"], "bad --opt-shape 'x1x3x16x16'"),
        (["--opt-shape", "x:1x3x16x16", "--max-shape", "x:1x3x16"], "different ranks"),
        (["--opt-shape", "y:1x3x16x16"], "no input named 'y'"),
        (["--opt-shape", "x:1x3x32x32"], "fixed size 16 in dimension 2"),
        (["--max-shape", "x:1x3x16x16"], "need --opt-shape"),
    ],
)
def test_bad_shapes(tiny_onnx, options, fragment):
    before = files(tiny_onnx.parent)
    result = invoke(tiny_onnx, "-o", tiny_onnx.parent / "a.plan", *options)
    assert_one_line_error(result, fragment)
    assert files(tiny_onnx.parent) == before


def test_out_of_range_opt_shape(dynamic_onnx):
    result = invoke(dynamic_onnx, "-o", dynamic_onnx.parent / "a.plan", "--min-shape", "x:1x3x16x16",
                    "--opt-shape", "x:16x3x16x16", "--max-shape", "x:8x3x16x16")
    assert_one_line_error(result, "input 'x': expected min ≤ opt ≤ max in every dimension, got "
                                  "1x3x16x16 / 16x3x16x16 / 8x3x16x16")
    assert files(dynamic_onnx.parent) == {"dynamic.onnx"}


def test_dynamic_model_needs_shapes(dynamic_onnx):
    result = invoke(dynamic_onnx, "-o", dynamic_onnx.parent / "a.plan")
    assert_one_line_error(result, "dynamic input shapes: x (?x3x16x16)", "--opt-shape x:1x3x16x16")


def test_int8_needs_a_qdq_graph(tiny_onnx):
    result = invoke(tiny_onnx, "-o", tiny_onnx.parent / "a.plan", "--precision", "int8")
    assert_one_line_error(result, "--precision int8 builds an explicitly quantized graph",
                          "no QuantizeLinear/DequantizeLinear nodes", "'xvdeploy quantize'")
    assert files(tiny_onnx.parent) == {"tiny.onnx"}


def test_option_ranges_are_checked_by_click(tiny_onnx):
    result = invoke(tiny_onnx, "-o", tiny_onnx.parent / "a.plan", "--builder-optimization-level", "7")
    assert_one_line_error(result, "0<=x<=5")
    result = invoke(tiny_onnx, "-o", tiny_onnx.parent / "a.plan", "--precision", "int4")
    assert_one_line_error(result, "'int4' is not one of 'fp32', 'tf32', 'fp16', 'int8'")


def test_timing_cache_must_not_be_a_folder(tiny_onnx):
    result = invoke(tiny_onnx, "-o", tiny_onnx.parent / "a.plan", "--timing-cache", tiny_onnx.parent)
    assert result.exit_code == 2  # click.Path(dir_okay=False) refuses it


def test_help_lists_the_options():
    result = CliRunner().invoke(main, ["build", "--help"])
    assert result.exit_code == 0
    for option in ("--output", "--runtime", "--compute-capability", "--precision", "--min-shape", "--opt-shape",
                   "--max-shape", "--workspace", "--timing-cache", "--builder-optimization-level", "--pssa-plugin",
                   "--report", "--verbose", "tensorrt-rtx", "int8"):
        assert option in result.output


def test_trt_modules_import_without_tensorrt():
    """Importing the TensorRT package and the build command imports neither flavour (lazy import)."""
    code = ("import sys, xvdeploy.trt.builder, xvdeploy.bench.backends.trt_backend, xvdeploy.trt.cache, "
            "xvdeploy.cli.build, xvdeploy.inspect_file; "
            "assert not {'tensorrt', 'tensorrt_rtx'} & set(sys.modules), 'tensorrt imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_rtx_engine_is_not_put_in_a_triton_repository(tiny_onnx, rtx):
    repo = tiny_onnx.parent / "repo"
    result = invoke(tiny_onnx, "-o", tiny_onnx.parent / "a.plan", "--runtime", "tensorrt-rtx", "--triton-repo", repo)
    assert_one_line_error(result, "Triton's TensorRT backend loads TensorRT engines, not TensorRT-RTX ones")
    assert files(tiny_onnx.parent) == {"tiny.onnx"}
