"""xvdeploy._lazy: the one way optional packages are imported, with a message naming the extra or command."""
from __future__ import annotations

import sys

import pytest

from xvdeploy._lazy import available, install_command, installed, require
from xvdeploy.errors import MissingDependencyError


def test_missing_package_names_the_extra():
    with pytest.raises(MissingDependencyError) as err:
        require("tensorrt_rtx_no_such_module", "The thing")
    assert str(err.value) == ("The thing needs the 'tensorrt_rtx_no_such_module' package, which is not installed; "
                              "install it with: pip install 'xvdeploy[all]'")
    assert err.value.exit_code == 2


def test_install_commands():
    assert install_command("tensorrt") == "pip install tensorrt --extra-index-url https://pypi.nvidia.com"
    assert install_command("tensorrt.plugin") == install_command("tensorrt")
    assert install_command("tensorrt_rtx") == "pip install 'xvdeploy[rtx]'"
    assert install_command("onnxruntime") == "pip install 'xvdeploy[onnx]'"


def test_installed_but_broken_package(tmp_path, monkeypatch):
    """A package whose shared library does not load (OSError on import) says so, with the reinstall command."""
    pkg = tmp_path / "broken_native_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise OSError('libfoo.so.1: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert installed("broken_native_pkg") and not available("broken_native_pkg")
    with pytest.raises(MissingDependencyError) as err:
        require("broken_native_pkg", "Foo")
    assert "which is installed but does not import (libfoo.so.1: cannot open shared object file)" in str(err.value)
    assert "reinstall it with: pip install" in str(err.value)
    sys.modules.pop("broken_native_pkg", None)
