"""The model registry (timm's ``_registry`` idea): a decorator fills a typed dict."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from torch import nn

from xvdeploy.errors import XVDeployError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]  # (C, H, W) at the default input
    description: str
    kwargs: dict = field(default_factory=dict)
    checkpoint: Path | None = None  # trained weights shipped with the package


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, input_shape: tuple[int, int, int], description: str, checkpoint: Path | None = None,
             **kwargs):
    """Register ``builder(**kwargs)`` under ``name``; returns the builder unchanged."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelEntry(name, builder, input_shape, description, kwargs, checkpoint)
        return builder

    return wrap


def entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise XVDeployError(f"unknown architecture {name!r}; expected one of: {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    return list(_REGISTRY)
