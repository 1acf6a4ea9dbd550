#!/usr/bin/env python
"""Measure xvdeploy on this machine's CPU and regenerate the CPU section of docs/benchmarks.md.

    python benchmarks/cpu.py                 # full run (~6-10 min on 2 cores), rewrites docs/benchmarks.md
    python benchmarks/cpu.py --quick         # smoke run (small stand-in networks), prints only
    python benchmarks/cpu.py --sections pssa,harness --rounds 5 -o /tmp/b.md   # a subset
    python benchmarks/cpu.py --rounds 40 -o docs/benchmarks.md --json results.json

Only the text between ``<!-- cpu:begin -->`` and ``<!-- cpu:end -->`` is
replaced; everything else in the file is kept (a missing file or missing
markers get the default skeleton). The file is written atomically.

Methodology (stated again in the generated text):

* every ratio is measured side by side in one process and one run;
* variants are timed in *interleaved* rounds — each round runs every variant
  (alternating the order each round), so slow drift and other processes on
  the machine hit all variants alike — and the median over all timed runs is
  reported; warm-up runs are excluded;
* onnxruntime: CPU execution provider, default session options (the
  intra-op thread count onnxruntime picks is probed and printed).

Sections: (1) the PSSA step in its roll and depthwise-shift formulations,
(2) resnet50 vs xv_resnet50_s3 folded / unfolded with the MAC ratio and the
two speed goals, (3) the bench harness's overhead against a bare
``session.run`` loop, (4) ``run_bench`` results for the zoo networks.

The script is split by concern: ``cpu_measure`` (interleaved timing),
``cpu_sections`` (one function per section, returning numbers), ``cpu_render``
(Markdown from the numbers) and ``docblock`` (shared with ``gpu.py``: aligned
tables, the marked block of the document, atomic writes).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: import this checkout's benchmarks/ and xvdeploy/
    sys.path.insert(0, str(ROOT))

from benchmarks.cpu_measure import DEFAULT_ROUNDS, elapsed, log, ort_default_threads  # noqa: E402
from benchmarks.cpu_render import BEGIN, END, SKELETON, render_cpu  # noqa: E402
from benchmarks.cpu_sections import SECTIONS, section_harness, section_pssa, section_resnet, section_zoo  # noqa: E402
from benchmarks.docblock import DOC, write_block, write_json  # noqa: E402
from xvdeploy.bench.environment import environment  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (a few minutes on 2 shared cores): tiny round counts, one PSSA shape, "
                             "ResNet-50 stand-ins with one block per stage, xv_digits only; prints the section and "
                             "writes a file only with -o")
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"interleaved rounds per measurement (default {DEFAULT_ROUNDS}; 2 with --quick); the zoo "
                             "section's iteration counts scale with it")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help=f"Markdown file whose CPU block is regenerated (default {DOC.relative_to(ROOT)}; "
                             "with --quick: none)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers as JSON")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 2 if args.quick else DEFAULT_ROUNDS
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in args.sections if s not in SECTIONS]
    if bad:
        parser.error(f"unknown section {bad[0]!r}; expected some of {','.join(SECTIONS)}")
    if args.output is None and not args.quick:
        args.output = DOC
    return args


def measure(args) -> dict:
    """Run the chosen sections; the run's dict, as :func:`benchmarks.cpu_render.render_cpu` takes it."""
    warnings.filterwarnings("ignore")
    run = {"environment": environment(), "ort_threads": ort_default_threads(), "load_start": os.getloadavg(),
           "quick": args.quick, "rounds": args.rounds}
    env = run["environment"]
    log(f"{env['cpu']}, {env['cpu_count']} CPUs, onnxruntime default threads {run['ort_threads']}, "
        f"load {run['load_start']}")
    with tempfile.TemporaryDirectory(prefix="xvdeploy-cpu-bench-") as tmp:
        workdir = Path(tmp)
        plain_onnx = None  # section 2's folded resnet50, timed again by section 3
        if "pssa" in args.sections:
            run["pssa"] = section_pssa(args, workdir)
        if "resnet" in args.sections:
            run["resnet"], plain_onnx = section_resnet(args, workdir)
        if "harness" in args.sections:
            run["harness"] = section_harness(args, workdir, plain_onnx)
        if "zoo" in args.sections:
            run["zoo"] = section_zoo(args)
    run["load_end"] = os.getloadavg()
    run["wall_s"] = elapsed()
    return run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = measure(args)
    block = render_cpu(run)
    if args.output is None:
        print(block)
    else:
        write_block(args.output, BEGIN, END, block, empty=SKELETON)
        log(f"wrote the CPU section of {args.output}")
    if args.json:
        write_json(args.json, run)
    log(f"done in {run['wall_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
