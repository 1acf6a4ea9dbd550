"""TensorRT and TensorRT-RTX on a GPU: build, sidecar, load checks, runner parity and timing.

Each test runs once per flavour that can run engines here (``run_flavour``) and
is skipped with the reason otherwise: in CI there is no GPU, and TensorRT-RTX
runs engines only on RTX-class GPUs (compute capability 7.5 to 12.x, not
Hopper). On such a machine ``python -m pytest tests/trt`` runs them.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from xvdeploy.bench.backends.base import RunnerSpec
from xvdeploy.bench.backends.trt_backend import TensorRTRunner
from xvdeploy.errors import XVDeployError
from xvdeploy.trt import require_flavour
from xvdeploy.trt.builder import BuildSettings, build_engine
from xvdeploy.trt.runtime import current_platform, load_engine
from xvdeploy.trt.shapes import build_profiles
from xvdeploy.trt.sidecar import EngineMismatchError, read_sidecar, sidecar_path

ort = pytest.importorskip("onnxruntime")

TOLERANCE = {"fp32": 1e-4, "tf32": 5e-3, "fp16": 1e-2}


def reference(onnx_path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def rel_l2(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def runner_for(flavour, plan, precision="fp32", **kwargs) -> TensorRTRunner:
    return TensorRTRunner(RunnerSpec(flavour, "engine", precision, "cuda"), plan, **kwargs)


@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16"])
def test_build_and_run_matches_onnxruntime(run_flavour, tiny_onnx, tmp_path, precision):
    flavour, trt = require_flavour(run_flavour)
    plan = tmp_path / f"tiny-{precision}.plan"
    lines: list[str] = []
    record = build_engine(tiny_onnx, plan, BuildSettings(precision, flavour=run_flavour), progress=lines.append)
    assert plan.stat().st_size > 0
    assert any(line.startswith("parsing") for line in lines) and any("building" in line for line in lines)
    saved = json.loads(sidecar_path(plan).read_text())
    here = current_platform(flavour, trt)
    assert saved["tensorrt_version"] == trt.__version__ == record.tensorrt_version
    assert saved["compute_capability"] == here.compute_capability and saved["gpu_name"] == here.gpu_name
    assert saved["precision"] == precision and len(saved["onnx_sha256"]) == 64 and not saved["built_without_gpu"]

    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with runner_for(run_flavour, plan, precision) as runner:
        y = runner.infer(x)
    assert y.shape == (1, 5) and y.dtype == np.float32
    assert rel_l2(reference(tiny_onnx, x), y) <= TOLERANCE[precision]


def test_timing_cache_written_reused_and_corrupt(tiny_onnx, tmp_path):
    """TensorRT's timing cache (TensorRT-RTX ignores them: test_trt_build.py)."""
    from xvdeploy.trt import availability

    reason = availability("tensorrt", build=True)
    if reason is not None:
        pytest.skip(f"tensorrt: {reason}")
    cache = tmp_path / "timing.cache"
    build_engine(tiny_onnx, tmp_path / "a.plan", BuildSettings("fp16", flavour="tensorrt"), timing_cache=cache)
    assert cache.stat().st_size > 0
    lines: list[str] = []
    build_engine(tiny_onnx, tmp_path / "b.plan", BuildSettings("fp16", flavour="tensorrt"), timing_cache=cache,
                 progress=lines.append)
    assert any(line.strip().startswith(f"using timing cache {cache}") for line in lines)
    cache.write_bytes(b"corrupt" * 50)
    lines.clear()
    build_engine(tiny_onnx, tmp_path / "c.plan", BuildSettings("fp16", flavour="tensorrt"), timing_cache=cache,
                 progress=lines.append)
    assert any("could not be used (corrupt" in line for line in lines)
    assert cache.read_bytes() != b"corrupt" * 50  # replaced by a good one after the build


