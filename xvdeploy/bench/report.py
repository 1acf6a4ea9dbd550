"""Bench report outputs: JSON, Markdown table, latency plot."""
from __future__ import annotations

import json
from pathlib import Path

from xvdeploy._lazy import require
from xvdeploy.bench.core import SELF, BenchReport
from xvdeploy.bench.metrics import UNSTABLE_CV
from xvdeploy.format import format_table, markdown_table
from xvdeploy.fileio import atomic_path, write_text_atomic

HEADERS = ["backend", "form", "precision", "device", "batch", "p50 ms", "p90 ms", "p99 ms", "mean ms", "CV", "iters",
           "items/s", "rel-L2", "max abs Δ", "cosine", "top-1 agree", "accuracy", "status"]


def _fmt(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def rows(report: BenchReport) -> list[list[str]]:
    out = []
    for r in report.results:
        p, lat = r.parity or {}, r.latency_ms
        form = r.form + "".join(f"+{k.replace('_', '-')}" for k, v in r.options.items() if v is True)
        out.append([r.backend, form, r.precision, r.device, r.batch, _fmt(lat["p50"], ".3f"), _fmt(lat["p90"], ".3f"),
                    _fmt(lat["p99"], ".3f"), _fmt(lat["mean"], ".3f"),
                    "—" if r.cv is None else f"{r.cv:.1%}" + (" unstable" if r.unstable else ""), len(r.times_ms),
                    _fmt(r.throughput, ".1f"),
                    _fmt(p.get("rel_l2"), ".2e"), _fmt(p.get("max_abs"), ".2e"), _fmt(p.get("cosine"), ".6f"),
                    _fmt(p.get("top1_agreement"), ".4f"), _fmt(r.accuracy, ".4f"), r.status])
    return out


def environment_lines(report: BenchReport) -> list[str]:
    env = report.environment
    gpu = env["gpu"]["name"] if env.get("gpu") else "none"
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    timing = report.timing
    if timing:
        warm = f"{timing['warmup_s']:g} s" if timing.get("warmup_s") is not None else f"{timing['warmup']} iterations"
        if timing.get("duration_s") is None:
            timed = f"{timing['iters']} iterations"
        else:
            least = timing["iters"] or 1
            timed = f"{timing['duration_s']:g} s, at least {least} iteration{'s' if least != 1 else ''}"
        timing_line = [f"timing per row: warm-up {warm}, then {timed}"]
    else:
        timing_line = []
    checkpoint = f"; checkpoint: {report.checkpoint}" if report.checkpoint else ""
    lines = [f"model: {report.model}{checkpoint}; data: {report.data}; reference: {report.reference}"]
    if report.calibration:
        lines.append(f"int8 calibration: {report.calibration}")
    return lines + [f"machine: {env['cpu']} ({env['cpu_count']} CPUs, torch threads {env['torch_threads']}), GPU: {gpu}",
                    f"versions: {versions}; date: {env['date']}"] + timing_line + [f"note: {n}" for n in report.notes]


def _summary_lines(report: BenchReport) -> list[str]:
    """Unstable rows, rows compared with themselves, and the pass/fail count."""
    lines = []
    unstable = [r for r in report.results if r.unstable]
    if unstable:
        lines.append(f"unstable: {len(unstable)} row(s) vary by more than {UNSTABLE_CV:.0%} (coefficient of "
                     "variation): their latencies are noisy; rerun with a longer --duration or on a quieter machine")
    if not report.results:
        return lines + ["nothing ran"]
    fails = sum(r.status == "FAIL" for r in report.results)
    selves = sum(r.status == SELF for r in report.results)
    line = f"{len(report.results) - fails - selves} passed, {fails} failed"
    if selves:
        line += f", {selves} compared with the reference itself (SELF: no parity evidence)"
    return lines + [line]


def text(report: BenchReport) -> str:
    lines = environment_lines(report) + [""] + format_table(HEADERS, rows(report)).splitlines()
    lines += [f"skipped: {s['backend']} {s['form']} {s['precision']} {s['device']}: {s['reason']}" for s in report.skipped]
    return "\n".join(lines + _summary_lines(report))


def markdown(report: BenchReport) -> str:
    lines = ["# xvdeploy bench", ""] + [f"- {line}" for line in environment_lines(report)] + ["",
             markdown_table(HEADERS, rows(report)), ""]
    if report.skipped:
        lines += ["Skipped:", ""] + [f"- {s['backend']} {s['form']} {s['precision']} {s['device']}: {s['reason']}"
                                     for s in report.skipped] + [""]
    lines += _summary_lines(report) + [""]
    return "\n".join(lines)


def write_json(report: BenchReport, path: Path) -> None:
    write_text_atomic(path, json.dumps(report.to_dict(), indent=2) + "\n")


def write_markdown(report: BenchReport, path: Path) -> None:
    write_text_atomic(path, markdown(report))


def write_plot(report: BenchReport, path: Path) -> None:
    """Latency distribution per result (box plot, log scale), titled with model, machine and date."""
    matplotlib = require("matplotlib", "Plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in report.results if r.times_ms]
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.45 * max(1, len(results))))
    ax.boxplot([r.times_ms for r in results], orientation="horizontal", showfliers=True, whis=(5, 95))
    ax.set_yticks(range(1, len(results) + 1), [f"{r.label} [{r.status}]" for r in results], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("latency per iteration (ms, log scale; box: p25–p75, whiskers: p5–p95)")
    env = report.environment
    gpu = f", {env['gpu']['name']}" if env.get("gpu") else ""
    ax.set_title(f"xvdeploy bench: {report.model} — {env['cpu']}{gpu} — {env['date'][:10]}", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
