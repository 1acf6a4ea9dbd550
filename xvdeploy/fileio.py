"""Atomic writes and output-path checks shared by every command that writes a file."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from xvdeploy.errors import XVDeployError


def check_output_path(output: str | os.PathLike, *inputs: str | os.PathLike | None,
                      suffixes: tuple[str, ...] = ()) -> Path:
    """Validate where a file will be written: its folder exists and is writable, it is no input,
    and its name ends in one of ``suffixes`` (what is written there), if given."""
    out = Path(output)
    folder = out.parent if str(out.parent) else Path(".")
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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600 and some writers (safetensors) recreate the file 0600: give it the mode open() would
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
