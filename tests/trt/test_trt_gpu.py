"""TensorRT on a GPU: build, sidecar, load checks, runner parity and timing.

Skipped (with the reason shown by ``pytest -ra``) where TensorRT or a CUDA GPU
is missing — which includes CI: TensorRT's builder comes only from NVIDIA's
package index. Run them on a GPU machine after
``pip install tensorrt --extra-index-url https://pypi.nvidia.com``.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tensorrt", reason="TensorRT is not installed (it comes from NVIDIA's package index)")
torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU is visible (torch.cuda.is_available() is False)", allow_module_level=True)

import tensorrt as trt  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from xvdeploy.bench.backends.base import RunnerSpec  # noqa: E402
from xvdeploy.errors import XVDeployError  # noqa: E402
from xvdeploy.trt import availability, version_major  # noqa: E402
from xvdeploy.trt.builder import BuildSettings, OnnxParseError, build_engine  # noqa: E402
from xvdeploy.trt.cache import get_or_build  # noqa: E402
from xvdeploy.bench.backends.trt_backend import TensorRTRunner  # noqa: E402
from xvdeploy.trt.runtime import current_platform, load_engine  # noqa: E402
from xvdeploy.trt.shapes import build_profiles  # noqa: E402
from xvdeploy.trt.sidecar import EngineMismatchError, read_sidecar, sidecar_path  # noqa: E402

_reason = availability()
if _reason is not None:
    pytest.skip(_reason, allow_module_level=True)

TOLERANCE = {"fp32": 1e-4, "tf32": 5e-3, "fp16": 1e-2}


def reference(onnx_path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def rel_l2(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def runner_for(plan, precision="fp32", **kwargs) -> TensorRTRunner:
    return TensorRTRunner(RunnerSpec("tensorrt", "engine", precision, "cuda"), plan, **kwargs)


@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16"])
def test_build_and_run_matches_onnxruntime(tiny_onnx, tmp_path, precision):
    plan = tmp_path / f"tiny-{precision}.plan"
    cache = tmp_path / "timing.cache"
    lines: list[str] = []
    record = build_engine(tiny_onnx, plan, BuildSettings(precision), timing_cache=cache, progress=lines.append)
    assert plan.stat().st_size > 0 and cache.stat().st_size > 0
    assert any(line.startswith("parsing") for line in lines) and any("building" in line for line in lines)
    saved = json.loads(sidecar_path(plan).read_text())
    here = current_platform(trt)
    assert saved["tensorrt_version"] == trt.__version__ == record.tensorrt_version
    assert saved["compute_capability"] == here.compute_capability and saved["gpu_name"] == here.gpu_name
    assert saved["precision"] == precision and len(saved["onnx_sha256"]) == 64
    assert saved["strongly_typed"] == (version_major(trt.__version__) >= 11)

    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with runner_for(plan, precision) as runner:
        y = runner.infer(x)
    assert y.shape == (1, 5) and y.dtype == np.float32
    assert rel_l2(reference(tiny_onnx, x), y) <= TOLERANCE[precision]


def test_dynamic_batch_profile(dynamic_onnx, tmp_path):
    plan = tmp_path / "dyn.plan"
    profiles = build_profiles(["x:1x3x16x16"], ["x:2x3x16x16"], ["x:4x3x16x16"])
    build_engine(dynamic_onnx, plan, BuildSettings("fp32", tuple(profiles)))
    assert read_sidecar(plan).profiles[0]["x"]["max"] == [4, 3, 16, 16]
    rng = np.random.default_rng(1)
    with runner_for(plan) as runner:
        for batch in (3, 1, 4):
            x = rng.standard_normal((batch, 3, 16, 16)).astype(np.float32)
            y = runner.infer(x)
            assert y.shape == (batch, 5)
            assert rel_l2(reference(dynamic_onnx, x), y) <= TOLERANCE["fp32"]
        with pytest.raises(XVDeployError, match="outside the engine's optimization profile"):
            runner.infer(rng.standard_normal((5, 3, 16, 16)).astype(np.float32))


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_timing(tiny_onnx, tmp_path, cuda_graph):
    plan = tmp_path / "t.plan"
    build_engine(tiny_onnx, plan, BuildSettings("fp16"))
    x = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with runner_for(plan, "fp16", cuda_graph=cuda_graph) as runner:
        times = runner.time(x, warmup=3, iters=10)
        assert len(times) == 10 and all(t > 0 for t in times)
        if cuda_graph:
            assert runner.spec.options["cuda_graph"] is True or str(runner.spec.options["cuda_graph"]).startswith("off")
        y = runner.infer(x)  # infer after timing rebinds and still agrees
    assert rel_l2(reference(tiny_onnx, x), y) <= TOLERANCE["fp16"]


def test_engine_from_another_tensorrt_version_is_refused(tiny_onnx, tmp_path):
    plan = tmp_path / "m.plan"
    build_engine(tiny_onnx, plan, BuildSettings("fp32"))
    data = json.loads(sidecar_path(plan).read_text())
    data["tensorrt_version"] = "9.0.0.0"
    sidecar_path(plan).write_text(json.dumps(data))
    with pytest.raises(EngineMismatchError, match="built for TensorRT 9.0.0.0"):
        load_engine(plan)
    assert load_engine(plan, check=False).engine is not None


def test_parser_errors_name_the_node(tmp_path):
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("NoSuchOp", ["x"], ["y"], domain="nowhere", name="bogus_node")],
            "bad",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
        ),
        opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid("nowhere", 1)],
    )
    model.ir_version = 10
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    lines: list[str] = []
    with pytest.raises(OnnxParseError) as err:
        build_engine(path, tmp_path / "bad.plan", progress=lines.append)
    assert any("bogus_node" in e for e in err.value.errors)
    assert any("bogus_node" in line for line in lines)
    assert not (tmp_path / "bad.plan").exists() and not (tmp_path / "bad.plan.json").exists()


def test_cache_builds_once(tiny_onnx, tmp_path):
    settings = BuildSettings("fp16")
    here = current_platform(trt)
    lines: list[str] = []
    first = get_or_build(tiny_onnx, settings, here, tmp_path / "cache", lines.append)
    second = get_or_build(tiny_onnx, settings, here, tmp_path / "cache", lines.append)
    assert first == second and any(line.startswith("reusing cached engine") for line in lines)


def test_runner_builds_from_onnx(dynamic_onnx, tmp_path):
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
    runner = TensorRTRunner(RunnerSpec("tensorrt", "engine", "fp16", "cuda"), onnx=dynamic_onnx,
                            input_shape=x.shape, cache_dir=tmp_path / "cache")
    with runner:
        y = runner.infer(x)
    assert rel_l2(reference(dynamic_onnx, x), y) <= TOLERANCE["fp16"]
