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
