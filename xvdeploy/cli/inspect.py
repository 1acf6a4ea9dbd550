"""``xvdeploy inspect``: summarise a checkpoint, an ONNX file or a TensorRT engine."""
from __future__ import annotations

from pathlib import Path

import click

from xvdeploy.cli.options import quiet_option, state_key_option


@click.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@state_key_option
@quiet_option
def inspect(path: Path, state_key: str | None, quiet: bool) -> None:
    """Summarise PATH: inputs/outputs and shapes, op census, metadata, parameter count."""
    from xvdeploy.inspect_file import inspect_path
    from xvdeploy.progress import reporting, step

    with reporting(not quiet), step(f"reading {path}"):  # a ResNet-50 ONNX file is ~100 MB of protobuf
        lines = inspect_path(path, state_key)
    for line in lines:
        click.echo(line)
