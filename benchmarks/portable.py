#!/usr/bin/env python
"""The cyclic pad as Pad(mode=wrap) against Slice+Concat (the portable form), side by side in onnxruntime.

    python benchmarks/portable.py                     # xv_resnet50_s3 at 1x3x224x224, rewrites its block of docs/benchmarks.md
    python benchmarks/portable.py --rounds 10 -o /tmp/b.md
    python benchmarks/portable.py --model xv_digits --shape 1x1x8x8 --quick   # a smoke run, prints only

Three files of the same folded network: ``pad`` (opset 19, Pad mode=wrap),
``portable@19`` (opset 19, Slice+Concat: the pad alone differs from ``pad``)
and ``default`` (what ``xvdeploy export`` writes: opset 17, Slice+Concat).
Each gets one onnxruntime CPU session with default options; the sessions
are timed in interleaved rounds (benchmarks/cpu_measure.py: every round
runs every variant, the order alternating, a pause and an untimed run
before each turn) and the ratios are the medians of the per-round ratios,
with their quartiles. Only the text between ``<!-- portable:begin -->`` and
``<!-- portable:end -->`` of docs/benchmarks.md is replaced.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: import this checkout's benchmarks/ and xvdeploy/
    sys.path.insert(0, str(ROOT))

from benchmarks.cpu_measure import interleave, log, median, ort_default_threads, ort_runner, paired_ratio  # noqa: E402
from benchmarks.docblock import DOC, md_table, write_block  # noqa: E402

BEGIN, END = "<!-- portable:begin -->", "<!-- portable:end -->"
VARIANTS = {"pad": dict(opset=19, portable=False), "portable@19": dict(opset=19, portable=True),
            "default": dict(opset=None, portable=None)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="xv_resnet50_s3", help="a zoo name [default: xv_resnet50_s3]")
    p.add_argument("--shape", default="1x3x224x224", help="NxCxHxW [default: 1x3x224x224]")
    p.add_argument("--rounds", type=int, default=30, help="interleaved rounds [default: 30]")
    p.add_argument("--reps", type=int, default=5, help="timed runs per variant per round [default: 5]")
    p.add_argument("--quick", action="store_true", help="3 rounds of 2 runs; prints, writes only with -o")
    p.add_argument("-o", "--output", type=Path, default=None, help="document to write [default: docs/benchmarks.md]")
    return p.parse_args(argv)


def trt_layers(path: Path) -> dict | None:
    """TensorRT-RTX's parse of the file (no build): layer count and the most frequent layer types; None without it."""
    from collections import Counter

    from xvdeploy._lazy import available

    if not available("tensorrt_rtx"):
        return None
    import tensorrt_rtx as trt

    logger = trt.Logger(trt.Logger.ERROR)
    network = trt.Builder(logger).create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        return {"error": str(parser.get_error(0).desc()) if parser.num_errors else "parse failed"}
    types = Counter(str(network.get_layer(i).type).split(".")[-1] for i in range(network.num_layers))
    return {"layers": network.num_layers, "types": dict(types.most_common()), "version": trt.__version__}


def measure(model_name: str, shape: tuple[int, ...], rounds: int, reps: int) -> dict:
    from xvdeploy import export_onnx, fold
    from xvdeploy.export.census import census
    from xvdeploy.export.onnx_export import DEFAULT_OPSET
    from xvdeploy.export.onnxfile import load_model, ort_session
    from xvdeploy.loading import load_model_source

    model, _ = load_model_source(model_name)
    model = fold(model).eval()
    runners, info = {}, {}
    with tempfile.TemporaryDirectory(prefix="xvdeploy-portable-") as tmp:
        for name, opts in VARIANTS.items():
            path = Path(tmp) / f"{name}.onnx"
            log(f"export {name}")
            report = export_onnx(model, path, shape, opset=opts["opset"] or DEFAULT_OPSET, portable=opts["portable"],
                                 compare_plain=False)
            counts = {c.op_type: c.count for c in census(load_model(path))}
            info[name] = {"opset": report.opset, "portable": report.portable, "nodes": report.nodes,
                          "pad": counts.get("Pad", 0), "slice": counts.get("Slice", 0),
                          "parity": max(p.rel_l2 for p in report.parity)}
            info[name]["trt_layers"] = trt_layers(path)
            runners[name] = ort_runner(ort_session(path), shape)
        log(f"timing {len(runners)} sessions: {rounds} rounds × {reps} runs")
        times, per_round = interleave(runners, rounds=rounds, reps=reps, warmup=3)
    out = {"model": model_name, "shape": list(shape), "rounds": rounds, "reps": reps, "variants": info,
           "median_ms": {k: median(v) * 1e3 for k, v in times.items()}}
    out["ratios"] = {f"{a} / pad": paired_ratio(per_round, a, "pad") for a in ("portable@19", "default")}
    return out


