"""The CPU benchmark script's plumbing: rendering from fixed numbers, the marked block, options (nothing is timed)."""
from __future__ import annotations

import copy
import json
import re

import pytest
import torch

from benchmarks import cpu, cpu_measure, cpu_render, docblock

ENV = {"date": "2026-01-02T03:04:05+00:00", "host": "h", "os": "Linux-test", "python": "3.11.7", "cpu": "Test CPU",
       "cpu_count": 2, "torch_threads": 2, "gpu": None,
       "versions": {"xvdeploy": "0.1.0", "torch": "2.13.0+cpu", "numpy": "2.4.6", "onnx": "1.23.2",
                    "onnxscript": "0.7.2", "onnxruntime": "1.32.0"}}


def pssa_data() -> dict:
    def form(nodes, t, census):
        return {"median_s": t, "nodes": nodes, "census": census, "parity_rel_l2": 0.0}

    rows = [{"shape": [1, 64, 56, 56], "graph": g, "roll": form(59, 2.79e-3, {"Slice": 22, "Mul": 1}),
             "depthwise": form(3, 0.255e-3, {"Pad": 1, "Conv": 1, "Mul": 1}), "ratio": 10.94, "paired_ratio": 10.9,
             "paired_quartiles": [9.7, 13.7], "runs_per_variant": 250} for g in ("dynamic", "static")]
    return {"rows": rows, "census": {"roll/dynamic": {"Slice": 22, "Mul": 1}, "depthwise/dynamic": {"Pad": 1, "Mul": 1}},
            "rounds": 50, "reps": 5, "load_1min": 1.76}


def resnet_data() -> dict:
    keys = ["resnet50 folded", "xv_resnet50_s3 folded", "xv_resnet50_s3 unfolded"]
    med = dict(zip(keys, (0.0479, 0.0558, 0.0683)))
    result = {"median_s": med, "quartiles_s": {k: (v * 0.9, v * 1.05) for k, v in med.items()},
              "runs": {k: 150 for k in keys}, "paired_xv_over_plain": (1.15, 1.125, 1.174),
              "paired_folded_over_unfolded": (0.827, 0.809, 0.875), "rounds": 50, "reps": 3}
    goals = []
    for b in (1, 8):
        goals.append({"goal": "folded_not_slower", "batch": b, "value": 0.817, "paired": 0.827,
                      "paired_quartiles": [0.809, 0.875], "met": True})
    for b, met in ((1, True), (8, False)):
        goals.append({"goal": "latency_ratio_within_5pct_of_mac_ratio", "batch": b, "latency_ratio": 1.165,
                      "mac_ratio": 1.1146, "deviation": 0.046, "paired": 1.15, "paired_quartiles": [1.125, 1.174],
                      "met": met})
    kernel = {b: {"plain_total_ms": 58.93, "xv_total_ms": 66.35, "plain_shared_ms": 51.09, "xv_shared_ms": 47.61,
                  "replaced_ms": 5.12, "merged_ms": 9.12, "pssa_ms": 4.48, "runs": 30} for b in (1, 8)}
    eager = [{"network": n, "shape": [b, 3, 224, 224], "unfolded_s": 0.0816, "folded_s": 0.0766, "ratio": 0.94,
              "paired": 0.941, "paired_quartiles": [0.876, 0.995], "runs": 25, "met": True}
             for n, b in (("xv_resnet50_s3", 1), ("xv_digits", 256))]
    ops = {"resnet50 folded": ["Conv", "Relu"], "xv_resnet50_s3 folded": ["Concat", "Conv", "Mul", "Pad", "Relu"],
           "xv_resnet50_s3 unfolded": ["BatchNormalization", "Conv", "Relu", "Slice"]}
    models = {k: {"nodes": n, "macs": m, "ops": ops[k], "parity": [([1, 3, 224, 224], 3.9e-7)], "export_s": 4.0}
              for k, n, m in zip(keys, (122, 138, 370), (4.089e9, 4.558e9, 4.552e9))}
    return {"plain_name": "resnet50", "xv_name": "xv_resnet50_s3", "hw": 224, "models": models,
            "macs_plain_train": 4.089e9, "mac_ratio": 1.1146, "results": {1: result, 8: copy.deepcopy(result)},
            "goals": goals, "torch_eager": eager, "kernel_time": kernel, "load_1min": 1.62}


