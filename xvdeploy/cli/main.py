"""The ``xvdeploy`` click group: shared error handling, one module per command."""
from __future__ import annotations

import os
import sys

import click

from xvdeploy import __version__
from xvdeploy.errors import XVDeployError

CONTEXT_SETTINGS = {"show_default": True, "help_option_names": ["-h", "--help"], "max_content_width": 100}


class XVGroup(click.Group):
    """Turns :class:`XVDeployError` into one line on stderr and its exit code (no traceback unless --debug).

    Click's own usage errors (bad option values, unknown options or commands)
    get the same one ``error:`` line, with a pointer to ``--help``, exit code 2.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "xvdeploy"
            message = " ".join(exc.format_message().split())
            click.echo(f"error: {message} (see '{where} --help')", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

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
    """Fold, export, quantize, build and benchmark X-volution / X-volution(SA) / ACmix networks."""
    ctx.meta["xvdeploy.debug"] = debug


def _add_commands() -> None:
    from xvdeploy.cli import bench, build, export, fold, inspect, loadtest, quantize, serve, zoo

    for module in (fold, export, quantize, build, bench, inspect, zoo, serve, loadtest):
        main.add_command(getattr(module, module.__name__.rsplit(".", 1)[1]))


_add_commands()