def render(r: dict, env: dict, threads: int | None) -> str:
    v = r["variants"]
    rows = [[f"`{name}`", d["opset"], "Slice+Concat" if d["portable"] else "Pad(mode=wrap)", d["nodes"], d["pad"],
             d["slice"], f"{d['parity']:.1e}", f"{r['median_ms'][name]:.2f}"] for name, d in v.items()]
    ratio_rows = [[k, f"{m:.3f}", f"{lo:.3f} – {hi:.3f}"] for k, (m, lo, hi) in r["ratios"].items()]
    trt_rows = []
    for name, d in v.items():
        t = d.get("trt_layers")
        if t and "layers" in t:
            top = ", ".join(f"{k} {n}" for k, n in list(t["types"].items())[:5])
            trt_rows.append([f"`{name}`", t["layers"], top])
    trt_text = []
    if trt_rows:
        version = next(d["trt_layers"]["version"] for d in v.values() if d.get("trt_layers"))
        trt_text = [f"TensorRT-RTX {version}'s ONNX parser (a parse, no engine: there is no GPU here) on the same "
                    "files. `Pad(mode=wrap)` becomes one wrap-mode slice layer per PSSA step; the Slice+Concat form "
                    "parses too, but each Slice with a negative start and an open end on a dynamic axis becomes "
                    "shape arithmetic (SHAPE, GATHER, ELEMENTWISE, CAST layers on shape tensors) around the slice:",
                    "", md_table(["file", "layers", "most frequent layer types"], trt_rows, "lrl"), "",
                    "For a TensorRT target export with `--opset 19` (Pad(mode=wrap)); what those shape layers cost in "
                    "an engine could not be measured here.", ""]
    verdict = []
    for k, (m, lo, hi) in r["ratios"].items():
        if lo <= 1.0 <= hi:
            verdict.append(f"{k}: {m:.3f}, within the round-to-round spread (quartiles {lo:.3f}–{hi:.3f} include 1)")
        else:
            verdict.append(f"{k}: {m:.3f} (quartiles {lo:.3f}–{hi:.3f} exclude 1: "
                           f"{'slower' if m > 1 else 'faster'} by more than the noise)")
    versions = env["versions"]
    return "\n".join([
        BEGIN,
        "<!-- generated by benchmarks/portable.py — edit the script, not this block -->",
        "## The cyclic pad: Pad(mode=wrap) against Slice+Concat (onnxruntime CPU)",
        "",
        f"`{r['model']}` folded, at {'x'.join(map(str, r['shape']))}, three files of the same network: `pad` "
        "(opset 19, the PSSA step's cyclic pad as one Pad(mode=wrap) per X-volution block), `portable@19` (opset 19, "
        "the pad as 4 Slices + 2 Concats: only the pad differs) and `default` (what `xvdeploy export` writes: opset "
        "17, Slice+Concat; the form every runtime of docs/runtimes.md runs). One onnxruntime CPU session each, "
        f"default options ({threads or '?'} intra-op threads, probed), timed in {r['rounds']} interleaved rounds of "
        f"{r['reps']} runs (each round runs every variant, the order alternating; a pause and an untimed run before "
        "each turn). Ratios are medians of the per-round ratios, with their quartiles.",
        "",
        "| | |",
        "| --- | --- |",
        f"| machine | {env['cpu']}, {env['cpu_count']} logical CPUs, shared with other processes |",
        f"| versions | onnxruntime {versions.get('onnxruntime')}, torch {versions.get('torch')}, onnx {versions.get('onnx')}, "
        f"xvdeploy {versions.get('xvdeploy')} |",
        f"| date | {env['date']} |",
        "",
        md_table(["file", "opset", "cyclic pad", "nodes", "Pad", "Slice", "parity rel-L2", "median ms"], rows,
                 "lrlrrrrr"),
        "",
        md_table(["ratio (per round)", "median", "quartiles"], ratio_rows, "lrr"),
        "",
        "Reading: " + "; ".join(verdict) + ".",
        "",
        *trt_text,
        "TensorRT latency was not measured: this machine has no GPU, TensorRT's full builder is distributed only from "
        "NVIDIA's index (not reachable here), and TensorRT-RTX engines need an RTX-class GPU.",
        END,
    ])


def main(argv=None) -> None:
    args = parse_args(argv)
    from xvdeploy.bench.environment import environment
    from xvdeploy.cli.options import parse_shape

    shape = parse_shape(args.shape)
    rounds, reps = (3, 2) if args.quick else (args.rounds, args.reps)
    result = measure(args.model, shape, rounds, reps)
    block = render(result, environment(), ort_default_threads())
    if args.quick and args.output is None:
        print(block)
        return
    out = args.output or DOC
    write_block(out, BEGIN, END, block, empty="# Benchmarks\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
