"""``xvdeploy build``: input errors and the missing-TensorRT path (exit 2, one line, nothing written)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from xvdeploy.cli.build import build
from xvdeploy.errors import XVDeployError
from xvdeploy.trt import NOT_INSTALLED, TensorRTUnavailable, availability, require_tensorrt

TRT_MISSING = importlib.util.find_spec("tensorrt") is None


class _Group(click.Group):
    """What the real ``xvdeploy`` group does with XVDeployError: one line on stderr, its exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except XVDeployError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group)
def cli() -> None:
    pass


cli.add_command(build)


def invoke(*args: str):
    return CliRunner().invoke(cli, ["build", *args])


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.skipif(not TRT_MISSING, reason="TensorRT is installed here; this checks the machine without it")
def test_without_tensorrt_build_exits_2_with_the_install_hint(tiny_onnx):
    folder = tiny_onnx.parent
    before = files(folder)
    result = invoke(str(tiny_onnx), "-o", str(folder / "tiny.plan"), "--precision", "fp16",
                    "--timing-cache", str(folder / "t.cache"))
    assert_one_line_error(result, "TensorRT is not installed",
                          "pip install tensorrt --extra-index-url https://pypi.nvidia.com",
                          "'xvdeploy export' runs in any ONNX runtime")
    assert files(folder) == before


@pytest.mark.skipif(not TRT_MISSING, reason="TensorRT is installed here; this checks the machine without it")
def test_availability_reports_the_reason():
    assert availability() == NOT_INSTALLED
    with pytest.raises(TensorRTUnavailable) as err:
        require_tensorrt()
    assert err.value.reason == NOT_INSTALLED and err.value.exit_code == 2


def test_missing_model(tmp_path):
    result = invoke(str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "a.plan"))
    assert_one_line_error(result, "nope.onnx does not exist")
    assert files(tmp_path) == set()


def test_not_an_onnx_file(tmp_path):
    bogus = tmp_path / "model.onnx"
    bogus.write_text("this is not a protobuf\n" * 20)
    result = invoke(str(bogus), "-o", str(tmp_path / "a.plan"))
    assert_one_line_error(result, "is not an ONNX model")
    assert files(tmp_path) == {"model.onnx"}


def test_output_is_the_input(tiny_onnx):
    result = invoke(str(tiny_onnx), "-o", str(tiny_onnx))
    assert_one_line_error(result, "is the input file")


def test_output_folder_missing(tiny_onnx):
    result = invoke(str(tiny_onnx), "-o", str(tiny_onnx.parent / "missing" / "a.plan"))
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
    result = invoke(str(tiny_onnx), "-o", str(tiny_onnx.parent / "a.plan"), *options)
    assert_one_line_error(result, fragment)
    assert files(tiny_onnx.parent) == before


def test_dynamic_model_needs_shapes(dynamic_onnx):
    result = invoke(str(dynamic_onnx), "-o", str(dynamic_onnx.parent / "a.plan"))
    assert_one_line_error(result, "dynamic input shapes: x (?x3x16x16)", "--opt-shape x:1x3x16x16")


def test_option_ranges_are_checked_by_click(tiny_onnx):
    result = invoke(str(tiny_onnx), "-o", str(tiny_onnx.parent / "a.plan"), "--builder-optimization-level", "7")
    assert result.exit_code == 2 and "0<=x<=5" in result.output
    result = invoke(str(tiny_onnx), "-o", str(tiny_onnx.parent / "a.plan"), "--precision", "int8")
    assert result.exit_code == 2 and "fp32" in result.output


def test_timing_cache_must_not_be_a_folder(tiny_onnx):
    result = invoke(str(tiny_onnx), "-o", str(tiny_onnx.parent / "a.plan"), "--timing-cache", str(tiny_onnx.parent))
    assert result.exit_code == 2  # click.Path(dir_okay=False) refuses it


def test_help_lists_the_options():
    result = CliRunner().invoke(cli, ["build", "--help"])
    assert result.exit_code == 0
    for option in ("--output", "--precision", "--min-shape", "--opt-shape", "--max-shape", "--workspace",
                   "--timing-cache", "--builder-optimization-level", "--pssa-plugin", "--verbose"):
        assert option in result.output


def test_trt_modules_import_without_tensorrt():
    """Importing the TensorRT package and the build command must not import tensorrt (lazy import)."""
    code = ("import sys, xvdeploy.trt.builder, xvdeploy.bench.backends.trt_backend, xvdeploy.trt.cache, xvdeploy.cli.build; "
            "assert 'tensorrt' not in sys.modules, 'tensorrt imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True)
