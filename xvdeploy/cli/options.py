"""Options and argument helpers shared by several commands (defined once)."""
from __future__ import annotations

from pathlib import Path

import click
from torch import nn

from xvdeploy.errors import XVDeployError

arch_option = click.option("--arch", metavar="NAME", default=None,
                           help="Zoo architecture of a plain state dict (see 'xvdeploy zoo').")
model_option = click.option("--model", "model_factory", metavar="PKG.MOD:FACTORY", default=None,
                            help="Your own network: a factory function returning the nn.Module.")


def parse_shape(text: str, what: str = "--input-shape", layout: str = "NCHW") -> tuple[int, ...]:
    """``"1x3x224x224"`` -> ``(1, 3, 224, 224)``; ``layout="CHW"`` takes ``"3x224x224"``."""
    example = "x".join(("1", "3", "224", "224")[4 - len(layout):])
    parts = text.lower().replace("×", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise XVDeployError(f"{what} {text!r} is not a shape; expected integers joined by 'x', e.g. {example}") from None
    if len(dims) != len(layout) or any(d < 1 for d in dims):
        words = {3: "three", 4: "four"}[len(layout)]
        raise XVDeployError(f"{what} {text!r}: expected {words} positive sizes {'×'.join(layout)}, e.g. {example}")
    return dims


def load_model_source(source: str, arch: str | None = None, model_factory: str | None = None) -> tuple[nn.Module, str | None]:
    """A model from a checkpoint path or a zoo name; returns ``(model, arch name or None)``.

    A zoo name gives its shipped trained checkpoint (``xv_digits``) or a
    randomly initialised training-form model (:func:`xvdeploy.zoo.create_random`).
    """
    from xvdeploy import zoo
    from xvdeploy.checkpoint import load_checkpoint

    path = Path(source)
    if path.exists() or any(sep in source for sep in ("/", "\\")) or path.suffix:
        model = load_checkpoint(path, arch=arch, model=model_factory)
        return model, getattr(model, "xvdeploy_arch", None)
    if source in zoo.names():
        shipped = zoo.pretrained(source)
        if shipped is not None:
            return load_checkpoint(shipped), source
        return zoo.create_random(source), source
    raise XVDeployError(f"{source!r} is neither an existing file nor a zoo model; "
                        f"expected a checkpoint path or one of: {', '.join(zoo.names())}")


def default_input_shape(arch: str | None, batch: int = 1) -> tuple[int, int, int, int] | None:
    """``(batch, C, H, W)`` of the zoo architecture, if known."""
    from xvdeploy import zoo

    if arch and arch in zoo.names():
        return (batch, *zoo.input_shape(arch))
    return None
