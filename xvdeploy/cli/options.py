"""Options and argument helpers shared by several commands (defined once)."""
from __future__ import annotations

import click

from xvdeploy.errors import XVDeployError

arch_option = click.option("--arch", metavar="NAME", default=None,
                           help="Zoo architecture of a plain state dict (see 'xvdeploy zoo').")
model_option = click.option("--model", "model_factory", metavar="PKG.MOD:FACTORY", default=None,
                            help="Your own network: a factory function returning the nn.Module.")
state_key_option = click.option("--state-key", metavar="NAME", default=None,
                                help="Entry of a training checkpoint holding the weights, e.g. model_ema "
                                     "[default: the only one of state_dict, model, model_ema, ema, state_dict_ema].")


def echo_unwrapped(model) -> None:
    """One line saying how a training script's checkpoint was unwrapped (nothing if it was not)."""
    note = getattr(model, "xvdeploy_unwrapped", None)
    if note:
        click.echo(f"checkpoint: {note}")


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
