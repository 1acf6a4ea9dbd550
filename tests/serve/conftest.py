"""Small ONNX files for the serving tests (onnx.helper: fast, no export) and the digits model exported once."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def small_net(path: Path, batch: int | str = "N", channels: int = 3, size: int | str = "H",
              classes: int = 4, input_type: str = "FLOAT", extra_output: bool = False, seed: int = 0) -> Path:
    """Conv → Relu → GlobalAveragePool → Flatten → Gemm, with dynamic (named) or fixed batch and size."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((8, channels, 3, 3)) * 0.3).astype(np.float32), "w"),
             numpy_helper.from_array((rng.standard_normal((classes, 8)) * 0.3).astype(np.float32), "fc")]
    nodes, x = [], "x"
    if input_type != "FLOAT":
        nodes.append(helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT))
        x = "xf"
    nodes += [helper.make_node("Conv", [x, "w"], ["c"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c"], ["r"]),
              helper.make_node("GlobalAveragePool", ["r"], ["g"]),
              helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, classes])]
    if extra_output:  # one number per sample, in float16
        nodes += [helper.make_node("ReduceMax", ["y"], ["m"], keepdims=0, axes=[1]),
                  helper.make_node("Cast", ["m"], ["score"], to=TensorProto.FLOAT16)]
        outputs.append(helper.make_tensor_value_info("score", TensorProto.FLOAT16, [batch]))
    elem = getattr(TensorProto, input_type)
    graph = helper.make_graph(nodes, "small_net",
                              [helper.make_tensor_value_info("x", elem, [batch, channels, size, size])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def make_net(tmp_path):
    def make(name: str = "net.onnx", **kwargs) -> Path:
        return small_net(tmp_path / name, **kwargs)
    return make


@pytest.fixture(scope="session")
def digits_export(tmp_path_factory):
    """``xvdeploy export`` of the shipped digits model with ``--triton-repo``, through the CLI (once per session):
    (ONNX path, repository folder, the command's result)."""
    from click.testing import CliRunner

    from xvdeploy.cli import main
    from xvdeploy.models.digits import CHECKPOINT

    folder = tmp_path_factory.mktemp("digits")
    onnx_path, repo = folder / "digits.onnx", folder / "repo"
    result = CliRunner().invoke(main, ["export", str(CHECKPOINT), "-o", str(onnx_path), "--no-compare",
                                       "--triton-repo", str(repo)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return onnx_path, repo, result