def test_dynamic_batch_profile(run_flavour, dynamic_onnx, tmp_path):
    plan = tmp_path / "dyn.plan"
    profiles = build_profiles(["x:1x3x16x16"], ["x:2x3x16x16"], ["x:4x3x16x16"])
    build_engine(dynamic_onnx, plan, BuildSettings("fp32", tuple(profiles), flavour=run_flavour))
    assert read_sidecar(plan).profiles[0]["x"]["max"] == [4, 3, 16, 16]
    rng = np.random.default_rng(1)
    with runner_for(run_flavour, plan) as runner:
        for batch in (3, 1, 4):
            x = rng.standard_normal((batch, 3, 16, 16)).astype(np.float32)
            y = runner.infer(x)
            assert y.shape == (batch, 5)
            assert rel_l2(reference(dynamic_onnx, x), y) <= TOLERANCE["fp32"]
        with pytest.raises(XVDeployError, match="outside the engine's optimization profile"):
            runner.infer(rng.standard_normal((5, 3, 16, 16)).astype(np.float32))


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_timing(run_flavour, tiny_onnx, tmp_path, cuda_graph):
    plan = tmp_path / "t.plan"
    build_engine(tiny_onnx, plan, BuildSettings("fp16", flavour=run_flavour))
    x = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with runner_for(run_flavour, plan, "fp16", cuda_graph=cuda_graph, cache_dir=tmp_path / "cache") as runner:
        times = runner.time(x, warmup=3, iters=10)
        assert len(times) == 10 and all(t > 0 for t in times)
        if cuda_graph:
            assert runner.spec.options["cuda_graph"] is True or str(runner.spec.options["cuda_graph"]).startswith("off")
        y = runner.infer(x)  # infer after timing rebinds and still agrees
    assert rel_l2(reference(tiny_onnx, x), y) <= TOLERANCE["fp16"]
    if run_flavour == "tensorrt-rtx":  # its JIT-compiled kernels were kept for the next run
        assert any(p.name.startswith("runtime-rtx") for p in (tmp_path / "cache").iterdir())


def test_engine_from_another_version_is_refused(run_flavour, tiny_onnx, tmp_path):
    plan = tmp_path / "m.plan"
    build_engine(tiny_onnx, plan, BuildSettings("fp32", flavour=run_flavour))
    data = json.loads(sidecar_path(plan).read_text())
    data["tensorrt_version"] = "0.9.0.0"
    sidecar_path(plan).write_text(json.dumps(data))
    with pytest.raises(EngineMismatchError, match="0.9.0.0"):
        load_engine(plan)
    assert load_engine(plan, check=False).engine is not None


def test_rtx_engine_for_other_gpus_is_refused(tiny_onnx, tmp_path):
    """An RTX engine built for another compute capability only, loaded on this RTX GPU: one line."""
    from xvdeploy.trt import availability

    reason = availability("tensorrt-rtx")
    if reason is not None:
        pytest.skip(f"tensorrt-rtx: {reason}")
    flavour, trt = require_flavour("tensorrt-rtx")
    here = current_platform(flavour, trt)
    other = "12.0" if here.compute_capability != "12.0" else "8.6"
    plan = tmp_path / "other.plan"
    build_engine(tiny_onnx, plan, BuildSettings("fp16", flavour="tensorrt-rtx", compute_capabilities=(other,)))
    with pytest.raises(EngineMismatchError, match=f"--compute-capability {here.compute_capability}"):
        load_engine(plan)


def test_runner_builds_from_onnx(run_flavour, dynamic_onnx, tmp_path):
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
    runner = TensorRTRunner(RunnerSpec(run_flavour, "engine", "fp16", "cuda"), onnx=dynamic_onnx,
                            input_shape=x.shape, cache_dir=tmp_path / "cache")
    with runner:
        y = runner.infer(x)
    assert rel_l2(reference(dynamic_onnx, x), y) <= TOLERANCE["fp16"]
