"""``xvdeploy serve``: input errors come before Ray starts (exit 2, one line), and the deployment plan."""
from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from xvdeploy.cli import main
from xvdeploy.errors import XVDeployError
from xvdeploy.serve.app import deployment_options
from xvdeploy.serve.options import ServeOptions, parse_replicas


def one_line_error(args, *fragments):
    result = CliRunner().invoke(main, ["serve", *map(str, args)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("starting")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_bad_requests_are_refused_before_ray_starts(tmp_path, make_net):
    net = make_net()
    one_line_error([tmp_path / "missing.onnx"], "no such file")
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"x")
    one_line_error([plan], "runs ONNX files")
    one_line_error([net, "--replicas", "0"], "--replicas '0'")
    one_line_error([net, "--replicas", "many"], "'auto'")
    one_line_error([make_net("two.onnx", extra_output=True)], "one input and one output")
    one_line_error([make_net("int.onnx", input_type="INT64")], "float32 N×C×H×W input")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        one_line_error([net, "--port", s.getsockname()[1]], "is in use")
    one_line_error([net, "--runtime", "openvino", "--device", "cuda"], "use --device cpu")


def test_a_model_openvino_cannot_read_is_one_line_before_ray_starts(tmp_path):
    """The Pad(mode=wrap) export (--opset 19), which OpenVINO refuses: said before any replica is started."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'xvdeploy[openvino]')")
    from xvdeploy import XVolution, export_onnx

    path = tmp_path / "pad.onnx"
    export_onnx(XVolution(2, 2).eval().fold(), path, (1, 2, 6, 6), opset=19, check=False, compare_plain=False)
    one_line_error([path, "--runtime", "openvino"], "OpenVINO cannot read it", "wrap", "--runtime onnxruntime")


def test_missing_ray_names_the_extra(make_net):
    code = ("import sys; sys.modules['ray'] = None\n"
            "from click.testing import CliRunner\nfrom xvdeploy.cli import main\n"
            f"r = CliRunner().invoke(main, ['serve', {str(make_net())!r}, '--port', '1'])\n"
            "print(r.exit_code); print(r.stderr.strip().splitlines()[-1])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    code_line, message = proc.stdout.strip().splitlines()[-2:]
    assert code_line == "2" and "pip install 'xvdeploy[serve]'" in message, proc.stdout + proc.stderr


def test_deployment_options():
    fixed = deployment_options(ServeOptions(replicas=2), cluster_cpus=2, cluster_gpus=0)
    assert fixed["num_replicas"] == 2 and fixed["ray_actor_options"] == {"num_cpus": 1.0}
    assert fixed["max_ongoing_requests"] >= 2 * 8
    auto = deployment_options(ServeOptions(replicas=None, cpus_per_replica=0.5), cluster_cpus=2, cluster_gpus=0)
    assert "num_replicas" not in auto
    assert auto["autoscaling_config"]["min_replicas"] == 1 and auto["autoscaling_config"]["max_replicas"] == 4
    gpu = deployment_options(ServeOptions(device="cuda", gpus_per_replica=0.5, replicas=4), 16, 2)
    assert gpu["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.5}
    with pytest.raises(XVDeployError, match="does not fit"):
        deployment_options(ServeOptions(replicas=3), cluster_cpus=2, cluster_gpus=0)
    with pytest.raises(XVDeployError, match="0 GPUs"):
        deployment_options(ServeOptions(device="cuda"), cluster_cpus=2, cluster_gpus=0)
    assert parse_replicas("auto") is None and parse_replicas("3") == 3


def test_an_openvino_replica_answers_like_onnxruntime(digits_export):
    """The replica class itself (outside Ray): OpenVINO's CPU plugin at fp32 behind the same batching code, against
    an onnxruntime replica on the same stacked requests of two sizes; /metadata names the runtime."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'xvdeploy[openvino]')")
    from xvdeploy.export.onnxfile import read_header
    from xvdeploy.serve.app import ModelServer, model_info

    path = digits_export[0]
    replicas = {}
    for runtime in ("onnxruntime", "openvino"):
        options = ServeOptions(runtime=runtime, threads=1)
        replicas[runtime] = ModelServer(path.read_bytes(), model_info(path, read_header(path), options),
                                        dataclasses.asdict(options))
    assert replicas["openvino"].info["backend"] == "openvino"
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(shape, dtype=np.float32) for shape in ((2, 1, 8, 8), (1, 1, 8, 8), (3, 1, 12, 10))]
    ours, ref = replicas["openvino"].infer_batch(xs), replicas["onnxruntime"].infer_batch(xs)
    for y, r in zip(ours, ref):
        assert y.shape == r.shape and np.abs(y - r).max() <= 1e-5 * np.abs(r).max()  # fp32, not bf16 (~3e-3)
    assert replicas["openvino"].counts == {"requests": 3, "samples": 6, "runs": 2}  # one run per sample shape


def test_openvino_replicas_are_cpu_only_and_named_runtimes():
    with pytest.raises(XVDeployError, match="runs OpenVINO's CPU plugin; use --device cpu"):
        ServeOptions(runtime="openvino", device="cuda").validate()
    with pytest.raises(XVDeployError, match="expected one of onnxruntime, openvino"):
        ServeOptions(runtime="tflite").validate()
