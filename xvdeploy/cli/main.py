"""The ``xvdeploy`` click group: shared error handling, one module per command."""
from __future__ import annotations

import os
import sys

import click

from xvdeploy import __version__
from xvdeploy.errors import XVDeployError

CONTEXT_SETTINGS = {"show_default": True, "help_option_names": ["-h", "--help"], "max_content_width": 100}


class XVGroup(click.Group):
    """Turns :class:`XVDeployError` into one line on stderr and its exit code (no traceback unless --debug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except XVDeployError as exc:
            if ctx.meta.get("xvdeploy.debug") or os.environ.get("XVDEPLOY_DEBUG"):
                raise
            message = " ".join(str(exc).split())  # always one line
            click.echo(f"error: {message}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=XVGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="xvdeploy")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Fold, export, build and benchmark X-volution / X-volution(SA) / ACmix networks."""
    ctx.meta["xvdeploy.debug"] = debug


def _add_commands() -> None:
    from xvdeploy.cli import bench, build, export, fold, inspect, zoo

    for module in (fold, export, build, bench, inspect, zoo):
        main.add_command(getattr(module, module.__name__.rsplit(".", 1)[1]))


_add_commands()
