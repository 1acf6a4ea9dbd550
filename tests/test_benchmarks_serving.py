"""The serving benchmark script's rendering from fixed numbers and its marked block (nothing is served)."""
from __future__ import annotations

import copy

from benchmarks import docblock, serving

ENV = {"date": "2026-01-02T03:04:05+00:00", "host": "h", "os": "Linux-test", "python": "3.11.7", "cpu": "Test CPU",
       "cpu_count": 2, "load_1min_at_start": 1.5,
       "versions": {"xvdeploy": "0.1.0", "ray": "2.60.0", "onnxruntime": "1.32.0", "numpy": "2.4.6"}}


def level(concurrency: int, rps: float, errors: int = 0, parity: int = 0, requested: int = 300) -> dict:
    return {"concurrency": concurrency, "requested": requested, "completed": requested, "ok": requested - errors,
            "errors": errors, "parity_failures": parity, "throughput_rps": rps, "samples_per_s": rps,
            "p50_ms": 10.0, "p90_ms": 20.0, "p99_ms": 30.0, "wall_s": 2.0, "max_rel_l2": 0.0, "replicas_seen": 2,
            "nodes_seen": 1, "error_kinds": ["HTTP 500"] if errors else []}


def results() -> dict:
    rounds_b, rounds_u = [level(16, r) for r in (150, 160, 155)], [level(16, r) for r in (120, 130, 125)]
    return {
        "environment": ENV, "batch_wait_ms": 5.0, "startup_s": 30.0,
        "ort_alone": {"shape": [1, 8, 8], "batch1_ms": 0.09, "batch8_ms_per_sample": 0.05},
        "batching": {"batched": {"rounds": rounds_b, "median_rps": 155.0, "median_p50_ms": 10.0, "median_p99_ms": 30.0,
                                 "errors": 0, "parity_failures": 0, "mean_batch": 2.7},
                     "unbatched": {"rounds": rounds_u, "median_rps": 125.0, "median_p50_ms": 12.0,
                                   "median_p99_ms": 31.0, "errors": 0, "parity_failures": 0, "mean_batch": 1.0},
                     "ratio": 1.24},
        "levels": [level(c, r) for c, r in ((1, 50), (4, 130), (16, 155), (32, 140))],
        "kills": [{"replica": "a", "pid": 1, "at_s": 1.0, "after_requests": 100, "in_flight_failures": 3,
                   "other_failures": 0, "replaced_after_s": 7.5, "replacement": "b", "epoch": 0.0, "requests": 400,
                   "ok": 397, "errors": 3, "parity_failures": 0, "error_kinds": ["HTTP 500"]}],
        "multinode": {"address": "127.0.0.1:1", "nodes_in_cluster": 2, "nodes_with_replicas": 2,
                      **level(16, 200), "replicas_seen": 2},
    }


def test_render_states_each_goal_from_the_numbers():
    text = serving.render(results())
    assert text.startswith(serving.BEGIN) and text.endswith(serving.END)
    assert "concurrency 32: **met**" in text
    assert "ratio of the medians **1.24×** (met)" in text and "1.25, 1.23, 1.24" in text
    assert "only its in-flight requests fail: **met** in 1 of 1 runs" in text
    assert "replicas on 2 of 2 nodes" in text
    assert text.count("ray 2.60.0") >= 4  # machine and versions beside every table

    bad = results()
    bad["levels"][-1] = level(32, 100, errors=2, parity=1)
    bad["batching"]["ratio"] = 0.9
    bad["kills"][0]["other_failures"] = 4
    text = serving.render(bad)
    assert "concurrency 32: **NOT met** (2 errors, 1 parity failures" in text
    assert "**0.90×** (NOT met)" in text and "**NOT met** in 1 of 1 runs" in text


def test_block_replaces_only_its_markers(tmp_path):
    doc = tmp_path / "serving.md"
    doc.write_text(f"# Serving\n\nintro\n\n{serving.BEGIN}\nold\n{serving.END}\n\n## Multi-node\n\nkept\n")
    docblock.write_block(doc, serving.BEGIN, serving.END, serving.render(copy.deepcopy(results())),
                         empty=serving.SKELETON)
    text = doc.read_text()
    assert "intro" in text and "## Multi-node\n\nkept" in text and "old" not in text
    assert text.count(serving.BEGIN) == 1
