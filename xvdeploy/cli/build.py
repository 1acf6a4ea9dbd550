"""``xvdeploy build MODEL.onnx -o MODEL.plan``: a TensorRT or TensorRT-RTX engine from an exported ONNX file."""
from __future__ import annotations

from pathlib import Path

import click

from xvdeploy.cli.options import checked_outputs, overwrite_option, quiet_option, triton_options
from xvdeploy.errors import XVDeployError
from xvdeploy.trt.flavour import NAMES, parse_compute_capability, resolve
from xvdeploy.trt.report import format_report
from xvdeploy.trt.settings import PRECISIONS, BuildSettings
from xvdeploy.trt.shapes import build_profiles

_SHAPE_HELP = "trtexec syntax NAME:DxDx…[,NAME:…]; give it once per optimization profile"


def _echo_err(line: str) -> None:
    click.echo(line, err=True)


def _compute_capabilities(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(parse_compute_capability(v) for text in values for v in text.split(",") if v.strip())


@click.command("build")
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Engine file to write; its build record goes to OUTPUT.json.")
@click.option("--runtime", type=click.Choice(NAMES), default=None,
              help="tensorrt (data-centre GPUs; builds on the target GPU) or tensorrt-rtx (RTX GPUs; builds "
                   "without a GPU)  [default: whichever is installed, tensorrt first]")
@click.option("--compute-capability", "compute_capabilities", multiple=True, metavar="CC",
              help="TensorRT-RTX target GPUs, e.g. 8.6 or 8.9,12.0 (repeatable)  "
                   "[default: TensorRT-RTX's: 8.0 and up, without Turing 7.5]")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="fp32 (TF32 off), tf32, fp16 (strongly typed flavours: the graph is converted to float16), or "
                   "int8 (a Q/DQ ONNX, e.g. from 'xvdeploy quantize').")
@click.option("--min-shape", "min_shapes", multiple=True, metavar="SPEC",
              help=f"Smallest input shapes ({_SHAPE_HELP}).")
@click.option("--opt-shape", "opt_shapes", multiple=True, metavar="SPEC",
              help=f"Shapes to optimize for, e.g. x:1x3x224x224 ({_SHAPE_HELP}).")
@click.option("--max-shape", "max_shapes", multiple=True, metavar="SPEC", help=f"Largest input shapes ({_SHAPE_HELP}).")
@click.option("--workspace", type=click.IntRange(min=1), default=None, metavar="MiB",
              help="Builder workspace limit in MiB  [default: TensorRT's, the GPU's memory]")
@click.option("--timing-cache", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="FILE",
              help="Tactic timing cache: loaded if present, saved after the build (TensorRT; TensorRT-RTX ignores it).")
@click.option("--builder-optimization-level", "opt_level", type=click.IntRange(0, 5), default=3, show_default=True,
              help="TensorRT builder optimization level (higher: slower build, maybe faster engine).")
@click.option("--pssa-plugin", is_flag=True, help="Register the PSSA TensorRT plugin before parsing.")
@click.option("--report", is_flag=True,
              help="Print what the parser made of the graph: layer census, PSSA steps mapped to layers, plugin layers.")
@click.option("--verbose", is_flag=True, help="Show TensorRT's full log.")
@overwrite_option
@quiet_option
@triton_options
def build(model: Path, output: Path, runtime: str | None, compute_capabilities: tuple[str, ...], precision: str,
          min_shapes: tuple[str, ...], opt_shapes: tuple[str, ...], max_shapes: tuple[str, ...], workspace: int | None,
          timing_cache: Path | None, opt_level: int, pssa_plugin: bool, report: bool, verbose: bool, overwrite: bool,
          quiet: bool, triton) -> None:
    """Build a TensorRT engine (plan) from MODEL.onnx: with TensorRT for this GPU, or with TensorRT-RTX for the
    RTX GPUs given by --compute-capability (no GPU needed to build)."""
    if quiet and verbose:
        raise XVDeployError("--quiet and --verbose contradict each other; give one")
    # the engine (unless --overwrite) and its sidecar (its name must fit too), before a build of minutes
    checked_outputs(overwrite, (model,), (output, (".plan", ".engine", ".trt")))
    checked_outputs(True, (model,), (Path(f"{output}.json"), (".json",)))
    settings = BuildSettings(precision, build_profiles(min_shapes, opt_shapes, max_shapes), workspace, opt_level,
                             pssa_plugin, runtime, _compute_capabilities(compute_capabilities))
    if triton is not None:
        triton.check(output, onnx_path=model)
        if resolve(runtime).is_rtx:
            raise XVDeployError("--triton-repo: Triton's TensorRT backend loads TensorRT engines, not TensorRT-RTX ones; "
                                "build with --runtime tensorrt for Triton (or add the ONNX file with 'xvdeploy export "
                                "--triton-repo')")
    from xvdeploy.trt.builder import build_engine  # TensorRT, ONNX and torch: only when a build runs

    record = build_engine(model, output, settings, timing_cache=timing_cache, verbose=verbose,
                          progress=None if quiet else _echo_err)  # --quiet: no stages, no TensorRT warnings
    if report:
        for line in format_report(record.network_report, record.platform.label):
            click.echo(line)
    size_mib = output.stat().st_size / (1 << 20)
    where = "built without a GPU" if record.built_without_gpu else f"on {record.gpu_name}"
    click.echo(f"wrote {output} ({size_mib:.1f} MiB, {precision}, {record.platform.label}, {where}, for compute "
               f"capability {', '.join(record.targets)}, {record.build_seconds:.1f} s) and {output}.json")
    if triton is not None:
        triton.write(output, onnx_path=model)
