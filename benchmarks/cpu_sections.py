"""The CPU benchmark's sections: each measures one thing and returns its numbers as a JSON-ready dict.

:mod:`benchmarks.cpu_render` turns the dicts into Markdown; nothing here formats text.
Every section ends with ``load_1min``, the load average when its measurements
were done (printed under its tables).

1. :func:`section_pssa`: the PSSA step in its roll and depthwise-shift formulations;
2. :func:`section_resnet`: resnet50 vs xv_resnet50_s3 folded / unfolded with the MAC ratio and the
   two speed goals, where the extra kernel time goes, and the same goal in PyTorch eager;
3. :func:`section_harness`: the bench harness's overhead against a bare ``session.run`` loop;
4. :func:`section_zoo`: ``run_bench`` results for the zoo networks.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.cpu_measure import (DEFAULT_ROUNDS, TINY_SHAPE, interleave, log, loop_pair, median, ort_runner,
                                    paired_ratio, profile_kernel_time, quartiles, tiny_onnx)
from xvdeploy import zoo
from xvdeploy._lazy import require
from xvdeploy.bench.core import BenchConfig, run_bench
from xvdeploy.export.census import census
from xvdeploy.export.onnx_export import export_onnx
from xvdeploy.export.onnxfile import ort_session
from xvdeploy.folding import fold
from xvdeploy.loading import load_model_source
from xvdeploy.models.resnet import Bottleneck, ResNet
from xvdeploy.ops.pssa import ShiftKernel, default_shifts, pssa_depthwise, pssa_transform

SECTIONS = ("pssa", "resnet", "harness", "zoo")


def _shape_name(shape) -> str:
    return "x".join(map(str, shape))


def _onnx_info(path: Path) -> tuple[int, dict[str, int], set[str]]:
    """Top-level node count, op census (most frequent first) and op types of an ONNX file."""
    proto = require("onnx", "The CPU benchmark").load(str(path))
    return (len(proto.graph.node), {c.op_type: c.count for c in census(proto)},
            {n.op_type for n in proto.graph.node})


# -- section 1: the PSSA step --------------------------------------------------------------------------------------


class RollPSSA(nn.Module):
    """The reference formulation: 8 ``torch.roll``s summed, times X (``pssa_transform``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pssa_transform(x)


class DepthwisePSSA(nn.Module):
    """The depthwise-shift formulation: Pad(wrap) → depthwise Conv with the fixed shift kernel → Mul."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.kernel = ShiftKernel.from_shifts(default_shifts(1))
        self.register_buffer("weight", self.kernel.weight(channels, "sum"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pssa_depthwise(x, self.kernel, self.weight)


def section_pssa(args, workdir: Path) -> dict:
    shapes = [(1, 64, 56, 56)] if args.quick else [(1, 64, 56, 56), (1, 256, 56, 56), (8, 64, 56, 56)]
    graphs = (("dynamic", True), ("static", False))
    reps = 5 if not args.quick else 2
    rows, censuses = [], {}
    for shape in shapes:
        sessions, info = {}, {}
        for gname, dyn in graphs:
            for form, module in (("roll", RollPSSA()), ("depthwise", DepthwisePSSA(shape[1]))):
                path = workdir / f"pssa_{form}_{gname}_{_shape_name(shape)}.onnx"
                # opset 19: the section measures the Pad(mode=wrap) form (benchmarks/portable.py: Slice+Concat)
                report = export_onnx(module, path, shape, dynamic=dyn, compare_plain=False, opset=19)
                key = f"{form}/{gname}"
                nodes, ops, _ = _onnx_info(path)
                sessions[key] = ort_session(path)
                info[key] = {"nodes": nodes, "census": ops, "parity_rel_l2": max(p.rel_l2 for p in report.parity)}
                censuses.setdefault(key, ops)
        log(f"PSSA {'×'.join(map(str, shape))}: exported {len(sessions)} graphs; timing")
        times, per_round = interleave({k: ort_runner(s, shape) for k, s in sessions.items()},
                                      rounds=args.rounds, reps=reps, warmup=3)
        for gname, _ in graphs:
            r, d = f"roll/{gname}", f"depthwise/{gname}"
            tr, td = median(times[r]), median(times[d])
            pr, lo, hi = paired_ratio(per_round, r, d)
            rows.append({"shape": list(shape), "graph": gname, "roll": {"median_s": tr, **info[r]},
                         "depthwise": {"median_s": td, **info[d]}, "ratio": tr / td, "paired_ratio": pr,
                         "paired_quartiles": [lo, hi], "runs_per_variant": len(times[r])})
    return {"rows": rows, "census": censuses, "rounds": args.rounds, "reps": reps, "load_1min": os.getloadavg()[0]}


# -- section 2: resnet50 vs xv_resnet50_s3 -------------------------------------------------------------------------


def section_resnet(args, workdir: Path) -> tuple[dict, Path]:
    """The section's numbers and the folded plain ResNet's ONNX file (section 3 times it)."""
    if args.quick:  # stand-ins with one block per stage: same operators, a fraction of the export time
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
    sessions, models, paths = {}, {}, {}
    for k, m in forms.items():
        path = workdir / (k.replace(" ", "_").replace("[", "").replace("]", "").replace(",", "") + ".onnx")
        start = time.perf_counter()
        report = export_onnx(m, path, (1, 3, hw, hw), check=True, compare_plain=False, opset=19)  # Pad(mode=wrap)
        nodes, _, ops = _onnx_info(path)
        models[k] = {"nodes": nodes, "macs": macs[k], "ops": sorted(ops),
                     "parity": [(list(p.shape), p.rel_l2) for p in report.parity],
                     "export_s": time.perf_counter() - start}
        sessions[k], paths[k] = ort_session(path), path
        log(f"exported {k}: {nodes} nodes in {models[k]['export_s']:.1f}s")
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
    eager = section_resnet_eager(args, xv_name, forms[x_key], forms[u_key], hw)
    mac_ratio = macs[x_key] / macs[p_key]
    kernel_time = section_kernel_time(paths, p_key, x_key, hw, {1: 5 if args.quick else 30, 8: 3 if args.quick else 12},
                                      workdir)
    data = {"plain_name": plain_name, "xv_name": xv_name, "hw": hw, "models": models,
            "macs_plain_train": macs_plain_train, "mac_ratio": mac_ratio, "results": results,
            "goals": resnet_goals(results, keys, mac_ratio), "torch_eager": eager, "kernel_time": kernel_time,
            "load_1min": os.getloadavg()[0]}
    return data, paths[p_key]


def resnet_goals(results: dict[int, dict], keys: list[str], mac_ratio: float) -> list[dict]:
    """The two speed goals per batch: folded never slower than unfolded; latency ratio within 5 % of the MAC ratio."""
    p_key, x_key, u_key = keys
    goals = []
    for batch, r in results.items():
        med = r["median_s"]
        fu = med[x_key] / med[u_key]
        pr, lo, hi = r["paired_folded_over_unfolded"]
        goals.append({"goal": "folded_not_slower", "batch": batch, "value": fu, "paired": pr,
                      "paired_quartiles": [lo, hi], "met": fu <= 1.0})
    for batch, r in results.items():
        med = r["median_s"]
        lr = med[x_key] / med[p_key]
        dev = lr / mac_ratio - 1
        pr, lo, hi = r["paired_xv_over_plain"]
        goals.append({"goal": "latency_ratio_within_5pct_of_mac_ratio", "batch": batch, "latency_ratio": lr,
                      "mac_ratio": mac_ratio, "deviation": dev, "paired": pr, "paired_quartiles": [lo, hi],
                      "met": abs(dev) <= 0.05})
    return goals


def section_kernel_time(paths: dict[str, Path], p_key: str, x_key: str, hw: int, rounds: dict[int, int],
                        workdir: Path) -> dict[int, dict]:
    """Where the extra time of the folded X-volution net goes, by onnxruntime kernel time (per batch)."""
    data = {}
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
        data[batch] = {"plain_total_ms": part(prof[p_key], lambda _: True),
                       "xv_total_ms": part(prof[x_key], lambda _: True),
                       "plain_shared_ms": part(prof[p_key], shared), "xv_shared_ms": part(prof[x_key], shared),
                       "replaced_ms": part(prof[p_key], lambda key: key not in xv_keys),
                       "merged_ms": part(prof[x_key], merged), "pssa_ms": part(prof[x_key], pssa), "runs": n}
    return data


def section_resnet_eager(args, xv_name: str, folded: nn.Module, unfolded: nn.Module, hw: int) -> list[dict]:
    """Folded vs training form in PyTorch eager: xv_resnet50_s3 (batch 1) and the trained xv_digits."""
    digits, _ = load_model_source("xv_digits")
    digits = digits.eval()
    # (name, folded, unfolded, input shape, runs per round, rounds)
    half = max(2, args.rounds // 2)
    cases = [(xv_name, folded, unfolded, (1, 3, hw, hw), 1, half)]
    if not args.quick:
        for name, rounds in (("xvsa_resnet50_s5", half), ("acmix_resnet50", max(2, args.rounds // 5))):
            torch.manual_seed(0)
            train = zoo.create(name).eval()
            cases.append((name, fold(train).eval(), train, (1, 3, hw, hw), 1, rounds))
    cases += [("xv_digits", fold(digits).eval(), digits, (1, 1, 8, 8), 20, args.rounds),
              ("xv_digits", fold(digits).eval(), digits, (256, 1, 8, 8), 5, args.rounds)]
    data = []
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
        data.append({"network": name, "shape": list(shape), "unfolded_s": tu, "folded_s": tf, "ratio": tf / tu,
                     "paired": pr, "paired_quartiles": [lo, hi], "runs": len(times["folded"]), "met": tf <= tu})
    return data


# -- section 3: harness overhead ------------------------------------------------------------------------------------


def section_harness(args, workdir: Path, onnx_path: Path | None) -> dict:
    label = "resnet50 folded"
    if onnx_path is None:
        torch.manual_seed(0)
        onnx_path = workdir / "harness_resnet50.onnx"
        export_onnx(fold(zoo.create("resnet50").eval()), onnx_path, (1, 3, 224, 224), check=False, compare_plain=False)
    elif args.quick:
        label = "resnet50[1,1,1,1] folded"
    shape = (1, 3, 96, 96)
    iters = 30
    log(f"harness overhead: {args.rounds} rounds × {iters} iterations × 2 loops at {'×'.join(map(str, shape))}")
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
    return {"label": label, "shape": list(shape), "iters": iters, "rounds": args.rounds, "p50_s": p50,
            "wall_per_iter_s": per_iter, "paired_p50": pair_p50, "paired_wall": pair_wall, "overhead_p50": over_p50,
            "overhead_wall": over_wall, "met": ok,
            "tiny": {"iters": t_iters, "rounds": t_rounds, "p50_s": t_p50, "wall_per_iter_s": t_per_iter,
                     "call_overhead_p50_s": call_p50, "call_overhead_wall_s": call_wall, "share_p50": frac_p50,
                     "share_wall": frac_wall, "met": frac_p50 < 0.02 and frac_wall < 0.02},
            "load_1min": os.getloadavg()[0]}


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


def section_zoo(args) -> dict:
    results, skipped = [], []
    for name, iters, warmup, kind in zoo_plan(args):
        start = time.perf_counter()
        torch.manual_seed(0)
        report = run_bench(BenchConfig(model=name, backends=["torch", "onnxruntime"], batches=[1], iters=iters,
                                       warmup=warmup, data=kind))
        log(f"run_bench {name}: {len(report.results)} results in {time.perf_counter() - start:.0f}s")
        results += [{"model": name, **r.to_dict()} for r in report.results]
        skipped += [{"model": name, "backend": s["backend"], "reason": s["reason"]} for s in report.skipped]
    return {"results": results, "skipped": skipped, "load_1min": os.getloadavg()[0]}
