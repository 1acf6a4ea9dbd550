"""One full-size network per operator, parsed and built by a real builder (in CI: TensorRT-RTX on a CPU).

``xv_resnet50_s3`` (X-volution), ``xvsa_resnet50_s5`` (X-volution(SA)) and
``acmix_resnet50`` (ACmix) at 224×224 with the export's default profile, batch
1–8. The ONNX files are exported once per session (``exported``) with a dynamic
batch only (dynamic height and width make torch.export of ACmix's ~500 slices
about 3× slower); the ~100 MB engines go to ``tmp_path`` and are deleted at once.
"""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from xvdeploy.cli import main
from xvdeploy.trt.sidecar import read_sidecar

#: name -> PSSA steps its graph holds (X-volution in the four bottlenecks of stage 3)
FULL_SIZE = {"xv_resnet50_s3": 4, "xvsa_resnet50_s5": 0, "acmix_resnet50": 0}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FULL_SIZE))
def test_full_size_network_parses_and_builds(build_flavour, exported, tmp_path, name):
    onnx_path = exported(name, (1, 3, 224, 224), dynamic="batch")
    plan = tmp_path / f"{name}.plan"
    result = CliRunner().invoke(main, ["build", str(onnx_path), "-o", str(plan), "--runtime", build_flavour,
                                       "--report"], catch_exceptions=False)
    try:
        assert result.exit_code == 0, result.output
        record = read_sidecar(plan)
        assert plan.stat().st_size > 50 * 2**20  # the weights are in the engine
        assert record.profiles == [{"input": {"min": [1, 3, 224, 224], "opt": [1, 3, 224, 224],
                                              "max": [8, 3, 224, 224]}}]
        report = record.network_report
        assert report["plugin_layers"] == [] and "plugin layers: none" in result.stdout
        assert report["census"]["CONVOLUTION"] >= 53  # every convolution of the ResNet-50 became one
        steps = report["pssa_steps"]
        assert len(steps) == FULL_SIZE[name]
        for step in steps:
            pad, conv, mul = step["layers"]
            assert pad == ["SLICE (mode WRAP)"] and mul == ["ELEMENTWISE (PROD)"]
            assert len(conv) == 1 and conv[0].startswith("CONVOLUTION (") and " groups, 3x3)" in conv[0]
        if FULL_SIZE[name]:
            assert f"{FULL_SIZE[name]} × SLICE (mode WRAP) → CONVOLUTION (128 groups, 3x3) → ELEMENTWISE (PROD)" \
                in result.stdout
    finally:
        plan.unlink(missing_ok=True)
