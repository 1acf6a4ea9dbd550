"""Checkpoints: safetensors with metadata; plain state dicts; user factories (docs/design.md, File formats).

Metadata keys (all strings, as safetensors requires): ``format`` = "xvdeploy",
``arch``, ``arch_kwargs`` (JSON), ``form`` ("train" or "folded"),
``xvdeploy_version``, and any user metadata (JSON-encoded values).
A user's file is never unpickled: ``torch.load(weights_only=True)`` only.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from xvdeploy import zoo
from xvdeploy._version import __version__
from xvdeploy.folding import fold
from xvdeploy.errors import XVDeployError, first_line
from xvdeploy.fileio import write_bytes_atomic

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
    from safetensors.torch import save

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
    # serialised here and written by fileio: a full disk is one OSError there (safetensors' own writer raises
    # SafetensorError, which says nothing about the disk)
    write_bytes_atomic(path, save(state, metadata=meta))
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


#: entries under which training scripts save the model's state dict (torchvision / ACmix ResNet ``state_dict``,
#: Swin / DeiT ``model``, EMA copies ``model_ema`` / ``ema`` / timm's ``state_dict_ema``)
STATE_DICT_KEYS = ("state_dict", "model", "model_ema", "ema", "state_dict_ema")
#: key prefixes that wrappers put on every parameter name, and who puts them there
KEY_PREFIXES = {"module.": "DataParallel/DistributedDataParallel", "_orig_mod.": "torch.compile"}
#: classes that training scripts pickle beside the weights — Swin's yacs config (ACmix Swin's main.py saves it),
#: timm's argparse namespace — read by ``torch.load(weights_only=True)`` as inert OrderedDicts (never imported,
#: never called) so the file's tensors load; any other class is still refused
INERT_GLOBALS = ("yacs.config.CfgNode", "argparse.Namespace")


def _is_tensor_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in obj.items())


def unwrap_state_dict(obj, source: str, key: str | None = None) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state dict inside a training script's checkpoint, and one line saying what was unwrapped (or None).

    ``obj`` is a dict of tensors, or a dict holding one under a name of
    :data:`STATE_DICT_KEYS` (``key`` picks the entry explicitly, e.g.
    ``"model_ema"``); then every :data:`KEY_PREFIXES` prefix common to all
    names is stripped (``module.`` from DDP, ``_orig_mod.`` from torch.compile).
    Two candidate state dicts without ``key`` is an error naming both.
    """
    entries: list[str] = []
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            found = ", ".join(repr(k) for k in obj) if isinstance(obj, dict) else type(obj).__name__
            raise XVDeployError(f"{source}: no entry {key!r} (--state-key); the file holds: {found}")
        if not _is_tensor_dict(obj[key]):
            raise XVDeployError(f"{source}: entry {key!r} is not a state dict (a dict of parameter names to tensors)")
        obj = obj[key]
        entries.append(key)
    while isinstance(obj, dict) and not _is_tensor_dict(obj):
        candidates = [k for k in STATE_DICT_KEYS if isinstance(obj.get(k), dict)]
        if len(candidates) > 1:
            names = ", ".join(repr(k) for k in candidates)
            raise XVDeployError(f"{source}: holds {len(candidates)} candidate state dicts ({names}); choose one with "
                                f"--state-key NAME, e.g. --state-key {candidates[0]}")
        if not candidates:
            break
        obj = obj[candidates[0]]
        entries.append(candidates[0])
    if isinstance(obj, dict) and not obj:
        raise XVDeployError(f"{source}: holds no tensors; expected a state dict (parameter names to tensors)")
    if not _is_tensor_dict(obj):
        held = f" (entries: {', '.join(repr(k) for k in list(obj)[:8])})" if isinstance(obj, dict) and obj else ""
        raise XVDeployError(f"{source}: expected a dict of parameter names to tensors, or one under "
                            f"{', '.join(repr(k) for k in STATE_DICT_KEYS)}; got {type(obj).__name__}{held}")
    stripped: list[str] = []
    changed = True
    while changed:
        changed = False
        for prefix in KEY_PREFIXES:
            if all(k.startswith(prefix) for k in obj):
                obj = {k[len(prefix):]: v for k, v in obj.items()}
                stripped.append(prefix)
                changed = True
    parts = []
    if entries:
        parts.append("took the state dict from entry " + " → ".join(repr(e) for e in entries))
    if stripped:
        parts.append("stripped the key prefix " + " and ".join(f"{p!r} ({KEY_PREFIXES[p]})" for p in stripped))
    return obj, ("; ".join(parts) if parts else None)


def read_state_dict(path: str | os.PathLike, key: str | None = None) -> tuple[dict[str, torch.Tensor], str | None]:
    """A plain PyTorch state dict, loaded with ``torch.load(weights_only=True)`` (never unpickled).

    Returns ``(state dict, what was unwrapped or None)``; see :func:`unwrap_state_dict`.
    """
    path = _existing_file(path)
    if path.suffix.lower() in (".onnx", ".plan", ".engine"):
        raise XVDeployError(f"{path}: this command takes a PyTorch checkpoint (.safetensors, or a state dict with "
                            f"--arch/--model), not a{'n ONNX model' if path.suffix.lower() == '.onnx' else ' TensorRT engine'}")
    try:
        inert = [(OrderedDict, name) for name in INERT_GLOBALS]
        with warnings.catch_warnings(), torch.serialization.safe_globals(inert):
            warnings.simplefilter("ignore")  # torch warns about pickle protocols on its way to refusing a file
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        # torch's text for unsafe files advises weights_only=False; we never unpickle a user's file
        blocked = _blocked_pickle(exc, path)
        if blocked is not None:
            raise XVDeployError(f"{path}: {blocked} (state dicts are read with torch.load(weights_only=True)); "
                                "expected a .safetensors checkpoint or a state dict of tensors — if you trust the "
                                "file, re-save its weights alone (README, Checkpoints)") from None
        raise XVDeployError(f"{path}: cannot load as a PyTorch state dict (not a PyTorch file, or a corrupt one); "
                            "expected a .safetensors checkpoint or a state dict of tensors") from None
    return unwrap_state_dict(obj, str(path), key)


