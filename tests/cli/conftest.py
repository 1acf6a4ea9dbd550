from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from xvdeploy.cli import main


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit code 2, a single 'error: …' line naming the problem, no traceback."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def folder_files(tmp_path):
    """Names of files in tmp_path (to check that nothing was written)."""
    return lambda: sorted(p.name for p in tmp_path.iterdir())
