"""Where a model comes from: a checkpoint path, a zoo name (shipped checkpoint or random weights), default shapes."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from xvdeploy import zoo
from xvdeploy.checkpoint import load_checkpoint, model_form
from xvdeploy.folding import fold
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
    if _exists(path) or any(sep in source for sep in ("/", "\\")) or path.suffix:
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


#: ``xvdeploy.weights`` in an exported ONNX file's metadata: where its weights came from
WEIGHTS_PRETRAINED = "pretrained"  # the zoo architecture's shipped checkpoint
WEIGHTS_RANDOM = "random-seed0"  # zoo.create_random(arch, seed=0): reproducible
WEIGHTS_CHECKPOINT = "checkpoint"  # a user's checkpoint or --model factory: not reproducible from the name


def weights_origin(source: str, source_path: Path | None, model_factory: str | None = None,
                   model: nn.Module | None = None) -> str:
    """Which of the ``WEIGHTS_*`` values describes the weights :func:`load_model_source` gave for ``source``.

    A checkpoint file holding exactly the shipped weights of its architecture
    (the shipped file itself, or its fold) counts as :data:`WEIGHTS_PRETRAINED`.
    """
    if model_factory:
        return WEIGHTS_CHECKPOINT
    if source_path is None and source in zoo.names():
        return WEIGHTS_PRETRAINED if zoo.pretrained(source) is not None else WEIGHTS_RANDOM
    arch = getattr(model, "xvdeploy_arch", None)
    if model is None or arch not in zoo.names() or zoo.pretrained(arch) is None:
        return WEIGHTS_CHECKPOINT
    shipped = load_checkpoint(zoo.pretrained(arch))
    if model_form(model) == "folded":
        shipped = fold(shipped)
    ours, theirs = model.state_dict(), shipped.state_dict()
    same = ours.keys() == theirs.keys() and all(
        ours[k].shape == theirs[k].shape and torch.equal(ours[k], theirs[k].to(ours[k].dtype)) for k in ours)
    return WEIGHTS_PRETRAINED if same else WEIGHTS_CHECKPOINT


def reference_model(arch: str, weights: str | None) -> tuple[nn.Module, str] | None:
    """The PyTorch model an ONNX file exported from zoo architecture ``arch`` was made from, if it can be
    rebuilt: ``(training-form model, description)``, or None when its weights were a user's."""
    if arch not in zoo.names():
        return None
    shipped = zoo.pretrained(arch)
    if shipped is not None and weights in (None, WEIGHTS_PRETRAINED):
        return load_checkpoint(shipped), f"the shipped {arch} checkpoint"
    if shipped is None and weights == WEIGHTS_RANDOM:
        return zoo.create_random(arch), f"zoo.create_random({arch!r}, seed=0), the weights it was exported with"
    return None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name the file system refuses (longer than NAME_MAX, an embedded NUL)
        return False
