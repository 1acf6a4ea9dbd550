"""The build record written next to every engine: ``<plan>.json``.

A TensorRT plan runs only with the TensorRT version that built it and on GPUs
of the same compute capability. The sidecar records both (and what was built:
precision, profiles, the ONNX file's hash, the build time), so that loading an
engine elsewhere is a clear :class:`EngineMismatchError` instead of a
deserialization crash.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from xvdeploy.errors import XVDeployError

SCHEMA = 1


@dataclass(frozen=True)
class Platform:
    """Where an engine is built or run."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.9"


@dataclass
class EngineRecord:
    """Contents of ``<plan>.json``."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profiles: list = field(default_factory=list)  # shapes.profiles_as_json(...)
    onnx_sha256: str = ""
    onnx_file: str = ""
    build_time: str = ""  # ISO 8601, UTC
    build_seconds: float = 0.0
    builder_optimization_level: int | None = None
    workspace_mib: int | None = None
    pssa_plugin: bool = False
    strongly_typed: bool = False
    xvdeploy_version: str = ""
    schema: int = SCHEMA

    @property
    def platform(self) -> Platform:
        return Platform(self.tensorrt_version, self.gpu_name, self.compute_capability)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "sidecar") -> "EngineRecord":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise XVDeployError(f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                                "rebuild the engine") from exc
        if not isinstance(data, dict):
            raise XVDeployError(f"{source} does not hold a JSON object; rebuild the engine")
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("tensorrt_version", "gpu_name", "compute_capability", "precision") if k not in data]
        if missing:
            raise XVDeployError(f"{source} lacks {', '.join(missing)}; rebuild the engine")
        return cls(**{k: v for k, v in data.items() if k in known})


def sidecar_path(plan: str | os.PathLike) -> Path:
    """``model.plan`` → ``model.plan.json``."""
    plan = Path(plan)
    return plan.with_name(plan.name + ".json")


def write_sidecar(plan: str | os.PathLike, record: EngineRecord) -> Path:
    from xvdeploy.fileio import write_text_atomic

    path = sidecar_path(plan)
    write_text_atomic(path, record.to_json())
    return path


def read_sidecar(plan: str | os.PathLike) -> EngineRecord | None:
    """The record next to ``plan``, or ``None`` if there is none."""
    path = sidecar_path(plan)
    if not path.is_file():
        return None
    return EngineRecord.from_json(path.read_text(encoding="utf-8"), source=str(path))


class EngineMismatchError(XVDeployError):
    """The engine was built for another TensorRT version or GPU."""


def check_platform(record: EngineRecord, here: Platform, plan: str | os.PathLike = "the engine",
                   onnx_hint: str | None = None) -> list[str]:
    """Raise :class:`EngineMismatchError` if ``record`` cannot run on ``here``; return soft warnings.

    A plan needs the exact TensorRT version and the same compute capability;
    another GPU model of the same capability works (TensorRT warns), so that
    is a warning, not an error.
    """
    problems = []
    if record.tensorrt_version != here.tensorrt_version:
        problems.append(f"TensorRT {record.tensorrt_version} (this machine has {here.tensorrt_version})")
    if record.compute_capability != here.compute_capability:
        problems.append(f"a GPU of compute capability {record.compute_capability}, {record.gpu_name} "
                        f"(this machine has {here.compute_capability}, {here.gpu_name})")
    if problems:
        source = onnx_hint or record.onnx_file or "MODEL.onnx"
        raise EngineMismatchError(
            f"engine {plan} was built for {' and '.join(problems)}; a TensorRT engine runs only with the version "
            f"and GPU architecture it was built for: rebuild it here with: xvdeploy build {source} -o {plan}"
        )
    if record.gpu_name != here.gpu_name:
        return [f"engine {plan} was built on {record.gpu_name} and runs on {here.gpu_name} (same compute capability "
                f"{here.compute_capability}); it works, but rebuilding here may be faster"]
    return []


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
