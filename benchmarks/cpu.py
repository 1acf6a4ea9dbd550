#!/usr/bin/env python
"""Measure xvdeploy on this machine's CPU and regenerate the CPU section of docs/benchmarks.md.

    python benchmarks/cpu.py                 # full run (~6-10 min on 2 cores), rewrites docs/benchmarks.md
    python benchmarks/cpu.py --quick         # smoke run (< 1 min, small stand-in networks), prints only
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
two speed goals of DESIGN §7, (3) the bench harness's overhead against a bare
``session.run`` loop, (4) ``run_bench`` results for the zoo networks.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- cpu:begin -->", "<!-- cpu:end -->"
SECTIONS = ("pssa", "resnet", "harness", "zoo")
DEFAULT_ROUNDS = 50
ZOO_MODELS = ("resnet50", "xv_resnet50_s3", "xvsa_resnet50_s5", "acmix_resnet50", "xv_digits")

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# -- small utilities ---------------------------------------------------------------------------------------------


def md_table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(headers) - 1)
    sep = ["---:" if a == "r" else ":---:" if a == "c" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.1f}"


def fmt_shape(shape) -> str:
    return "×".join(map(str, shape))


def census_text(proto) -> str:
    counts = collections.Counter(n.op_type for n in proto.graph.node)
    return ", ".join(f"{op}×{n}" for op, n in counts.most_common())


def median(xs) -> float:
    return float(statistics.median(xs))


def quartiles(xs) -> tuple[float, float]:
    q = np.percentile(np.asarray(xs, dtype=np.float64), [25, 75])
    return float(q[0]), float(q[1])


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


TINY_SHAPE = (1, 1, 1, 8)


def tiny_onnx() -> bytes:
    """A one-node graph (Relu on 1×1×1×8): a session.run that costs only its call overhead."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(TINY_SHAPE))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(TINY_SHAPE))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model.SerializeToString()


