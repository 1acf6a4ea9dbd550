"""Small ONNX models for the TensorRT tests (built with onnx.helper: fast, no export)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.onnx_models import conv_net  # noqa: F401  (fixtures below and tests use it)


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
        # opset 19, Pad(mode=wrap): the form TensorRT maps to one ISliceLayer (kWRAP) per PSSA step, which these
        # tests follow through the build report (the default Slice+Concat form parses too, as shape arithmetic)
        kwargs.setdefault("opset", 19)
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
