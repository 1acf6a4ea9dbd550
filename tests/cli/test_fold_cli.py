from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from tests.cli.conftest import assert_one_line_error, digest, invoke
from xvdeploy import load_checkpoint, zoo
from xvdeploy.ops.base import FoldedOp


@pytest.fixture
def ckpt(tmp_path, digits_checkpoint):
    path = tmp_path / "digits.safetensors"
    shutil.copy(digits_checkpoint, path)
    return path


def test_fold_prints_table_and_writes_folded_checkpoint(ckpt, tmp_path):
    out = tmp_path / "folded.safetensors"
    result = invoke("fold", ckpt, "-o", out)
    assert result.exit_code == 0, result.output
    for text in ("layer", "operator", "one conv", "xv1", "X-volution", "stem.0", "total rel-L2"):
        assert text in result.output
    model = load_checkpoint(out)
    assert isinstance(model.xv1, FoldedOp)
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(model(x), load_checkpoint(ckpt)(x), rtol=1e-4, atol=1e-5)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_fold_no_check_still_lists_layers(ckpt, tmp_path):
    result = invoke("fold", ckpt, "-o", tmp_path / "f.safetensors", "--no-check")
    assert result.exit_code == 0 and "xv2" in result.output and "rel err" not in result.output


def test_fold_plain_state_dict_with_arch(tmp_path):
    model = zoo.create("xv_digits")
    pt = tmp_path / "sd.pt"
    torch.save(model.state_dict(), pt)
    result = invoke("fold", pt, "--arch", "xv_digits", "-o", tmp_path / "f.safetensors")
    assert result.exit_code == 0, result.output


