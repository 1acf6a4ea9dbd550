"""GPU benchmarks: the fused PSSA kernel (issue 6) and the torch GPU section (issue 4).

    python benchmarks/gpu.py [--quick] [-o docs/benchmarks.md] [--json F]

Needs a CUDA device (exits 2 without one). Regenerates the part of
docs/benchmarks.md between ``<!-- gpu:begin -->`` and ``<!-- gpu:end -->``.

1. PSSA kernel: correctness of the Triton kernel against ``pssa_transform``
   over random shapes, shift lists and dtypes; the device's copy bandwidth
   (``dst.copy_(src)``, read + write) and the kernel's achieved bandwidth
   (bytes of X read + T written over time) on inputs larger than L2, CUDA-event
   timing, median of many runs; beside it the 8-roll PyTorch formulation, the
   depthwise-conv formulation (cuDNN) and ``torch.compile`` of the reference.
   Goal: ≥ 80 % of the copy bandwidth.
2. ``xv_resnet50_s3`` folded with and without the fused op.
3. torch eager / compile / CUDA graphs at fp32 / tf32 / fp16 / bf16 for
   resnet50 and xv_resnet50_s3 (folded and unfolded), batch 1 and 8, with the
   MAC ratio beside the latency ratio (goal: within 5 %).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.docblock import DOC, write_block, write_json  # noqa: E402
from xvdeploy import zoo  # noqa: E402
from xvdeploy.bench.environment import environment  # noqa: E402
from xvdeploy.folding import fold, use_pssa_plugin  # noqa: E402
from xvdeploy.format import markdown_table  # noqa: E402
from xvdeploy.ops.pssa import ShiftKernel, default_shifts, pssa_depthwise, pssa_transform  # noqa: E402

BEGIN, END = "<!-- gpu:begin -->", "<!-- gpu:end -->"


def cuda_ms(fn, iters: int, warmup: int = 5) -> float:
    """Median milliseconds of ``fn`` over ``iters`` runs, each timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def check_kernel(quick: bool) -> list[str]:
    from xvdeploy.plugins.pssa_triton import pssa_triton

    g = torch.Generator().manual_seed(0)
    cases = 20 if quick else 200
    worst: dict[str, float] = {}
    tol = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 2e-2}
    for i in range(cases):
        n, c = int(torch.randint(1, 4, (1,), generator=g)), int(torch.randint(1, 70, (1,), generator=g))
        h, w = (int(v) for v in torch.randint(1, 80, (2,), generator=g))
        shifts = default_shifts(int(torch.randint(1, 4, (1,), generator=g))) if i % 2 else \
            [tuple(int(v) for v in torch.randint(-9, 10, (2,), generator=g)) for _ in range(int(torch.randint(1, 6, (1,), generator=g)))]
        dtype = (torch.float32, torch.float16, torch.bfloat16)[i % 3]
        x = torch.randn(n, c, h, w, generator=g).to("cuda", dtype)
        ref = pssa_transform(x.float(), shifts=shifts)
        got = pssa_triton(x, [v for s in shifts for v in s]).float()
        err = float((got - ref).norm() / ref.norm().clamp_min(1e-30))
        key = str(dtype).replace("torch.", "")
        worst[key] = max(worst.get(key, 0.0), err)
        if err > tol[dtype]:
            raise SystemExit(f"kernel mismatch: {dtype} {tuple(x.shape)} shifts {shifts}: rel-L2 {err:.2e}")
    return [f"Kernel vs reference over {cases} random shapes (1..79 px, 1..69 channels, S_1..S_3 and random "
            f"shift lists): worst rel-L2 " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()) + " — all within tolerance."]


