"""The Triton model repository: every config.pbtxt parsed with Triton's own schema and checked against the ONNX file."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from xvdeploy.cli import main
from xvdeploy.errors import XVDeployError
from xvdeploy.serve.triton_repo import (
    TritonOptions,
    parse_instances,
    plan_model_config,
    write_triton_model,
)
from xvdeploy.trt import availability
from xvdeploy.trt.sidecar import EngineRecord

pb = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] is not installed "
                                                                      "(pip install 'xvdeploy[serve]')")
text_format = pytest.importorskip("google.protobuf.text_format")
onnx = pytest.importorskip("onnx")


def parse(path: Path):
    """config.pbtxt through protobuf text_format into Triton's ModelConfig (raises if it does not parse)."""
    return text_format.Parse(Path(path).read_text(), pb.ModelConfig())


def onnx_io(path: Path) -> dict[str, tuple[int, list[int]]]:
    """name -> (TensorProto elem type, dims with -1 where dynamic), read straight from the ONNX file."""
    model = onnx.load(str(path))
    out = {}
    for vi in list(model.graph.input) + list(model.graph.output):
        tt = vi.type.tensor_type
        out[vi.name] = (tt.elem_type, [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim])
    return out


def assert_matches_onnx(config, onnx_path: Path) -> None:
    """Names, data types and dims of config's tensors are the ONNX file's (batch dimension dropped if batching)."""
    io = onnx_io(onnx_path)
    types = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16",
             onnx.TensorProto.INT64: "TYPE_INT64"}
    tensors = list(config.input) + list(config.output)
    assert sorted(t.name for t in tensors) == sorted(io)
    for t in tensors:
        elem, dims = io[t.name]
        assert pb.DataType.Name(t.data_type) == types[elem]
        expected = dims[1:] if config.max_batch_size > 0 else dims
        if expected:
            assert list(t.dims) == expected, t.name
        else:  # a scalar per sample: dims [1] reshaped to []
            assert list(t.dims) == [1] and t.HasField("reshape") and list(t.reshape.shape) == []


