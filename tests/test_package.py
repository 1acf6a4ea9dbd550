from __future__ import annotations

import subprocess
import sys

BLOCK_EXTRAS = (
    "import sys\n"
    "for name in ('onnx', 'onnxscript', 'onnxruntime', 'onnxruntime_extensions', 'onnxconverter_common',\n"
    "             'tensorrt', 'tensorrt_rtx', 'triton',\n"
    "             'matplotlib', 'PIL', 'sklearn', 'rich', 'ray', 'tritonclient', 'openvino'):\n"
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


def test_every_command_names_the_extra_it_misses(tmp_path, digits_checkpoint):
    """`pip install .` without extras, then each command: one line naming the extra, or a run without it.

    `bench digits.onnx` used to end in `ModuleNotFoundError: onnx`.
    """
    import json

    from tests.cli.conftest import invoke

    onnx_path = tmp_path / "digits.onnx"
    assert invoke("export", digits_checkpoint, "-o", onnx_path, "--no-compare", "--quiet").exit_code == 0
    (tmp_path / "imgs").mkdir()
    cases = {
        "bench-onnx": (["bench", str(onnx_path), "--iters", "1"], "xvdeploy[onnx]"),
        "bench-digits": (["bench", "--iters", "1"], "xvdeploy[train]"),  # the digits data set: scikit-learn
        "bench-plot": (["bench", "--plot", str(tmp_path / "p.png"), "--iters", "1"], "xvdeploy[bench]"),
        "bench-images": (["bench", "--data", f"images:{tmp_path / 'imgs'}", "--iters", "1"], "xvdeploy[bench]"),
        "bench-ort": (["bench", "xv_digits", "--backends", "onnxruntime", "--iters", "1"], "xvdeploy[onnx]"),
        "export": (["export", "xv_digits", "-o", str(tmp_path / "x.onnx")], "xvdeploy[onnx]"),
        "inspect-onnx": (["inspect", str(onnx_path)], "xvdeploy[onnx]"),
        "build": (["build", str(onnx_path), "-o", str(tmp_path / "x.plan")], "pip install tensorrt"),
        "fold": (["fold", "xv_digits", "-o", str(tmp_path / "f.safetensors")], None),  # needs no extra
        "bench-torch": (["bench", "xv_digits", "--backends", "torch", "--data", "random", "--iters", "1"], None),
        "inspect-ckpt": (["inspect", str(digits_checkpoint)], None),
        "zoo": (["zoo", "--no-macs"], None),
    }
    code = ("import json\nfrom click.testing import CliRunner\nfrom xvdeploy.cli import main\nout = {}\n"
            f"for name, (args, _) in {cases!r}.items():\n"
            "    r = CliRunner().invoke(main, args + (['--quiet'] if args[0] in ('bench', 'fold') else []))\n"
            "    out[name] = [r.exit_code, r.stderr, repr(r.exception) if r.exit_code not in (0, 1, 2) else None]\n"
            "print(json.dumps(out))\n")
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.splitlines()[-1])
    for name, (_, extra) in cases.items():
        code_, stderr, exception = results[name]
        lines = [line for line in stderr.splitlines() if line.strip()]
        if extra is None:
            assert code_ == 0, (name, stderr, exception)
        else:
            assert code_ == 2 and len(lines) == 1 and extra in lines[0], (name, stderr, exception)
            assert lines[0].startswith("error: ") and "Traceback" not in stderr
