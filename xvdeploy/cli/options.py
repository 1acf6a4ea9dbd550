"""Options and argument helpers shared by several commands (defined once).

This module is imported when ``xvdeploy --help`` runs: it needs only click and
the torch-free core modules.
"""
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
overwrite_option = click.option("--overwrite", is_flag=True,
                                help="Replace output files that already exist (without it they are refused).")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress display, only the results.")

#: what every --input-shape help text says
SHAPE_HELP = "CxHxW or NxCxHxW"


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


# -- --triton-repo (export, build) ---------------------------------------------------------------------------
class TritonRequest:
    """What ``--triton-repo`` and its companions ask for: checked before the file is made, written after."""

    def __init__(self, repo, name: str | None, max_batch: int | None, instances: str | None) -> None:
        from xvdeploy.serve.triton_repo import TritonOptions, parse_instances

        kind, count = parse_instances(instances) if instances else (None, 1)
        self.repo = repo
        self.options = TritonOptions(name=name, max_batch_size=max_batch, instance_kind=kind, instance_count=count)

    def check(self, model_path, onnx_path=None, pssa_plugin: bool = False) -> None:
        """Before ``model_path`` is written (``onnx_path``: its ONNX source, whose inputs are known already)."""
        from xvdeploy.export.onnxfile import read_header
        from xvdeploy.serve.triton_repo import PLAN_SUFFIXES, check_repository, model_name

        if pssa_plugin:
            raise XVDeployError("--triton-repo with --pssa-plugin: the PSSA plugin node needs onnxruntime-extensions' "
                                "Python op, which Triton's onnxruntime backend does not load; export without "
                                "--pssa-plugin for Triton")
        kind = "plan" if str(model_path).lower().endswith(PLAN_SUFFIXES) else "onnx"
        header = read_header(onnx_path) if onnx_path is not None else None
        check_repository(self.repo, model_name(model_path, self.options.name), self.options, header, kind)

    def write(self, model_path, onnx_path=None) -> None:
        from xvdeploy.serve.triton_repo import write_triton_model

        result = write_triton_model(self.repo, model_path, self.options, onnx_path=onnx_path)
        kept = "" if result.config_written else " (its config.pbtxt kept)"
        click.echo(f"wrote Triton model {result.model_dir} version {result.version}: {result.model_file.name}{kept}")
        for note in result.notes:
            click.echo(f"note: {note}")


def triton_options(fn):
    """``--triton-repo DIR`` (+ ``--triton-name``, ``--triton-max-batch``, ``--triton-instances``), passed to
    the command as one ``triton`` argument: a :class:`TritonRequest`, or ``None`` without ``--triton-repo``."""
    import functools
    from pathlib import Path

    @functools.wraps(fn)
    def wrapper(*args, triton_repo, triton_name, triton_max_batch, triton_instances, **kwargs):
        given = [n for n, v in (("--triton-name", triton_name), ("--triton-max-batch", triton_max_batch),
                                ("--triton-instances", triton_instances)) if v is not None]
        if triton_repo is None and given:
            raise XVDeployError(f"{', '.join(given)} need --triton-repo DIR (the Triton model repository to write)")
        triton = None if triton_repo is None else TritonRequest(triton_repo, triton_name, triton_max_batch,
                                                                triton_instances)
        return fn(*args, triton=triton, **kwargs)

    options = [
        click.option("--triton-repo", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="DIR",
                     help="Also add the result to this Triton model repository (DIR/NAME/config.pbtxt, DIR/NAME/N/).",),
        click.option("--triton-name", default=None, metavar="NAME", help="Triton model name  [default: the output's stem]"),
        click.option("--triton-max-batch", type=click.IntRange(min=0), default=None, metavar="N",
                     help="Triton max_batch_size  [default: 8 for ONNX, the engine profile's for a plan]"),
        click.option("--triton-instances", default=None, metavar="KIND[:COUNT]",
                     help="Triton instance_group: auto, cpu or gpu, and a count  [default: auto:1; gpu:1 for a plan]"),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def parse_input_shape(text: str, what: str = "--input-shape") -> tuple[int | None, tuple[int, int, int]]:
    """``"3x224x224"`` -> ``(None, (3, 224, 224))``; ``"8x3x224x224"`` -> ``(8, (3, 224, 224))``.

    Every command's ``--input-shape`` takes both forms; the batch, where given,
    is the command's batch (its probe, example or ``--batch``). The input alone
    must fit in memory (checked here, before any model is loaded).
    """
    from xvdeploy.memory import check_fits, tensor_bytes

    parts = text.lower().replace("×", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise XVDeployError(f"{what} {text!r} is not a shape; expected {SHAPE_HELP} (integers joined by 'x'), "
                            "e.g. 3x224x224 or 1x3x224x224") from None
    if len(dims) not in (3, 4) or any(d < 1 for d in dims):
        raise XVDeployError(f"{what} {text!r}: expected three or four positive sizes, {SHAPE_HELP}, "
                            "e.g. 3x224x224 or 1x3x224x224")
    batch, chw = (None, dims) if len(dims) == 3 else (dims[0], dims[1:])
    check_fits(tensor_bytes((batch or 1, *chw)), f"{what} {text}: one float32 input",
               "give a smaller --input-shape")
    return batch, chw  # type: ignore[return-value]


def checked_outputs(overwrite: bool, inputs: tuple, *outputs: tuple) -> None:
    """``check_output_path`` for each ``(path or None, suffixes)`` in ``outputs``; two outputs may not coincide."""
    from pathlib import Path

    from xvdeploy.fileio import check_output_path

    seen: list[Path] = []
    for path, suffixes in outputs:
        if path is None:
            continue
        check_output_path(path, *inputs, suffixes=suffixes, exists_ok=overwrite)
        if any(Path(path).resolve() == other.resolve() for other in seen):
            raise XVDeployError(f"two outputs are the same file {str(path)!r}; give each its own path")
        seen.append(Path(path))


def existing_path(source: str | None):
    """``Path(source)`` if it names an existing file or folder, else None (also for names the file system refuses)."""
    from pathlib import Path

    if not source:
        return None
    try:
        return Path(source) if Path(source).exists() else None
    except (OSError, ValueError):  # a name longer than NAME_MAX, an embedded NUL
        return None
