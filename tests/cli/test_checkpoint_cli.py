"""``xvdeploy fold`` on training scripts' checkpoints: each wrapper is unwrapped and said so in one line."""
from __future__ import annotations

import pytest
import torch

from tests.cli.conftest import assert_one_line_error, digest, invoke
from tests.conftest import randomize_bn
from xvdeploy import load_checkpoint, zoo
from xvdeploy.checkpoint import read_safetensors


def _prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


CASES = {  # wrapper: (wrap(state), the CLI's one line)
    "state_dict": (lambda sd: {"state_dict": sd, "epoch": 1}, "checkpoint: took the state dict from entry 'state_dict'"),
    "model": (lambda sd: {"model": sd, "max_accuracy": 80.0}, "checkpoint: took the state dict from entry 'model'"),
    "model_ema": (lambda sd: {"model_ema": sd}, "checkpoint: took the state dict from entry 'model_ema'"),
    "ema": (lambda sd: {"ema": sd}, "checkpoint: took the state dict from entry 'ema'"),
    "module.": (lambda sd: _prefixed(sd, "module."), "checkpoint: stripped the key prefix 'module.' "
                "(DataParallel/DistributedDataParallel)"),
    "_orig_mod.": (lambda sd: _prefixed(sd, "_orig_mod."), "checkpoint: stripped the key prefix '_orig_mod.' "
                   "(torch.compile)"),
}


@pytest.mark.parametrize("wrapper", list(CASES))
def test_fold_unwraps_training_checkpoints(tmp_path, wrapper):
    model = randomize_bn(zoo.create("xv_digits"))
    wrap, line = CASES[wrapper]
    torch.save(wrap(model.state_dict()), tmp_path / "ckpt.pth")
    out = tmp_path / "out.safetensors"
    result = invoke("fold", tmp_path / "ckpt.pth", "--arch", "xv_digits", "-o", out)
    assert result.exit_code == 0, result.output
    assert [l for l in result.output.splitlines() if l.startswith("checkpoint:")] == [line]
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(load_checkpoint(out)(x), model.eval()(x), rtol=1e-4, atol=1e-5)


def test_fold_acmix_resnet50_from_the_reference_training_script(tmp_path):
    """ACmix's ResNet main.py: DDP-wrapped model saved as {'state_dict': …, 'epoch', 'arch', …}: every key 'module.'."""
    torch.manual_seed(0)
    model = zoo.create("acmix_resnet50").eval()
    torch.save({"epoch": 300, "arch": "acmix_resnet50", "state_dict": _prefixed(model.state_dict(), "module."),
                "best_acc1": torch.tensor(80.0)}, tmp_path / "checkpoint.pth.tar")
    out = tmp_path / "acmix.safetensors"
    result = invoke("fold", tmp_path / "checkpoint.pth.tar", "--arch", "acmix_resnet50", "--no-check", "-o", out)
    assert result.exit_code == 0, result.output
    assert ("checkpoint: took the state dict from entry 'state_dict'; stripped the key prefix 'module.' "
            "(DataParallel/DistributedDataParallel)") in result.output.splitlines()
    state, meta = read_safetensors(out)  # loaded strictly, folded and written: every block is ACmix folded
    assert meta["arch"] == "acmix_resnet50" and meta["form"] == "folded"
    assert sum(k.endswith(".conv2.stem.weight") for k in state) == 16
    assert torch.equal(state["fc.weight"], model.fc.weight) and torch.equal(state["fc.bias"], model.fc.bias)


def test_fold_ambiguous_checkpoint_is_one_line_and_writes_nothing(tmp_path):
    sd = zoo.create("xv_digits").state_dict()
    src = tmp_path / "both.pth"
    torch.save({"model": sd, "model_ema": sd}, src)
    before = digest(src)
    result = invoke("fold", src, "--arch", "xv_digits", "-o", tmp_path / "out.safetensors")
    assert_one_line_error(result, "both.pth", "2 candidate state dicts ('model', 'model_ema')", "--state-key")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["both.pth"] and digest(src) == before
    result = invoke("fold", src, "--arch", "xv_digits", "--state-key", "model_ema", "-o", tmp_path / "out.safetensors")
    assert result.exit_code == 0, result.output
    assert "checkpoint: took the state dict from entry 'model_ema'" in result.output


def test_state_key_on_a_zoo_name_is_refused(tmp_path):
    result = invoke("fold", "xv_digits", "--state-key", "model", "-o", tmp_path / "out.safetensors")
    assert_one_line_error(result, "--state-key applies to a checkpoint file")
    assert not list(tmp_path.iterdir())


def test_inspect_says_what_it_unwrapped(tmp_path):
    sd = zoo.create("xv_digits").state_dict()
    torch.save({"model": sd, "model_ema": sd}, tmp_path / "both.pth")
    assert_one_line_error(invoke("inspect", tmp_path / "both.pth"), "2 candidate state dicts", "--state-key")
    result = invoke("inspect", tmp_path / "both.pth", "--state-key", "model_ema")
    assert result.exit_code == 0 and "took the state dict from entry 'model_ema'" in result.output
