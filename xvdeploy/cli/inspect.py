"""``xvdeploy inspect``: summarise a checkpoint, an ONNX file or a TensorRT engine."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
def inspect(path: Path) -> None:
    """Summarise PATH: inputs/outputs and shapes, op census, metadata, parameter count."""
    from xvdeploy.inspect_file import inspect_path

    for line in inspect_path(path):
        click.echo(line)
