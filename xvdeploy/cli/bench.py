"""``xvdeploy bench``."""
from __future__ import annotations

import click


@click.command("bench")
def bench() -> None:
    """Not implemented yet."""
    raise click.UsageError("not implemented yet")
