"""``xvdeploy export``: standard-op ONNX with a parity gate, op census and TensorRT check."""
from __future__ import annotations

from pathlib import Path

import click

from xvdeploy.cli.options import (SHAPE_HELP, arch_option, model_option, overwrite_option, quiet_option,
                                  state_key_option, triton_options)


@click.command("export")
@click.argument("source", metavar="IN")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="ONNX file to write.")
@click.option("--input-shape", default=None, metavar=SHAPE_HELP,
              help="Example input shape [default: the zoo model's input at batch 1].")
@click.option("--dynamic", "dynamic", default="batch,height,width", metavar="AXES",
              help="Dynamic axes, a subset of batch,height,width.")
@click.option("--static", is_flag=True, help="Export with a fixed input shape (overrides --dynamic).")
@click.option("--opset", type=click.IntRange(1, 99), default=None,
              help="ONNX opset, 13 up to the newest onnx and onnxruntime implement [default: 17]; below 19 the "
                   "PSSA step's cyclic pad is Slice+Concat, from 19 on Pad mode=wrap unless --portable.")
@click.option("--portable", is_flag=True,
              help="Write the cyclic pad as Slice+Concat at opset ≥ 19 too (runtimes without Pad mode=wrap).")
@click.option("--no-fold", is_flag=True, help="Export the training form as it is (no fold).")
@click.option("--pssa-plugin", is_flag=True, help="Emit each PSSA step as one custom PSSA node (TensorRT plugin).")
@click.option("--simplify", is_flag=True, help="Run onnxscript's optimizer over the exported graph.")
@click.option("--check/--no-check", default=True, help="Parity against PyTorch: onnxruntime at two shapes, onnx.reference at a small one.")
@click.option("--compare/--no-compare", default=True,
              help="Census diff against the same network with plain convolutions.")
@click.option("--force", is_flag=True, help="Write the file even if the parity check fails.")
@click.option("--check-runtimes", "runtimes", default=None, metavar="LIST",
              help="Then run the written file in these runtimes, some of onnxruntime,onnx.reference,openvino,"
                   "onnx2torch,mnn,tflite,tensorrt_rtx (or all): one line each, exit 1 if one fails.")
@click.option("--report", "report_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the export report as JSON.")
@arch_option
@model_option
@state_key_option
@triton_options
@overwrite_option
@quiet_option
def export(source: str, output: Path, input_shape: str | None, dynamic: str, static: bool, opset: int | None,
           portable: bool, no_fold: bool, pssa_plugin: bool, simplify: bool, check: bool, compare: bool, force: bool,
           runtimes: str | None, report_path: Path | None, arch: str | None, model_factory: str | None,
           state_key: str | None, overwrite: bool, quiet: bool, triton) -> None:
    """Export IN (a checkpoint, training or folded form, or a zoo name) to ONNX.

    A training form is folded first unless --no-fold. The graph uses only
    default-domain ONNX operators (unless --pssa-plugin), is checked with
    onnx.checker and compared with PyTorch in onnxruntime and onnx.reference
    before it is written; the op census and a static TensorRT compatibility check are
    printed. --check-runtimes then runs the written file in other runtimes
    (those installed; the others are named as skipped) against PyTorch.
    """
    import json

    from xvdeploy import zoo
    from xvdeploy._lazy import require
    from xvdeploy.checkpoint import model_form
    from xvdeploy.cli.options import checked_outputs, echo_unwrapped, existing_path, parse_input_shape
    from xvdeploy.errors import ParityError, XVDeployError
    from xvdeploy.export import export_onnx
    from xvdeploy.export.onnx_export import DEFAULT_OPSET
    from xvdeploy.export.runtimes import resolve_runtimes
    from xvdeploy.export.onnxfile import META_ARCH, META_FORM, META_WEIGHTS
    from xvdeploy.fileio import write_text_atomic
    from xvdeploy.folding import fold
    from xvdeploy.loading import default_input_shape, load_model_source, weights_origin
    from xvdeploy.memory import check_forward_fits
    from xvdeploy.progress import reporting, step

    runtime_names = resolve_runtimes([r.strip() for r in runtimes.split(",") if r.strip()]) if runtimes else ()
    source_path = existing_path(source)
    checked_outputs(overwrite, (source_path,), (output, (".onnx",)), (report_path, (".json",)))
    given = parse_input_shape(input_shape) if input_shape else None
    if triton is not None:
        triton.check(output, pssa_plugin=pssa_plugin)
    require("onnx", "ONNX export")  # before a model is loaded and folded for nothing
    with reporting(not quiet):
        with step(f"loading {source}"):
            model, arch_name = load_model_source(source, arch, model_factory, state_key)
        echo_unwrapped(model)
        shape = (given[0] or 1, *given[1]) if given else default_input_shape(arch_name)
        if shape is None:
            raise XVDeployError(f"this model has no default input shape; give --input-shape {SHAPE_HELP}")
        check_forward_fits(model, shape, f"exporting at {'x'.join(map(str, shape))}", "give a smaller --input-shape")
        weights = weights_origin(source, source_path, model_factory, model)
        if not no_fold and model_form(model) == "train":
            with step("folding"):
                model = fold(model)
        # export_onnx shows its own long phases (trace, onnx.checker, census twin, parity)
        report = export_onnx(model, output, shape, dynamic=False if static else dynamic,
                             opset=DEFAULT_OPSET if opset is None else opset, check=check, pssa_plugin=pssa_plugin,
                             compare_plain=compare, simplify=simplify, force=force,
                             metadata={META_ARCH: arch_name or "", META_FORM: model_form(model), META_WEIGHTS: weights},
                             inputs_to_protect=(source_path,), portable=True if portable else None,
                             check_runtimes=runtime_names)
    for line in report.format_lines():
        click.echo(line)
    if report.forced:
        click.secho("WARNING: parity check FAILED and --force was given: the file was written anyway", fg="red",
                    err=True, bold=True)
    if report_path is not None:
        write_text_atomic(report_path, json.dumps(report.to_dict(), indent=2) + "\n")
    if source_path is None and zoo.pretrained(source) is None:
        click.echo(f"note: {source} is a zoo architecture with random weights (seed 0, X-volution attention branches at 0.1)")
    click.echo(f"wrote {output}")
    if triton is not None:
        triton.write(output)
    failed = [r.runtime for r in report.runtimes if r.failed]
    if failed:
        raise ParityError(f"{output} was written, but {', '.join(failed)} failed to run it (see above)")
