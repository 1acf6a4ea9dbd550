"""``xvdeploy bench``: parity and latency across every form and backend."""
from __future__ import annotations

from pathlib import Path

import click

from xvdeploy.cli.options import SHAPE_HELP, arch_option, model_option, overwrite_option, quiet_option, state_key_option


def _csv(text: str) -> list[str]:
    """``"torch, torch,onnxruntime"`` -> ``["torch", "onnxruntime"]`` (repeats dropped, order kept)."""
    return list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))


def _int_list(text: str) -> list[int] | None:
    """``"1,8"`` -> ``[1, 8]``; None for anything else (empty items included)."""
    try:
        values = [int(t) for t in text.split(",")]
    except ValueError:
        return None
    return list(dict.fromkeys(values)) if values and all(v > 0 for v in values) else None


def _amount(text: str, what: str) -> tuple[int | None, float | None]:
    """"20" -> (20 iterations, None); "2s" / "0.5s" -> (None, seconds)."""
    from xvdeploy.errors import XVDeployError

    expected = "expected a number of iterations (e.g. 20) or seconds (e.g. 2s)"
    try:
        iters, seconds = (None, float(text[:-1])) if text.endswith("s") else (int(text), None)
    except ValueError:
        raise XVDeployError(f"{what} {text!r}: {expected}") from None
    value = iters if iters is not None else seconds
    if value != value or value in (float("inf"), float("-inf")):  # NaN, ±inf: a warm-up that never ends
        raise XVDeployError(f"{what} {text!r}: {expected}, a finite one")
    if value < 0:
        raise XVDeployError(f"{what} {text!r}: {expected}, not negative")
    return iters, seconds


@click.command("bench")
@click.argument("model", required=False, metavar="[MODEL]")
@click.option("--backends", default=None, metavar="LIST",
              help="Some of torch,onnxruntime,openvino,tensorrt,tensorrt-rtx [default: all].")
@click.option("--batch", "batches", default=None, metavar="LIST",
              help="Batch sizes, e.g. 1,8 [default: 1, the N of --input-shape, or the fixed batch of a static ONNX "
                   "file].")
@click.option("--input-shape", default=None, metavar=SHAPE_HELP, help="Input size [default: the model's].")
@click.option("--precision", "precisions", default="fp32", metavar="LIST", help="Some of fp32,tf32,fp16,bf16,int8.")
@click.option("--device", "devices", default=None, metavar="LIST", help="cpu and/or cuda [default: cpu, plus cuda if present].")
@click.option("--warmup", default="0.2s", metavar="N|Ts", help="Warm-up per row: iterations, or seconds with an 's'.")
@click.option("--iters", default=None, type=click.IntRange(1), metavar="N",
              help="Timed iterations per row: exactly N, or at least N with --duration "
                   "[default: time-based, see --duration].")
@click.option("--duration", default=None, type=click.FloatRange(0, min_open=True), metavar="SECONDS",
              help="Time each row for this long (at least 10 iterations, or --iters) "
                   "[default: 3 unless --iters is given].")
@click.option("--seed", default=0, type=click.IntRange(0, 2**63 - 1), help="Seed of random inputs.")
@click.option("--data", default=None, metavar="random|digits|images:DIR",
              help="Input data [default: digits for the digits model, else random].")
@click.option("--calibration", default=None, metavar="DATA",
              help="int8 calibration data: digits, images:DIR, FILE.npy or FILE.npz[:KEY] [default: digits for the "
                   "digits model, the --data images, else random inputs].")
@click.option("--compile", "use_compile", is_flag=True, help="torch backend: torch.compile the module.")
@click.option("--cuda-graphs", is_flag=True, help="Replay CUDA graphs (torch and tensorrt on GPU).")
@click.option("--threads", default=None, type=click.IntRange(1, 1024),
              help="onnxruntime and OpenVINO inference threads.")
@click.option("--pssa-plugin", is_flag=True, help="Export with the custom PSSA node (onnxruntime-extensions op).")
@click.option("--engine", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="ENGINE",
              help="A prebuilt engine of MODEL ('xvdeploy build'), run by its flavour's backend.")
