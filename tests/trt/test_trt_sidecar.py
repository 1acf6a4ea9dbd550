"""The ``<plan>.json`` build record and the TensorRT-version/GPU check (no TensorRT needed)."""
from __future__ import annotations

import hashlib
import json

import pytest

from xvdeploy.errors import XVDeployError
from xvdeploy.trt.sidecar import (
    EngineMismatchError,
    EngineRecord,
    Platform,
    check_platform,
    file_sha256,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)

HERE = Platform("10.8.0.43", "NVIDIA H100 80GB HBM3", "9.0")


def record(**overrides) -> EngineRecord:
    values = dict(
        tensorrt_version=HERE.tensorrt_version,
        gpu_name=HERE.gpu_name,
        compute_capability=HERE.compute_capability,
        precision="fp16",
        profiles=[{"x": {"min": [1, 3, 8, 8], "opt": [4, 3, 8, 8], "max": [8, 3, 8, 8]}}],
        onnx_sha256="ab" * 32,
        onnx_file="model.onnx",
        build_time="2025-01-01T00:00:00+00:00",
        build_seconds=12.5,
        builder_optimization_level=3,
        workspace_mib=1024,
    )
    values.update(overrides)
    return EngineRecord(**values)


def test_sidecar_path_appends_json():
    assert sidecar_path("out/model.plan").as_posix() == "out/model.plan.json"


def test_round_trip(tmp_path):
    plan = tmp_path / "model.plan"
    written = write_sidecar(plan, record())
    assert written == tmp_path / "model.plan.json"
    data = json.loads(written.read_text())
    assert data["tensorrt_version"] == "10.8.0.43" and data["compute_capability"] == "9.0"
    assert data["profiles"][0]["x"]["max"] == [8, 3, 8, 8]
    assert read_sidecar(plan) == record()
    assert [p.name for p in tmp_path.iterdir()] == ["model.plan.json"]  # no temporary file left


def test_missing_sidecar_reads_as_none(tmp_path):
    assert read_sidecar(tmp_path / "model.plan") is None


def test_unknown_keys_are_ignored_and_missing_ones_reported(tmp_path):
    plan = tmp_path / "m.plan"
    data = json.loads(record().to_json())
    data["future_field"] = 1
    sidecar_path(plan).write_text(json.dumps(data))
    assert read_sidecar(plan) == record()
    del data["compute_capability"]
    sidecar_path(plan).write_text(json.dumps(data))
    with pytest.raises(XVDeployError, match="lacks compute_capability; rebuild the engine"):
        read_sidecar(plan)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_malformed_sidecar(tmp_path, text):
    plan = tmp_path / "m.plan"
    sidecar_path(plan).write_text(text)
    with pytest.raises(XVDeployError, match="rebuild the engine"):
        read_sidecar(plan)


def test_same_platform_is_compatible():
    assert check_platform(record(), HERE, "m.plan") == []


def test_other_tensorrt_version_is_a_clear_error():
    with pytest.raises(EngineMismatchError) as err:
        check_platform(record(tensorrt_version="10.3.0.26"), HERE, "m.plan")
    message = str(err.value)
    assert "built for TensorRT 10.3.0.26 (this machine has 10.8.0.43)" in message
    assert "xvdeploy build model.onnx -o m.plan" in message
    assert "\n" not in message and err.value.exit_code == 2


def test_other_gpu_architecture_is_a_clear_error():
    with pytest.raises(EngineMismatchError, match=r"compute capability 8\.6, NVIDIA RTX A6000 \(this machine has 9\.0"):
        check_platform(record(gpu_name="NVIDIA RTX A6000", compute_capability="8.6"), HERE, "m.plan")


def test_same_architecture_other_gpu_model_is_a_warning():
    warnings = check_platform(record(gpu_name="NVIDIA H100 PCIe"), HERE, "m.plan")
    assert len(warnings) == 1 and "same compute capability 9.0" in warnings[0]


def test_file_sha256(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 3_000_000)
    assert file_sha256(path, chunk=1 << 16) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


# -- TensorRT-RTX records ----------------------------------------------------------------------------------
RTX_HERE = Platform("1.7.1.116", "NVIDIA GeForce RTX 4090", "8.9", "tensorrt-rtx")


def rtx_record(**overrides) -> EngineRecord:
    values = dict(tensorrt_version="1.7.1.116", gpu_name="none (built without a GPU)", compute_capability="",
                  precision="fp16", flavour="tensorrt-rtx", compute_capabilities=["8.6", "8.9"], built_without_gpu=True,
                  onnx_file="model.onnx")
    values.update(overrides)
    return EngineRecord(**values)


def test_old_sidecars_read_as_tensorrt():
    data = json.loads(record().to_json())
    for key in ("flavour", "compute_capabilities", "built_without_gpu", "network_report", "notes"):
        del data[key]
    old = EngineRecord.from_json(json.dumps(data))
    assert old.flavour == "tensorrt" and old.targets == ["9.0"] and not old.built_without_gpu


def test_rtx_engine_runs_on_any_of_its_targets():
    assert check_platform(rtx_record(), RTX_HERE, "m.plan") == []
    assert check_platform(rtx_record(), Platform("1.7.1.116", "NVIDIA RTX A6000", "8.6", "tensorrt-rtx")) == []


def test_rtx_engine_on_a_gpu_it_was_not_built_for_is_one_line():
    here = Platform("1.7.1.116", "NVIDIA GeForce RTX 5090", "12.0", "tensorrt-rtx")
    with pytest.raises(EngineMismatchError) as err:
        check_platform(rtx_record(), here, "m.plan")
    message = str(err.value)
    assert message == ("engine m.plan was built for compute capability 8.6, 8.9 (this GPU, NVIDIA GeForce RTX 5090, "
                       "has 12.0); rebuild it with: xvdeploy build model.onnx -o m.plan --runtime tensorrt-rtx "
                       "--compute-capability 12.0")
    assert err.value.exit_code == 2


def test_rtx_engine_of_another_rtx_version():
    with pytest.raises(EngineMismatchError, match=r"built for TensorRT-RTX 1\.6\.0\.1 \(this machine has 1\.7\.1\.116\)"):
        check_platform(rtx_record(tensorrt_version="1.6.0.1"), RTX_HERE, "m.plan")


@pytest.mark.parametrize("built, here, fragment", [
    (rtx_record(), HERE, "engine m.plan was built with TensorRT-RTX 1.7.1.116, not TensorRT: load it with --runtime "
                         "tensorrt-rtx, or rebuild it with --runtime tensorrt"),
    (record(), RTX_HERE, "engine m.plan was built with TensorRT 10.8.0.43, not TensorRT-RTX: load it with --runtime "
                         "tensorrt, or rebuild it with --runtime tensorrt-rtx"),
])
def test_engine_of_the_other_flavour_is_one_line(built, here, fragment):
    with pytest.raises(EngineMismatchError) as err:
        check_platform(built, here, "m.plan")
    assert str(err.value) == fragment


def test_summary_says_where_and_for_what():
    assert rtx_record().summary() == ("fp16 engine built with TensorRT-RTX 1.7.1.116 without a GPU (CPU-only build), "
                                      "for compute capability 8.6, 8.9")
    assert record().summary() == "fp16 engine built with TensorRT 10.8.0.43 on NVIDIA H100 80GB HBM3, for compute capability 9.0"
