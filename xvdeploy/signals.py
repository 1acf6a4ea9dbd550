"""Termination signals as exceptions, so that every clean-up runs (docs/design.md#layers).

A scheduler, ``timeout``, ``kill`` or a container stop sends SIGTERM, and a closed
terminal sends SIGHUP. Python's default for both is to die on the spot: no ``finally``
block runs, so the temporary file of an atomic write (:mod:`xvdeploy.fileio`) or a
``tempfile.TemporaryDirectory`` stays behind. Inside :func:`terminate_as_exception`
these signals raise :class:`Terminated` instead, which, like Ctrl-C's
``KeyboardInterrupt``, unwinds the stack through every ``finally`` and ``with``.
"""
from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Iterator

#: the signals turned into :class:`Terminated` (SIGHUP where the platform has it)
SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)

#: a repeated signal this soon after the first is ignored (the clean-up of the first is running)
REPEAT_AFTER_S = 2.0
#: the signal received inside the current :func:`terminate_as_exception` block, if any
_fired: list[int] = []


def received() -> int | None:
    """The signal number received inside the current :func:`terminate_as_exception` block, or None.

    Code that may turn the :class:`Terminated` exception into another one (Python
    wraps an exception raised inside a class body's ``__set_name__`` into a
    RuntimeError; a library may catch BaseException and raise its own) asks this
    to still exit as terminated.
    """
    return _fired[0] if _fired else None


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM or SIGHUP.

    A ``KeyboardInterrupt`` subclass, so ``except Exception`` does not swallow it
    and code that already cleans up after Ctrl-C cleans up after it too.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"terminated by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        """What a shell reports for a process killed by the signal: 128 + its number."""
        return 128 + self.signum


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` (main thread only; else a no-op).

    The first signal raises; later ones within :data:`REPEAT_AFTER_S` are ignored
    while the stack unwinds, so a second ``kill`` does not interrupt the clean-up
    (one after that raises again, in case a library swallowed the first). A signal
    the process was told to ignore (``nohup`` ignores SIGHUP) stays ignored. The
    previous handlers come back when the block ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _fired.clear()
    first = [0.0]

    def handler(signum, _frame) -> None:
        now = time.monotonic()
        if _fired and now - first[0] < REPEAT_AFTER_S:
            return  # the stack is unwinding from the first one: let the clean-up finish
        if not _fired:
            _fired.append(signum)
        first[0] = now
        raise Terminated(signum)  # again, if a library swallowed the first one and carried on

    previous = {}
    for signum in SIGNALS:
        if signal.getsignal(signum) is signal.SIG_IGN:
            continue
        previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        _fired.clear()
