"""Engine cache keys and paths (no TensorRT needed)."""
from __future__ import annotations

from pathlib import Path

from xvdeploy.trt.builder import BuildSettings
from xvdeploy.trt.cache import cache_key, cached_plan_path, default_cache_dir, timing_cache_path
from xvdeploy.trt.shapes import static_profile
from xvdeploy.trt.sidecar import Platform

SHA = "0" * 64


def platform(version="10.8.0.43", name="NVIDIA H100 80GB HBM3", cc="9.0") -> Platform:
    return Platform(version, name, cc)


def test_key_is_stable():
    settings = BuildSettings("fp16", (static_profile({"x": (1, 3, 8, 8)}),), 512, 3)
    assert cache_key(SHA, settings, platform()) == cache_key(SHA, settings, platform())
    assert len(cache_key(SHA, settings, platform())) == 20


def test_key_changes_with_everything_that_makes_another_engine():
    base = BuildSettings("fp16", (static_profile({"x": (1, 3, 8, 8)}),))
    key = cache_key(SHA, base, platform())
    variants = [
        cache_key("1" * 64, base, platform()),
        cache_key(SHA, BuildSettings("fp32", base.profiles), platform()),
        cache_key(SHA, BuildSettings("fp16", (static_profile({"x": (2, 3, 8, 8)}),)), platform()),
        cache_key(SHA, BuildSettings("fp16", base.profiles, workspace_mib=256), platform()),
        cache_key(SHA, BuildSettings("fp16", base.profiles, builder_optimization_level=5), platform()),
        cache_key(SHA, BuildSettings("fp16", base.profiles, pssa_plugin=True), platform()),
        cache_key(SHA, base, platform(version="11.0.0.1")),
        cache_key(SHA, base, platform(cc="8.9", name="NVIDIA L4")),
    ]
    assert key not in variants and len(set(variants)) == len(variants)


def test_cached_plan_path(tmp_path):
    settings = BuildSettings("tf32")
    path = cached_plan_path("models/resnet_xv.onnx", SHA, settings, platform(), tmp_path)
    assert path.parent == tmp_path
    assert path.name == f"resnet_xv-tf32-{cache_key(SHA, settings, platform())}.plan"
    assert timing_cache_path(tmp_path, platform()).name == "timing-trt10.8.0.43-sm9.0.cache"


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XVDEPLOY_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "trt"
    monkeypatch.delenv("XVDEPLOY_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "xvdeploy" / "trt"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "xvdeploy" / "trt"


def test_key_changes_with_the_flavour_and_rtx_targets():
    rtx = Platform("1.7.1.116", "none (built without a GPU)", "", "tensorrt-rtx")
    base = BuildSettings("fp16", flavour="tensorrt-rtx")
    keys = {cache_key(SHA, base, rtx),
            cache_key(SHA, BuildSettings("fp16", flavour="tensorrt-rtx", compute_capabilities=("8.6",)), rtx),
            cache_key(SHA, BuildSettings("fp16", flavour="tensorrt"), platform()),
            cache_key(SHA, base, Platform("1.7.1.116", "none (built without a GPU)", "", "tensorrt"))}
    assert len(keys) == 4


def test_rtx_has_no_timing_cache_but_a_runtime_cache(tmp_path):
    from xvdeploy.trt.cache import runtime_cache_path

    rtx = Platform("1.7.1.116", "NVIDIA GeForce RTX 4090", "8.9", "tensorrt-rtx")
    assert timing_cache_path(tmp_path, rtx) is None  # TensorRT-RTX ignores timing caches
    assert runtime_cache_path(rtx, tmp_path) == tmp_path / "runtime-rtx1.7.1.116-NVIDIA_GeForce_RTX_4090-sm8.9.cache"
