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


def test_pickled_objects_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(XVDeployError, match="never unpickled"):
        load_checkpoint(tmp_path / "evil.pt", arch="xv_digits")


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