def ort_default_threads() -> int | None:
    """Intra-op threads of a default onnxruntime CPU session, probed from the OS thread count.

    A session with ``n`` intra-op threads starts ``n - 1`` worker threads (the
    caller is the n-th); the difference against an explicit 1-thread session
    cancels any other thread a session starts.
    """
    import onnxruntime as ort

    data = tiny_onnx()

    def started(threads: int) -> int:
        before = len(os.listdir("/proc/self/task"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        s = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        s.run(None, {"x": np.zeros(TINY_SHAPE, np.float32)})
        n = len(os.listdir("/proc/self/task")) - before
        del s
        return n

    try:
        return started(0) - started(1) + 1
    except OSError:
        return None


class Environment:
    """The machine/library line every table carries."""

    def __init__(self) -> None:
        from xvdeploy.bench.environment import environment

        self.env = environment()
        self.ort_threads = ort_default_threads()
        self.load_start = os.getloadavg()
        self.load_end: tuple[float, float, float] | None = None

    def caption(self) -> str:
        e, v = self.env, self.env["versions"]
        threads = f"{self.ort_threads} intra-op threads (default)" if self.ort_threads else "default intra-op threads"
        date = e["date"][:16].replace("T", " ") + " UTC"
        return (f"_{e['cpu']}, {e['cpu_count']} logical CPUs · onnxruntime {v['onnxruntime']} CPU EP, {threads} · "
                f"torch {v['torch']} ({e['torch_threads']} threads) · onnx {v['onnx']} · xvdeploy {v['xvdeploy']} · "
                f"{date} · load average {os.getloadavg()[0]:.2f} when this table was done_")


# -- interleaved timing ----------------------------------------------------------------------------------------


SETTLE_S = 0.02


def interleave(variants: dict[str, Callable[[], object]], rounds: int, reps: int, warmup: int,
               settle_s: float = SETTLE_S, settle_runs: int = 1):
    """Time every variant ``reps`` times per round, round-robin, alternating the order each round.

    Before each variant's turn: a ``settle_s`` pause and ``settle_runs``
    untimed runs. onnxruntime's intra-op workers (and OpenMP's) spin for a
    while after a run; without the pause the previous variant's spinning
    threads compete with the next one on a 2-core machine (measured here: a
    0.2 ms graph read ~2× slower right after a switch), and the untimed run
    wakes the new variant's own workers.

    Returns ``(times, per_round)``: all timed runs (seconds) per variant, and
    each round's median per variant (for paired per-round ratios).
    """
    names = list(variants)
    for name in names:
        for _ in range(warmup):
            variants[name]()
    times = {n: [] for n in names}
    per_round = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            fn = variants[name]
            time.sleep(settle_s)
            for _ in range(settle_runs):
                fn()
            ts = []
            for _ in range(reps):
                start = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - start)
            times[name] += ts
            per_round[name].append(median(ts))
    return times, per_round


def paired_ratio(per_round: dict[str, list[float]], a: str, b: str) -> tuple[float, float, float]:
    """Median and quartiles of the per-round ratios a/b."""
    ratios = [x / y for x, y in zip(per_round[a], per_round[b])]
    lo, hi = quartiles(ratios)
    return median(ratios), lo, hi


def ort_runner(session, shape) -> Callable[[], object]:
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    feed = {session.get_inputs()[0].name: x}
    outputs = [session.get_outputs()[0].name]
    return lambda: session.run(outputs, feed)


# -- section 1: the PSSA step --------------------------------------------------------------------------------------


class RollPSSA(nn.Module):
    """The reference formulation: 8 ``torch.roll``s summed, times X (DESIGN §2.1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from xvdeploy.ops.pssa import pssa_transform

        return pssa_transform(x)


class DepthwisePSSA(nn.Module):
    """The depthwise-shift formulation: Pad(wrap) → depthwise Conv with the fixed shift kernel → Mul."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        from xvdeploy.ops.pssa import ShiftKernel, default_shifts

        self.kernel = ShiftKernel.from_shifts(default_shifts(1))
        self.register_buffer("weight", self.kernel.weight(channels, "sum"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from xvdeploy.ops.pssa import pssa_depthwise

        return pssa_depthwise(x, self.kernel, self.weight)


def section_pssa(args, env: Environment, workdir: Path) -> tuple[str, dict]:
    import onnx

    from xvdeploy.export.onnx_export import export_onnx, ort_session

    shapes = [(1, 64, 56, 56)] if args.quick else [(1, 64, 56, 56), (1, 256, 56, 56), (8, 64, 56, 56)]
    graphs = (("dynamic", True), ("static", False))
    rows, data, censuses = [], [], {}
    for shape in shapes:
        sessions, info = {}, {}
        for gname, dyn in graphs:
            for form, module in (("roll", RollPSSA()), ("depthwise", DepthwisePSSA(shape[1]))):
                path = workdir / f"pssa_{form}_{gname}_{'x'.join(map(str, shape))}.onnx"
                report = export_onnx(module, path, shape, dynamic=dyn, compare_plain=False)
                proto = onnx.load(str(path))
                key = f"{form}/{gname}"
                sessions[key] = ort_session(path)
                info[key] = {"nodes": len(proto.graph.node), "census": census_text(proto),
                             "parity_rel_l2": max(p.rel_l2 for p in report.parity)}
                censuses.setdefault(key, info[key]["census"])
        log(f"PSSA {fmt_shape(shape)}: exported {len(sessions)} graphs; timing")
        times, per_round = interleave({k: ort_runner(s, shape) for k, s in sessions.items()},
                                      rounds=args.rounds, reps=5 if not args.quick else 2, warmup=3)
        for gname, _ in graphs:
            r, d = f"roll/{gname}", f"depthwise/{gname}"
            tr, td = median(times[r]), median(times[d])
            pr, lo, hi = paired_ratio(per_round, r, d)
            rows.append([fmt_shape(shape), gname, info[r]["nodes"], info[d]["nodes"], fmt_ms(tr), fmt_ms(td),
                         f"**{tr / td:.1f}×**", f"{pr:.1f}× [{lo:.1f}, {hi:.1f}]",
                         f"{max(info[r]['parity_rel_l2'], info[d]['parity_rel_l2']):.0e}"])
            data.append({"shape": list(shape), "graph": gname, "roll": {"median_s": tr, **info[r]},
                         "depthwise": {"median_s": td, **info[d]}, "ratio": tr / td, "paired_ratio": pr,
                         "runs_per_variant": len(times[r])})
    reps = 5 if not args.quick else 2
    md = [
        "### 1. The PSSA step in both formulations (onnxruntime CPU)",
        "",
        "`T = X ⊙ Σ_s roll_s(X)` over the 8 neighbours at distance 1 (DESIGN §2.1), as a one-op network "
        "exported with `export_onnx` (torch.onnx dynamo exporter, opset 19, onnxruntime parity checked at two "
        "shapes): the **roll** form (`pssa_transform`, 8 `torch.roll`s) against the **depthwise-shift** form "
        "(`pssa_depthwise`: Pad mode=wrap → depthwise Conv with the fixed one-hot kernel → Mul). "
        "\"dynamic\" is the default export (batch, height and width dynamic), \"static\" is `dynamic=False`. "
        f"Median of {args.rounds} interleaved rounds × {reps} runs per graph, 3 warm-up runs excluded; "
        "\"paired\" is the median [quartiles] of the per-round ratios.",
        "",
        md_table(["input", "graph", "roll nodes", "depthwise nodes", "roll ms", "depthwise ms", "roll / depthwise",
                  "paired", "parity rel-L2 ≤"], rows, "llrrrrrrr"),
        "",
        env.caption(),
        "",
        "Op census of the graphs (" + fmt_shape(shapes[0]) + "):",
        "",
    ]
    md += [f"- {k}: {v}" for k, v in censuses.items()]
    return "\n".join(md), {"rows": data}


# -- section 2: resnet50 vs xv_resnet50_s3 -------------------------------------------------------------------------


def section_resnet(args, env: Environment, workdir: Path) -> tuple[str, dict, Path]:
    import onnx

    from xvdeploy import zoo
    from xvdeploy.export.onnx_export import export_onnx, ort_session
    from xvdeploy.folding import fold

    if args.quick:  # stand-ins with one block per stage: same operators, a fraction of the export time
        from xvdeploy.models.resnet import Bottleneck, ResNet

        plain_name, xv_name = "resnet50[1,1,1,1]", "xv_resnet50_s3[1,1,1,1]"
        torch.manual_seed(0)
        plain = ResNet(Bottleneck, [1, 1, 1, 1]).eval()
        xv = ResNet(Bottleneck, [1, 1, 1, 1], ["conv", "xv", "conv", "conv"]).eval()
        hw = 112
    else:
        plain_name, xv_name = "resnet50", "xv_resnet50_s3"
        torch.manual_seed(0)
        plain, xv = zoo.create(plain_name).eval(), zoo.create(xv_name).eval()
        hw = 224
    forms = {
        f"{plain_name} folded": fold(plain),
        f"{xv_name} folded": fold(xv),
        f"{xv_name} unfolded": xv,
    }
    keys = list(forms)
    p_key, x_key, u_key = keys
    macs = {k: zoo.count_macs(m, (1, 3, hw, hw)) for k, m in forms.items()}
    macs_plain_train = zoo.count_macs(plain, (1, 3, hw, hw))
    sessions, info, paths = {}, {}, {}
    for k, m in forms.items():
        path = workdir / (k.replace(" ", "_").replace("[", "").replace("]", "").replace(",", "") + ".onnx")
        start = time.perf_counter()
        report = export_onnx(m, path, (1, 3, hw, hw), check=True, compare_plain=False)
        proto = onnx.load(str(path))
        info[k] = {"nodes": len(proto.graph.node), "ops": {n.op_type for n in proto.graph.node},
                   "parity": [(list(p.shape), p.rel_l2) for p in report.parity],
                   "export_s": time.perf_counter() - start}
        sessions[k], paths[k] = ort_session(path), path
        log(f"exported {k}: {info[k]['nodes']} nodes in {info[k]['export_s']:.1f}s")
    results = {}
    plan = [(1, args.rounds, 3 if not args.quick else 2), (8, max(2, args.rounds * 3 // 5), 1)]
    for batch, rounds, reps in plan:
        log(f"timing batch {batch}: {rounds} rounds × {reps} runs × {len(keys)} graphs")
        shape = (batch, 3, hw, hw)
        times, per_round = interleave({k: ort_runner(s, shape) for k, s in sessions.items()},
                                      rounds=rounds, reps=reps, warmup=2 if batch == 1 else 1,
                                      settle_runs=1 if batch == 1 else 0)  # a batch-8 run is long: the pause is enough
        results[batch] = {"median_s": {k: median(v) for k, v in times.items()},
                          "quartiles_s": {k: quartiles(v) for k, v in times.items()},
                          "runs": {k: len(v) for k, v in times.items()},
                          "paired_xv_over_plain": paired_ratio(per_round, x_key, p_key),
                          "paired_folded_over_unfolded": paired_ratio(per_round, x_key, u_key),
                          "rounds": rounds, "reps": reps}
    eager_rows, eager_data = section_resnet_eager(args, xv_name, forms[x_key], forms[u_key], hw)
    mac_ratio = macs[x_key] / macs[p_key]
    profile_md, profile_data = section_kernel_time(
        paths, p_key, x_key, hw, mac_ratio, {1: 5 if args.quick else 30, 8: 3 if args.quick else 12}, workdir)
    rows = []
    for k in keys:
        row = [k, info[k]["nodes"], f"{macs[k] / 1e9:.3f}", f"{macs[k] / macs[p_key]:.4f}"]
        for batch, *_ in plan:
            med = results[batch]["median_s"][k]
            lo, hi = results[batch]["quartiles_s"][k]
            row += [f"{fmt_ms(med)} [{fmt_ms(lo)}, {fmt_ms(hi)}]", f"{med / results[batch]['median_s'][p_key]:.3f}"]
        rows.append(row)
    goals, goal_data = [], []
    for batch, *_ in plan:
        med = results[batch]["median_s"]
        fu = med[x_key] / med[u_key]
        pr, lo, hi = results[batch]["paired_folded_over_unfolded"]
        ok = fu <= 1.0
        goals.append([f"folded never slower than unfolded ({xv_name})", batch, f"folded / unfolded = {fu:.3f} "
                      f"(paired {pr:.3f} [{lo:.3f}, {hi:.3f}])", "≤ 1", verdict(ok)])
        goal_data.append({"goal": "folded_not_slower", "batch": batch, "value": fu, "paired": pr, "met": ok})
    for batch, *_ in plan:
        med = results[batch]["median_s"]
        lr = med[x_key] / med[p_key]
        dev = lr / mac_ratio - 1
        pr, lo, hi = results[batch]["paired_xv_over_plain"]
        ok = abs(dev) <= 0.05
        goals.append([f"folded {xv_name} / {plain_name} latency within 5 % of the MAC ratio", batch,
                      f"latency ratio {lr:.3f} (paired {pr:.3f} [{lo:.3f}, {hi:.3f}]) vs MAC ratio {mac_ratio:.3f}: "
                      f"{dev * 100:+.1f} %", "within ±5 %", verdict(ok)])
        goal_data.append({"goal": "latency_ratio_within_5pct_of_mac_ratio", "batch": batch, "latency_ratio": lr,
                          "mac_ratio": mac_ratio, "deviation": dev, "paired": pr, "met": ok})
    extra = sorted(info[x_key]["ops"] - info[p_key]["ops"])
    extra_u = sorted(info[u_key]["ops"] - info[p_key]["ops"])
    parity = max(rel for k in keys for _, rel in info[k]["parity"])
    b1, b8 = results[1], results[8]
    md = [
        f"### 2. {plain_name} vs {xv_name}, folded and unfolded (onnxruntime CPU, {hw}×{hw})",
        "",
        f"Random weights (`torch.manual_seed(0)`), float32. **folded**: `xvdeploy.fold` (BN folded into the convs; "
        "each X-volution merged into one conv over `concat[X, T]` with the depthwise-shift PSSA), then "
        "`export_onnx`; **unfolded**: the training form exported as is (what `xvdeploy export --no-fold` "
        "writes: two conv branches, two BNs, the roll-form PSSA). All three exported with the default dynamic "
        f"batch/height/width and the parity gate on (worst rel-L2 {parity:.1e} at {hw}² and the second shape). "
        f"Batch 1: median of {b1['rounds']} interleaved rounds × {b1['reps']} runs; batch 8: {b8['rounds']} rounds × "
        f"{b8['reps']} run (after the pause, no untimed run: a batch-8 run is long); [quartiles] of the runs. MACs: `zoo.count_macs` at 1×3×{hw}×{hw} (convolutions and "
        "matrix products; the folded form's depthwise shift conv is counted, the unfolded form's rolls are not; "
        f"{plain_name} has {macs_plain_train / 1e9:.3f} GMAC unfolded, the same as folded).",
        "",
        md_table(["graph", "ONNX nodes", "GMAC", "MAC ratio", "batch 1 ms", "latency ratio b1", "batch 8 ms",
                  "latency ratio b8"], rows),
        "",
        f"Op types the folded {xv_name} graph adds to {plain_name}'s: {{{', '.join(extra)}}}; "
        f"the unfolded graph adds {{{', '.join(extra_u)}}}.",
        "",
        "Goals (DESIGN §7, issue 3):",
        "",
        md_table(["goal", "batch", "measured", "target", "verdict"], goals, "lrlll"),
        "",
        profile_md,
        "",
        env.caption(),
        "",
        "The same folded-vs-unfolded goal in **PyTorch eager** on CPU (not the deployment path, but a form users "
        "run): the folded module against the training form, interleaved as above, `torch.no_grad()`. For the "
        "X-volution nets the folded form runs the depthwise-shift PSSA and one merged conv, the training form "
        "eight `torch.roll`s, two convs and two BNs; `xvsa_resnet50_s5` and `acmix_resnet50` (random weights, "
        "seed 0) are folded as DESIGN §2.4/§2.5 describe; `xv_digits` is the shipped trained model at 1×8×8.",
        "",
        md_table(["network", "batch", "unfolded ms", "folded ms", "folded / unfolded", "paired", "runs",
                  "folded ≤ unfolded"], eager_rows, "lrrrrrrl"),
        "",
        env.caption(),
    ]
    data = {"models": {k: {"nodes": info[k]["nodes"], "macs": macs[k], "parity": info[k]["parity"],
                           "export_s": info[k]["export_s"]} for k in keys},
            "mac_ratio": mac_ratio, "results": {str(b): r for b, r in results.items()}, "goals": goal_data,
            "torch_eager": eager_data, "kernel_time": profile_data}
    return "\n".join(md), data, paths[p_key]


def profile_kernel_time(paths: dict[str, Path], shape, rounds: int, workdir: Path) -> dict[str, list[dict]]:
    """Per-run kernel time by node signature, from onnxruntime's own profiler.

    One profiling session per graph (default options otherwise), runs
    alternating between the graphs. Returns, per graph, one dict per run mapping
    ``(op type, input shapes)`` to microseconds summed over that run's nodes.
    Kernel time excludes the executor's own overhead between nodes.
    """
    import onnxruntime as ort

    sessions = {}
    for k, path in paths.items():
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.enable_profiling = True
        opts.profile_file_prefix = str(workdir / ("profile_" + path.stem))
        sessions[k] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    runners = {k: ort_runner(sess, shape) for k, sess in sessions.items()}
    for fn in runners.values():  # warm-up, dropped below
        fn()
    for r in range(rounds):
        for k in (list(runners) if r % 2 == 0 else list(runners)[::-1]):
            time.sleep(SETTLE_S)
            runners[k]()
    out = {}
    for k, sess in sessions.items():
        events = json.loads(Path(sess.end_profiling()).read_text())
        runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[1:]
        per_run = [dict() for _ in runs]
        for e in events:
            if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
                continue
            for i, (t0, t1) in enumerate(runs):
                if t0 <= e["ts"] <= t1:
                    args = e.get("args", {})
                    shapes = tuple(tuple(v) for d in args.get("input_type_shape", []) for v in d.values())[:2]
                    key = (args.get("op_name", "?"), str(shapes))
                    per_run[i][key] = per_run[i].get(key, 0.0) + e["dur"]
                    break
        out[k] = per_run
    return out


def section_kernel_time(paths: dict[str, Path], p_key: str, x_key: str, hw: int, mac_ratio: float, rounds: dict,
                        workdir: Path) -> tuple[str, dict]:
    """Where the extra time of the folded X-volution net goes, by onnxruntime kernel time (batch 1 and 8)."""
    rows, data = [], {}
    plain_name, xv_name = p_key.rsplit(" ", 1)[0], x_key.rsplit(" ", 1)[0]
    for batch, n in rounds.items():
        log(f"profiling kernel time at batch {batch}: {n} runs × 2 graphs")
        prof = profile_kernel_time({k: paths[k] for k in (p_key, x_key)}, (batch, 3, hw, hw), n, workdir)
        plain_keys = set().union(*prof[p_key])
        xv_keys = set().union(*prof[x_key])

        def part(runs, keep) -> float:  # median over runs of the summed kernel time of the kept signatures, ms
            return median([sum(v for key, v in run.items() if keep(key)) for run in runs]) / 1e3

        shared = lambda key: key in plain_keys and key in xv_keys  # noqa: E731
        pssa = lambda key: key not in plain_keys and (key[0] != "Conv" or ", 1, 3, 3)" in key[1])  # noqa: E731
        merged = lambda key: key not in plain_keys and key[0] == "Conv" and ", 1, 3, 3)" not in key[1]  # noqa: E731
        plain_total, xv_total = part(prof[p_key], lambda _: True), part(prof[x_key], lambda _: True)
        d = {"plain_total_ms": plain_total, "xv_total_ms": xv_total,
             "plain_shared_ms": part(prof[p_key], shared), "xv_shared_ms": part(prof[x_key], shared),
             "replaced_ms": part(prof[p_key], lambda key: key not in xv_keys),
             "merged_ms": part(prof[x_key], merged), "pssa_ms": part(prof[x_key], pssa), "runs": n}
        data[batch] = d
        ratio = xv_total / plain_total
        rows += [
            [batch, "ops both graphs run (same op, same shapes: the ratio is this batch's noise)",
             f"{d['plain_shared_ms']:.2f}", f"{d['xv_shared_ms']:.2f}", f"{d['xv_shared_ms'] / d['plain_shared_ms']:.3f}"],
            [batch, f"stage-3 3×3 convs ({plain_name}) → merged convs over concat[X, T]", f"{d['replaced_ms']:.2f}",
             f"{d['merged_ms']:.2f}", f"{d['merged_ms'] / d['replaced_ms']:.2f}× (MACs 2.0×)"],
            [batch, "the rest only the X-volution graph runs: Pad, depthwise shift Conv, Mul, Concat, layout reorders", "—",
             f"{d['pssa_ms']:.2f}", ""],
            [batch, "**total kernel time**", f"{plain_total:.2f}", f"{xv_total:.2f}",
             f"**{ratio:.3f}** (MAC ratio {mac_ratio:.3f}: {(ratio / mac_ratio - 1) * 100:+.1f} %)"],
        ]
    md = [
        "Where the extra time goes — onnxruntime's own profiler (`SessionOptions.enable_profiling`) on the two "
        "folded graphs, runs alternating between them; per run, node kernel times are summed by (op, input shapes) "
        f"and grouped: signatures both graphs share, {plain_name}'s stage-3 3×3 convs that the merged convs replace, "
        "and the PSSA subgraph; medians over runs (the first run dropped). Kernel time leaves out the executor's "
        "overhead between nodes, so the totals sit below the wall-clock medians above. The shared ops are the same "
        "work in both graphs: where their ratio is far from 1, that batch's decomposition is as noisy as that.",
        "",
        md_table(["batch", "part", f"{plain_name} ms", f"{xv_name} ms", "ratio"], rows, "llrrl"),
    ]
    return "\n".join(md), data


def section_resnet_eager(args, xv_name: str, folded: nn.Module, unfolded: nn.Module, hw: int):
    """Folded vs training form in PyTorch eager: xv_resnet50_s3 (batch 1) and the trained xv_digits."""
    from xvdeploy.loading import load_model_source
    from xvdeploy.folding import fold

    digits, _ = load_model_source("xv_digits")
    digits = digits.eval()
    # (name, folded, unfolded, input shape, runs per round, rounds)
    half = max(2, args.rounds // 2)
    cases = [(xv_name, folded, unfolded, (1, 3, hw, hw), 1, half)]
    if not args.quick:
        from xvdeploy import zoo

        for name, rounds in (("xvsa_resnet50_s5", half), ("acmix_resnet50", max(2, args.rounds // 5))):
            torch.manual_seed(0)
            train = zoo.create(name).eval()
            cases.append((name, fold(train).eval(), train, (1, 3, hw, hw), 1, rounds))
    cases += [("xv_digits", fold(digits).eval(), digits, (1, 1, 8, 8), 20, args.rounds),
              ("xv_digits", fold(digits).eval(), digits, (256, 1, 8, 8), 5, args.rounds)]
    rows, data = [], []
    for name, f_model, u_model, shape, reps, rounds in cases:
        x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape, dtype=np.float32))

        def call(model, x=x):
            def run():
                with torch.no_grad():
                    model(x)
            return run

        log(f"torch eager {name} batch {shape[0]}: {rounds} rounds × {reps} runs × 2 forms")
        times, per_round = interleave({"folded": call(f_model), "unfolded": call(u_model)}, rounds=rounds, reps=reps,
                                      warmup=3)
        tf, tu = median(times["folded"]), median(times["unfolded"])
        pr, lo, hi = paired_ratio(per_round, "folded", "unfolded")
        ok = tf <= tu
        rows.append([name, shape[0], fmt_ms(tu), fmt_ms(tf), f"{tf / tu:.3f}", f"{pr:.3f} [{lo:.3f}, {hi:.3f}]",
                     len(times["folded"]), verdict(ok)])
        data.append({"network": name, "shape": list(shape), "unfolded_s": tu, "folded_s": tf, "ratio": tf / tu,
                     "paired": pr, "met": ok})
    return rows, data


# -- section 3: harness overhead ------------------------------------------------------------------------------------


def loop_pair(onnx_path: Path, shape, iters: int, rounds: int):
    """Interleaved rounds of a bare ``session.run`` loop and ``OrtRunner.time`` on one session.

    Returns per-loop ``(all per-iteration times, per-round medians, per-round wall time per iteration)``.
    """
    from xvdeploy.bench.backends.base import RunnerSpec
    from xvdeploy.bench.backends.ort_backend import OrtRunner

    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    runner = OrtRunner(RunnerSpec("onnxruntime", "onnx", "fp32", "cpu"), onnx_path)
    with runner:
        session = runner.session
        feed = {runner.input_name: x}
        outputs = [runner.output_name]

        def bare():
            run = session.run
            ts = []
            start = time.perf_counter()
            for _ in range(iters):
                t = time.perf_counter()
                run(outputs, feed)
                ts.append(time.perf_counter() - t)
            return ts, time.perf_counter() - start

        def harness():
            start = time.perf_counter()
            ts = runner.time(x, warmup=0, iters=iters)
            return [t / 1e3 for t in ts], time.perf_counter() - start

        for _ in range(3):  # warm-up, excluded
            session.run(outputs, feed)
        fns = {"bare": bare, "harness": harness}
        all_t = {k: [] for k in fns}
        round_p50 = {k: [] for k in fns}
        wall = {k: [] for k in fns}
        for r in range(rounds):
            for name in ("bare", "harness") if r % 2 == 0 else ("harness", "bare"):
                ts, w = fns[name]()
                all_t[name] += ts
                round_p50[name].append(median(ts))
                wall[name].append(w / iters)
    return all_t, round_p50, wall


def section_harness(args, env: Environment, workdir: Path, onnx_path: Path | None) -> tuple[str, dict]:
    from xvdeploy.export.onnx_export import export_onnx
    from xvdeploy.folding import fold

    label = "resnet50 folded"
    if onnx_path is None:
        from xvdeploy import zoo

        torch.manual_seed(0)
        onnx_path = workdir / "harness_resnet50.onnx"
        export_onnx(fold(zoo.create("resnet50").eval()), onnx_path, (1, 3, 224, 224), check=False, compare_plain=False)
    elif args.quick:
        label = "resnet50[1,1,1,1] folded"
    shape = (1, 3, 96, 96)
    iters = 30
    log(f"harness overhead: {args.rounds} rounds × {iters} iterations × 2 loops at {fmt_shape(shape)}")
    all_t, round_p50, wall = loop_pair(onnx_path, shape, iters, args.rounds)
    p50 = {k: median(v) for k, v in all_t.items()}
    per_iter = {k: median(v) for k, v in wall.items()}
    pair_p50 = paired_ratio(round_p50, "harness", "bare")
    pair_wall = paired_ratio(wall, "harness", "bare")
    over_p50, over_wall = pair_p50[0] - 1, pair_wall[0] - 1
    ok = over_p50 < 0.02 and over_wall < 0.02  # one-sided: a negative difference is noise, not overhead

    # the overhead itself, resolved on a graph that costs nothing but the call
    tiny = workdir / "tiny.onnx"
    tiny.write_bytes(tiny_onnx())
    t_iters, t_rounds = 200, max(2, args.rounds)
    log(f"harness overhead on a 1-node graph: {t_rounds} rounds × {t_iters} iterations × 2 loops")
    t_all, _, t_wall = loop_pair(tiny, TINY_SHAPE, t_iters, t_rounds)
    t_p50 = {k: median(v) for k, v in t_all.items()}
    t_per_iter = {k: median(v) for k, v in t_wall.items()}
    call_p50 = t_p50["harness"] - t_p50["bare"]
    call_wall = t_per_iter["harness"] - t_per_iter["bare"]
    frac_p50, frac_wall = call_p50 / p50["bare"], call_wall / per_iter["bare"]
    ok_decomposed = frac_p50 < 0.02 and frac_wall < 0.02

    def pct(v):
        return f"{v * 100:+.2f} %"

    def us(v):
        return f"{v * 1e6:.1f}"

    rows = [
        ["p50 of per-iteration latency (what the report shows)", fmt_ms(p50["bare"]), fmt_ms(p50["harness"]),
         pct(p50["harness"] / p50["bare"] - 1),
         f"{pct(over_p50)} [{pct(pair_p50[1] - 1)}, {pct(pair_p50[2] - 1)}]"],
        ["loop wall time per iteration", fmt_ms(per_iter["bare"]), fmt_ms(per_iter["harness"]),
         pct(per_iter["harness"] / per_iter["bare"] - 1),
         f"{pct(over_wall)} [{pct(pair_wall[1] - 1)}, {pct(pair_wall[2] - 1)}]"],
    ]
    tiny_rows = [
        ["p50 of per-iteration latency", us(t_p50["bare"]), us(t_p50["harness"]), f"{call_p50 * 1e6:+.1f}",
         pct(frac_p50)],
        ["loop wall time per iteration", us(t_per_iter["bare"]), us(t_per_iter["harness"]), f"{call_wall * 1e6:+.1f}",
         pct(frac_wall)],
    ]
    md = [
        "### 3. Bench harness overhead (issue 4)",
        "",
        f"One onnxruntime session of the {label} graph at {fmt_shape(shape)} (a size where one run takes "
        f"≈ {fmt_ms(p50['bare'])} ms). **bare**: a plain loop of `session.run` calls, each timed with "
        f"`time.perf_counter`; **harness**: `OrtRunner.time(x, warmup=0, iters={iters})` from "
        "`xvdeploy.bench.backends.ort_backend` on the same session and array. "
        f"{args.rounds} interleaved rounds of {iters} iterations per loop (order alternating per round), "
        "3 warm-up runs excluded. \"overall\" compares the medians over all runs; \"paired\" is the median "
        "[quartiles] over rounds of each round's harness/bare ratio, which cancels drift between rounds.",
        "",
        md_table(["measure", "bare ms", "harness ms", "overhead, overall", "overhead, paired"], rows),
        "",
        f"Goal: harness overhead < 2 % (paired medians) — {verdict(ok)}.",
        "",
        "Both loops time the same `session.run` calls, so on this shared machine the difference above is "
        "mostly noise (see the quartiles). The overhead itself is resolved on a one-node graph (Relu on "
        f"1×1×1×8, where a run costs little more than the call), {t_rounds} interleaved rounds × {t_iters} "
        "iterations, and set against the model's latency above:",
        "",
        md_table(["measure (1-node graph)", "bare µs", "harness µs", "harness − bare, µs",
                  f"as a share of the {fmt_ms(p50['bare'])} ms run"], tiny_rows),
        "",
        f"Goal on this decomposition: < 2 % — {verdict(ok_decomposed)}.",
        "",
        env.caption(),
    ]
    return "\n".join(md), {"shape": list(shape), "p50_s": p50, "wall_per_iter_s": per_iter,
                           "paired_p50": pair_p50, "paired_wall": pair_wall, "overhead_p50": over_p50,
                           "overhead_wall": over_wall, "met": ok,
                           "tiny": {"p50_s": t_p50, "wall_per_iter_s": t_per_iter, "call_overhead_p50_s": call_p50,
                                    "call_overhead_wall_s": call_wall, "share_p50": frac_p50,
                                    "share_wall": frac_wall, "met": ok_decomposed}}


# -- section 4: zoo through run_bench ------------------------------------------------------------------------------


def zoo_plan(args) -> list[tuple[str, int, int, str]]:
    """(model, iters, warmup, data) per zoo model; slow networks get fewer iterations."""
    scale = args.rounds / DEFAULT_ROUNDS
    if args.quick:
        return [("xv_digits", 20, 3, "digits")]
    return [
        ("resnet50", max(3, round(25 * scale)), 3, "random"),
        ("xv_resnet50_s3", max(3, round(25 * scale)), 3, "random"),
        ("xvsa_resnet50_s5", max(3, round(25 * scale)), 3, "random"),
        ("acmix_resnet50", max(2, round(7 * scale)), 1, "random"),
        ("xv_digits", max(20, round(500 * scale)), 50, "digits"),
    ]


def section_zoo(args, env: Environment) -> tuple[str, dict]:
    from xvdeploy.bench.core import BenchConfig, run_bench

    rows, data, notes = [], [], []
    for name, iters, warmup, kind in zoo_plan(args):
        start = time.perf_counter()
        torch.manual_seed(0)
        report = run_bench(BenchConfig(model=name, backends=["torch", "onnxruntime"], batches=[1], iters=iters,
                                       warmup=warmup, data=kind))
        took = time.perf_counter() - start
        log(f"run_bench {name}: {len(report.results)} results in {took:.0f}s")
        for r in report.results:
            lat = r.latency_ms
            par = r.parity or {}
            rows.append([name, f"{r.backend}/{r.form}", f"{lat['p50']:.2f}" if lat["p50"] >= 1 else f"{lat['p50']:.3f}",
                         f"{lat['p90']:.2f}" if lat["p90"] >= 1 else f"{lat['p90']:.3f}",
                         f"{par.get('rel_l2', float('nan')):.1e}",
                         "—" if r.accuracy is None else f"{r.accuracy * 100:.2f} %", r.status,
                         len(r.times_ms)])
            data.append({"model": name, **r.to_dict()})
        for s in report.skipped:
            notes.append(f"{name}: {s['backend']} skipped ({s['reason']})")
    md = [
        "### 4. Zoo networks through `xvdeploy bench` (`run_bench`)",
        "",
        "`run_bench(BenchConfig(model=NAME, backends=[\"torch\", \"onnxruntime\"], batches=[1], …))` on CPU, "
        "float32. The ResNets have random weights (parity and latency only, random-normal input); `xv_digits` is "
        "the shipped trained model on the digits held-out split (accuracy comparable across forms). Reference: "
        "the PyTorch training form; `onnx` is the folded form exported by the bench. Unlike sections 1–3 these "
        "runners are timed one after another (run_bench's own loop), not interleaved, with few iterations for "
        "the slow ResNets — read small differences as noise "
        "(section 2 has interleaved PyTorch train-vs-folded numbers). Iterations per row are in the last column.",
        "",
        md_table(["model", "backend/form", "p50 ms", "p90 ms", "rel-L2", "accuracy", "status", "iters"], rows,
                 "llrrrrcr"),
        "",
    ]
    if notes:
        md += [f"- {n}" for n in notes] + [""]
    md += [env.caption()]
    return "\n".join(md), {"results": data}


# -- the document ----------------------------------------------------------------------------------------------------

SKELETON = """# Benchmarks

Measured numbers for xvdeploy: the PSSA step in its two ONNX formulations,
folded vs unfolded X-volution networks against the plain ResNet-50 (with the
MAC ratio beside the latency ratio), the bench harness's own overhead, and
`xvdeploy bench` results for the zoo networks.

Regenerate the CPU section on the machine at hand with

    python benchmarks/cpu.py            # ~6-10 min on 2 cores; --quick for a smoke run

{begin}
{end}

## GPU

Not yet measured.
"""


def render_cpu(env: Environment, parts: list[str], args, wall_s: float) -> str:
    e, v = env.env, env.env["versions"]
    load_end = env.load_end or os.getloadavg()
    head = [
        BEGIN,
        "<!-- generated by benchmarks/cpu.py — edit the script, not this block -->",
        "## CPU",
        "",
        ("**QUICK SMOKE RUN — stand-in networks and tiny round counts; not for citing.**\n" if args.quick else ""),
        f"Generated by `python benchmarks/cpu.py{' --quick' if args.quick else ''}"
        f"{f' --rounds {args.rounds}' if args.rounds != (2 if args.quick else DEFAULT_ROUNDS) else ''}` on {e['date'][:10]} in {wall_s / 60:.1f} min.",
        "",
        "| | |",
        "| --- | --- |",
        f"| CPU | {e['cpu']}, {e['cpu_count']} logical CPUs ({e['os']}) |",
        f"| onnxruntime | {v['onnxruntime']}, CPUExecutionProvider, default session options → "
        f"{env.ort_threads or '?'} intra-op threads (probed), sequential execution |",
        f"| torch | {v['torch']}, {e['torch_threads']} threads |",
        f"| other | python {e['python']}, numpy {v['numpy']}, onnx {v['onnx']}, onnxscript {v['onnxscript']}, "
        f"xvdeploy {v['xvdeploy']} |",
        f"| date | {e['date']} |",
        f"| load average (1/5/15 min) | {' / '.join(f'{x:.2f}' for x in env.load_start)} at the start, "
        f"{' / '.join(f'{x:.2f}' for x in load_end)} at the end |",
        "",
        "Method: every ratio comes from one run of one process, with the variants measured side by side; the "
        "variants are timed in interleaved rounds (each round runs every variant, the order alternating between "
        "rounds) so that drift and other load hit them alike, and medians over all timed runs are reported; "
        "warm-up runs are excluded. Before each variant's turn in a round the script pauses "
        f"{SETTLE_S * 1e3:.0f} ms and makes one untimed run: onnxruntime's worker threads spin after a run, and "
        "without the pause the previous session's spinning threads steal the 2 cores from the next one "
        "(a 0.2 ms graph read ~2× slower right after a switch). This is a shared 2-core virtual machine on "
        "which other processes were running (see the load averages): absolute times carry that noise, the "
        "interleaved ratios much less.",
        "",
    ]
    return "\n".join(head) + "\n" + "\n\n".join(parts) + "\n" + END


def replace_block(text: str, block: str) -> str:
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        before = text[:text.index(BEGIN)]
        after = text[text.index(END) + len(END):]
        return before + block + after
    if not text.strip():
        return SKELETON.format(begin=BEGIN, end=END).replace(f"{BEGIN}\n{END}", block)
    return text.rstrip("\n") + "\n\n" + block + "\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (< 1 min): tiny round counts, one PSSA shape, ResNet-50 stand-ins with one "
                             "block per stage, xv_digits only; prints the section and writes a file only with -o")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds per measurement (default 50; 2 with --quick); the zoo section's "
                             "iteration counts scale with it")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help=f"Markdown file whose CPU block is regenerated (default {DEFAULT_DOC.relative_to(ROOT)}; "
                             "with --quick: none)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers as JSON")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 2 if args.quick else DEFAULT_ROUNDS
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        parser.error(f"unknown section {bad[0]!r}; expected some of {','.join(SECTIONS)}")
    output = args.output if args.output is not None else (None if args.quick else DEFAULT_DOC)

    import warnings

    warnings.filterwarnings("ignore")
    env = Environment()
    log(f"{env.env['cpu']}, {env.env['cpu_count']} CPUs, onnxruntime default threads {env.ort_threads}, "
        f"load {env.load_start}")
    parts, data = [], {"environment": env.env, "ort_threads": env.ort_threads, "quick": args.quick,
                       "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="xvdeploy-cpu-bench-") as tmp:
        workdir = Path(tmp)
        plain_onnx = None
        if "pssa" in sections:
            md, data["pssa"] = section_pssa(args, env, workdir)
            parts.append(md)
        if "resnet" in sections:
            md, data["resnet"], plain_onnx = section_resnet(args, env, workdir)
            parts.append(md)
        if "harness" in sections:
            md, data["harness"] = section_harness(args, env, workdir, plain_onnx)
            parts.append(md)
        if "zoo" in sections:
            md, data["zoo"] = section_zoo(args, env)
            parts.append(md)
    env.load_end = os.getloadavg()
    wall = time.perf_counter() - T0
    data["wall_s"] = wall
    data["load_end"] = env.load_end
    block = render_cpu(env, parts, args, wall)
    if output is None:
        print(block)
    else:
        text = output.read_text(encoding="utf-8") if output.exists() else ""
        write_atomic(output, replace_block(text, block))
        log(f"wrote the CPU section of {output}")
    if args.json:
        write_atomic(args.json, json.dumps(data, indent=2, default=str) + "\n")
    log(f"done in {wall / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
