"""xvdeploy.progress: long steps are shown (plain lines off a terminal, rich's live display on one), short ones not."""
from __future__ import annotations

import io
import time

from xvdeploy.progress import PREFIX, reporting, step


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_long_steps_are_plain_lines_off_a_terminal():
    out = io.StringIO()
    with reporting(stream=out, delay=0.1, interval=0.2):
        with step("timing a row", total=10) as task:
            for i in range(6):
                task.update(done=i + 1, eta_s=0.1 * (5 - i))
                time.sleep(0.1)
        with step("a quick one"):
            pass
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith(PREFIX) for line in lines)
    assert "timing a row" in lines[0] and lines[-1].startswith(PREFIX + "timing a row: done in ")
    assert any("/10 iterations" in line and "ETA" in line for line in lines)
    assert "a quick one" not in out.getvalue()


def test_nothing_under_the_delay_and_nothing_when_disabled():
    out = io.StringIO()
    with reporting(stream=out, delay=2.0):
        with step("fast"):
            time.sleep(0.05)
    with reporting(enabled=False, stream=out, delay=0.0):
        with step("muted"):
            time.sleep(0.3)
    with step("no reporter at all") as task:  # library code outside the CLI
        task.update(done=1, eta_s=1)
    assert out.getvalue() == ""


def test_a_terminal_gets_a_live_display_that_goes_away():
    out = _Terminal()
    with reporting(stream=out, delay=0.0):
        with step("exporting to ONNX") as task:
            task.update(done=3)
            time.sleep(0.5)
    text = out.getvalue()
    assert "exporting to ONNX" in text and PREFIX not in text  # rich's display, not log lines