def harness_data() -> dict:
    tiny = {"iters": 200, "rounds": 50, "p50_s": {"bare": 4.4e-6, "harness": 4.6e-6},
            "wall_per_iter_s": {"bare": 4.7e-6, "harness": 4.9e-6}, "call_overhead_p50_s": 0.2e-6,
            "call_overhead_wall_s": 0.3e-6, "share_p50": 2e-5, "share_wall": 3e-5, "met": True}
    return {"label": "resnet50 folded", "shape": [1, 3, 96, 96], "iters": 30, "rounds": 50,
            "p50_s": {"bare": 10.85e-3, "harness": 10.58e-3}, "wall_per_iter_s": {"bare": 10.69e-3, "harness": 10.39e-3},
            "paired_p50": (0.9976, 0.9733, 1.0091), "paired_wall": (0.9904, 0.9639, 1.0127), "overhead_p50": -0.0024,
            "overhead_wall": -0.0096, "met": True, "tiny": tiny, "load_1min": 1.79}


def zoo_data() -> dict:
    def result(backend, form, p50, acc):
        return {"model": "xv_digits", "backend": backend, "form": form, "latency_ms": {"p50": p50, "p90": p50 * 1.5},
                "parity": None if form == "train" else {"rel_l2": 2.2e-7}, "accuracy": acc, "status": "PASS",
                "iterations": 500}

    return {"results": [result("torch", "train", 0.432, 0.9911), result("onnxruntime", "onnx", 12.5, None)],
            "skipped": [{"model": "xv_digits", "backend": "tensorrt", "reason": "not installed"}], "load_1min": 1.21}


def fixed_run(quick: bool = False, rounds: int = 50) -> dict:
    return {"environment": ENV, "ort_threads": 2, "load_start": (1.19, 1.25, 1.23), "load_end": (1.21, 1.40, 1.34),
            "quick": quick, "rounds": rounds, "wall_s": 444.0, "pssa": pssa_data(), "resnet": resnet_data(),
            "harness": harness_data(), "zoo": zoo_data()}


def tables(md: str) -> list[list[str]]:
    """Every Markdown table in ``md``, as its lines."""
    out, current = [], []
    for line in md.split("\n") + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            out.append(current)
            current = []
    return out


def test_block_has_header_sections_and_captions_in_order():
    block = cpu_render.render_cpu(fixed_run())
    assert block.startswith(cpu_render.BEGIN + "\n<!-- generated by benchmarks/cpu.py")
    assert block.endswith("\n" + cpu_render.END)
    assert "Generated by `python benchmarks/cpu.py` on 2026-01-02 in 7.4 min." in block
    assert "QUICK SMOKE RUN" not in block
    headings = re.findall(r"^###? .*$", block, flags=re.M)
    assert headings == ["## CPU", "### 1. The PSSA step in both formulations (onnxruntime CPU)",
                        "### 2. resnet50 vs xv_resnet50_s3, folded and unfolded (onnxruntime CPU, 224×224)",
                        "### 3. Bench harness overhead (issue 4)",
                        "### 4. Zoo networks through `xvdeploy bench` (`run_bench`)"]
    captions = [line for line in block.split("\n") if line.startswith("_Test CPU")]
    # one under each table group: pssa 1, resnet 2 (onnxruntime, eager), harness 1, zoo 1
    assert len(captions) == 5
    assert captions[0] == ("_Test CPU, 2 logical CPUs · onnxruntime 1.32.0 CPU EP, 2 intra-op threads (default) · "
                           "torch 2.13.0+cpu (2 threads) · onnx 1.23.2 · xvdeploy 0.1.0 · 2026-01-02 03:04 UTC · "
                           "load average 1.76 when this table was done_")
    assert "| load average (1/5/15 min) | 1.19 / 1.25 / 1.23 at the start, 1.21 / 1.40 / 1.34 at the end |" in block
    assert "pauses 20 ms" in block


