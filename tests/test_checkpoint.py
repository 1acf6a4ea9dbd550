from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import randomize_bn
from xvdeploy import XVDeployError, fold, load_checkpoint, save_checkpoint, zoo
from xvdeploy.checkpoint import read_safetensors
from xvdeploy.ops.base import FoldedOp


def test_round_trip_training_and_folded_forms(tmp_path):
    model = randomize_bn(zoo.create("xv_digits"))
    save_checkpoint(model, tmp_path / "t.safetensors", note="hello")
    save_checkpoint(fold(model), tmp_path / "f.safetensors")
    _, meta = read_safetensors(tmp_path / "t.safetensors")
    assert meta["form"] == "train" and meta["arch"] == "xv_digits" and json.loads(meta["note"]) == "hello"
    assert meta["xvdeploy_version"]
    train, folded = load_checkpoint(tmp_path / "t.safetensors"), load_checkpoint(tmp_path / "f.safetensors")
    assert isinstance(folded.xv1, FoldedOp) and not isinstance(train.xv1, FoldedOp)
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(train(x), model(x))
    torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)


def test_plain_state_dict_loads_either_form(tmp_path):
    model = randomize_bn(zoo.create("xv_digits"))
    torch.save(fold(model).state_dict(), tmp_path / "folded.pt")
    torch.save({"state_dict": model.state_dict()}, tmp_path / "wrapped.pt")
    assert isinstance(load_checkpoint(tmp_path / "folded.pt", arch="xv_digits").xv1, FoldedOp)
    assert not isinstance(load_checkpoint(tmp_path / "wrapped.pt", arch="xv_digits").xv1, FoldedOp)


class _PrintsOnLoad:
    def __reduce__(self):
        return (print, ("pwned",))


class _RunsAShellOnLoad:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("payload, name", [(_PrintsOnLoad, "builtins.print"), (_RunsAShellOnLoad, "posix.system")])
def test_pickled_code_is_refused_and_named(tmp_path, capfd, payload, name):
    """torch 2.13 says "unsupported GLOBAL posix.system" for the second; it used to read "a corrupt file"."""
    torch.save({"x": payload()}, tmp_path / "evil.pt")
    with pytest.raises(XVDeployError, match=rf"holds pickled code beyond tensors \({name}\), which xvdeploy refuses to run"):
        load_checkpoint(tmp_path / "evil.pt", arch="xv_digits")
    assert "pwned" not in capfd.readouterr().out


def test_a_corrupt_file_is_not_called_pickled_code(tmp_path):
    (tmp_path / "junk.pt").write_text("hello")
    with pytest.raises(XVDeployError, match="not a PyTorch file, or a corrupt one"):
        load_checkpoint(tmp_path / "junk.pt", arch="xv_digits")


def _with_metadata(tmp_path, **meta):
    from safetensors.torch import save_file

    path = tmp_path / "crafted.safetensors"
    state = {k: v.contiguous() for k, v in zoo.create("xv_digits").state_dict().items()}
    save_file(state, str(path), metadata={"format": "xvdeploy", "arch": "xv_digits", "form": "train", **meta})
    return path


@pytest.mark.parametrize("arch_kwargs, message", [
    ("[1, 2]", "is a JSON array; expected an object of xv_digits's arguments: width"),  # TypeError
    ('{"width": -1}', "width=-1 is out of bounds"),  # RuntimeError from torch
    ('{"width": 200000}', "width=200000 is out of bounds"),  # tried to allocate 1.4 TB
    ('{"width": 50000}', "needs about .* of memory, more than the"),  # within bounds, but not in this memory
    ('{"width": 2.5}', "width=2.5 is out of bounds; expected an integer"),
    ('{"width": true}', "width=True is out of bounds"),
    ('{"depth": "resnet50"}', "'depth' is not an argument xv_digits takes"),
    ('"wide"', "is a JSON string"),
    ("null", "is a JSON null"),
    ("[" * 100_000, "is not valid JSON"),  # RecursionError in json
    ("9" * 5000, "is not valid JSON"),  # over Python's integer-string limit
])
def test_crafted_arch_kwargs_are_one_line_errors(tmp_path, arch_kwargs, message):
    path = _with_metadata(tmp_path, arch_kwargs=arch_kwargs)
    with pytest.raises(XVDeployError, match=message):
        load_checkpoint(path)


def test_arch_kwargs_the_architecture_takes_still_load(tmp_path):
    model = zoo.create("xv_digits", width=8, num_classes=3)
    save_checkpoint(model, tmp_path / "small.safetensors")
    loaded = load_checkpoint(tmp_path / "small.safetensors")
    assert loaded.fc.out_features == 3 and loaded.xvdeploy_arch_kwargs == {"width": 8, "num_classes": 3}


