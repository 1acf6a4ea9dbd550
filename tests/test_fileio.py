"""xvdeploy.fileio: long names, a full disk, existing outputs; through the library and the CLI."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import assert_one_line_error, invoke
from xvdeploy.errors import XVDeployError
from xvdeploy.fileio import NAME_MAX, atomic_path, check_output_path, temporary_prefix, write_bytes_atomic

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("length", [1, 200, 240, 250, 255])
def test_legal_long_names_are_written(tmp_path, length):
    """A 240-character name used to fail with OSError 36: the temporary name built from it was too long."""
    path = tmp_path / ("n" * (length - 4) + ".bin" if length > 4 else "n")
    write_bytes_atomic(path, b"data")
    assert path.read_bytes() == b"data" and sorted(tmp_path.iterdir()) == [path]


def test_temporary_names_fit_and_stay_distinct():
    a, b = "a" * 250 + "1.onnx", "a" * 250 + "2.onnx"
    for name in (a, b, "é" * 120 + ".onnx"):  # 2 bytes per é
        assert len(os.fsencode(temporary_prefix(name))) + 8 + len(".tmp") <= NAME_MAX
        temporary_prefix(name).encode()  # never half a multi-byte character
    assert temporary_prefix(a) != temporary_prefix(b)
    assert temporary_prefix("x.onnx") == ".x.onnx."


def test_names_over_the_limit_are_one_line(tmp_path):
    with pytest.raises(XVDeployError, match="256 bytes long; the file system allows at most 255"):
        check_output_path(tmp_path / ("n" * 252 + ".bin"))
    result = invoke("fold", "xv_digits", "-o", tmp_path / ("n" * 290 + ".safetensors"))
    assert_one_line_error(result, "bytes long", "at most 255")
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_a_250_character_output(tmp_path):
    out = tmp_path / ("f" * 238 + ".safetensors")
    assert len(out.name) == 250
    result = invoke("fold", "xv_digits", "-o", out, "--no-check")
    assert result.exit_code == 0, result.output
    assert sorted(tmp_path.iterdir()) == [out]


def test_a_refused_write_is_one_error_and_no_file(tmp_path, monkeypatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(XVDeployError, match="No space left on device.*nothing written"):
        write_bytes_atomic(tmp_path / "out.bin", b"data")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_block_removes_the_temporary_file(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


# A real refused write: RLIMIT_FSIZE makes the kernel refuse to grow a file past the limit (EFBIG), the same
# path through every writer as a full disk (ENOSPC), without root or a tiny file system.
_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process instead of failing the write
import os
limit = int(os.environ["XV_TEST_FSIZE"])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from xvdeploy.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("args", [
    ["fold", "{ckpt}", "-o", "{out}/folded.safetensors"],  # was a SafetensorError traceback
    ["export", "{ckpt}", "-o", "{out}/d.onnx", "--no-compare", "--no-check"],  # export's own one line (exit 1)
    ["bench", "--backends", "torch", "--iters", "1", "--json", "{out}/r.json"],
])
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, digits_checkpoint, args):
    ckpt = tmp_path / "in.safetensors"
    shutil.copy(digits_checkpoint, ckpt)  # about 60 kB: over the 20 kB limit for anything written
    out = tmp_path / "out"
    out.mkdir()
    argv = [a.format(ckpt=ckpt, out=out) for a in args]
    limit = 20_000
    if args[0] == "bench":  # the report is a few kB; the one it replaces stays as it was
        (out / "r.json").write_text("{}")
        argv.append("--overwrite")
        limit = 500
    proc = subprocess.run([sys.executable, "-c", _LIMITED, *argv, "--quiet"], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                       "XV_TEST_FSIZE": str(limit)})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode in (1, 2), proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "File too large" in lines[0], lines
    assert "Traceback" not in proc.stderr
    assert [p.name for p in out.iterdir()] == (["r.json"] if args[0] == "bench" else [])
    if args[0] == "bench":
        assert (out / "r.json").read_text() == "{}"


def test_existing_outputs_are_refused_unless_overwrite(tmp_path):
    out = tmp_path / "f.safetensors"
    out.write_bytes(b"keep me")
    result = invoke("fold", "xv_digits", "-o", out, "--no-check")
    assert_one_line_error(result, "already exists", "--overwrite")
    assert out.read_bytes() == b"keep me"
    result = invoke("fold", "xv_digits", "-o", out, "--no-check", "--overwrite")
    assert result.exit_code == 0 and out.read_bytes() != b"keep me"


def test_two_outputs_may_not_be_the_same_file(tmp_path):
    result = invoke("bench", "--json", tmp_path / "r.json", "--markdown", tmp_path / "r.json", "--iters", "1")
    assert_one_line_error(result)  # .json is not a Markdown name either: refused before anything runs
    result = invoke("export", "xv_digits", "-o", tmp_path / "d.onnx", "--report", tmp_path / "d.onnx")
    assert_one_line_error(result, "should end in .json")