def test_tables_keep_their_columns_alignment_and_rows():
    block = cpu_render.render_cpu(fixed_run())
    found = {t[0]: t for t in tables(block)}
    expected = {  # header line -> (alignment line, body rows)
        "| | |": ("| --- | --- |", 6),
        "| input | graph | roll nodes | depthwise nodes | roll ms | depthwise ms | roll / depthwise | paired | "
        "parity rel-L2 ≤ |": ("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", 2),
        "| graph | ONNX nodes | GMAC | MAC ratio | batch 1 ms | latency ratio b1 | batch 8 ms | latency ratio b8 |":
            ("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", 3),
        "| goal | batch | measured | target | verdict |": ("| --- | ---: | --- | --- | --- |", 4),
        "| batch | part | resnet50 ms | xv_resnet50_s3 ms | ratio |": ("| --- | --- | ---: | ---: | --- |", 8),
        "| network | batch | unfolded ms | folded ms | folded / unfolded | paired | runs | folded ≤ unfolded |":
            ("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |", 2),
        "| measure | bare ms | harness ms | overhead, overall | overhead, paired |":
            ("| --- | ---: | ---: | ---: | ---: |", 2),
        "| measure (1-node graph) | bare µs | harness µs | harness − bare, µs | as a share of the 10.85 ms run |":
            ("| --- | ---: | ---: | ---: | ---: |", 2),
        "| model | backend/form | p50 ms | p90 ms | rel-L2 | accuracy | status | iters |":
            ("| --- | --- | ---: | ---: | ---: | ---: | :---: | ---: |", 2),
    }
    assert list(found) == list(expected)
    for header, (align, n) in expected.items():
        assert found[header][1] == align
        assert len(found[header]) == 2 + n, header
        width = header.count(" | ") + 1
        assert all(row.count(" | ") + 1 == width for row in found[header][2:]), header


def test_section_rows_are_formatted_from_the_numbers():
    run = fixed_run()
    pssa = cpu_render.render_pssa(run["pssa"], run)
    assert "| 1×64×56×56 | dynamic | 59 | 3 | 2.79 | 0.255 | **10.9×** | 10.9× [9.7, 13.7] | 0e+00 |" in pssa
    assert pssa.endswith("- roll/dynamic: Slice×22, Mul×1\n- depthwise/dynamic: Pad×1, Mul×1")
    resnet = cpu_render.render_resnet(run["resnet"], run)
    assert "| xv_resnet50_s3 folded | 138 | 4.558 | 1.1147 | 55.80 [50.22, 58.59] | 1.165 |" in resnet
    assert "| 8 | latency ratio 1.165 (paired 1.150 [1.125, 1.174]) vs MAC ratio 1.115: +4.6 % | within ±5 % | " \
           "**not met** |" in resnet
    assert "adds to resnet50's: {Concat, Mul, Pad}; the unfolded graph adds {BatchNormalization, Slice}." in resnet
    assert "| 1 | **total kernel time** | 58.93 | 66.35 | **1.126** (MAC ratio 1.115: +1.0 %) |" in resnet
    harness = cpu_render.render_harness(run["harness"], run)
    assert "| p50 of per-iteration latency (what the report shows) | 10.85 | 10.58 | -2.49 % | " \
           "-0.24 % [-2.67 %, +0.91 %] |" in harness
    assert "| p50 of per-iteration latency | 4.4 | 4.6 | +0.2 | +0.00 % |" in harness
    zoo = cpu_render.render_zoo(run["zoo"], run)
    assert "| xv_digits | torch/train | 0.432 | 0.648 | nan | 99.11 % | PASS | 500 |" in zoo
    assert "| xv_digits | onnxruntime/onnx | 12.50 | 18.75 | 2.2e-07 | — | PASS | 500 |" in zoo
    assert "- xv_digits: tensorrt skipped (not installed)" in zoo


def test_a_saved_json_renders_the_same_block():
    run = fixed_run()
    saved = json.loads(json.dumps(run, default=str))  # what --json writes: int batch keys become strings
    assert cpu_render.render_cpu(saved) == cpu_render.render_cpu(run)


