"""``xvdeploy build MODEL.onnx -o MODEL.plan``: a TensorRT engine from an exported ONNX file."""
from __future__ import annotations

from pathlib import Path

import click

from xvdeploy.cli.options import triton_options
from xvdeploy.trt.builder import PRECISIONS, BuildSettings, build_engine
from xvdeploy.trt.shapes import build_profiles

_SHAPE_HELP = "trtexec syntax NAME:DxDx…[,NAME:…]; give it once per optimization profile"


def _echo_err(line: str) -> None:
    click.echo(line, err=True)


@click.command("build")
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Engine file to write; its build record goes to OUTPUT.json.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="fp32 (TF32 off), tf32, or fp16 (TensorRT 11: the graph is converted to float16).")
@click.option("--min-shape", "min_shapes", multiple=True, metavar="SPEC",
              help=f"Smallest input shapes ({_SHAPE_HELP}).")
@click.option("--opt-shape", "opt_shapes", multiple=True, metavar="SPEC",
              help=f"Shapes to optimize for, e.g. x:1x3x224x224 ({_SHAPE_HELP}).")
@click.option("--max-shape", "max_shapes", multiple=True, metavar="SPEC", help=f"Largest input shapes ({_SHAPE_HELP}).")
@click.option("--workspace", type=click.IntRange(min=1), default=None, metavar="MiB",
              help="Builder workspace limit in MiB  [default: TensorRT's, the GPU's memory]")
@click.option("--timing-cache", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="FILE",
              help="Tactic timing cache: loaded if present, saved after the build.")
@click.option("--builder-optimization-level", "opt_level", type=click.IntRange(0, 5), default=3, show_default=True,
              help="TensorRT builder optimization level (higher: slower build, maybe faster engine).")
@click.option("--pssa-plugin", is_flag=True, help="Register the PSSA TensorRT plugin before parsing.")
@click.option("--verbose", is_flag=True, help="Show TensorRT's full log.")
@triton_options
def build(model: Path, output: Path, precision: str, min_shapes: tuple[str, ...], opt_shapes: tuple[str, ...],
          max_shapes: tuple[str, ...], workspace: int | None, timing_cache: Path | None, opt_level: int,
          pssa_plugin: bool, verbose: bool, triton) -> None:
    """Build a TensorRT engine (plan) from MODEL.onnx, for this GPU and TensorRT version."""
    settings = BuildSettings(precision, build_profiles(min_shapes, opt_shapes, max_shapes), workspace, opt_level,
                             pssa_plugin)
    if triton is not None:
        triton.check(output, onnx_path=model)
    record = build_engine(model, output, settings, timing_cache=timing_cache, verbose=verbose, progress=_echo_err)
    size_mib = output.stat().st_size / (1 << 20)
    click.echo(f"wrote {output} ({size_mib:.1f} MiB, {precision}, TensorRT {record.tensorrt_version}, "
               f"{record.gpu_name}, {record.build_seconds:.1f} s) and {output}.json")
    if triton is not None:
        triton.write(output, onnx_path=model)
