"""Small ONNX models for the export tests (built with onnx.helper: fast, no export)."""
from __future__ import annotations


import pytest

from tests.onnx_models import conv_net  # noqa: F401  (fixtures below and tests use it)


@pytest.fixture
def make_conv_net():
    """The :func:`conv_net` builder, for tests that need a model proto rather than a file."""
    return conv_net
