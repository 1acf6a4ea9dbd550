"""``xvdeploy export``."""
from __future__ import annotations

import click


@click.command("export")
def export() -> None:
    """Not implemented yet."""
    raise click.UsageError("not implemented yet")
