from __future__ import annotations

import contextlib
import hashlib
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from xvdeploy.cli import main


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Hang(BaseException):
    """Raised by :func:`time_limit`. Not an ``Exception`` (TimeoutError is an OSError, which the CLI turns into
    one line): nothing between the alarm and the test may swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float, what: str = "the command"):
    """Fail (:class:`Hang`) instead of hanging when the block runs longer than ``seconds`` (SIGALRM, main thread)."""
    def expired(_signum, _frame):
        raise Hang(f"{what} did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit code 2, a single 'error: …' line naming the problem, no traceback.

    Progress lines (``xvdeploy: …``, shown for steps over 2 s) may come before it.
    """
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("xvdeploy: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def folder_files(tmp_path):
    """Names of files in tmp_path (to check that nothing was written)."""
    return lambda: sorted(p.name for p in tmp_path.iterdir())
