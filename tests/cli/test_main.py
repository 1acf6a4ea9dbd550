"""The ``xvdeploy`` group itself: help without torch, no arguments, ``--debug`` anywhere, one-line OS errors."""
from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from tests.cli.conftest import invoke
from xvdeploy.cli import main

LIGHT = ("fold", "export", "quantize", "build", "bench", "inspect", "zoo", "serve", "loadtest")  # every command's own --help


def test_help_imports_neither_torch_nor_numpy():
    """``xvdeploy --help`` (and ``xvdeploy CMD --help`` of the light commands) must not pay for torch's import
    (2-6 s here): the group lists its commands without importing them."""
    code = ("import sys\n"
            "from click.testing import CliRunner\n"
            "from xvdeploy.cli import main\n"
            f"for args in [['--help'], *[[c, '--help'] for c in {LIGHT!r}]]:\n"
            "    r = CliRunner().invoke(main, args)\n"
            "    assert r.exit_code == 0 and 'Usage' in r.output, (args, r.output)\n"
            "listed = CliRunner().invoke(main, ['--help']).output\n"
            "assert all(f'  {c} ' in listed for c in ('quantize', 'build', 'serve', 'loadtest')), listed\n"
            "heavy = sorted(m for m in ('torch', 'numpy', 'onnx', 'onnxruntime', 'safetensors') if m in sys.modules)\n"
            "print(heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_the_listing_shows_each_commands_own_help():
    import click

    listed = CliRunner().invoke(main, ["--help"]).output
    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        first = " ".join(main.get_command(ctx, name).get_short_help_str(200).split()[:3])
        assert first in listed, (name, first)


def test_no_arguments_prints_the_help_not_an_error_line():
    result = CliRunner().invoke(main, [])
    assert result.exit_code == 2  # what click groups do
    assert "Usage:" in result.output and "Commands:" in result.output and "fold" in result.output
    assert not result.output.startswith("error:")
    assert len(result.output.splitlines()) > 5


def test_debug_works_after_the_command_too(tmp_path):
    from xvdeploy.errors import XVDeployError

    args = ["fold", str(tmp_path / "nope.safetensors"), "-o", str(tmp_path / "o.safetensors")]
    for where in (["--debug", *args], [*args, "--debug"]):
        result = CliRunner().invoke(main, where)
        assert isinstance(result.exception, XVDeployError), (where, result.output)
    quiet = invoke(*args)
    assert quiet.exit_code == 2 and quiet.stderr.startswith("error: ")


def test_every_command_takes_debug():
    import click

    ctx = click.Context(main)
    names = main.list_commands(ctx)
    assert {"fold", "export", "quantize", "build", "bench", "inspect", "zoo", "serve", "loadtest"} <= set(names)
    for name in names:
        assert any("--debug" in p.opts for p in main.get_command(ctx, name).params), name


def test_an_input_name_too_long_for_the_file_system_is_one_line(tmp_path):
    from tests.cli.conftest import assert_one_line_error

    long_input = tmp_path / ("a" * 300 + ".safetensors")
    result = invoke("fold", long_input, "-o", tmp_path / "out.safetensors")
    assert_one_line_error(result, "File name too long")
