"""The one exception type of the package.

Every error a user can cause (bad file, bad option, unsupported shape) is an
:class:`XVDeployError` whose message says what was wrong and what was
expected. The CLI prints it on one line and exits with ``exit_code``.
"""
from __future__ import annotations


class XVDeployError(Exception):
    """A user-facing error: one line saying what was wrong and what was expected."""

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class MissingDependencyError(XVDeployError):
    """An optional dependency is not installed (or does not import); the message names the extra or command."""

    def __init__(self, package: str, extra: str, purpose: str, *, install: str | None = None,
                 broken: str | None = None) -> None:
        command = install or f"pip install 'xvdeploy[{extra}]'"
        if broken:
            message = f"{purpose} needs the '{package}' package, which is installed but does not import ({broken}); " \
                      f"reinstall it with: {command}"
        else:
            message = f"{purpose} needs the '{package}' package, which is not installed; install it with: {command}"
        super().__init__(message)
        self.package = package
        self.extra = extra
        self.install = command


class ParityError(XVDeployError):
    """A numeric check failed (exit code 1: the input was fine, the result was not)."""

    exit_code = 1
