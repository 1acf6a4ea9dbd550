from __future__ import annotations

import subprocess
import sys

BLOCK_EXTRAS = (
    "import sys\n"
    "for name in ('onnx', 'onnxscript', 'onnxruntime', 'onnxruntime_extensions', 'tensorrt', 'triton',\n"
    "             'matplotlib', 'PIL', 'sklearn', 'rich', 'ray', 'tritonclient'):\n"
    "    sys.modules[name] = None  # any import of them now raises ImportError\n"
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_EXTRAS + code], capture_output=True, text=True, timeout=300)


def test_import_and_help_work_without_the_extras():
    proc = _run("import xvdeploy, xvdeploy.plugins\n"
                "from click.testing import CliRunner\n"
                "from xvdeploy.cli import main\n"
                "r = CliRunner().invoke(main, ['--help'])\n"
                "assert r.exit_code == 0 and 'export' in r.output, r.output\n"
                "import torch\n"
                "m = xvdeploy.fold(xvdeploy.zoo.create('xv_digits').eval())\n"
                "print(m(torch.zeros(1, 1, 8, 8)).shape)\n")
    assert proc.returncode == 0, proc.stderr
    assert "torch.Size([1, 10])" in proc.stdout


def test_missing_extra_is_named_in_one_line():
    proc = _run("from click.testing import CliRunner\n"
                "from xvdeploy.cli import main\n"
                "r = CliRunner().invoke(main, ['export', 'xv_digits', '-o', '/tmp/x.onnx'])\n"
                "print(r.exit_code); print(r.stderr)\n")
    assert proc.returncode == 0, proc.stderr
    code, message = proc.stdout.splitlines()[:2]
    assert code == "2" and "pip install 'xvdeploy[onnx]'" in message


def test_installed_names_live_under_xvdeploy():
    import importlib.util

    for name in ("xvdeploy.plugins", "xvdeploy.models", "xvdeploy.cli"):
        assert importlib.util.find_spec(name) is not None
