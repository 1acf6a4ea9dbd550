#!/usr/bin/env python
"""Measure INT8 quantization (issue 16) on this machine and regenerate the INT8 section of docs/benchmarks.md.

    python benchmarks/int8.py                 # full run (~15 min on 2 shared cores), rewrites docs/benchmarks.md
    python benchmarks/int8.py --quick         # smoke run (~2 min: digits only, minmax, 2 rounds), prints only
    python benchmarks/int8.py --rounds 10 --json int8.json

Only the text between ``<!-- int8:begin -->`` and ``<!-- int8:end -->`` is
replaced (appended at the end if missing); the file is written atomically.

Sections: (1) the shipped digits model, float vs int8: held-out accuracy,
rel-L2 and top-1 agreement of the logits for both X-volution placements,
the three calibration methods and both activation layouts, plus the
per-layer sensitivity of both placements; (2) ``xv_resnet50_s3`` (random
weights): the same error metrics for the placements and layouts; (3) its
latency at batch 8, int8 vs fp32 vs bf16, every variant timed in interleaved
rounds in one process (``benchmarks.cpu_measure.interleave``), with paired
per-round ratios (median and quartiles: the noise of this shared machine).
The numbers are rendered by ``benchmarks/int8_render.py``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: import this checkout's benchmarks/ and xvdeploy/
    sys.path.insert(0, str(ROOT))

from benchmarks.cpu_measure import elapsed, interleave, log, median, ort_default_threads, paired_ratio, quartiles  # noqa: E402,E501
from benchmarks.docblock import DOC, write_block, write_json  # noqa: E402
from benchmarks.int8_render import BEGIN, DEFAULT_ROUNDS, END, LATENCY_VARIANTS, render_int8  # noqa: E402
from xvdeploy import zoo  # noqa: E402
from xvdeploy._lazy import require  # noqa: E402
from xvdeploy.bench.backends.base import RunnerSpec  # noqa: E402
from xvdeploy.bench.backends.openvino_backend import int8_layers  # noqa: E402
from xvdeploy.bench.backends.ort_backend import OrtRunner  # noqa: E402
from xvdeploy.bench.backends.torch_backend import TorchRunner  # noqa: E402
from xvdeploy.bench.environment import environment  # noqa: E402
from xvdeploy.checkpoint import load_checkpoint  # noqa: E402
from xvdeploy.data import random_input  # noqa: E402
from xvdeploy.export import export_onnx  # noqa: E402
from xvdeploy.export.runtimes import OPENVINO_PRECISIONS, openvino_compile  # noqa: E402
from xvdeploy.folding import fold  # noqa: E402
from xvdeploy.metrics import parity  # noqa: E402
from xvdeploy.models.digits import CHECKPOINT  # noqa: E402
from xvdeploy.quant.calibration import load_calibration  # noqa: E402
from xvdeploy.quant.core import (  # noqa: E402
    load_float_model, model_input, prepare, quantize_prepared, save_checked,
)
from xvdeploy.quant.evaluate import compare_models  # noqa: E402
from xvdeploy.quant.options import QuantizeOptions  # noqa: E402
from xvdeploy.quant.sensitivity import sensitivity  # noqa: E402

LATENCY_BATCH = 8
R50 = "xv_resnet50_s3"
R50_CALIBRATION, R50_EVAL = 8, 8  # random-normal inputs (seeds 1 and 2): the network has random weights anyway
#: extra entropy rows (int8, split-scales): onnxruntime's default histogram, and TensorRT's bin count
ENTROPY_VARIANTS = ({"num_bins": 128}, {"num_bins": 2048})


def _export(model, path: Path, shape) -> Path:
    export_onnx(model, path, shape, check=False, compare_plain=False)
    return path


def _quantize(model, x, options, workdir: Path, calibrator_options=None):
    start = time.perf_counter()
    prep = prepare(model, x, options, workdir, calibrator_options)
    return prep, quantize_prepared(prep), time.perf_counter() - start


def section_digits(args, workdir: Path) -> dict:
    """Float vs int8 on the digits held-out split for every layout × placement × method; sensitivity tables."""
    path = _export(fold(load_checkpoint(CHECKPOINT)), workdir / "digits.onnx", (1, 1, 8, 8))
    model = load_float_model(path)
    inp = model_input(model)
    cal = load_calibration("digits", inp.shape)
    methods = ["minmax"] if args.quick else ["minmax", "entropy", "percentile"]
    runs = [(a, p, m, None) for a in ("int8", "uint8") for p in ("split-scales", "float-pssa") for m in methods]
    if not args.quick:
        runs += [("int8", "split-scales", "entropy", bins) for bins in ENTROPY_VARIANTS]
    rows, sens = [], {}
    for activations, placement, method, bins in runs:
        prep, qmodel, took = _quantize(model, cal.x, QuantizeOptions(method, placement, (), activations), workdir, bins)
        m = compare_models(model, qmodel, cal.eval_x, cal.eval_labels, inp)
        rows.append({"activations": activations, "placement": placement, "method": method,
                     "bins": bins["num_bins"] if bins else None, "passes": prep.calibration_passes, "seconds": took,
                     **m})
        log(f"digits {activations} {placement} {method}{' bins' if bins else ''}: rel-L2 {m['rel_l2']:.3e} "
            f"accuracy {m['accuracy_int8']:.4f}")
        if activations == "int8" and method == "minmax" and not bins:
            sens[placement] = sensitivity(prep, cal.eval_x, cal.eval_labels, cal.eval_description).to_dict()
    return {"calibration": cal.description, "evaluation": cal.eval_description, "rows": rows, "sensitivity": sens,
            "load_1min": os.getloadavg()[0]}


def section_resnet(args, workdir: Path) -> dict:
    """``xv_resnet50_s3`` (random weights): int8 error per layout and placement, then batch-8 latency."""
    name = "xv_digits" if args.quick else R50
    shape = zoo.input_shape(name)
    folded = fold(zoo.create_random(name))
    path = _export(folded, workdir / f"{name}.onnx", (1, *shape))
    model = load_float_model(path)
    inp = model_input(model)
    x_cal, x_eval = random_input((R50_CALIBRATION, *shape), seed=1), random_input((R50_EVAL, *shape), seed=2)
    rows, files = [], {}
    for activations, placement in (("uint8", "split-scales"), ("uint8", "float-pssa"), ("int8", "split-scales"),
                                   ("int8", "float-pssa")):
        prep, qmodel, took = _quantize(model, x_cal, QuantizeOptions("minmax", placement, (), activations), workdir)
        m = compare_models(model, qmodel, x_eval, None, inp)
        rows.append({"activations": activations, "placement": placement, "alphas": prep.alphas, "seconds": took, **m})
        log(f"{name} {activations} {placement}: rel-L2 {m['rel_l2']:.3e} in {took:.0f}s")
        files[(activations, placement)] = workdir / f"{name}.{activations}.{placement}.onnx"
        save_checked(qmodel, files[(activations, placement)])
    latency = section_latency(args, name, path, files, folded, shape)
    return {"name": name, "calibration_inputs": R50_CALIBRATION, "eval_inputs": R50_EVAL, "rows": rows,
            "latency": latency, "load_1min": os.getloadavg()[0]}


def _openvino(source, x: np.ndarray, precision: str):
    """OpenVINO CPU: an ONNX file (the export, or a Q/DQ file), or the PyTorch model where OpenVINO cannot read
    the export (Pad mode=wrap). Returns the timed call, the output and the compiled model."""
    ov = require("openvino", "benchmarks/int8.py's OpenVINO rows")
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if isinstance(source, Path):
        compiled, _ = openvino_compile(source, precision, config=config)
    else:
        compiled = ov.Core().compile_model(ov.convert_model(source.eval(), example_input=torch.from_numpy(x)), "CPU",
                                           {**config, "INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision]})
    request = compiled.create_infer_request()
    request.infer({0: x})
    return (lambda: request.infer({0: x})), compiled(x)[0], compiled


def section_latency(args, name: str, onnx_path: Path, files: dict, folded, shape) -> dict:
    ov = require("openvino", "benchmarks/int8.py's OpenVINO rows")

    x = np.random.default_rng(0).standard_normal((LATENCY_BATCH, *shape), dtype=np.float32)
    with torch.no_grad():
        ref = folded.eval()(torch.from_numpy(x)).numpy()
    ort_files = {"onnxruntime fp32": onnx_path, "onnxruntime int8 U8S8 split-scales": files[("uint8", "split-scales")],
                 "onnxruntime int8 U8S8 float-pssa": files[("uint8", "float-pssa")],
                 "onnxruntime int8 S8S8 split-scales": files[("int8", "split-scales")]}
    runners = {k: OrtRunner(RunnerSpec("onnxruntime", "onnx", "fp32"), p) for k, p in ort_files.items()}
    runners["torch fp32"] = TorchRunner(RunnerSpec("torch", "folded", "fp32"), folded)
    runners["torch bf16"] = TorchRunner(RunnerSpec("torch", "folded", "bf16"), folded)
    fns, outputs = {}, {}
    for label, runner in runners.items():
        runner.activate()
        outputs[label] = runner.infer(x)
        runner.prepare_impl(x)
        fns[label] = runner.run_prepared_impl
    try:
        ov.Core().read_model(str(onnx_path))
        ov_onnx = None
    except Exception as exc:  # Pad mode=wrap is not in OpenVINO's ONNX frontend
        ov_onnx = next((line.strip() for line in str(exc).splitlines() if "wrap" in line), str(exc).splitlines()[0])
    source = folded if ov_onnx else onnx_path
    for label, precision in (("OpenVINO fp32", "fp32"), ("OpenVINO bf16", "bf16")):
        fns[label], outputs[label], _ = _openvino(source, x, precision)
    int8_layers_seen = None
    if ov_onnx is None:
        label = "OpenVINO int8 S8S8 split-scales"
        fns[label], outputs[label], compiled = _openvino(files[("int8", "split-scales")], x, "fp32")
        int8_layers_seen = int8_layers(compiled)[1]
    assert list(fns) == [k for k in LATENCY_VARIANTS if k in fns], list(fns)
    log(f"latency: {len(fns)} variants × {args.rounds} rounds at batch {LATENCY_BATCH}")
    times, per_round = interleave(fns, rounds=args.rounds, reps=1, warmup=1)
    for runner in runners.values():
        runner.deactivate()
    variants = {}
    for label in fns:
        variants[label] = {"median_s": median(times[label]), "quartiles_s": quartiles(times[label]),
                           "speedup": paired_ratio(per_round, "onnxruntime fp32", label),
                           "rel_l2": parity(outputs[label], ref)["rel_l2"], "runs": len(times[label])}
        if label.startswith("OpenVINO int8"):
            variants[label]["int8_layers"] = int8_layers_seen
    return {"batch": LATENCY_BATCH, "rounds": args.rounds, "variants": variants, "openvino": ov.__version__,
            "openvino_onnx_error": ov_onnx, "load_1min": os.getloadavg()[0]}


def cpu_flags() -> list[str]:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return [f for f in ("amx_int8", "amx_bf16", "avx512_bf16", "avx512_vnni") if f in flags]


def measure(args) -> dict:
    warnings.filterwarnings("ignore")
    run = {"environment": environment(), "ort_threads": ort_default_threads(), "load_start": os.getloadavg(),
           "quick": args.quick, "rounds": args.rounds, "cpu_flags": cpu_flags()}
    with tempfile.TemporaryDirectory(prefix="xvdeploy-int8-bench-") as tmp:
        run["digits"] = section_digits(args, Path(tmp))
        run["resnet"] = section_resnet(args, Path(tmp))
    run["load_end"] = os.getloadavg()
    run["wall_s"] = elapsed()
    return run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: digits only, minmax, 2 rounds; prints")
    parser.add_argument("--rounds", type=int, default=None, help=f"interleaved latency rounds (default {DEFAULT_ROUNDS})")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help=f"Markdown file whose INT8 block is regenerated (default {DOC.relative_to(ROOT)}; "
                             "with --quick: none)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers as JSON")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 2 if args.quick else DEFAULT_ROUNDS
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.output is None and not args.quick:
        args.output = DOC
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = measure(args)
    block = render_int8(run)
    if args.output is None:
        print(block)
    else:
        write_block(args.output, BEGIN, END, block)
        log(f"wrote the INT8 section of {args.output}")
    if args.json:
        write_json(args.json, run)
    log(f"done in {run['wall_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
