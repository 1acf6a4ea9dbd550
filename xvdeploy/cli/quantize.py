"""``xvdeploy quantize``: float ONNX → calibrated INT8 Q/DQ ONNX, measured against float."""
from __future__ import annotations

import json
from pathlib import Path

import click

from xvdeploy.cli.options import overwrite_option, quiet_option
from xvdeploy.quant.options import ACTIVATIONS, DEFAULT_PLACEMENT, METHODS, PLACEMENTS, QuantizeOptions


def _names(values: tuple[str, ...]) -> tuple[str, ...]:
    """``--keep-float a,b --keep-float c`` -> ``("a", "b", "c")``."""
    return tuple(v.strip() for text in values for v in text.split(",") if v.strip())


@click.command("quantize")
@click.argument("model", metavar="MODEL.onnx", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Q/DQ ONNX file to write.")
@click.option("--calibration", "calibration", required=True, metavar="DATA",
              help="Calibration data: digits, images:DIR, FILE.npy or FILE.npz[:KEY] (N×C×H×W).")
@click.option("--method", type=click.Choice(METHODS), default="minmax", help="Calibration method.")
@click.option("--placement", type=click.Choice(PLACEMENTS), default=DEFAULT_PLACEMENT,
              help="X-volution placement: split-scales gives X and T separate scales before the merged conv; "
                   "float-pssa keeps Pad, shift conv, Mul and Concat in float.")
@click.option("--activations", type=click.Choice(ACTIVATIONS), default="int8",
              help="int8: zero point 0, TensorRT's explicit-quantization layout; uint8: asymmetric, onnxruntime's "
                   "fast CPU layout (TensorRT cannot read it).")
@click.option("--keep-float", "keep_float", multiple=True, metavar="NODE|OPTYPE|BLOCK",
              help="Keep these in float: node names, op types, or PSSA blocks by the label printed (e.g. xv1); "
                   "repeat or join with commas.")
@click.option("--sensitivity", "sensitivity_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              metavar="REPORT.md|.json", help="Quantize one layer at a time and write the per-layer report.")
@click.option("--samples", type=click.IntRange(1), default=None, help="Use at most this many calibration inputs.")
@click.option("--report", "report_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the quantization report as JSON.")
@overwrite_option
@quiet_option
def quantize(model: Path, output: Path, calibration: str, method: str, placement: str, activations: str,
             keep_float: tuple[str, ...], sensitivity_path: Path | None, samples: int | None,
             report_path: Path | None, overwrite: bool, quiet: bool) -> None:
    """Quantize MODEL.onnx (a float export) to INT8 Q/DQ ONNX with static calibration.

    Per-channel symmetric int8 weights, per-tensor activations, float biases
    (onnxruntime's quantization tools, QDQ format). The result is compared
    with the float model on held-out data (the digits test split for
    --calibration digits, else the calibration inputs) and checked by
    onnx.checker before it is written.
    """
    from xvdeploy.fileio import check_output_path
    from xvdeploy.quant.calibration import load_calibration
    from xvdeploy.quant.core import load_float_model, model_input
    from xvdeploy.quant.quantize import quantize_onnx

    check_output_path(output, model, suffixes=(".onnx",), exists_ok=overwrite)
    for extra, suffixes in ((sensitivity_path, (".md", ".json")), (report_path, (".json",))):
        if extra is not None:
            check_output_path(extra, model, output, suffixes=suffixes, exists_ok=overwrite)
    if sensitivity_path is not None and report_path is not None:
        check_output_path(report_path, sensitivity_path)
    from xvdeploy.progress import reporting, step

    options = QuantizeOptions(method, placement, _names(keep_float), activations)
    with reporting(not quiet):
        inp = model_input(load_float_model(model))
        with step(f"quantize: reading the calibration data ({calibration})"):
            data = load_calibration(calibration, inp.shape, limit=samples, image_shape=inp.example)
        report = quantize_onnx(model, output, data, options, with_sensitivity=sensitivity_path is not None)
    for line in report.format_lines():
        click.echo(line)
    if sensitivity_path is not None:
        report.sensitivity.write(sensitivity_path)
        click.echo(f"wrote {sensitivity_path}")
    if report_path is not None:
        from xvdeploy.fileio import write_text_atomic

        write_text_atomic(report_path, json.dumps(report.to_dict(), indent=2) + "\n")
        click.echo(f"wrote {report_path}")
    click.echo(f"wrote {output}")