def tree(folder: Path) -> dict[str, str]:
    """Every file under folder with its SHA-256 (to prove nothing was touched)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_onnx_model_gets_a_config_that_triton_schema_parses(make_net, tmp_path):
    net = make_net()
    result = write_triton_model(tmp_path / "repo", net)
    config = parse(tmp_path / "repo" / "net" / "config.pbtxt")
    assert config.name == "net" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8
    assert_matches_onnx(config, net)
    assert list(config.input[0].dims) == [3, -1, -1]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert len(config.instance_group) == 1
    assert pb.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == "KIND_AUTO"
    assert config.instance_group[0].count == 1
    assert (tmp_path / "repo" / "net" / "1" / "model.onnx").read_bytes() == net.read_bytes()
    assert result.version == 1 and result.config_written
    assert not [p for p in (tmp_path / "repo").rglob(".*")]  # no temporary leftovers


def test_new_version_leaves_earlier_versions_and_config_untouched(make_net, tmp_path):
    repo = tmp_path / "repo"
    write_triton_model(repo, make_net("a.onnx", seed=0), TritonOptions(name="m"))
    before = tree(repo)
    stat1 = (repo / "m" / "1" / "model.onnx").stat()
    second = make_net("b.onnx", seed=1)  # same shape, other weights
    result = write_triton_model(repo, second, TritonOptions(name="m"))
    assert result.version == 2 and not result.config_written
    after = tree(repo)
    assert {k: v for k, v in after.items() if not k.startswith("m/2/")} == before
    assert (repo / "m" / "1" / "model.onnx").stat().st_mtime_ns == stat1.st_mtime_ns
    assert (repo / "m" / "2" / "model.onnx").read_bytes() == second.read_bytes()
    parse(repo / "m" / "config.pbtxt")
    with pytest.raises(XVDeployError, match="never overwritten"):
        write_triton_model(repo, second, TritonOptions(name="m", version=1))
    assert tree(repo) == after


def test_model_of_another_shape_is_refused_and_nothing_changes(make_net, tmp_path):
    repo = tmp_path / "repo"
    write_triton_model(repo, make_net("a.onnx", channels=3), TritonOptions(name="m"))
    before = tree(repo)
    with pytest.raises(XVDeployError, match="already holds a model of another kind or shape"):
        write_triton_model(repo, make_net("b.onnx", channels=1), TritonOptions(name="m"))
    with pytest.raises(XVDeployError, match="another kind or shape"):
        write_triton_model(repo, make_net("c.onnx", classes=7), TritonOptions(name="m"))
    assert tree(repo) == before


def test_static_batch_means_no_batching_and_full_dims(make_net, tmp_path):
    net = make_net(batch=4, size=16)
    write_triton_model(tmp_path / "repo", net)
    config = parse(tmp_path / "repo" / "net" / "config.pbtxt")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [4, 3, 16, 16]
    assert_matches_onnx(config, net)
    with pytest.raises(XVDeployError, match="batch dimension is fixed"):
        write_triton_model(tmp_path / "repo2", net, TritonOptions(max_batch_size=8))


def test_data_types_scalar_outputs_instances_and_batch_options(make_net, tmp_path):
    net = make_net(input_type="INT64", extra_output=True)
    options = TritonOptions(name="typed", max_batch_size=16, preferred_batch_sizes=(2, 16), instance_kind="gpu",
                            instance_count=2, max_queue_delay_us=500)
    write_triton_model(tmp_path / "repo", net, options)
    config = parse(tmp_path / "repo" / "typed" / "config.pbtxt")
    assert_matches_onnx(config, net)
    assert pb.DataType.Name(config.input[0].data_type) == "TYPE_INT64"
    assert config.max_batch_size == 16
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    group = config.instance_group[0]
    assert pb.ModelInstanceGroup.Kind.Name(group.kind) == "KIND_GPU" and group.count == 2
    with pytest.raises(XVDeployError, match="outside 1..8"):
        write_triton_model(tmp_path / "repo", net, TritonOptions(name="other", preferred_batch_sizes=(32,)))


def test_parse_instances():
    assert parse_instances("gpu") == ("gpu", 1)
    assert parse_instances("CPU:3") == ("cpu", 3)
    for bad in ("tpu", "gpu:0", "gpu:x"):
        with pytest.raises(XVDeployError, match="KIND"):
            parse_instances(bad)


def test_engine_config_carries_profiles_batch_limit_and_plugin_note(make_net, tmp_path):
    """The config of a plan from its build record (the record as 'xvdeploy build' writes it; no engine needed)."""
    from xvdeploy.export.onnxfile import read_header

    sig = read_header(make_net())
    record = EngineRecord(
        tensorrt_version="10.8.0.43", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0", precision="fp16",
        profiles=[{"x": {"min": [1, 3, 32, 32], "opt": [4, 3, 32, 32], "max": [16, 3, 32, 32]}},
                  {"x": {"min": [1, 3, 64, 64], "opt": [2, 3, 64, 64], "max": [8, 3, 64, 64]}}],
        pssa_plugin=True)
    config, notes = plan_model_config(sig, record, "engine")
    config = text_format.Parse(text_format.MessageToString(config), pb.ModelConfig())
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    assert config.max_batch_size == 8  # the largest batch both profiles take
    assert list(config.input[0].dims) == [3, -1, -1]
    group = config.instance_group[0]
    assert pb.ModelInstanceGroup.Kind.Name(group.kind) == "KIND_GPU" and list(group.profile) == ["0", "1"]
    assert any("TensorRT 10.8.0.43" in n and "compute capability 9.0" in n for n in notes)
    assert any("PSSA plugin library" in n for n in notes)
    with pytest.raises(XVDeployError, match="larger than the engine's optimization profiles allow"):
        plan_model_config(sig, record, "engine", TritonOptions(max_batch_size=9))
    with pytest.raises(XVDeployError, match="runs on a GPU only"):
        plan_model_config(sig, record, "engine", TritonOptions(instance_kind="cpu"))
    plain = EngineRecord("10.8.0.43", "NVIDIA H100 80GB HBM3", "9.0", "fp32", profiles=record.profiles[:1])
    config, notes = plan_model_config(sig, plain, "engine")
    assert config.max_batch_size == 16 and not any("PSSA" in n for n in notes)


def test_engine_without_build_record_is_refused(tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not read")
    with pytest.raises(XVDeployError, match="no build record"):
        write_triton_model(tmp_path / "repo", plan)
    assert not (tmp_path / "repo").exists()


# -- through the CLI -----------------------------------------------------------------------------------------------
def test_export_cli_writes_the_repository(digits_export):
    onnx_path, repo, result = digits_export
    assert f"wrote Triton model {repo / 'digits'} version 1: model.onnx" in result.output
    config = parse(repo / "digits" / "config.pbtxt")
    assert_matches_onnx(config, onnx_path)
    assert list(config.input[0].dims) == [1, -1, -1] and list(config.output[0].dims) == [10]
    assert (repo / "digits" / "1" / "model.onnx").read_bytes() == onnx_path.read_bytes()


def _one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_export_cli_checks_the_repository_before_exporting(tmp_path):
    runner = CliRunner()
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    r = runner.invoke(main, ["export", "xv_digits", "-o", str(tmp_path / "d.onnx"), "--triton-repo", str(not_a_folder)])
    _one_line_error(r, "--triton-repo", "is a file")
    r = runner.invoke(main, ["export", "xv_digits", "-o", str(tmp_path / "d.onnx"), "--triton-name", "x"])
    _one_line_error(r, "need --triton-repo")
    r = runner.invoke(main, ["export", "xv_digits", "-o", str(tmp_path / "d.onnx"), "--pssa-plugin",
                             "--triton-repo", str(tmp_path / "repo")])
    _one_line_error(r, "--pssa-plugin")
    r = runner.invoke(main, ["export", "xv_digits", "-o", str(tmp_path / "d.onnx"), "--triton-instances", "tpu",
                             "--triton-repo", str(tmp_path / "repo")])
    _one_line_error(r, "--triton-instances 'tpu'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_build_cli_refuses_a_mismatching_repository_before_building(make_net, tmp_path):
    repo = tmp_path / "repo"
    write_triton_model(repo, make_net("a.onnx", channels=1), TritonOptions(name="engine", instance_kind="gpu"))
    before = tree(repo)
    r = CliRunner().invoke(main, ["build", str(make_net("b.onnx")), "-o", str(tmp_path / "engine.plan"),
                                  "--opt-shape", "x:1x3x16x16", "--triton-repo", str(repo)])
    _one_line_error(r, "already holds a model of another kind or shape")
    assert tree(repo) == before and not (tmp_path / "engine.plan").exists()


@pytest.mark.skipif(availability("tensorrt") is not None, reason=f"no TensorRT builder here: {availability('tensorrt')}")
def test_build_cli_adds_the_engine_with_its_profile(make_net, tmp_path):
    net = make_net()
    plan = tmp_path / "net.plan"
    r = CliRunner().invoke(main, ["build", str(net), "-o", str(plan), "--min-shape", "x:1x3x16x16",
                                  "--opt-shape", "x:4x3x16x16", "--max-shape", "x:8x3x32x32",
                                  "--triton-repo", str(tmp_path / "repo")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    config = parse(tmp_path / "repo" / "net" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 8
    assert_matches_onnx(config, net)
    assert list(config.instance_group[0].profile) == ["0"]
    assert (tmp_path / "repo" / "net" / "1" / "model.plan").read_bytes() == plan.read_bytes()
    assert (tmp_path / "repo" / "net" / "1" / "model.plan.json").is_file()
