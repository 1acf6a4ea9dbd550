"""Timing for the CPU benchmark: interleaved, side-by-side measurement of variants in one process.

Every ratio the report gives is measured here with the variants side by side:
:func:`interleave` runs each variant in every round (alternating the order
between rounds), so slow drift and other processes on the machine hit all of
them alike; warm-up runs are excluded.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from xvdeploy._lazy import require
from xvdeploy.bench.backends.base import RunnerSpec
from xvdeploy.bench.backends.ort_backend import OrtRunner

T0 = time.perf_counter()
#: interleaved rounds per measurement unless --rounds says otherwise (2 with --quick)
DEFAULT_ROUNDS = 50
#: the pause before each variant's turn in a round (see :func:`interleave`)
SETTLE_S = 0.02
#: the input of :func:`tiny_onnx`
TINY_SHAPE = (1, 1, 1, 8)


def elapsed() -> float:
    """Seconds since the benchmark started."""
    return time.perf_counter() - T0


def log(msg: str) -> None:
    print(f"[{elapsed():6.1f}s] {msg}", file=sys.stderr, flush=True)


def median(xs) -> float:
    return float(statistics.median(xs))


def quartiles(xs) -> tuple[float, float]:
    q = np.percentile(np.asarray(xs, dtype=np.float64), [25, 75])
    return float(q[0]), float(q[1])


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
    """One ``session.run`` on a fixed random-normal input of ``shape``."""
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    feed = {session.get_inputs()[0].name: x}
    outputs = [session.get_outputs()[0].name]
    return lambda: session.run(outputs, feed)


def tiny_onnx() -> bytes:
    """A one-node graph (Relu on 1×1×1×8): a session.run that costs only its call overhead."""
    onnx = require("onnx", "The CPU benchmark")
    helper, float_type = onnx.helper, onnx.TensorProto.FLOAT
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", float_type, list(TINY_SHAPE))],
                              [helper.make_tensor_value_info("y", float_type, list(TINY_SHAPE))])
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
    ort = require("onnxruntime", "The CPU benchmark")
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


def profile_kernel_time(paths: dict[str, Path], shape, rounds: int, workdir: Path) -> dict[str, list[dict]]:
    """Per-run kernel time by node signature, from onnxruntime's own profiler.

    One profiling session per graph (default options otherwise), runs
    alternating between the graphs. Returns, per graph, one dict per run mapping
    ``(op type, input shapes)`` to microseconds summed over that run's nodes.
    Kernel time excludes the executor's own overhead between nodes.
    """
    ort = require("onnxruntime", "The CPU benchmark")
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


def loop_pair(onnx_path: Path, shape, iters: int, rounds: int):
    """Interleaved rounds of a bare ``session.run`` loop and ``OrtRunner.time`` on one session.

    Returns per-loop ``(all per-iteration times, per-round medians, per-round wall time per iteration)``.
    """
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