def test_non_float_weights_are_refused(tmp_path):
    """load_state_dict casts int64 into the float parameters quietly; bench then "passed" with rel-L2 0."""
    state = {k: (v.round().long() if v.is_floating_point() else v) for k, v in zoo.create("xv_digits").state_dict().items()}
    torch.save(state, tmp_path / "ints.pt")
    with pytest.raises(XVDeployError, match="is int64 in the file; expected floating-point weights"):
        load_checkpoint(tmp_path / "ints.pt", arch="xv_digits")


@pytest.mark.parametrize("body, message", [
    ("def build():\n    raise SystemExit(0)\n", r"the factory called sys.exit\(0\)"),
    ("import argparse\np = argparse.ArgumentParser(prog='theirs')\np.add_argument('--lr', required=True)\n"
     "p.parse_args()\ndef build():\n    pass\n", r"importing 'argvnet' called sys.exit\(2\)"),
    ("import sys\nassert sys.argv[1:] == [], sys.argv\nimport torch\ndef build():\n    return torch.nn.Conv2d(1, 1, 1)\n",
     None),  # the user's module sees none of our arguments
])
def test_model_factory_cannot_exit_or_read_our_command_line(tmp_path, monkeypatch, capsys, body, message):
    (tmp_path / "argvnet.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("sys.argv", ["xvdeploy", "fold", "x.pt", "--model", "argvnet:build"])
    from xvdeploy.checkpoint import model_from_factory

    try:
        if message is None:
            assert isinstance(model_from_factory("argvnet:build"), torch.nn.Conv2d)
        else:
            with pytest.raises(XVDeployError, match=message):
                model_from_factory("argvnet:build")
    finally:
        import sys

        sys.modules.pop("argvnet", None)
    assert __import__("sys").argv[1] == "fold"  # ours again afterwards


def test_no_architecture_needs_arch_or_model(tmp_path):
    torch.save(zoo.create("xv_digits").state_dict(), tmp_path / "sd.pt")
    with pytest.raises(XVDeployError, match="give --arch NAME"):
        load_checkpoint(tmp_path / "sd.pt")


def test_reserved_metadata_key(tmp_path):
    with pytest.raises(XVDeployError, match="reserved"):
        save_checkpoint(zoo.create("xv_digits"), tmp_path / "x.safetensors", form="oops")
    assert not list(tmp_path.iterdir())


def test_zoo_listing():
    assert {"resnet34", "resnet50", "xv_resnet50_s3", "xvsa_resnet50_s5", "acmix_resnet50", "xv_digits"} <= set(zoo.names())
    assert zoo.input_shape("xv_resnet50_s3") == (3, 224, 224) and zoo.input_shape("xv_digits") == (1, 8, 8)
    with pytest.raises(XVDeployError, match="unknown architecture 'vgg'"):
        zoo.create("vgg")


def test_stage_placement():
    from xvdeploy import XVolution

    model = zoo.create("xv_resnet50_s3")
    assert all(isinstance(b.conv2, XVolution) for b in model.layer2)
    assert not any(isinstance(m, XVolution) for m in (*model.layer1.modules(), *model.layer3.modules()))
    assert model.layer2[0].conv2.stride == 2


def test_written_files_get_the_umask_mode_not_0600(tmp_path):
    """safetensors recreates its file 0600; the atomic writer gives it the mode open() would."""
    import os

    umask = os.umask(0o022)
    try:
        save_checkpoint(zoo.create("xv_digits"), tmp_path / "m.safetensors", arch="xv_digits")
    finally:
        os.umask(umask)
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o644


# --- training scripts' checkpoints: wrappers and key prefixes -------------------------------------------------

def _prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


WRAPPERS = {  # name: (wrap(state) -> saved object, what the one-line note must say)
    "bare": (lambda sd: sd, None),
    "state_dict": (lambda sd: {"state_dict": sd, "epoch": 3, "best_acc1": torch.tensor(0.9)}, "'state_dict'"),
    "model": (lambda sd: {"model": sd, "epoch": 299, "max_accuracy": 81.2}, "'model'"),
    "model_ema": (lambda sd: {"model_ema": sd, "epoch": 1}, "'model_ema'"),
    "ema": (lambda sd: {"ema": sd}, "'ema'"),
    "ddp": (lambda sd: _prefixed(sd, "module."), "'module.' (DataParallel/DistributedDataParallel)"),
    "compile": (lambda sd: _prefixed(sd, "_orig_mod."), "'_orig_mod.' (torch.compile)"),
    "acmix_main": (lambda sd: {"state_dict": _prefixed(sd, "module."), "epoch": 5, "arch": "acmix"},
                   "entry 'state_dict'; stripped the key prefix 'module.'"),
    "ddp_of_compiled": (lambda sd: {"model": _prefixed(sd, "module._orig_mod.")}, "'module.' (DataParallel/"
                        "DistributedDataParallel) and '_orig_mod.' (torch.compile)"),
}


@pytest.mark.parametrize("wrapper", list(WRAPPERS))
def test_training_checkpoints_unwrap_and_say_how(tmp_path, wrapper):
    model = randomize_bn(zoo.create("xv_digits"))
    wrap, note = WRAPPERS[wrapper]
    torch.save(wrap(model.state_dict()), tmp_path / "ckpt.pth")
    loaded = load_checkpoint(tmp_path / "ckpt.pth", arch="xv_digits")
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(loaded(x), model.eval()(x))
    if note is None:
        assert loaded.xvdeploy_unwrapped is None
    else:
        assert note in loaded.xvdeploy_unwrapped and "\n" not in loaded.xvdeploy_unwrapped


def test_two_candidate_state_dicts_are_an_error_naming_both(tmp_path):
    sd = zoo.create("xv_digits").state_dict()
    torch.save({"model": sd, "model_ema": sd, "epoch": 9}, tmp_path / "both.pth")
    with pytest.raises(XVDeployError, match=r"2 candidate state dicts \('model', 'model_ema'\).*--state-key"):
        load_checkpoint(tmp_path / "both.pth", arch="xv_digits")
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in sd.items()}
    torch.save({"model": sd, "model_ema": ema}, tmp_path / "both.pth")
    picked = load_checkpoint(tmp_path / "both.pth", arch="xv_digits", state_key="model_ema")
    assert torch.equal(picked.state_dict()["stem.0.weight"], ema["stem.0.weight"])
    assert "'model_ema'" in picked.xvdeploy_unwrapped
    with pytest.raises(XVDeployError, match="no entry 'optimizer'.*holds: 'model', 'model_ema'"):
        load_checkpoint(tmp_path / "both.pth", arch="xv_digits", state_key="optimizer")