def bandwidth(quick: bool) -> tuple[list[str], dict]:
    from xvdeploy.plugins.pssa_triton import pssa_triton

    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    iters = 20 if quick else 100
    rows, data = [], {}
    for dtype in (torch.float32, torch.float16):
        elem = torch.tensor([], dtype=dtype).element_size()
        c = 256
        hw = max(112, int(((8 * l2) / (8 * c * elem)) ** 0.5) + 1)  # X alone ≥ 8× L2
        hw = -(-hw // 16) * 16  # rows a multiple of 16 elements: aligned vector loads/stores are possible
        x = torch.randn(8, c, hw, hw, device="cuda", dtype=dtype)
        nbytes = 2 * x.numel() * elem  # read X once + write T once
        dst = torch.empty_like(x)
        shifts = default_shifts(1)
        flat = [v for s in shifts for v in s]
        k = ShiftKernel.from_shifts(shifts)
        wgt = k.weight(c, "sum", dtype, "cuda")
        compiled = torch.compile(lambda t: pssa_transform(t, shifts=shifts))
        variants = {
            "copy (dst.copy_(x))": lambda: dst.copy_(x),
            "Triton fused kernel": lambda: pssa_triton(x, flat, out=dst),
            "8 × torch.roll (reference)": lambda: pssa_transform(x, shifts=shifts),
            "depthwise conv (cuDNN) + mul": lambda: pssa_depthwise(x, k, wgt),
            "torch.compile(reference)": lambda: compiled(x),
        }
        times = {name: cuda_ms(fn, iters) for name, fn in variants.items()}
        copy_gbs = nbytes / times["copy (dst.copy_(x))"] / 1e6
        key = str(dtype).replace("torch.", "")
        data[key] = {"shape": list(x.shape), "bytes": nbytes, "ms": times}
        for name, ms in times.items():
            gbs = nbytes / ms / 1e6
            rows.append([key, "x".join(map(str, x.shape)), name, f"{ms:.3f}", f"{gbs:,.0f}", f"{gbs / copy_gbs:.0%}"])
        data[key]["kernel_fraction_of_copy"] = times["copy (dst.copy_(x))"] / times["Triton fused kernel"]
    lines = markdown_table(["dtype", "input", "formulation", "median ms", "GB/s (X read + T written)",
                            "of copy bandwidth"], rows).splitlines()
    verdict = all(v["kernel_fraction_of_copy"] >= 0.8 for v in data.values())
    lines.append("")
    fractions = ", ".join(f"{k} {v['kernel_fraction_of_copy']:.0%}" for k, v in data.items())
    lines.append(f"Goal ≥ 80 % of the copy bandwidth: {'met' if verdict else 'NOT met'} ({fractions}).")
    return lines, data


def network_with_op(quick: bool) -> list[str]:
    model = fold(zoo.create("xv_resnet50_s3").eval()).cuda().half()
    x = torch.randn(8, 3, 224, 224, device="cuda", dtype=torch.float16)
    iters = 20 if quick else 100
    with torch.no_grad():
        base = cuda_ms(lambda: model(x), iters)
        y0 = model(x)
        use_pssa_plugin(model)
        fused = cuda_ms(lambda: model(x), iters)
        y1 = model(x)
    err = float((y1.float() - y0.float()).norm() / y0.float().norm())
    return [f"xv_resnet50_s3 folded, fp16, batch 8, eager: depthwise-shift subgraph {base:.2f} ms, fused PSSA op "
            f"{fused:.2f} ms ({base / fused:.2f}×), outputs rel-L2 {err:.1e}."]


def torch_section(quick: bool) -> list[str]:
    from xvdeploy.bench.core import BenchConfig, run_bench

    rows, ratio_rows = [], []
    p50: dict[tuple, float] = {}
    modes = [("eager", False, False), ("compile", True, False), ("cuda graphs", False, True)]
    precisions = ["fp32", "fp16"] if quick else ["fp32", "tf32", "fp16", "bf16"]
    for name in ("resnet50", "xv_resnet50_s3"):
        for mode, comp, graphs in modes:
            cfg = BenchConfig(model=name, backends=["torch"], devices=["cuda"], precisions=precisions,
                              batches=[1, 8], iters=20 if quick else 100, warmup=10, data="random",
                              compile=comp, cuda_graphs=graphs)
            for r in run_bench(cfg).results:
                p50[(name, r.form, r.precision, mode, r.batch)] = r.latency_ms["p50"]
                rows.append([name, r.form, r.precision, mode, r.batch, f"{r.latency_ms['p50']:.3f}",
                             f"{r.throughput:,.0f}", f"{r.parity['rel_l2']:.1e}", r.status])
    macs = {n: zoo.count_macs(fold(zoo.create(n).eval()), (1, 3, 224, 224)) for n in ("resnet50", "xv_resnet50_s3")}
    mac_ratio = macs["xv_resnet50_s3"] / macs["resnet50"]
    for (name, form, prec, mode, batch), ms in sorted(p50.items()):
        if name != "xv_resnet50_s3" or form != "folded":
            continue
        base = p50.get(("resnet50", "folded", prec, mode, batch))
        unfolded = p50.get(("xv_resnet50_s3", "train", prec, mode, batch))
        if base:
            ratio = ms / base
            ratio_rows.append([prec, mode, batch, f"{ratio:.3f}", f"{ratio / mac_ratio - 1:+.1%}",
                               "yes" if unfolded is None or ms <= unfolded else "no"])
    return (markdown_table(["model", "form", "precision", "mode", "batch", "p50 ms", "items/s", "rel-L2", "status"],
                           rows).splitlines()
            + ["", f"MAC ratio xv_resnet50_s3 / resnet50 (folded): {mac_ratio:.3f}", ""]
            + markdown_table(["precision", "mode", "batch", "latency ratio (folded)", "vs MAC ratio",
                              "folded ≤ unfolded"], ratio_rows).splitlines())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("-o", "--output", type=Path, default=DOC)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA device; none is visible", file=sys.stderr)
        raise SystemExit(2)
    env = environment()
    gpu = env["gpu"]
    header = [f"Measured on {gpu['name']} (compute {gpu['compute_capability']}, {gpu['memory_gib']} GiB, CUDA "
              f"{gpu['cuda']}), {env['cpu']}; " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
              + f"; {env['date']}. Regenerate with `python benchmarks/gpu.py`."]
    kernel_lines = check_kernel(args.quick)
    bw_lines, bw_data = bandwidth(args.quick)
    net_lines = network_with_op(args.quick)
    torch_lines = torch_section(args.quick)
    body = "\n".join([BEGIN, "", *header, "", "### PSSA kernel", "", *kernel_lines, "", *bw_lines, "", *net_lines, "",
                      "### torch on GPU: resnet50 vs xv_resnet50_s3", "", *torch_lines, "", END])
    write_block(args.output, BEGIN, END, body, empty="# Benchmarks\n", append="## GPU\n\n" + body)
    if args.json:
        write_json(args.json, {"environment": env, "bandwidth": bw_data})
    print(body)


if __name__ == "__main__":
    main()
