"""SIGTERM / SIGHUP unwind like Ctrl-C: atomic writes and temporary folders clean up (xvdeploy.signals)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from xvdeploy.fileio import atomic_path
from xvdeploy.signals import Terminated, terminate_as_exception

ROOT = Path(__file__).resolve().parent.parent


def test_sigterm_raises_terminated_and_the_atomic_write_cleans_up(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as info:
        with terminate_as_exception(), atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"half a file")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts the sleep
    assert info.value.exit_code == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before  # restored


def test_an_ignored_sighup_stays_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with terminate_as_exception():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN  # nohup's choice is kept
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, previous)


SLOW_MODEL = textwrap.dedent("""
    import time
    import torch

    class Slow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3)

        def forward(self, x):
            time.sleep(0.3)  # runs while torch.onnx.export traces, with the temporary file open
            return self.conv(x)

    def build():
        return Slow()
""")


def _wait_for(predicate, proc, timeout=240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _cli(args, cwd, env=None):
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def test_sigterm_during_export_leaves_no_temporary_file(tmp_path):
    """The issue's `export … & kill -TERM $!`: the hidden `.out.onnx.*.tmp` must go, and no half file appear."""
    import torch

    (tmp_path / "slowmodel.py").write_text(SLOW_MODEL)
    sys.path.insert(0, str(tmp_path))
    try:
        import slowmodel

        torch.save(slowmodel.build().state_dict(), tmp_path / "sd.pt")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("slowmodel", None)
    proc = _cli(["export", "sd.pt", "--model", "slowmodel:build", "--input-shape", "1x1x8x8", "-o", "out.onnx",
                 "--no-compare", "--quiet"], tmp_path)
    try:
        assert _wait_for(lambda: any(p.name.startswith(".out.onnx.") for p in tmp_path.iterdir()), proc), \
            proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "terminated by SIGTERM" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sd.pt", "slowmodel.py"]


def test_sigterm_during_bench_removes_its_temporary_folder(tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = _cli(["bench", "--backends", "torch,onnxruntime", "--duration", "600", "--quiet"], tmp_path,
                env={"TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "1"})
    try:
        assert _wait_for(lambda: any((d / "model.onnx").exists() for d in tmpdir.glob("xvdeploy-bench-*")), proc), \
            proc.communicate()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    # torch keeps its own compile cache (torchinductor_*) in TMPDIR on purpose; nothing of ours may stay
    ours = [p for p in tmpdir.rglob("*") if p.name.startswith("xvdeploy") or p.suffix in (".onnx", ".tmp")]
    assert ours == []


def test_a_signal_wrapped_into_another_exception_still_exits_as_terminated():
    """SIGTERM during an import can land in a class body's __set_name__, which Python re-raises as a RuntimeError
    (seen during scipy's import in `bench`): the CLI must still exit 143 with one line, not a traceback."""
    from click.testing import CliRunner

    from xvdeploy.cli.main import XVGroup

    @click_group(XVGroup)
    def cli():
        pass

    @cli.command("slow-import")
    def slow_import():
        class Descriptor:
            def __set_name__(self, owner, name):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)

        class Owner:  # noqa: F841 - defining it calls __set_name__
            attr = Descriptor()

    result = CliRunner().invoke(cli, ["slow-import"])
    assert result.exit_code == 128 + signal.SIGTERM, result.output
    assert "Traceback" not in result.output and "terminated by SIGTERM" in result.stderr


def click_group(cls):
    import click

    return click.group(cls=cls)


def test_a_swallowed_signal_is_raised_again_by_the_next_one(monkeypatch):
    import xvdeploy.signals as signals

    monkeypatch.setattr(signals, "REPEAT_AFTER_S", 0.0)
    with terminate_as_exception():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except BaseException:  # a library that swallows everything and carries on
            pass
        assert signals.received() == signal.SIGTERM
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert signals.received() is None
