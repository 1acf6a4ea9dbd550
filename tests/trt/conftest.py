"""Small ONNX models for the TensorRT tests (built with onnx.helper: fast, no export)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def conv_net(batch: int | str = 1, channels: int = 3, size: int = 16, seed: int = 0):
    """Conv → Relu → depthwise Conv on a wrap-padded input → Mul → GlobalAveragePool → Flatten → Gemm.

    ``batch`` may be a string (a dynamic, named batch dimension).
    """
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array((rng.standard_normal((8, channels, 3, 3)) * 0.3).astype(np.float32), "w1")
    b1 = numpy_helper.from_array((rng.standard_normal(8) * 0.1).astype(np.float32), "b1")
    w2 = numpy_helper.from_array((rng.standard_normal((8, 1, 3, 3)) * 0.3).astype(np.float32), "w2")
    fc = numpy_helper.from_array((rng.standard_normal((5, 8)) * 0.3).astype(np.float32), "fc")
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Pad", ["r1", "pads"], ["p1"], mode="wrap", name="pad_wrap"),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], group=8, name="shift_conv"),
        helper.make_node("Mul", ["r1", "c2"], ["t"], name="pssa_mul"),
        helper.make_node("GlobalAveragePool", ["t"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "conv_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5])],
        [w1, b1, w2, fc, pads],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> Path:
    import onnx

    path = tmp_path / "tiny.onnx"
    onnx.save(conv_net(), str(path))
    return path


@pytest.fixture
def dynamic_onnx(tmp_path: Path) -> Path:
    import onnx

    path = tmp_path / "dynamic.onnx"
    onnx.save(conv_net(batch="N"), str(path))
    return path


@pytest.fixture
def make_conv_net():
    """The :func:`conv_net` builder, for tests that need a model proto rather than a file."""
    return conv_net


# -- TensorRT flavours ------------------------------------------------------------------------------------
def _flavour_param(name: str, build: bool):
    """``name`` if that flavour can build (``build``) or run engines here, else a skip with the reason."""
    from xvdeploy.trt import availability

    reason = availability(name, build=build)
    if reason is not None:
        return pytest.param(name, marks=pytest.mark.skip(reason=f"{name}: {reason}"), id=name)
    return pytest.param(name, id=name)


@pytest.fixture(params=[_flavour_param("tensorrt", build=True), _flavour_param("tensorrt-rtx", build=True)])
def build_flavour(request) -> str:
    """Each TensorRT flavour that can build engines here (TensorRT-RTX: on a CPU, as in CI)."""
    return request.param


@pytest.fixture(params=[_flavour_param("tensorrt", build=False), _flavour_param("tensorrt-rtx", build=False)])
def run_flavour(request) -> str:
    """Each TensorRT flavour that can run engines here (a GPU it supports)."""
    return request.param


@pytest.fixture(scope="session")
def rtx():
    """The TensorRT-RTX module, or a skip saying why it cannot build here."""
    from xvdeploy.trt import availability

    reason = availability("tensorrt-rtx", build=True)
    if reason is not None:
        pytest.skip(f"TensorRT-RTX cannot build here: {reason}")
    import tensorrt_rtx

    return tensorrt_rtx


# -- exported ONNX files, shared by the tests of this folder (an export costs seconds to a minute) ----------
@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(name, input_shape, **export_kwargs) -> Path``: a zoo network (``xv_digits``: the shipped
    checkpoint) folded and exported once per session, dynamic batch."""
    from xvdeploy import fold, load_checkpoint, zoo
    from xvdeploy.export import export_onnx

    folder = tmp_path_factory.mktemp("onnx")
    made: dict[tuple, Path] = {}

    def make(name: str, input_shape: tuple[int, ...], **kwargs) -> Path:
        key = (name, tuple(input_shape), tuple(sorted(kwargs.items())))
        if key not in made:
            if name == "xv_digits":
                model = load_checkpoint(zoo.pretrained("xv_digits"))
            else:
                model = zoo.create_random(name)
            path = folder / f"{name}-{len(made)}.onnx"
            export_onnx(fold(model), path, input_shape, check=False, compare_plain=False, **kwargs)
            made[key] = path
        return made[key]

    return make


@pytest.fixture(scope="session")
def digits_onnx(exported) -> Path:
    """The shipped digits model, exported at 2×1×8×8 with a dynamic batch."""
    return exported("xv_digits", (2, 1, 8, 8))
