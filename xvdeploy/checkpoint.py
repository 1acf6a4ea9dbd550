"""Checkpoints: safetensors with metadata; plain state dicts; user factories (docs/design.md, File formats).

Metadata keys (all strings, as safetensors requires): ``format`` = "xvdeploy",
``arch``, ``arch_kwargs`` (JSON), ``form`` ("train" or "folded"),
``xvdeploy_version``, and any user metadata (JSON-encoded values).
A user's file is never unpickled: ``torch.load(weights_only=True)`` only.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from xvdeploy import zoo
from xvdeploy._version import __version__
from xvdeploy.folding import fold
from xvdeploy.errors import XVDeployError, first_line
from xvdeploy.fileio import atomic_path

FORMS = ("train", "folded")
_RESERVED = {"format", "arch", "arch_kwargs", "form", "xvdeploy_version"}


def model_form(model: nn.Module) -> str:
    """"folded" for a model produced by :func:`xvdeploy.fold`, else "train"."""
    return "folded" if getattr(model, "xvdeploy_folded", False) else "train"


def save_checkpoint(model: nn.Module, path: str | os.PathLike, arch: str | None = None, **metadata) -> Path:
    """Write ``model``'s state dict as safetensors with metadata, atomically.

    ``arch`` defaults to the zoo name the model was created with; extra keyword
    arguments are stored as JSON strings in the metadata.
    """
    from safetensors.torch import save_file


    arch = arch or getattr(model, "xvdeploy_arch", None)
    meta = {"format": "xvdeploy", "form": model_form(model), "xvdeploy_version": __version__,
            "arch_kwargs": json.dumps(getattr(model, "xvdeploy_arch_kwargs", {}), sort_keys=True)}
    if arch:
        meta["arch"] = arch
    for key, value in metadata.items():
        if key in _RESERVED:
            raise XVDeployError(f"metadata key {key!r} is reserved; choose another name")
        meta[key] = json.dumps(value)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file, with a clear error for bad files."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    path = _existing_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise XVDeployError(f"{path}: not a valid safetensors file ({first_line(exc)}); "
                            "expected a checkpoint written by xvdeploy or safetensors") from None
    return tensors, meta


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A plain PyTorch state dict, loaded with ``torch.load(weights_only=True)`` (never unpickled)."""
    path = _existing_file(path)
    if path.suffix.lower() in (".onnx", ".plan", ".engine"):
        raise XVDeployError(f"{path}: this command takes a PyTorch checkpoint (.safetensors, or a state dict with "
                            f"--arch/--model), not a{'n ONNX model' if path.suffix.lower() == '.onnx' else ' TensorRT engine'}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on its way to refusing a file
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        # torch's text for unsafe files advises weights_only=False; we never unpickle a user's file
        why = ("it holds Python objects beyond tensors, which are never unpickled here"
               if "Unsupported global" in str(exc)
               else "not a PyTorch file, or a corrupt one")
        raise XVDeployError(f"{path}: cannot load as a PyTorch state dict ({why}); "
                            "expected a .safetensors checkpoint or a state dict of tensors") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise XVDeployError(f"{path}: expected a dict of parameter names to tensors, got {type(obj).__name__}")
    return obj


def model_from_factory(spec: str) -> nn.Module:
    """Call ``package.module:factory`` (no arguments) and return the module it builds."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise XVDeployError(f"--model {spec!r}: expected the form package.module:factory")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:  # like `python -m`: a module in the current directory imports (and is not left on the path)
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise XVDeployError(f"--model {spec!r}: cannot import {module_name!r} ({first_line(exc)}); it must be "
                            "importable from the current directory or the Python path") from None
    finally:
        if added:
            sys.path.remove(cwd)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise XVDeployError(f"--model {spec!r}: {module_name!r} has no callable {attr!r}")
    try:
        model = factory()
    except Exception as exc:
        raise XVDeployError(f"--model {spec!r}: the factory failed ({type(exc).__name__}: {first_line(exc)})") from None
    if not isinstance(model, nn.Module):
        raise XVDeployError(f"--model {spec!r}: the factory returned {type(model).__name__}, expected a torch.nn.Module")
    return model


def load_checkpoint(path: str | os.PathLike, arch: str | None = None, model: str | None = None,
                    arch_kwargs: dict | None = None) -> nn.Module:
    """Load a checkpoint into the model it describes (training or folded form), in eval mode.

    ``path`` is an xvdeploy safetensors file (architecture read from its
    metadata) or a plain state dict (``.pt``/``.pth``/``.bin``/other
    safetensors) with ``arch`` (a zoo name) or ``model`` (``pkg.mod:factory``).
    A folded state dict loads into the folded model.
    """
    path = Path(path)
    meta: dict[str, str] = {}
    if is_safetensors(path):
        state, meta = read_safetensors(path)
    else:
        state = read_state_dict(path)
    if arch and model:
        raise XVDeployError("give either --arch or --model, not both")
    arch = arch or meta.get("arch")
    if arch_kwargs is None:
        arch_kwargs = _json_meta(meta, "arch_kwargs", path) or {}
    if not arch and not model:
        raise XVDeployError(f"{path}: no architecture recorded in the file; "
                            "give --arch NAME (see 'xvdeploy zoo') or --model package.module:factory")
    form = meta.get("form")
    if form is not None and form not in FORMS:
        raise XVDeployError(f"{path}: unknown form {form!r} in metadata; expected one of {', '.join(FORMS)}")

    def build() -> nn.Module:
        if model:
            return model_from_factory(model)
        return zoo.create(arch, **arch_kwargs)

    source = f"{path} ({'--model ' + model if model else 'architecture ' + arch})"
    problems = []
    for candidate in [form] if form else ["train", "folded"]:  # a plain state dict may be either
        target = _as_form(build(), candidate)
        problems.append(_state_mismatch(target, state))
        if problems[-1] is None:
            break
    else:
        raise XVDeployError(f"{source}: {problems[0]}")
    check_finite(state, str(path))
    target.load_state_dict(state, strict=True)
    if arch:
        target.xvdeploy_arch, target.xvdeploy_arch_kwargs = arch, arch_kwargs
    return target.eval()


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Raise naming the first parameter that holds NaN or Inf."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            kind = "NaN" if bool(torch.isnan(tensor).any()) else "Inf"
            raise XVDeployError(f"{source}: weight {name!r} contains {kind} values; expected finite weights")


def _as_form(model: nn.Module, form: str) -> nn.Module:
    if form == "folded":
        return fold(model, inplace=True)
    return model


def _state_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing weights {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected weights {_names(unexpected)}")
        return "weights do not match the architecture: " + "; ".join(parts)
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            return (f"shape mismatch for {k!r}: file has {tuple(state[k].shape)}, "
                    f"architecture expects {tuple(v.shape)}")
    return None


def _names(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown


def _json_meta(meta: dict[str, str], key: str, path: Path):
    if key not in meta:
        return None
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError:
        raise XVDeployError(f"{path}: metadata {key!r} is not valid JSON") from None


def is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    # safetensors: 8-byte little-endian header length, then a JSON object
    return len(head) == 9 and head[8:9] == b"{"


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise XVDeployError(f"{path}: no such file; expected a checkpoint (.safetensors or a PyTorch state dict)")
    if not path.is_file():
        raise XVDeployError(f"{path}: not a file; expected a checkpoint (.safetensors or a PyTorch state dict)")
    return path
