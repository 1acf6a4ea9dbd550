"""What ``xvdeploy quantize`` is asked for (:class:`QuantizeOptions`, its choices): no onnx, numpy or torch.

``xvdeploy quantize --help`` reads its choices from here, so it starts without torch;
:mod:`xvdeploy.quant.core` explains the methods, placements and activation layouts.
"""
from __future__ import annotations

from dataclasses import dataclass

from xvdeploy.errors import XVDeployError

METHODS = ("minmax", "entropy", "percentile")
PLACEMENTS = ("split-scales", "float-pssa")
DEFAULT_PLACEMENT = "split-scales"
ACTIVATIONS = ("int8", "uint8")


@dataclass
class QuantizeOptions:
    method: str = "minmax"
    placement: str = DEFAULT_PLACEMENT
    keep_float: tuple[str, ...] = ()
    activations: str = "int8"

    def validate(self) -> None:
        for value, choices, what in ((self.method, METHODS, "--method"), (self.placement, PLACEMENTS, "--placement"),
                                     (self.activations, ACTIVATIONS, "--activations")):
            if value not in choices:
                raise XVDeployError(f"unknown {what} {value!r}; expected one of {', '.join(choices)}")
