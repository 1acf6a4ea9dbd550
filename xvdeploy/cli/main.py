"""The ``xvdeploy`` click group: shared error handling, one module per command.

Commands are registered by name (:data:`COMMANDS`) and their modules imported
only when the command runs: ``xvdeploy --help`` lists them from each command
function's docstring, read from the source with ``ast``, so it starts without
torch (a fraction of a second instead of seconds). Every command module also
imports the library inside the command function (its option choices come from
light modules such as ``trt/settings.py``), so its own ``--help`` is as quick
(tests/cli/test_main.py checks both).
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys

import click

from xvdeploy._version import __version__
from xvdeploy.errors import XVDeployError, first_line
from xvdeploy.signals import Terminated, received, terminate_as_exception

CONTEXT_SETTINGS = {"show_default": True, "help_option_names": ["-h", "--help"], "max_content_width": 100}

_DEBUG_HELP = "Show full tracebacks for errors (also accepted before the command)."

#: command name -> module under xvdeploy.cli defining a click command of that name (listed in this order)
COMMANDS = {"fold": "fold", "export": "export", "quantize": "quantize", "build": "build", "bench": "bench",
            "inspect": "inspect", "zoo": "zoo", "serve": "serve", "loadtest": "loadtest"}


def _debug_requested(ctx: click.Context) -> bool:
    return bool(ctx.meta.get("xvdeploy.debug") or os.environ.get("XVDEPLOY_DEBUG"))


def _set_debug(ctx: click.Context, _param, value: bool) -> None:
    if value:
        ctx.meta["xvdeploy.debug"] = True  # ctx.meta is shared by the group's and the command's contexts


class XVGroup(click.Group):
    """Turns :class:`XVDeployError` into one line on stderr and its exit code (no traceback unless --debug).

    Click's own usage errors (bad option values, unknown options or commands)
    get the same one ``error:`` line, with a pointer to ``--help``, exit code 2;
    ``xvdeploy`` alone prints the help (exit code 2, as click groups do).
    SIGTERM and SIGHUP unwind the stack like Ctrl-C (temporary files and
    folders are removed) and exit with 128 + the signal number.
    """

    lazy_commands: dict[str, str] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.lazy_commands) + [n for n in sorted(self.commands) if n not in self.lazy_commands]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            module = importlib.import_module(f"xvdeploy.cli.{self.lazy_commands[cmd_name]}")
            self.add_command(getattr(module, cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, without importing a command that has not run (its help read from its source)."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(n) for n in names), default=0)
        rows = []
        for name in names:
            cmd = self.commands.get(name)
            if cmd is not None:
                rows.append((name, cmd.get_short_help_str(limit)))
            else:
                rows.append((name, _short_help(_docstring(self.lazy_commands[name], name), limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Every command takes ``--debug`` too, so it works after the command name."""
        if not any("--debug" in getattr(p, "opts", ()) for p in cmd.params):
            cmd.params.append(click.Option(["--debug"], is_flag=True, expose_value=False, is_eager=True,
                                           callback=_set_debug, help=_DEBUG_HELP))
        super().add_command(cmd, name)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        self.argv = ["xvdeploy", *(sys.argv[1:] if args is None else args)]
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            with terminate_as_exception():
                rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # the help itself, as click prints it
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "xvdeploy"
            message = " ".join(exc.format_message().split())
            click.echo(f"error: {message} (see '{where} --help')", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort as exc:  # Ctrl-C, or a signal while click was still parsing
            if isinstance(exc.__cause__, Terminated):
                _terminated(exc.__cause__)
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context):
        ctx.meta["xvdeploy.argv"] = getattr(self, "argv", ["xvdeploy"])
        try:
            try:
                return super().invoke(ctx)
            except Exception:
                # a SIGTERM's Terminated may have been turned into another exception on its way up (Python's
                # "Error calling __set_name__" RuntimeError when it lands in a class body during an import)
                if received() is not None and not _debug_requested(ctx):
                    _terminated(Terminated(received()))
                raise
        except Terminated as exc:
            if _debug_requested(ctx):
                raise
            _terminated(exc)
        except XVDeployError as exc:
            if _debug_requested(ctx):
                raise
            message = " ".join(str(exc).split())  # always one line
            click.echo(f"error: {message}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:  # the file system said no (a name too long, an unreadable input, a full disk)
            if _debug_requested(ctx):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or first_line(exc)}", err=True)
            sys.exit(2)
        except MemoryError:
            if _debug_requested(ctx):
                raise
            click.echo("error: out of memory; try a smaller --input-shape or --batch", err=True)
            sys.exit(2)


def _docstring(module: str, function: str) -> str:
    """The docstring of ``function`` in ``xvdeploy/cli/<module>.py``, read with ``ast`` (nothing imported)."""
    spec = importlib.util.find_spec(f"xvdeploy.cli.{module}")
    try:
        tree = ast.parse(open(spec.origin, encoding="utf-8").read())  # type: ignore[union-attr,arg-type]
    except (OSError, SyntaxError, AttributeError, TypeError):
        return ""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            return ast.get_docstring(node) or ""
    return ""


def _short_help(doc: str, limit: int) -> str:
    """The first sentence of ``doc``'s first paragraph, cut at a word to ``limit`` characters (as click does)."""
    words: list[str] = []
    for word in doc.split("\n\n")[0].split():
        words.append(word)
        if word.endswith("."):
            break
    text = " ".join(words).rstrip(".")
    if len(text) <= limit:
        return text
    while words and len(" ".join(words)) + 3 > limit:
        words.pop()
    return " ".join(words) + "..."


def _terminated(exc: Terminated) -> None:
    click.echo(f"error: {exc}; stopped (temporary files removed, nothing half-written left behind)", err=True)
    sys.exit(exc.exit_code)


@click.group(cls=XVGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="xvdeploy")
@click.option("--debug", is_flag=True, callback=_set_debug, expose_value=False, is_eager=True, help=_DEBUG_HELP)
def main() -> None:
    """Fold, export, quantize, build and benchmark X-volution / X-volution(SA) / ACmix networks."""


main.lazy_commands = dict(COMMANDS)
