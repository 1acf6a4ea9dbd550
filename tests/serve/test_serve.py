"""``xvdeploy serve`` on Ray Serve and ``xvdeploy loadtest`` against it: the digits model on 127.0.0.1.

One server for the module: ``xvdeploy serve`` as a subprocess (2 replicas, dynamic batching), stopped with
SIGINT at the end — and its whole process group (Ray's processes) killed if it does not stop, also when a
test fails. Every request goes to 127.0.0.1; every loop is bounded.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from xvdeploy.cli import main
from xvdeploy.export.onnxfile import ort_session
from xvdeploy.serve.wire import NPY, decode_npy, encode_npy
from xvdeploy.trt.sidecar import file_sha256

pytest.importorskip("ray.serve", reason="ray[serve] is not installed (pip install 'xvdeploy[serve]')")

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180  # Ray's start on a busy 2-core machine
MAX_REQUEST_MB = 0.05  # 52 kB: a 1x1x128x128 float32 body (64 kB) is over it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, content_type: str = NPY, timeout: float = 30):
    """(status, headers, body) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": content_type} if body is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, model: Path, log: Path) -> None:
        self.proc, self.url, self.model, self.log = proc, url, model, log

    def stop(self, timeout: float = 90) -> int:
        """SIGINT (Ctrl-C), then the process group's SIGKILL if it has not ended in time; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever of Ray is left in its group
        except (ProcessLookupError, PermissionError):
            pass
        return self.proc.wait(10)


@pytest.fixture(scope="module")
def server(digits_export, tmp_path_factory):
    onnx_path = digits_export[0]
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-c", "from xvdeploy.cli import main; main()", "serve", str(onnx_path), "--port", str(port),
           "--replicas", "2", "--max-batch", "8", "--batch-wait-ms", "5", "--max-request-mb", str(MAX_REQUEST_MB)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
    srv = Server(proc, f"http://127.0.0.1:{port}/", onnx_path, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"xvdeploy serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if http("GET", srv.url + "healthz", timeout=2)[0] == 200 and "serving" in log.read_text():
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"xvdeploy serve did not answer within {START_TIMEOUT_S} s:\n{log.read_text()}")
        yield srv
    finally:
        srv.stop()


def local_run(model: Path, x: np.ndarray) -> np.ndarray:
    return ort_session(model, threads=1).run(None, {"input": x})[0]


def test_health_and_metadata(server):
    status, headers, body = http("GET", server.url + "healthz")
    assert status == 200 and json.loads(body)["status"] == "ok" and headers.get("x-xvdeploy-replica")
    status, _, body = http("GET", server.url + "metadata")
    meta = json.loads(body)
    assert status == 200 and meta["sha256"] == file_sha256(server.model)
    assert meta["inputs"] == [{"name": "input", "type": "FLOAT", "dims": [-1, 1, -1, -1]}]
    assert meta["outputs"][0]["dims"] == [-1, 10] and meta["max_batch"] == 8 and meta["pid"] > 0
    assert "serving" in server.log.read_text() and "127.0.0.1" in server.log.read_text()


def test_predict_npy_and_json_match_local_onnxruntime(server):
    x = np.random.default_rng(1).standard_normal((3, 1, 8, 8)).astype(np.float32)
    status, headers, body = http("POST", server.url + "predict", encode_npy(x))
    assert status == 200 and headers["content-type"] == NPY
    y = decode_npy(body)
    ref = local_run(server.model, x)
    assert y.shape == (3, 10) and np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()
    status, headers, body = http("POST", server.url + "predict", json.dumps({"inputs": x[:1].tolist()}).encode(),
                                 "application/json")
    answer = json.loads(body)
    assert status == 200 and answer["shape"] == [1, 10]
    assert np.allclose(np.asarray(answer["outputs"], np.float32), ref[:1], rtol=1e-5, atol=1e-5)
    x = np.random.default_rng(2).standard_normal((2, 1, 12, 10)).astype(np.float32)  # another size: dynamic H, W
    status, _, body = http("POST", server.url + "predict", encode_npy(x))
    assert status == 200 and np.allclose(decode_npy(body), local_run(server.model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("body, content_type, fragment", [
    (encode_npy(np.zeros((1, 3, 8, 8), np.float32)), NPY, "dimension 1 is 3, the model's is 1"),
    (encode_npy(np.zeros((1, 1, 8, 8), np.float64)), NPY, "dtype float64; expected float32"),
    (encode_npy(np.zeros((9, 1, 8, 8), np.float32)), NPY, "batch of 9; the limit is 8"),
    (encode_npy(np.zeros((1, 1, 128, 128), np.float32)), NPY, "the limit is 52,428"),
    (b"{\"inputs\": [[1, 2], [3]]}", "application/json", "rectangular"),
    (b"plain", "text/plain", "is not supported"),
])
def test_bad_requests_get_400_with_the_reason_and_the_replica_stays_up(server, body, content_type, fragment):
    status, _, answer = http("POST", server.url + "predict", body, content_type)
    assert status == 400 and fragment in json.loads(answer)["error"]
    ok = encode_npy(np.zeros((1, 1, 8, 8), np.float32))
    assert http("POST", server.url + "predict", ok)[0] == 200
    assert http("GET", server.url + "healthz")[0] == 200


def test_unknown_routes_and_methods(server):
    assert http("GET", server.url + "nothing")[0] == 404
    assert http("GET", server.url + "predict")[0] == 405


def test_loadtest_cli_zero_errors_and_parity_on_every_answer(server, tmp_path):
    report_path = tmp_path / "load.json"
    result = CliRunner().invoke(main, ["loadtest", server.url, "--model", str(server.model), "--concurrency", "1,4,16",
                                       "--requests", "40", "--time-limit", "30", "--json", str(report_path)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert [lv["concurrency"] for lv in report["levels"]] == [1, 4, 16]
    for level in report["levels"]:
        assert level["ok"] == level["requested"] == 40 and level["errors"] == 0 and level["parity_failures"] == 0
        assert level["throughput_rps"] > 0 and level["p50_ms"] <= level["p90_ms"] <= level["p99_ms"]
        assert level["max_rel_l2"] <= 1e-5
    assert report["levels"][-1]["replicas_seen"] == 2
    assert "p99 ms" in result.output and "parity fail" in result.output


def test_loadtest_refuses_another_model_file(server, make_net):
    result = CliRunner().invoke(main, ["loadtest", server.url, "--model", str(make_net()), "--requests", "1"])
    assert result.exit_code == 2 and "parity needs the same file" in result.stderr


def test_replica_killed_mid_run_is_replaced_and_only_in_flight_requests_fail(server, tmp_path):
    report_path = tmp_path / "kill.json"
    result = CliRunner().invoke(main, ["loadtest", server.url, "--model", str(server.model), "--concurrency", "4",
                                       "--requests", "300", "--time-limit", "60", "--kill-replica-at", "40",
                                       "--json", str(report_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    kill = report["kill"]
    assert kill is not None and kill["pid"] > 0, result.output
    assert kill["in_flight_failures"] <= 4  # at most the requests in flight at the kill
    assert kill["other_failures"] == 0 and report["errors"] == kill["in_flight_failures"]
    assert report["parity_failures"] == 0
    assert kill["replacement"] and kill["replacement"] != kill["replica"] and kill["replaced_after_s"] > 0
    assert any(line.startswith("killed replica") and "in-flight requests failed" in line
               for line in result.stdout.splitlines())
    assert http("GET", server.url + "healthz")[0] == 200


def test_sigint_stops_the_server_cleanly(server):
    code = server.stop()
    assert code == 0, server.log.read_text()
    assert server.log.read_text().rstrip().endswith("stopped")
