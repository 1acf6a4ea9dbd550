"""Atomic writes and output-path checks shared by every command that writes a file (docs/design.md#file-formats).

A file is written to a hidden temporary name in its own folder and renamed into
place only when the writer succeeded: a failure, Ctrl-C or (inside the CLI,
see :mod:`xvdeploy.signals`) SIGTERM removes the temporary file. A file system
that refuses the write (full disk, quota, file size limit) is one
:class:`XVDeployError` line, never half a file.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from xvdeploy.errors import XVDeployError

#: what POSIX file systems allow for one name, in bytes, where ``pathconf`` does not say
NAME_MAX = 255
#: ``mkstemp`` adds this many random characters
_RANDOM_CHARS = 8


def name_max(folder: str | os.PathLike) -> int:
    """The longest file name (bytes) the file system of ``folder`` takes."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError):
        return NAME_MAX


def check_output_path(output: str | os.PathLike, *inputs: str | os.PathLike | None,
                      suffixes: tuple[str, ...] = (), exists_ok: bool = True) -> Path:
    """Validate where a file will be written: its folder exists and is writable, its name fits the
    file system, it is no input, its name ends in one of ``suffixes`` (what is written there), if
    given, and (unless ``exists_ok``) no file of that name exists yet."""
    out = Path(output)
    folder = out.parent if str(out.parent) else Path(".")
    longest = name_max(folder) if folder.is_dir() else NAME_MAX
    if len(os.fsencode(out.name)) > longest:
        raise XVDeployError(f"output file name is {len(os.fsencode(out.name))} bytes long; the file system allows at "
                            f"most {longest} bytes per name; choose a shorter name")
    if not folder.is_dir():
        raise XVDeployError(f"output directory {str(folder)!r} does not exist; create it or choose another output path")
    if not _can_create_in(folder):
        raise XVDeployError(f"output directory {str(folder)!r} is not writable; choose another output path")
    if out.is_dir():
        raise XVDeployError(f"output path {str(out)!r} is a directory; expected a file path")
    for inp in inputs:
        if inp is None:
            continue
        inp_path = Path(inp)
        if inp_path.exists() and out.exists() and os.path.samefile(inp_path, out):
            raise XVDeployError(f"output {str(out)!r} is the input file; choose a different output path")
        if out.resolve() == inp_path.resolve():
            raise XVDeployError(f"output {str(out)!r} is the input file; choose a different output path")
    if suffixes and out.suffix.lower() not in suffixes:
        raise XVDeployError(f"output {str(out)!r} should end in {' or '.join(suffixes)} (what is written there); "
                            f"got {out.suffix or 'no extension'}")
    if not exists_ok and (out.exists() or out.is_symlink()):
        raise XVDeployError(f"output {str(out)!r} already exists; give --overwrite to replace it, or another path")
    return out


def _can_create_in(folder: Path) -> bool:
    """Whether a file can really be created in ``folder`` (permission bits do not bind root; mounts do)."""
    if not os.access(folder, os.W_OK):
        return False
    try:
        fd, probe = tempfile.mkstemp(prefix=".xvdeploy-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def temporary_prefix(name: str, limit: int = NAME_MAX) -> str:
    """The ``mkstemp`` prefix of ``name``'s temporary file: ``.NAME.``, shortened so that the whole
    temporary name (prefix, random part, ``.tmp``) fits in ``limit`` bytes.

    A shortened prefix keeps the start of the name and adds 8 hex digits of its
    SHA-256, so that two long names never share a prefix.
    """
    budget = limit - _RANDOM_CHARS - len(".tmp")
    prefix = f".{name}."
    if len(os.fsencode(prefix)) <= budget:
        return prefix
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    keep = os.fsencode(name)[:budget - len(digest) - 3]  # "." + kept + "-" + digest + "."
    head = keep.decode(errors="ignore")  # never cut a multi-byte character in half
    return f".{head}-{digest}."


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    Any exception, ``KeyboardInterrupt`` and :class:`xvdeploy.signals.Terminated`
    included, removes the temporary file. An ``OSError`` of the write (full
    disk, quota, file size limit, I/O error) becomes one :class:`XVDeployError`.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path.name, name_max(folder)), suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _write_error(path, exc) from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600 and some writers (safetensors) recreate the file 0600: give it the mode open() would
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise _write_error(path, exc) from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _write_error(path: Path, exc: OSError) -> XVDeployError:
    what = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        what += " (free some space or choose another output folder)"
    other = f" ({exc.filename})" if exc.filename and Path(exc.filename).name != path.name \
        and not str(exc.filename).endswith(".tmp") else ""
    return XVDeployError(f"cannot write {str(path)!r}: {what}{other}; nothing written")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
