"""The build record written next to every engine: ``<plan>.json``.

A TensorRT plan runs only with the TensorRT version that built it and on GPUs
of the same compute capability; a TensorRT-RTX plan runs only with its
TensorRT-RTX version, on the compute capabilities it was built for (several,
chosen at build time, possibly on a machine without a GPU). The sidecar
records the flavour, its version, the build GPU (if any) and the targets (and
what was built: precision, profiles, the ONNX file's hash, the build time), so
that loading an engine elsewhere is a clear :class:`EngineMismatchError`
instead of a deserialization crash.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from xvdeploy.errors import XVDeployError
from xvdeploy.fileio import write_text_atomic
from xvdeploy.trt.flavour import FLAVOURS

SCHEMA = 1


def flavour_label(name: str) -> str:
    """``"tensorrt-rtx"`` → ``"TensorRT-RTX"`` (an unknown name as it is)."""
    flavour = FLAVOURS.get(name)
    return flavour.label if flavour is not None else name


#: ``gpu_name`` of an engine built without a GPU (TensorRT-RTX's CPU-only build)
NO_GPU = "none (built without a GPU)"


@dataclass(frozen=True)
class Platform:
    """Where an engine is built or run: flavour and its version, GPU name and compute capability ("" without a GPU)."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.9"; "" when there is no GPU
    flavour: str = "tensorrt"  # "tensorrt" | "tensorrt-rtx"

    @property
    def label(self) -> str:
        """``"TensorRT-RTX 1.7.1.116"``."""
        return f"{flavour_label(self.flavour)} {self.tensorrt_version}"


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
    build_seconds: float = 0.0  # build_serialized_network
    parse_seconds: float = 0.0  # OnnxParser (FP16 conversion included)
    builder_optimization_level: int | None = None
    workspace_mib: int | None = None
    pssa_plugin: bool = False
    strongly_typed: bool = False
    xvdeploy_version: str = ""
    flavour: str = "tensorrt"  # sidecars written before TensorRT-RTX support are TensorRT's
    compute_capabilities: list = field(default_factory=list)  # targets ("8.6", …): TensorRT: the build GPU's
    built_without_gpu: bool = False
    network_report: dict = field(default_factory=dict)  # parsed network: xvdeploy.trt.report.network_report()
    notes: list = field(default_factory=list)  # e.g. what TensorRT-RTX makes of --precision int8
    schema: int = SCHEMA

    @property
    def platform(self) -> Platform:
        return Platform(self.tensorrt_version, self.gpu_name, self.compute_capability, self.flavour)

    @property
    def targets(self) -> list[str]:
        """The compute capabilities the engine runs on (old TensorRT sidecars: the build GPU's)."""
        return list(self.compute_capabilities) or ([self.compute_capability] if self.compute_capability else [])

    def summary(self) -> str:
        """One line: flavour, version, where it was built and what it runs on."""
        where = "without a GPU (CPU-only build)" if self.built_without_gpu else f"on {self.gpu_name}"
        return (f"{self.precision} engine built with {self.platform.label} {where}, "
                f"for compute capability {', '.join(self.targets) or '?'}")

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
    """The engine was built with the other flavour, another TensorRT version or for another GPU."""


def check_flavour(record: EngineRecord, flavour: str, plan: str | os.PathLike = "the engine") -> None:
    """Raise :class:`EngineMismatchError` if ``record`` is an engine of the other flavour than ``flavour``."""
    if record.flavour != flavour:
        raise EngineMismatchError(f"engine {plan} was built with {record.platform.label}, not "
                                  f"{flavour_label(flavour)}: load it with "
                                  f"--runtime {record.flavour}, or rebuild it with --runtime {flavour}")


def check_platform(record: EngineRecord, here: Platform, plan: str | os.PathLike = "the engine",
                   onnx_hint: str | None = None) -> list[str]:
    """Raise :class:`EngineMismatchError` if ``record`` cannot run on ``here``; return soft warnings.

    A plan needs its own flavour and its exact version. A TensorRT plan needs
    the compute capability of the GPU it was built on (another GPU model of
    that capability works, TensorRT warns, so that is a warning); a
    TensorRT-RTX plan needs one of the compute capabilities it was built for.
    """
    check_flavour(record, here.flavour, plan)
    source = onnx_hint or record.onnx_file or "MODEL.onnx"
    if record.flavour == "tensorrt-rtx":
        problems = []
        if record.tensorrt_version != here.tensorrt_version:
            problems.append(f"TensorRT-RTX {record.tensorrt_version} (this machine has {here.tensorrt_version})")
        if here.compute_capability not in record.targets:
            problems.append(f"compute capability {', '.join(record.targets)} (this GPU, {here.gpu_name}, has "
                            f"{here.compute_capability})")
        if problems:
            rebuild = f"xvdeploy build {source} -o {plan} --runtime tensorrt-rtx"
            if here.compute_capability and here.compute_capability not in record.targets:
                rebuild += f" --compute-capability {here.compute_capability}"
            raise EngineMismatchError(f"engine {plan} was built for {' and '.join(problems)}; rebuild it with: {rebuild}")
        return []
    problems = []
    if record.tensorrt_version != here.tensorrt_version:
        problems.append(f"TensorRT {record.tensorrt_version} (this machine has {here.tensorrt_version})")
    if record.compute_capability != here.compute_capability:
        problems.append(f"a GPU of compute capability {record.compute_capability}, {record.gpu_name} "
                        f"(this machine has {here.compute_capability}, {here.gpu_name})")
    if problems:
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
