"""Where a model comes from: a checkpoint path, a zoo name (shipped checkpoint or random weights), default shapes."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from xvdeploy import zoo
from xvdeploy.checkpoint import load_checkpoint
from xvdeploy.errors import XVDeployError


def load_model_source(source: str, arch: str | None = None, model_factory: str | None = None,
                      state_key: str | None = None) -> tuple[nn.Module, str | None]:
    """A model from a checkpoint path or a zoo name; returns ``(model, arch name or None)``.

    A zoo name gives its shipped trained checkpoint (``xv_digits``) or a
    randomly initialised training-form model (:func:`xvdeploy.zoo.create_random`).
    ``state_key`` picks the entry of a training script's checkpoint (see
    :func:`xvdeploy.checkpoint.unwrap_state_dict`).
    """
    path = Path(source)
    if path.exists() or any(sep in source for sep in ("/", "\\")) or path.suffix:
        model = load_checkpoint(path, arch=arch, model=model_factory, state_key=state_key)
        return model, getattr(model, "xvdeploy_arch", None)
    if state_key is not None:
        raise XVDeployError(f"--state-key applies to a checkpoint file; {source!r} is not one")
    if source in zoo.names():
        shipped = zoo.pretrained(source)
        if shipped is not None:
            return load_checkpoint(shipped), source
        return zoo.create_random(source), source
    raise XVDeployError(f"{source!r} is neither an existing file nor a zoo model; "
                        f"expected a checkpoint path or one of: {', '.join(zoo.names())}")


def default_input_shape(arch: str | None, batch: int = 1) -> tuple[int, int, int, int] | None:
    """``(batch, C, H, W)`` of the zoo architecture, if known."""
    if arch and arch in zoo.names():
        return (batch, *zoo.input_shape(arch))
    return None
