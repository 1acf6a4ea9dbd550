"""What a TensorRT build is asked for (:class:`BuildSettings`), apart from the builder: no TensorRT, torch or ONNX.

``xvdeploy build --help`` reads its choices from here, so it starts without torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from xvdeploy.errors import XVDeployError
from xvdeploy.trt.flavour import NAMES, parse_compute_capability
from xvdeploy.trt.shapes import profiles_as_json

PRECISIONS = ("fp32", "tf32", "fp16", "int8")
OPT_LEVELS = range(0, 6)  # TensorRT's builder optimization levels; 3 is its default


@dataclass(frozen=True)
class BuildSettings:
    """What determines the engine besides the ONNX file and the platform (also the cache key).

    ``flavour`` is ``"tensorrt"`` or ``"tensorrt-rtx"`` (``None``: the installed
    one, TensorRT first; :func:`build_engine` records which); ``compute_capabilities``
    are TensorRT-RTX's targets (``"8.6"``, …; empty: its default).
    """

    precision: str = "fp32"
    profiles: tuple = field(default_factory=tuple)  # tuple[Profile, ...]
    workspace_mib: int | None = None
    builder_optimization_level: int | None = None
    pssa_plugin: bool = False
    flavour: str | None = None
    compute_capabilities: tuple = field(default_factory=tuple)  # tuple[str, ...]

    def as_dict(self) -> dict:
        return {
            "precision": self.precision,
            "profiles": profiles_as_json(self.profiles),
            "workspace_mib": self.workspace_mib,
            "builder_optimization_level": self.builder_optimization_level,
            "pssa_plugin": self.pssa_plugin,
            "flavour": self.flavour,
            "compute_capabilities": list(self.compute_capabilities),
        }

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise XVDeployError(f"unknown precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        if self.workspace_mib is not None and self.workspace_mib < 1:
            raise XVDeployError(f"--workspace must be at least 1 MiB, got {self.workspace_mib}")
        level = self.builder_optimization_level
        if level is not None and level not in OPT_LEVELS:
            raise XVDeployError(f"--builder-optimization-level must be 0 to 5, got {level}")
        if self.flavour is not None and self.flavour not in NAMES:
            raise XVDeployError(f"unknown TensorRT runtime {self.flavour!r}; expected one of {', '.join(NAMES)}")
        for cc in self.compute_capabilities:
            if parse_compute_capability(str(cc)) != cc:
                raise XVDeployError(f"compute capability {cc!r} is not of the form MAJOR.MINOR, e.g. 8.6")
        if self.compute_capabilities and self.flavour == "tensorrt":
            raise XVDeployError("--compute-capability is for TensorRT-RTX (--runtime tensorrt-rtx); TensorRT builds "
                                "for the GPU it runs on")
