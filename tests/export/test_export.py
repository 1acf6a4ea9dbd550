from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator

from tests.cli.conftest import assert_one_line_error, digest, invoke
from tests.conftest import randomize_bn, rel_l2
from xvdeploy import ACmix, XVolution, XVolutionSA, export_onnx, fold, load_checkpoint, zoo
from xvdeploy.errors import ParityError, XVDeployError
from xvdeploy.export import onnx_export


def _reference_run(path, x: np.ndarray) -> np.ndarray:
    return ReferenceEvaluator(str(path)).run(None, {"input": x})[0]


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory, digits_checkpoint):
    path = tmp_path_factory.mktemp("digits") / "digits.onnx"
    model = fold(load_checkpoint(digits_checkpoint))
    report = export_onnx(model, path, (1, 1, 8, 8))
    return path, report, model


def test_digits_export_is_standard_dynamic_and_matches(digits_onnx):
    path, report, model = digits_onnx
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert report.standard_only and all(n.domain in ("", "ai.onnx") for n in proto.graph.node)
    assert not any(n.op_type == "Col2Im" for n in proto.graph.node)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, "height", "width"]
    assert proto.ir_version <= 10 and report.parity_ok and len(report.parity) == 3
    # the default: opset 17, the cyclic pad as Slice+Concat (no Pad mode=wrap, which many runtimes refuse)
    assert report.opset == 17 and report.portable and proto.opset_import[0].version == 17
    assert not [n for n in proto.graph.node if n.op_type == "Pad"]
    from xvdeploy.export.census import pssa_steps

    kinds = {n.name: n.op_type for n in proto.graph.node}  # each PSSA step found through its Slice+Concat pad
    assert [tuple(kinds[n] for n in step) for step in pssa_steps(proto)] == [("Concat", "Conv", "Mul")] * 2
    # the X-volution blocks add exactly Slice, Concat and Mul to the plain-conv twin
    assert set(report.extra_ops) <= {"Slice", "Mul", "Concat"}
    assert report.trt["ok"]
    # an interpreter independent of onnxruntime agrees, at another batch and size
    x = np.random.default_rng(1).standard_normal((3, 1, 10, 9), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    assert rel_l2(torch.from_numpy(_reference_run(path, x)), ref) <= 1e-5


def _block_parity(block: torch.nn.Module, shape, tmp_path, **kwargs):
    path = tmp_path / "block.onnx"
    report = export_onnx(block, path, shape, compare_plain=False, **kwargs)
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    with torch.no_grad():
        ref = block(torch.from_numpy(x))
    assert rel_l2(torch.from_numpy(_reference_run(path, x)), ref) <= 1e-5
    return onnx.load(str(path)), report


@pytest.mark.parametrize("kwargs", [dict(), dict(mode="concat"), dict(stride=2, kernel_size=5), dict(distance=2)])
def test_xvolution_block_exports_as_at_most_six_nodes(kwargs, tmp_path):
    block = randomize_bn(XVolution(8, 8, **kwargs)).fold()
    proto, report = _block_parity(block, (1, 8, 9, 10), tmp_path, opset=19)
    assert len(proto.graph.node) <= 6, [n.op_type for n in proto.graph.node]
    assert {n.op_type for n in proto.graph.node} <= {"Pad", "Conv", "Mul", "Concat", "Reshape", "Unsqueeze"}


@pytest.mark.parametrize("kwargs", [dict(), dict(mode="concat")])
def test_xvolution_block_portable_form_is_at_most_ten_nodes(kwargs, tmp_path):
    """Slice+Concat per padded axis (4 Slices, 2 Concats) instead of one Pad; "concat" mode's repeat conv takes the
    place of the Concat(X, T) (xvdeploy/export/concat_slots.py)."""
    block = randomize_bn(XVolution(8, 8, **kwargs)).fold()
    proto, report = _block_parity(block, (1, 8, 9, 10), tmp_path)
    ops = [n.op_type for n in proto.graph.node]
    assert report.portable and len(ops) <= 10 and ops.count("Slice") == 4 and "Pad" not in ops, ops
    assert set(ops) <= {"Slice", "Concat", "Conv", "Mul"}


def test_xvolution_sa_block_exports_with_matmul_softmax(tmp_path):
    block = randomize_bn(XVolutionSA(8, 8, heads=2, stride=2)).fold()
    proto, _ = _block_parity(block, (2, 8, 6, 6), tmp_path)
    ops = {n.op_type for n in proto.graph.node}
    assert {"MatMul", "Softmax"} <= ops


@pytest.mark.parametrize("stride", [1, 2])
def test_acmix_block_exports_without_col2im(tmp_path, stride):
    block = randomize_bn(ACmix(8, 8, kernel_att=5, head=2, stride=stride)).fold()
    proto, report = _block_parity(block, (1, 8, 7, 8), tmp_path)
    assert report.standard_only and not {"Col2Im", "Im2Col"} & {n.op_type for n in proto.graph.node}
    # dynamic batch, H and W, yet every Reshape target is a constant (heads in the batch, H and W kept last):
    # a Shape read there made onnx2tf convert the block to a wrong output shape
    consts = {i.name for i in proto.graph.initializer}
    assert all(n.input[1] in consts for n in proto.graph.node if n.op_type == "Reshape")


@pytest.mark.slow
def test_xv_resnet50_s3_census_vs_resnet50(tmp_path):
    model = fold(zoo.create("xv_resnet50_s3").eval())
    report = export_onnx(model, tmp_path / "xv.onnx", (1, 3, 224, 224), check=False, opset=19)
    assert set(report.extra_ops) <= {"Pad", "Mul", "Concat"} and report.extra_ops
    assert report.missing_ops == []
    counts = {c.op_type: c.count for c in report.census}
    assert counts["Pad"] == counts["Mul"] == counts["Concat"] == 4  # one per X-volution block of stage 3


def test_parity_failure_writes_nothing_unless_forced(tmp_path, monkeypatch, digits_checkpoint):
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", 0.0)  # make the genuine ~1e-7 difference a failure
    model = fold(load_checkpoint(digits_checkpoint))
    with pytest.raises(ParityError, match="nothing written"):
        export_onnx(model, tmp_path / "d.onnx", (1, 1, 8, 8), compare_plain=False)
    assert list(tmp_path.iterdir()) == []
    report = export_onnx(model, tmp_path / "d.onnx", (1, 1, 8, 8), compare_plain=False, force=True)
    assert report.forced and (tmp_path / "d.onnx").exists()


def test_static_export(tmp_path, digits_checkpoint):
    model = fold(load_checkpoint(digits_checkpoint))
    report = export_onnx(model, tmp_path / "s.onnx", (2, 1, 8, 8), dynamic=False, compare_plain=False)
    dims = [d.dim_value for d in onnx.load(str(tmp_path / "s.onnx")).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 1, 8, 8] and report.dynamic_axes == []
    # a static file: onnxruntime twice and onnx.reference, all at its one shape
    assert [(p.runtime, p.shape) for p in report.parity] == [("onnxruntime", (2, 1, 8, 8))] * 2 + [
        ("onnx.reference", (2, 1, 8, 8))]


def test_cli_export_with_report(tmp_path, digits_checkpoint):
    src = tmp_path / "digits.safetensors"
    shutil.copy(digits_checkpoint, src)
    out, rep = tmp_path / "d.onnx", tmp_path / "r.json"
    result = invoke("export", src, "-o", out, "--report", rep)
    assert result.exit_code == 0, result.output
    for text in ("Slice", "ai.onnx", "standard ONNX only", "extra op types {Concat, Mul, Slice}", "TensorRT",
                 "onnxruntime parity", "onnx.reference parity at 1x1x8x8", "cyclic pad: Slice+Concat (portable)"):
        assert text in result.output
    data = json.loads(rep.read_text())
    assert data["standard_only"] and data["parity_ok"] and data["census"]


def test_cli_inspect_onnx_and_checkpoint(tmp_path, digits_onnx, digits_checkpoint):
    path = digits_onnx[0]
    result = invoke("inspect", path)
    assert result.exit_code == 0 and "batch" in result.output and "Conv" in result.output
    result = invoke("inspect", digits_checkpoint)
    assert result.exit_code == 0 and "xv_digits" in result.output and "parameters" in result.output


@pytest.mark.parametrize("args, fragments", [
    (["no_such_model"], ["neither an existing file nor a zoo model"]),
    (["xv_digits", "--input-shape", "1x3x8x8"], ["cannot take input shape 1x3x8x8", "channels"]),
    (["xv_digits", "--opset", "12"], ["--opset 12 is not supported", "expected 13.."]),
    (["xv_digits", "--check-runtimes", "onnxruntime,coreml"], ["unknown runtime 'coreml'", "openvino"]),
    (["xv_digits", "--input-shape", "1x1x1x8x8"], ["expected three or four positive sizes"]),  # CxHxW is valid too
    (["xv_digits", "--dynamic", "batch,depth"], ["unknown dynamic axis 'depth'"]),
])
def test_cli_export_bad_input(args, fragments, tmp_path):
    out = tmp_path / "o.onnx"
    result = invoke("export", *args, "-o", out)
    assert_one_line_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_maps_smaller_than_the_shift(tmp_path):
    block = randomize_bn(torch.nn.Sequential(XVolution(2, 2, distance=3))).eval()
    with pytest.raises(XVDeployError, match="smaller than the shift distance"):
        export_onnx(fold(block), tmp_path / "x.onnx", (1, 2, 2, 2))
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_acmix_input_smaller_than_its_window(tmp_path):
    with pytest.raises(XVDeployError, match="ACmix"):
        export_onnx(fold(torch.nn.Sequential(ACmix(8, 8)).eval()), tmp_path / "a.onnx", (1, 8, 3, 3))


def test_cli_export_output_checks(tmp_path, digits_checkpoint):
    src = tmp_path / "digits.safetensors"
    shutil.copy(digits_checkpoint, src)
    before = digest(src)
    assert_one_line_error(invoke("export", src, "-o", src), "is the input file")
    assert_one_line_error(invoke("export", src, "-o", tmp_path / "missing" / "x.onnx"), "does not exist")
    assert digest(src) == before and sorted(p.name for p in tmp_path.iterdir()) == ["digits.safetensors"]


def test_pssa_plugin_export_one_custom_node_per_step_and_bench(tmp_path, digits_checkpoint):
    pytest.importorskip("onnxruntime_extensions")
    std, plug = tmp_path / "std.onnx", tmp_path / "plugin.onnx"
    assert invoke("export", digits_checkpoint, "-o", std, "--no-compare").exit_code == 0
    result = invoke("export", digits_checkpoint, "-o", plug, "--pssa-plugin")
    assert result.exit_code == 0, result.output
    proto = onnx.load(str(plug))
    custom = [n for n in proto.graph.node if n.domain not in ("", "ai.onnx")]
    assert len(custom) == 2 and all(n.op_type == "PSSA" for n in custom)  # one node per X-volution block
    assert not {"Pad", "Mul"} & {n.op_type for n in proto.graph.node}  # the rest stays standard
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in custom[0].attribute}
    assert attrs["plugin_namespace"] == b"xvdeploy" and list(attrs["shifts"])[:2] == [-1, -1]
    from xvdeploy.export.onnxfile import ort_session

    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8), dtype=np.float32)
    y_std = ort_session(std).run(None, {"input": x})[0]
    y_plug = ort_session(plug).run(None, {"input": x})[0]
    assert rel_l2(torch.from_numpy(y_plug), torch.from_numpy(y_std)) <= 1e-5
    bench = invoke("bench", plug, "--backends", "onnxruntime", "--iters", "2", "--quiet")
    assert bench.exit_code == 0 and "onnx-plugin" in bench.output, bench.output
    both = invoke("bench", "--backends", "onnxruntime", "--pssa-plugin", "--iters", "2", "--quiet")
    assert both.exit_code == 0 and "onnx-plugin" in both.output and "0.9911" in both.output, both.output


