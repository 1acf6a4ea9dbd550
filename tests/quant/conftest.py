from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.cli.conftest import folder_files  # noqa: F401  (the CLI tests' fixture, shared)
from xvdeploy.checkpoint import load_checkpoint
from xvdeploy.export import export_onnx
from xvdeploy.folding import fold
from xvdeploy.ops.xvolution import XVolution


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory, digits_checkpoint):
    """The shipped digits model, folded and exported (dynamic batch/H/W) at opset 19: the Pad(mode=wrap) form,
    whose node names these tests use (the default Slice+Concat form: tests/quant/test_pssa_graph.py)."""
    path = tmp_path_factory.mktemp("quant-digits") / "digits.onnx"
    export_onnx(fold(load_checkpoint(digits_checkpoint)), path, (1, 1, 8, 8), check=False, compare_plain=False,
                opset=19)
    return path


class ThreeBlocks(nn.Module):
    """One X-volution block of each exported kind: merged "sum", merged "concat", unmerged (grouped conv)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.a = XVolution(4, 4, 3, 3)
        self.b = XVolution(4, 4, 3, 1, mode="concat", shifts=[(0, 1), (1, 0)])
        self.c = XVolution(4, 4, 3, 3, groups=2)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.c(torch.relu(self.b(torch.relu(self.a(x))))))
        return self.head(x.mean((2, 3)))


@pytest.fixture(scope="session")
def three_blocks_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = ThreeBlocks().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("quant-three") / "three.onnx"
    export_onnx(fold(model), path, (2, 2, 6, 6), dynamic=False, check=False, compare_plain=False, opset=19)
    return path
