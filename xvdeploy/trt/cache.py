"""Engine cache for ``bench``: one plan per (ONNX content, build settings, TensorRT flavour and version, GPU).

The key hashes the ONNX file's SHA-256, :class:`~xvdeploy.trt.builder.BuildSettings`
(flavour and target compute capabilities included) and the platform, so a
cached engine is never handed to the other flavour, another TensorRT version
or GPU architecture, and editing the model or a setting builds anew.
The folder is ``$XVDEPLOY_CACHE_DIR/trt`` or ``$XDG_CACHE_HOME/xvdeploy/trt``
(default ``~/.cache/xvdeploy/trt``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from xvdeploy.trt.builder import BuildSettings, Progress, build_engine
from xvdeploy.trt.sidecar import Platform, file_sha256, read_sidecar

KEY_LENGTH = 20  # hex characters of the SHA-256 key kept in file names


def default_cache_dir() -> Path:
    root = os.environ.get("XVDEPLOY_CACHE_DIR")
    if root:
        return Path(root) / "trt"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "xvdeploy" / "trt"


def cache_key(onnx_sha256: str, settings: BuildSettings, platform: Platform) -> str:
    """Hex key of everything that makes a different engine."""
    payload = {
        "onnx_sha256": onnx_sha256,
        "settings": settings.as_dict(),
        "flavour": platform.flavour,
        "tensorrt_version": platform.tensorrt_version,
        "compute_capability": platform.compute_capability,
        "gpu_name": platform.gpu_name,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def cached_plan_path(onnx_path: str | os.PathLike, onnx_sha256: str, settings: BuildSettings,
                     platform: Platform, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/<model stem>-<precision>-<key>.plan``."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    stem = Path(onnx_path).stem
    return folder / f"{stem}-{settings.precision}-{cache_key(onnx_sha256, settings, platform)}.plan"


def timing_cache_path(cache_dir: Path, platform: Platform) -> Path | None:
    """One timing cache per TensorRT version and GPU architecture, shared by the cached builds
    (``None`` for TensorRT-RTX, which ignores timing caches)."""
    if platform.flavour == "tensorrt-rtx":
        return None
    safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in platform.tensorrt_version)
    return cache_dir / f"timing-trt{safe}-sm{platform.compute_capability}.cache"


def runtime_cache_path(platform: Platform, cache_dir: str | os.PathLike | None = None) -> Path:
    """TensorRT-RTX's runtime cache (kernels compiled on the GPU) for one version and GPU model."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in f"{platform.tensorrt_version}-{platform.gpu_name}")
    return folder / f"runtime-rtx{safe}-sm{platform.compute_capability}.cache"


def get_or_build(onnx_path: str | os.PathLike, settings: BuildSettings, platform: Platform,
                 cache_dir: str | os.PathLike | None = None, progress: Progress | None = None) -> Path:
    """The cached plan for ``onnx_path`` + ``settings`` on ``platform``, building it if absent
    (built with ``platform``'s flavour)."""
    settings = dataclasses.replace(settings, flavour=platform.flavour)
    onnx_sha256 = file_sha256(onnx_path)
    plan = cached_plan_path(onnx_path, onnx_sha256, settings, platform, cache_dir)
    record = read_sidecar(plan) if plan.is_file() else None
    if record is not None and record.onnx_sha256 == onnx_sha256 and record.platform == platform:
        if progress is not None:
            progress(f"reusing cached engine {plan}")
        return plan
    plan.parent.mkdir(parents=True, exist_ok=True)
    build_engine(onnx_path, plan, settings, timing_cache=timing_cache_path(plan.parent, platform), progress=progress)
    return plan