def test_folded_module_can_use_the_fused_op(digits_checkpoint):
    from xvdeploy.folding import use_pssa_plugin

    # The op's CPU implementation sums rolls, the folded module a depthwise
    # conv: same math, different float32 summation order. In float64 they
    # agree to rounding; in float32 to rel-L2 1e-6 (abs ~1e-6 on logits ~10).
    model = fold(load_checkpoint(digits_checkpoint))
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y32, y64 = model(x), model.double()(x.double())
    assert use_pssa_plugin(model) == 2
    torch.testing.assert_close(model(x.double()), y64, rtol=1e-12, atol=1e-12)
    plugged32 = model.float()(x)
    assert rel_l2(plugged32, y32) <= 1e-6
    assert torch.equal(plugged32.argmax(1), y32.argmax(1))


def _classifier(block: torch.nn.Module) -> torch.nn.Module:
    return torch.nn.Sequential(block, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5)).eval()


@pytest.mark.parametrize("block, shape", [
    (lambda: randomize_bn(XVolutionSA(8, 8, heads=2, stride=2)).fold(), (1, 8, 6, 6)),
    (lambda: randomize_bn(ACmix(8, 8, kernel_att=3, head=2)).fold(), (1, 8, 6, 7)),
])
def test_batch_one_example_keeps_the_output_batch_dynamic(block, shape, tmp_path):
    """torch.export specialises size-1 dims: traced at batch 1, pool → flatten → linear fixed the output at 1×K."""
    path = tmp_path / "b1.onnx"
    report = export_onnx(_classifier(block()), path, shape, compare_plain=False)
    out_dims = onnx.load(str(path)).graph.output[0].type.tensor_type.shape.dim
    assert out_dims[0].dim_param == "batch" and "batch" in report.dynamic_axes
    assert [p.shape[0] for p in report.parity if p.runtime == "onnxruntime"] == [1, 2] and report.parity_ok