@click.option("--reference", default=None, metavar="CHECKPOINT|ZOO",
              help="The PyTorch model an ONNX or engine MODEL was exported from, to check parity against (--arch, "
                   "--model and --state-key apply to it) [default: the model its metadata names, if bench can "
                   "rebuild it].")
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Write JSON.")
@click.option("--markdown", "md_path", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Write Markdown.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Write a PNG plot.")
@quiet_option
@overwrite_option
@arch_option
@model_option
@state_key_option
def bench(model, backends, batches, input_shape, precisions, devices, warmup, iters, duration, seed, data, calibration,
          use_compile, cuda_graphs, threads, pssa_plugin, engine, reference, json_path, md_path, plot_path, quiet,
          overwrite, arch, model_factory, state_key) -> None:
    """Check numeric parity and measure latency of MODEL on every form and backend.

    MODEL is a checkpoint, an ONNX file, an engine (its reference: the ONNX
    file its sidecar names) or a zoo name; without
    MODEL the shipped digits model runs end to end (fold -> export -> every
    available backend) and its held-out accuracy is compared everywhere.
    Each row warms up for 0.2 s, then is timed for 3 s (at least 10
    iterations) unless --iters is given; rows whose latencies vary by more
    than 10 % (coefficient of variation) are flagged unstable.
    Exit code 1 if any result FAILs its tolerance (fp32 1e-5, tf32 1e-3,
    fp16/bf16 1e-2, int8 5e-2 rel-L2 against the float32 training form; int8
    also fails more than 0.5 points below the reference's accuracy). int8
    quantizes the ONNX file first (see 'xvdeploy quantize'), calibrated on
    --calibration.
    """
    from xvdeploy.bench import report as report_mod
    from xvdeploy.bench.core import BenchConfig, run_bench
    from xvdeploy.cli.options import checked_outputs, existing_path, parse_input_shape
    from xvdeploy.errors import ParityError, XVDeployError
    from xvdeploy.progress import reporting

    checked_outputs(overwrite, (existing_path(model), existing_path(reference)), (json_path, (".json",)),
                    (md_path, (".md", ".markdown")),
                    (plot_path, (".png", ".svg", ".pdf")))
    if plot_path is not None:
        from xvdeploy._lazy import require

        require("matplotlib", "--plot")
    batch_list = None
    if batches is not None:
        batch_list = _int_list(batches)
        if batch_list is None:
            raise XVDeployError(f"--batch {batches!r}: expected positive integers joined by commas, e.g. 1,8")
    shape = None
    if input_shape:
        shape_batch, shape = parse_input_shape(input_shape)
        if shape_batch is not None:
            if batch_list is not None and batch_list != [shape_batch]:
                raise XVDeployError(f"--input-shape {input_shape} says batch {shape_batch} but --batch says "
                                    f"{batches}; give the batch in one of them")
            batch_list = [shape_batch]
    warm_iters, warm_s = _amount(warmup, "--warmup")
    kind, images = data, None
    if data and data.startswith("images"):
        kind, _, rest = data.partition(":")
        images = Path(rest) if rest else None
    cfg = BenchConfig(model=model, backends=_csv(backends) if backends else None, batches=batch_list,
                      input_shape=shape, precisions=_csv(precisions), devices=_csv(devices) if devices else None,
                      warmup=warm_iters, warmup_s=warm_s, iters=iters, duration_s=duration, seed=seed,
                      data=kind, images_dir=images, compile=use_compile, cuda_graphs=cuda_graphs, threads=threads,
                      arch=arch, model_factory=model_factory, state_key=state_key, pssa_plugin=pssa_plugin,
                      engine=engine, calibration=calibration, reference=reference)
    with reporting(not quiet):
        result = run_bench(cfg, command=click.get_current_context().meta.get("xvdeploy.argv"))
    click.echo(report_mod.text(result))
    if json_path:
        report_mod.write_json(result, json_path)
    if md_path:
        report_mod.write_markdown(result, md_path)
    if plot_path:
        report_mod.write_plot(result, plot_path)
    if result.failed:
        raise ParityError("some results FAILED their parity tolerance (see the table)")
