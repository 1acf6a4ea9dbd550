"""Progress of long steps, on a terminal and off it (docs/design.md#bench).

Library code marks its long steps with :func:`step` (a no-op unless a command
turned reporting on); the CLI turns it on with :func:`reporting` unless
``--quiet``. Only steps that are still running after ``delay`` seconds (2 s)
are shown, so quick commands and one-line errors stay as they are:

* on a terminal, a live line per step (rich's progress display when rich, part
  of the ``bench`` extra, is installed): spinner, message, iterations, elapsed
  time, ETA; it disappears when the step ends;
* off a terminal (CI logs, ``nohup``, pipes), plain lines on stderr, each
  starting with ``xvdeploy:``: when the step has run for ``delay`` seconds, then
  every ``interval`` seconds with its count and ETA, and once more with the
  time it took.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Iterator, TextIO

from xvdeploy._lazy import available, require

#: every progress line off a terminal starts with this (tests tell them from the one ``error:`` line)
PREFIX = "xvdeploy: "


class Task:
    """One running step; ``update`` is cheap (attributes only), call it as often as you like."""

    def __init__(self, message: str, total: int | None = None, unit: str = "iterations") -> None:
        self.message = message
        self.total = total
        self.unit = unit
        self.done = 0
        self.eta_s: float | None = None
        self.started = time.perf_counter()
        self.shown = False  # announced off a terminal / added to the live display
        self.last_line = 0.0
        self.handle = None  # the live display's task id

    def update(self, done: int | None = None, total: int | None = None, eta_s: float | None = None,
               message: str | None = None) -> None:
        if done is not None:
            self.done = done
        if total is not None:
            self.total = total
        if eta_s is not None:
            self.eta_s = max(0.0, eta_s)
        if message is not None:
            self.message = message

    def advance(self, n: int = 1) -> None:
        self.done += n

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def describe(self) -> str:
        parts = []
        if self.done:
            parts.append(f"{self.done}/{self.total} {self.unit}" if self.total else f"{self.done} {self.unit}")
        parts.append(f"{self.elapsed:.0f} s")
        eta = self.eta_s
        if eta is None and self.total and 0 < self.done < self.total:  # steady pace
            eta = self.elapsed / self.done * (self.total - self.done)
        if eta is not None:
            parts.append(f"ETA {eta:.0f} s")
        return f"{self.message}: {', '.join(parts)}"


class _Null(Task):
    def update(self, *args, **kwargs) -> None:  # noqa: D102 - nothing to report to
        pass

    def advance(self, n: int = 1) -> None:
        pass


_reporter: "_Reporter | None" = None


@contextlib.contextmanager
def step(message: str, total: int | None = None, unit: str = "iterations") -> Iterator[Task]:
    """Mark a possibly long step; yields a :class:`Task` to update with counts and an ETA."""
    reporter = _reporter
    if reporter is None:
        yield _Null(message, total, unit)
        return
    task = Task(message, total, unit)
    reporter.start(task)
    try:
        yield task
    finally:
        reporter.finish(task)


@contextlib.contextmanager
def reporting(enabled: bool = True, stream: TextIO | None = None, delay: float = 2.0,
              interval: float = 15.0) -> Iterator[None]:
    """Show the :func:`step` s run inside the block (nothing if not ``enabled``)."""
    global _reporter
    if not enabled or _reporter is not None:
        yield
        return
    stream = stream if stream is not None else sys.stderr
    reporter = _Reporter(stream, delay, interval)
    _reporter = reporter
    try:
        yield
    finally:
        _reporter = None
        reporter.close()


class _Reporter:
    """A daemon thread that shows steps older than ``delay``; plain lines or rich's live display."""

    def __init__(self, stream: TextIO, delay: float, interval: float) -> None:
        self.stream, self.delay, self.interval = stream, delay, interval
        self.tasks: list[Task] = []
        self.lock = threading.Lock()
        self.live = None
        isatty = getattr(stream, "isatty", None)
        if isatty is not None and isatty():
            self.live = _rich_progress(stream)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="xvdeploy-progress", daemon=True)
        self.thread.start()

    def start(self, task: Task) -> None:
        with self.lock:
            self.tasks.append(task)

    def finish(self, task: Task) -> None:
        with self.lock:
            if task in self.tasks:
                self.tasks.remove(task)
            if not task.shown:
                return
            if self.live is not None:
                self.live.remove_task(task.handle)
            else:
                self._line(f"{task.message}: done in {task.elapsed:.1f} s")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        if self.live is not None:
            self.live.stop()

    def _line(self, text: str) -> None:
        try:
            self.stream.write(PREFIX + text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe must not break the command
            pass

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            with self.lock:
                now = time.perf_counter()
                for task in self.tasks:
                    if task.elapsed < self.delay:
                        continue
                    if self.live is not None:
                        self._show_live(task)
                    elif not task.shown:
                        task.shown, task.last_line = True, now
                        self._line(task.describe() if task.done else f"{task.message} …")
                    elif now - task.last_line >= self.interval:
                        task.last_line = now
                        self._line(task.describe())

    def _show_live(self, task: Task) -> None:
        if not task.shown:
            if not self.live.live.is_started:
                self.live.start()
            task.shown = True
            task.handle = self.live.add_task(task.message, total=task.total, detail="", eta="")
        detail = f"{task.done} {task.unit}" if task.done else ""
        eta = f"ETA {task.eta_s:.0f} s" if task.eta_s is not None else ""
        self.live.update(task.handle, description=task.message, completed=task.done, total=task.total,
                         detail=detail, eta=eta)


def _rich_progress(stream: TextIO):
    """rich's live progress display on ``stream``, or None without rich (plain lines then)."""
    if not available("rich.progress"):
        return None
    rich_progress = require("rich.progress", "The progress display")
    Console = require("rich.console", "The progress display").Console  # noqa: N806
    Progress, SpinnerColumn, TextColumn, TimeElapsedColumn = (  # noqa: N806
        rich_progress.Progress, rich_progress.SpinnerColumn, rich_progress.TextColumn, rich_progress.TimeElapsedColumn)
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.fields[detail]}"),
                    TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
                    console=Console(file=stream), transient=True, auto_refresh=True)
