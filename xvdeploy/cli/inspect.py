"""``xvdeploy inspect``: summarise a checkpoint, an ONNX file or a TensorRT engine."""
from __future__ import annotations

from pathlib import Path

import click

from xvdeploy.cli.options import state_key_option


@click.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@state_key_option
def inspect(path: Path, state_key: str | None) -> None:
    """Summarise PATH: inputs/outputs and shapes, op census, metadata, parameter count."""
    from xvdeploy.inspect_file import inspect_path

    for line in inspect_path(path, state_key):
        click.echo(line)