def _unsafe_globals(path: Path) -> str:
    """`` (a.B, c.D)``: the classes a file would need unpickled, read without unpickling; "" if unknown."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:
        return ""
    return f" ({', '.join(names[:4])}{', …' if len(names) > 4 else ''})" if names else ""


def _blocked_pickle(exc: Exception, path: Path) -> str | None:
    """What a weights-only ``torch.load`` refused, as a phrase for the error, or None if ``exc`` is no refused
    pickle (a corrupt or foreign file says "invalid load key" and the like). torch 2.13 says "Unsupported
    global: GLOBAL builtins.print" for some files and "unsupported GLOBAL posix.system whose module posix is
    blocked" for others; both are pickled code."""
    import pickle
    import re

    text = str(exc)
    if not isinstance(exc, pickle.UnpicklingError) or not ("Weights only load failed" in text
                                                           or "Unsupported global" in text):
        return None
    names = _unsafe_globals(path)  # " (a.B, c.D)", read without unpickling
    found = re.search(r"GLOBAL ([\w.]+)", text, re.IGNORECASE)
    if names or found:
        return f"the file holds pickled code beyond tensors{names or f' ({found.group(1)})'}, which xvdeploy refuses to run"
    detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    return ("the file is a pickle that torch's safe loader cannot read"
            + (f" ({detail.group(1).strip()})" if detail else "") + ", and xvdeploy never unpickles a user's file")


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
        with _user_code(spec, f"importing {module_name!r}"):
            module = importlib.import_module(module_name)
    except XVDeployError:
        raise
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
        with _user_code(spec, "the factory"):
            model = factory()
    except XVDeployError:
        raise
    except Exception as exc:
        raise XVDeployError(f"--model {spec!r}: the factory failed ({type(exc).__name__}: {first_line(exc)})") from None
    if not isinstance(model, nn.Module):
        raise XVDeployError(f"--model {spec!r}: the factory returned {type(model).__name__}, expected a torch.nn.Module")
    return model


@contextlib.contextmanager
def _user_code(spec: str, what: str):
    """Run a user's module or factory as a library call: ``sys.argv`` holds only a program name (a module that
    parses the command line at import sees none of ours), and ``sys.exit`` is an error, not our exit. What it
    prints is held back and passed on to stderr afterwards, unless it exited (a usage text that is not ours)."""
    import io

    argv, printed = sys.argv, io.StringIO()
    sys.argv = [argv[0] if argv else "xvdeploy"]
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            yield
    except SystemExit as exc:
        said = [line.strip() for line in printed.getvalue().splitlines() if line.strip()]
        raise XVDeployError(f"--model {spec!r}: {what} called sys.exit({exc.code!r})"
                            + (f" after printing {said[-1]!r}" if said else "")
                            + "; a model module must not parse the command line or exit (guard its script part "
                              "with if __name__ == '__main__':)") from None
    else:
        sys.stderr.write(printed.getvalue())
    finally:
        sys.argv = argv


def load_checkpoint(path: str | os.PathLike, arch: str | None = None, model: str | None = None,
                    arch_kwargs: dict | None = None, state_key: str | None = None) -> nn.Module:
    """Load a checkpoint into the model it describes (training or folded form), in eval mode.

    ``path`` is an xvdeploy safetensors file (architecture read from its
    metadata) or a plain state dict (``.pt``/``.pth``/``.bin``/other
    safetensors) with ``arch`` (a zoo name) or ``model`` (``pkg.mod:factory``).
    A folded state dict loads into the folded model. A training script's
    checkpoint is unwrapped (``state_dict`` / ``model`` / ``model_ema`` /
    ``ema`` entries, ``module.`` / ``_orig_mod.`` prefixes; ``state_key``
    picks the entry); the returned model's ``xvdeploy_unwrapped`` says what
    was unwrapped, in one line (None if nothing was).
    """
    path = Path(path)
    meta: dict[str, str] = {}
    unwrapped = None
    if is_safetensors(path):
        state, meta = read_safetensors(path)
        if state_key is not None:
            raise XVDeployError(f"{path}: --state-key applies to PyTorch checkpoints; a safetensors file holds "
                                "one state dict")
        state, unwrapped = unwrap_state_dict(state, str(path))  # prefixes only
    else:
        state, unwrapped = read_state_dict(path, state_key)
    if arch and model:
        raise XVDeployError("give either --arch or --model, not both")
    arch = arch or meta.get("arch")
    if arch_kwargs is None:
        arch_kwargs = _json_meta(meta, "arch_kwargs", path) if "arch_kwargs" in meta else {}
        if arch and not model:  # untrusted: validated against the architecture's signature and memory
            arch_kwargs = zoo.check_kwargs(arch, arch_kwargs, f"{path}: metadata arch_kwargs")
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
    target.xvdeploy_unwrapped = unwrapped
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
        if v.is_floating_point() and not state[k].is_floating_point():  # load_state_dict would cast it quietly
            return (f"weight {k!r} is {str(state[k].dtype).replace('torch.', '')} in the file; "
                    "expected floating-point weights")
    return None


def _names(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown


def _json_meta(meta: dict[str, str], key: str, path: Path):
    if key not in meta:
        return None
    try:
        return json.loads(meta[key])
    except (ValueError, RecursionError):  # JSONDecodeError, an integer of 5000 digits, nesting 10000 deep
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
