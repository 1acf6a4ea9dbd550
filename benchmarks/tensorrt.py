#!/usr/bin/env python
"""Build every zoo network with TensorRT (or TensorRT-RTX) at fp32, tf32 and fp16 and write docs/tensorrt.md.

    python benchmarks/tensorrt.py                        # every zoo network, the installed flavour
    python benchmarks/tensorrt.py --models xv_digits,xv_resnet50_s3 --runtime tensorrt-rtx -o /tmp/t.md
    python benchmarks/tensorrt.py --json results.json

Per network: the export (fold, then ``torch.onnx.export`` at the zoo input size,
batch 1, dynamic batch only) and, per precision, the parse time (``OnnxParser``;
FP16 conversion of the graph included where the flavour is strongly typed),
the build time (``build_serialized_network``), the engine size, and the layer
census of the parsed network with its PSSA steps (see ``xvdeploy build
--report``). Builds use the default optimization profile of an export (batch
1–8 at the zoo size). Engines are written to a temporary folder and deleted;
nothing but the Markdown (and the JSON) is kept. Times are wall-clock seconds
on this machine, one build each, while other processes may share it: they are
what a user would see here, not a controlled measurement.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# this script is called tensorrt.py: its own folder must not shadow NVIDIA's tensorrt package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

from xvdeploy import fold, load_checkpoint, zoo  # noqa: E402
from xvdeploy.bench.environment import environment  # noqa: E402
from xvdeploy.export import export_onnx  # noqa: E402
from xvdeploy.fileio import write_text_atomic  # noqa: E402
from xvdeploy.format import markdown_table  # noqa: E402
from xvdeploy.trt import require_flavour  # noqa: E402
from xvdeploy.trt.builder import BuildSettings, build_engine  # noqa: E402
from xvdeploy.trt.report import pssa_summary  # noqa: E402

DEFAULT_DOC = ROOT / "docs" / "tensorrt.md"
PRECISIONS = ("fp32", "tf32", "fp16")
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def export(name: str, folder: Path) -> tuple[Path, float]:
    model = load_checkpoint(zoo.pretrained(name)) if name == "xv_digits" else zoo.create_random(name)
    path = folder / f"{name}.onnx"
    start = time.perf_counter()
    # a dynamic batch only: the engines' profile varies the batch (1-8) at the zoo size, and symbolic
    # height/width make torch.export several times slower on ACmix's many slices
    export_onnx(fold(model), path, (1, *zoo.input_shape(name)), dynamic="batch", check=False, compare_plain=False)
    return path, time.perf_counter() - start


def census_text(census: dict) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(census.items(), key=lambda kv: (-kv[1], kv[0])))


def pssa_text(report: dict) -> str:
    summary = pssa_summary(report)
    if not summary:
        return "—"
    return "; ".join(f"{n} × {' → '.join(triple)}" for triple, n in summary.items())


def run(models: list[str], runtime: str | None, precisions: list[str]) -> dict:
    flavour, trt = require_flavour(runtime, build=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="xvdeploy-trt-bench-") as tmp:
        folder = Path(tmp)
        for name in models:
            log(f"export {name}")
            onnx_path, export_s = export(name, folder)
            for precision in precisions:
                plan = folder / f"{name}-{precision}.plan"
                log(f"build {name} {precision}")
                try:
                    record = build_engine(onnx_path, plan, BuildSettings(precision, flavour=flavour.name))
                except Exception as exc:  # noqa: BLE001 - a failed build is a row, not the end of the run
                    rows.append({"model": name, "precision": precision, "error": " ".join(str(exc).split())})
                    log(f"  failed: {rows[-1]['error'][:200]}")
                    continue
                report = record.network_report
                rows.append({
                    "model": name, "precision": precision, "input": "x".join(map(str, zoo.input_shape(name))),
                    "onnx_mib": round(onnx_path.stat().st_size / 2**20, 1), "export_s": round(export_s, 1),
                    "parse_s": record.parse_seconds, "build_s": record.build_seconds,
                    "engine_mib": round(plan.stat().st_size / 2**20, 1), "layers": report["layers"],
                    "census": report["census"], "pssa": pssa_text(report),
                    "plugin_layers": len(report["plugin_layers"]), "targets": record.targets,
                    "built_without_gpu": record.built_without_gpu,
                })
                log(f"  parse {record.parse_seconds:.2f} s, build {record.build_seconds:.2f} s, "
                    f"{rows[-1]['engine_mib']} MiB")
                plan.unlink()
                plan.with_name(plan.name + ".json").unlink()
            onnx_path.unlink()
    return {"environment": environment(), "flavour": flavour.label, "version": trt.__version__, "rows": rows}


def render(result: dict, wall_s: float) -> str:
    env = result["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    rows = [r for r in result["rows"] if "error" not in r]
    failed = [r for r in result["rows"] if "error" in r]
    gpu = env["gpu"]["name"] if env["gpu"] else "none"
    built = "without a GPU (CPU-only ahead-of-time build)" if rows and rows[0]["built_without_gpu"] else f"on {gpu}"
    lines = [
        "# TensorRT builds of the zoo",
        "",
        "Written by `python benchmarks/tensorrt.py`; do not edit by hand.",
        "",
        f"- date: {env['date']}",
        f"- machine: {env['cpu']} ({env['cpu_count']} CPUs), GPU: {gpu}; {env['os']}, Python {env['python']}",
        f"- builder: {result['flavour']} {result['version']}, engines built {built}"
        + (f", for compute capability {', '.join(rows[0]['targets'])}" if rows else ""),
        f"- versions: {versions}",
        f"- run: {wall_s / 60:.1f} min; one build per row, wall-clock seconds, on a machine other processes shared",
        "",
        "Each network is folded and exported at its zoo input size (batch 1, dynamic batch only; *export s* is "
        "that step, with `torch.onnx.export(dynamo=True)`); every engine uses the "
        "export's default optimization profile (batch 1–8 at that size). *parse*: `OnnxParser` (for fp16 on a "
        "strongly typed flavour the FP16 conversion of the graph is included); *build*: "
        "`build_serialized_network`. The census counts the parsed network's layers by type; *PSSA steps* maps "
        "each X-volution PSSA step (`Pad` wrap → depthwise shift `Conv` → `Mul`) to the layers the parser made of "
        "it. " + ("No network needed a plugin layer." if not any(r["plugin_layers"] for r in rows)
                  else "Some networks needed plugin layers (see the table)."),
        "",
    ]
    table = [[r["model"], r["input"], r["precision"], f"{r['export_s']:.1f}", f"{r['parse_s']:.3f}",
              f"{r['build_s']:.2f}", f"{r['onnx_mib']:.1f}", f"{r['engine_mib']:.1f}", r["layers"], r["plugin_layers"]]
             for r in rows]
    lines += [markdown_table(["model", "input", "precision", "export s", "parse s", "build s", "ONNX MiB",
                              "engine MiB", "layers", "plugin layers"], table), ""]
    lines += ["## Layer census (per network; the same at every precision unless listed)", ""]
    seen: dict[str, tuple] = {}
    census_rows = []
    for r in rows:
        key = (json.dumps(r["census"], sort_keys=True), r["pssa"])
        if seen.get(r["model"]) == key:
            continue
        label = r["model"] if r["model"] not in seen else f"{r['model']} ({r['precision']})"
        seen[r["model"]] = key
        census_rows.append([label, census_text(r["census"]), r["pssa"]])
    lines += [markdown_table(["model", "layer census", "PSSA steps → layers"], census_rows), ""]
    if failed:
        lines += ["## Builds that failed", ""]
        lines += [markdown_table(["model", "precision", "error"], [[r["model"], r["precision"], r["error"]]
                                                                  for r in failed]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(zoo.names()), help="comma-separated zoo names [all]")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--runtime", choices=("tensorrt", "tensorrt-rtx"), default=None)
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_DOC)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(zoo.names()))
    if unknown:
        parser.error(f"unknown zoo name(s) {', '.join(unknown)}; expected some of {', '.join(zoo.names())}")
    result = run(models, args.runtime, [p for p in args.precisions.split(",") if p])
    text = render(result, time.perf_counter() - T0)
    write_text_atomic(args.output, text)
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