def test_unknown_wrapper_names_what_the_file_holds(tmp_path):
    torch.save({"weights": zoo.create("xv_digits").state_dict(), "step": 3}, tmp_path / "w.pth")
    with pytest.raises(XVDeployError, match=r"under 'state_dict', 'model'.*entries: 'weights', 'step'"):
        load_checkpoint(tmp_path / "w.pth", arch="xv_digits")
    torch.save({}, tmp_path / "empty.pth")
    with pytest.raises(XVDeployError, match="holds no tensors"):
        load_checkpoint(tmp_path / "empty.pth", arch="xv_digits")


def test_checkpoint_with_a_config_object_names_the_class(tmp_path, monkeypatch):
    """Swin's training script saves its yacs config beside the weights: refused, never unpickled, class named."""
    import sys
    import types

    yacs = types.ModuleType("fakeyacs")

    class CfgNode(dict):
        pass

    CfgNode.__module__, CfgNode.__qualname__ = "fakeyacs", "CfgNode"
    yacs.CfgNode = CfgNode
    monkeypatch.setitem(sys.modules, "fakeyacs", yacs)
    torch.save({"model": zoo.create("xv_digits").state_dict(), "config": CfgNode(a=1)}, tmp_path / "swin.pth")
    with pytest.raises(XVDeployError, match=r"pickled code beyond tensors \(fakeyacs.CfgNode\), which xvdeploy refuses"):
        load_checkpoint(tmp_path / "swin.pth", arch="xv_digits")


def test_swin_and_timm_training_checkpoints_load_without_unpickling_their_config(tmp_path, monkeypatch):
    """Swin's main.py saves {'model', 'optimizer', ..., 'config': yacs CfgNode}; timm saves 'args' (Namespace).

    Those two classes are read as inert OrderedDicts by the weights-only unpickler (yacs is not even installed).
    """
    import argparse
    import sys
    import types

    class CfgNode(dict):  # pickles like yacs' CfgNode: a dict subclass with attributes in __dict__
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.__dict__["__immutable__"] = True

    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    fake = types.ModuleType("yacs.config")
    fake.CfgNode = CfgNode
    monkeypatch.setitem(sys.modules, "yacs", types.ModuleType("yacs"))
    monkeypatch.setitem(sys.modules, "yacs.config", fake)
    model = randomize_bn(zoo.create("xv_digits"))
    config = CfgNode(MODEL=CfgNode(TYPE="swin_acmix", DROP_PATH_RATE=0.2), TRAIN=CfgNode(EPOCHS=300))
    torch.save({"model": model.state_dict(), "max_accuracy": 81.9, "epoch": 299, "config": config,
                "args": argparse.Namespace(lr=1e-3, model="swin")}, tmp_path / "ckpt_epoch_299.pth")
    monkeypatch.delitem(sys.modules, "yacs.config")
    monkeypatch.delitem(sys.modules, "yacs")
    loaded = load_checkpoint(tmp_path / "ckpt_epoch_299.pth", arch="xv_digits")
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(loaded(x), model.eval()(x)) and "'model'" in loaded.xvdeploy_unwrapped