def test_quick_and_rounds_show_in_the_command_line_and_only_run_sections_render():
    run = fixed_run(quick=True, rounds=3)
    del run["resnet"], run["zoo"]
    block = cpu_render.render_cpu(run)
    assert "**QUICK SMOKE RUN" in block
    assert "Generated by `python benchmarks/cpu.py --quick --rounds 3`" in block
    assert "### 1." in block and "### 3." in block and "### 2." not in block and "### 4." not in block
    assert "Generated by `python benchmarks/cpu.py --quick` on" in cpu_render.render_cpu(fixed_run(quick=True, rounds=2))


def test_md_table_aligns_columns_and_escapes_pipes():
    md = docblock.md_table(["a", "b", "c"], [["x|y", 1, 2]], "lrc")
    assert md.split("\n") == ["| a | b | c |", "| --- | ---: | :---: |", "| x\\|y | 1 | 2 |"]
    assert docblock.md_table(["a", "b"], [[1, 2]]).split("\n")[1] == "| --- | ---: |"


def test_write_block_replaces_only_the_marked_text(tmp_path):
    doc = tmp_path / "sub" / "benchmarks.md"
    block = f"{cpu_render.BEGIN}\nnew\n{cpu_render.END}"
    docblock.write_block(doc, cpu_render.BEGIN, cpu_render.END, block, empty=cpu_render.SKELETON)
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n") and block in text and text.endswith("## GPU\n\nNot yet measured.\n")
    doc.write_text(f"intro\n{cpu_render.BEGIN}\nold\n{cpu_render.END}\nafter\n", encoding="utf-8")
    docblock.write_block(doc, cpu_render.BEGIN, cpu_render.END, block)
    assert doc.read_text(encoding="utf-8") == f"intro\n{block}\nafter\n"
    doc.write_text("no markers\n", encoding="utf-8")
    docblock.write_block(doc, cpu_render.BEGIN, cpu_render.END, block, append="## GPU\n\n" + block)
    assert doc.read_text(encoding="utf-8") == f"no markers\n\n## GPU\n\n{block}\n"
    assert sorted(p.name for p in doc.parent.iterdir()) == ["benchmarks.md"]  # no temporary file left


def test_options(capsys):
    args = cpu.parse_args([])
    assert args.output == docblock.DOC and args.rounds == cpu_measure.DEFAULT_ROUNDS
    assert args.sections == ["pssa", "resnet", "harness", "zoo"]
    args = cpu.parse_args(["--quick", "--sections", "pssa, zoo"])
    assert args.output is None and args.rounds == 2 and args.sections == ["pssa", "zoo"]
    for bad, message in ((["--sections", "pssa,gpu"], "unknown section 'gpu'"), (["--rounds", "0"], "at least 1")):
        with pytest.raises(SystemExit) as exc:
            cpu.parse_args(bad)
        assert exc.value.code == 2 and message in capsys.readouterr().err


def test_interleave_alternates_the_order_and_counts_runs():
    calls = []
    variants = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    times, per_round = cpu_measure.interleave(variants, rounds=3, reps=2, warmup=1, settle_s=0, settle_runs=1)
    assert calls == ["a", "b"] + ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3 + ["a"] * 3 + ["b"] * 3
    assert {k: len(v) for k, v in times.items()} == {"a": 6, "b": 6}
    assert {k: len(v) for k, v in per_round.items()} == {"a": 3, "b": 3}
    ratio, lo, hi = cpu_measure.paired_ratio({"a": [2.0, 4.0, 6.0], "b": [1.0, 1.0, 1.0]}, "a", "b")
    assert (ratio, lo, hi) == (4.0, 3.0, 5.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU exit; this machine has a CUDA device")
def test_gpu_script_exits_2_without_a_device_and_writes_nothing(tmp_path, capsys):
    from benchmarks import gpu

    out = tmp_path / "b.md"
    with pytest.raises(SystemExit) as exc:
        gpu.main(["-o", str(out)])
    assert exc.value.code == 2 and "needs a CUDA device" in capsys.readouterr().err
    assert not out.exists()