def test_fold_user_model_factory(tmp_path, monkeypatch):
    (tmp_path / "mynet.py").write_text(
        "import torch\nfrom xvdeploy import XVolution\n"
        "def build():\n    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4),"
        " XVolution(4, 4))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import mynet

    pt = tmp_path / "mine.pt"
    torch.save(mynet.build().state_dict(), pt)
    out = tmp_path / "f.safetensors"
    result = invoke("fold", pt, "--model", "mynet:build", "--input-shape", "1x3x9x9", "-o", out)
    assert result.exit_code == 0, result.output
    assert "X-volution" in result.output and out.exists()


# --- bad input: one line, exit 2, nothing written, input untouched -----------------------------------


def _bad_safetensors(tmp_path, name, mutate):
    model = zoo.create("xv_digits")
    path = tmp_path / name
    state = {k: v.clone() for k, v in model.state_dict().items()}
    mutate(state)
    save_file(state, str(path), metadata={"format": "xvdeploy", "arch": "xv_digits", "form": "train"})
    return path


#: --model factories that misbehave -> (the factory, what the one error line says)
FACTORIES = {
    "unknown-factory": ("no_such_pkg.mod:build", ["cannot import 'no_such_pkg.mod'"]),
    "failing-factory": ("tests.cli.failing_factory:build", ["the factory failed", "ZeroDivisionError"]),
    "exiting-factory": ("tests.cli.exiting_factory:build", ["the factory called sys.exit(0)"]),
    "argv-factory": ("tests.cli.argv_factory:build", ["importing 'tests.cli.argv_factory' called sys.exit(2)"]),
}


def _case(tmp_path, digits_checkpoint, kind):
    if kind == "missing":
        return tmp_path / "nope.safetensors", ["nope.safetensors", "no such file"], []
    if kind == "truncated":
        p = tmp_path / "trunc.safetensors"
        p.write_bytes(digits_checkpoint.read_bytes()[:1000])
        return p, ["not a valid safetensors file"], []
    if kind == "corrupt":
        p = tmp_path / "corrupt.safetensors"
        p.write_bytes(b"\xff" * 64)
        return p, ["not a valid safetensors file"], []
    if kind == "not-safetensors":
        p = tmp_path / "notes.txt"
        p.write_text("hello")
        return p, ["cannot load as a PyTorch state dict", "cannot load as a PyTorch state dict"], ["--arch", "xv_digits"]
    if kind == "unknown-arch":
        p = tmp_path / "sd.pt"
        torch.save(zoo.create("xv_digits").state_dict(), p)
        return p, ["unknown architecture 'resnet9'", "expected one of"], ["--arch", "resnet9"]
    if kind == "missing-keys":
        return _bad_safetensors(tmp_path, "m.safetensors", lambda s: s.pop("fc.weight")), \
            ["missing weights fc.weight"], []
    if kind == "unexpected-keys":
        return _bad_safetensors(tmp_path, "u.safetensors", lambda s: s.update(extra=torch.zeros(1))), \
            ["unexpected weights extra"], []
    if kind == "shape":
        return _bad_safetensors(tmp_path, "s.safetensors", lambda s: s.update({"fc.weight": torch.zeros(3, 3)})), \
            ["shape mismatch for 'fc.weight'", "(3, 3)", "(10, 32)"], []
    if kind == "nan":
        return _bad_safetensors(tmp_path, "n.safetensors", lambda s: s["xv1.conv.weight"].view(-1).__setitem__(0, float("nan"))), \
            ["'xv1.conv.weight' contains NaN"], []
    if kind == "inf":
        return _bad_safetensors(tmp_path, "i.safetensors", lambda s: s["fc.bias"].fill_(float("inf"))), \
            ["'fc.bias' contains Inf"], []
    if kind in FACTORIES:  # a plain state dict and a --model factory that misbehaves
        p = tmp_path / "sd.pt"
        torch.save(zoo.create("xv_digits").state_dict(), p)
        factory, messages = FACTORIES[kind]
        return p, messages, ["--model", factory]
    if kind == "int-weights":
        return _bad_safetensors(tmp_path, "int.safetensors", lambda s: s.update({"fc.weight": s["fc.weight"].long()})), \
            ["'fc.weight' is int64 in the file", "expected floating-point weights"], []
    raise AssertionError(kind)


KINDS = ["missing", "truncated", "corrupt", "not-safetensors", "unknown-arch", "missing-keys", "unexpected-keys",
         "shape", "nan", "inf", "unknown-factory", "failing-factory", "exiting-factory", "argv-factory", "int-weights"]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input(kind, tmp_path, digits_checkpoint):
    src, fragments, extra = _case(tmp_path, digits_checkpoint, kind)
    before = digest(src) if src.exists() else None
    out = tmp_path / "out.safetensors"
    listing = sorted(p.name for p in tmp_path.iterdir())
    result = invoke("fold", src, "-o", out, *extra)
    assert_one_line_error(result, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # nothing written
    if before is not None:
        assert digest(src) == before  # input untouched


def test_output_directory_missing(ckpt, tmp_path):
    result = invoke("fold", ckpt, "-o", tmp_path / "no" / "such" / "f.safetensors")
    assert_one_line_error(result, "does not exist")


def test_output_directory_read_only(ckpt, tmp_path):
    if os.geteuid() == 0:
        target = "/proc/xvdeploy-test.safetensors"  # root ignores permission bits; /proc refuses new files
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        target = ro / "f.safetensors"
    result = invoke("fold", ckpt, "-o", target)
    assert_one_line_error(result, "is not writable")


def test_output_equal_to_input(ckpt):
    before = digest(ckpt)
    result = invoke("fold", ckpt, "-o", ckpt)
    assert_one_line_error(result, "is the input file")
    assert digest(ckpt) == before


def test_debug_shows_traceback(tmp_path):
    from click.testing import CliRunner

    from xvdeploy.cli import main
    from xvdeploy.errors import XVDeployError

    result = CliRunner().invoke(main, ["--debug", "fold", str(tmp_path / "nope.safetensors"), "-o",
                                       str(tmp_path / "o.safetensors")])
    assert isinstance(result.exception, XVDeployError)


def test_installed_console_script_runs(ckpt, tmp_path):
    exe = shutil.which("xvdeploy") or os.path.join(os.path.dirname(sys.executable), "xvdeploy")
    out = tmp_path / "f.safetensors"
    proc = subprocess.run([exe, "fold", str(ckpt), "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "X-volution" in proc.stdout and out.exists()
    bad = subprocess.run([exe, "fold", str(tmp_path / "missing.safetensors"), "-o", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


def test_checkout_script_runs():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, os.path.join(root, "cli.py"), "--help"], capture_output=True, text=True,
                          timeout=300, cwd="/")
    assert proc.returncode == 0 and "fold" in proc.stdout


def test_fold_model_factory_from_the_current_directory(tmp_path, monkeypatch):
    """--model pkg.mod:factory imports from the working directory, as `python -m` would, without a PYTHONPATH."""
    (tmp_path / "cwdnet.py").write_text(
        "import torch\nfrom xvdeploy import XVolution\n"
        "def build():\n    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), XVolution(4, 4))\n")
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    spec = __import__("importlib.util").util.spec_from_file_location("cwdnet_src", tmp_path / "cwdnet.py")
    src = __import__("importlib.util").util.module_from_spec(spec)
    spec.loader.exec_module(src)
    torch.save(src.build().state_dict(), tmp_path / "mine.pt")
    result = invoke("fold", "mine.pt", "--model", "cwdnet:build", "--input-shape", "1x3x9x9", "-o", "f.safetensors")
    assert result.exit_code == 0, result.output
    assert sys.path == before  # the working directory is not left on the path
    sys.modules.pop("cwdnet", None)


@pytest.mark.parametrize("args, fragments", [
    (["fold", "{ckpt}", "-o", "{tmp}/out.onnx"], ["should end in .safetensors"]),
    (["export", "{ckpt}", "-o", "{tmp}/out.txt"], ["should end in .onnx"]),
    (["export", "{ckpt}", "-o", "{tmp}/out.onnx", "--report", "{tmp}/r.onnx"], ["should end in .json"]),
    (["bench", "--plot", "{tmp}/p.txt"], ["should end in .png or .svg or .pdf"]),
    (["fold", "{tmp}/model.onnx", "-o", "{tmp}/f.safetensors"], ["not an ONNX model"]),
    (["inspect", "{tmp}"], ["is a directory"]),
])
def test_wrong_kinds_of_files(args, fragments, tmp_path, digits_checkpoint):
    (tmp_path / "model.onnx").write_bytes(b"not really")
    before = sorted(p.name for p in tmp_path.iterdir())
    args = [a.format(ckpt=digits_checkpoint, tmp=tmp_path) for a in args]
    assert_one_line_error(invoke(*args), *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


@pytest.mark.parametrize("seed", ["-1", "99999999999999999999999"])
def test_bad_seed_is_one_line(ckpt, tmp_path, seed):
    """A seed torch cannot take was a ValueError traceback ("Overflow when unpacking long long")."""
    result = invoke("fold", ckpt, "-o", tmp_path / "f.safetensors", "--seed", seed)
    assert_one_line_error(result, "'--seed'")
