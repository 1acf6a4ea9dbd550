"""``xvdeploy serve``: an ONNX model behind Ray Serve, with dynamic batching, on 127.0.0.1.

One Ray Serve deployment, :class:`ModelServer`, whose replicas each hold an
onnxruntime session from the package's one session factory
(:func:`xvdeploy.export.onnxfile.ort_session`; CPU, or the CUDA provider with
TF32 off, as the bench's onnxruntime runner uses it). Requests are gathered by ``@serve.batch`` (up to
``max_batch`` samples, waiting at most ``batch_wait_ms`` for them), stacked per
input shape and run as one batch. Routes, under the application's prefix:

* ``GET /healthz``: 200 once the replica's session is loaded;
* ``GET /metadata``: the model (inputs, outputs, SHA-256 of the file), the
  batching settings and which replica (id, pid, host) answered;
* ``POST /predict``: one tensor in, the output out (:mod:`xvdeploy.serve.wire`:
  ``.npy`` bodies, or JSON for small inputs); HTTP 400 with the reason for a
  wrong shape, dtype or size, and the replica carries on.

The model's bytes travel with the deployment (Ray's object store), so the
same call serves from a multi-node cluster (``address=``) without a shared file
system. The HTTP proxy binds 127.0.0.1 only.
"""
from __future__ import annotations

import asyncio
import collections
import json
import os
import socket
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from xvdeploy._lazy import require
from xvdeploy._version import __version__
from xvdeploy.errors import XVDeployError, first_line
from xvdeploy.export.onnxfile import (OnnxHeader, device_providers, device_unavailable, ort_session, provider_problem,
                                      read_header)
from xvdeploy.export.runtimes import complaint, openvino_compile
from xvdeploy.fileio import write_bytes_atomic
from xvdeploy.serve.options import ServeOptions
from xvdeploy.serve.wire import JSON, InputRule, RequestError, decode_request, encode_response, error_body
from xvdeploy.trt.sidecar import file_sha256

HOST = "127.0.0.1"
#: the deployment's name inside the application
DEPLOYMENT = "XVDeployModel"


# -- the replica -------------------------------------------------------------------------------------------------
def _samples(items: list) -> int:
    """``@serve.batch``'s batch size: samples, not requests (each request carries N samples)."""
    return sum(len(x) for x in items)


class _OpenVINOSession:
    """OpenVINO's CPU plugin behind onnxruntime's ``run`` call: fp32 (``INFERENCE_PRECISION_HINT=f32``: on CPUs
    with AMX or AVX-512 BF16 its default is bf16), dynamic shapes kept, one inference at a time per replica (a
    compiled model's own infer request is not for concurrent calls)."""

    def __init__(self, path: Path, threads: int) -> None:
        self.compiled, _ = openvino_compile(path, "fp32", config={"INFERENCE_NUM_THREADS": threads})
        self.output = self.compiled.outputs[0]
        self.lock = threading.Lock()

    def run(self, _names, feeds: dict) -> list:
        (x,) = feeds.values()
        with self.lock:
            return [self.compiled(x)[self.output]]


class ModelServer:
    """One Ray Serve replica: an onnxruntime session (or OpenVINO) behind ``@serve.batch`` (wrapped by
    :func:`build_app`)."""

    def __init__(self, model_bytes: bytes, info: dict, options: dict) -> None:
        serve = require("ray.serve", "xvdeploy serve")
        started = time.time()
        self.options = ServeOptions(**options)
        self._tmp = tempfile.TemporaryDirectory(prefix="xvdeploy-serve-")
        path = Path(self._tmp.name) / "model.onnx"
        write_bytes_atomic(path, model_bytes)
        threads = self.options.threads or max(1, int(round(self.options.cpus_per_replica)))
        self.rule = InputRule(**info["rule"])
        if self.options.runtime == "openvino":
            self.session = _OpenVINOSession(path, threads)
            self.input_name, self.output_name = self.rule.name, None
        else:
            self.session = ort_session(path, device_providers(self.options.device), threads=threads)
            problem = provider_problem(self.session, self.options.device)
            if problem:
                raise RuntimeError(problem)
            self.input_name = self.session.get_inputs()[0].name
            self.output_name = self.session.get_outputs()[0].name
        self.info = dict(info)
        try:
            replica_id = serve.get_replica_context().replica_id.unique_id
        except Exception:  # outside a Serve replica (a direct test)
            replica_id = "local"
        try:
            node = require("ray", "xvdeploy serve").get_runtime_context().get_node_id()
        except Exception:
            node = None
        self.info.update(replica=replica_id, pid=os.getpid(), host=socket.gethostname(), node=node, started=started)
        self.counts = {"requests": 0, "samples": 0, "runs": 0}  # runs: session calls (batches)
        self.batched = self.rule.dims[0] < 0 and self.options.max_batch > 1
        if self.batched:
            async def run_batch(xs: list[np.ndarray]) -> list:
                return await asyncio.to_thread(self.infer_batch, xs)

            self._batch = serve.batch(max_batch_size=self.options.max_batch,
                                      batch_wait_timeout_s=self.options.batch_wait_ms / 1000,
                                      batch_size_fn=_samples)(run_batch)
        self.info["ready"] = time.time()  # started/ready: epoch seconds (a load test times a replacement)

    def infer_batch(self, xs: list[np.ndarray]) -> list:
        """Outputs (or a :class:`RequestError`) of each request: one session run per distinct sample shape."""
        out: list = [None] * len(xs)
        groups: dict[tuple, list[int]] = collections.defaultdict(list)
        for i, x in enumerate(xs):
            groups[x.shape[1:]].append(i)
        for shape, idx in groups.items():
            stacked = xs[idx[0]] if len(idx) == 1 else np.concatenate([xs[i] for i in idx])
            try:
                y = self.session.run([self.output_name], {self.input_name: stacked})[0]
            except Exception as exc:  # the input is valid in form but the model cannot run it
                shown = "x".join(map(str, ("N",) + shape))
                err = RequestError(f"the model could not run an input of shape {shown}: {first_line(exc)}")
                for i in idx:
                    out[i] = err
                continue
            for i, part in zip(idx, np.split(y, np.cumsum([len(xs[i]) for i in idx])[:-1])):
                out[i] = part
            self.counts["runs"] += 1
            self.counts["samples"] += len(stacked)
        self.counts["requests"] += len(xs)
        return out

    def check_health(self) -> None:
        """Ray Serve's health probe: a replica whose session is gone is restarted."""
        if getattr(self, "session", None) is None:
            raise RuntimeError(f"the {self.options.runtime} session is not loaded")

    async def __call__(self, request):
        from starlette.responses import Response

        def answer(status: int, payload: dict | bytes, media: str = JSON) -> Response:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            return Response(body, status_code=status, media_type=media,
                            headers={"x-xvdeploy-replica": str(self.info["replica"]),
                                     "x-xvdeploy-node": str(self.info["node"])})

        root = request.scope.get("root_path", "")
        path = request.url.path[len(root):] if root and request.url.path.startswith(root) else request.url.path
        path = "/" + path.strip("/")
        routes = {"/healthz": "GET", "/metadata": "GET", "/predict": "POST"}
        if path not in routes:
            return answer(404, {"error": f"no route {path}; routes: {', '.join(routes)}"})
        if request.method != routes[path]:
            return answer(405, {"error": f"{path} takes {routes[path]}, not {request.method}"})
        if path == "/healthz":
            self.check_health()
            return answer(200, {"status": "ok", "replica": self.info["replica"]})
        if path == "/metadata":
            return answer(200, {**self.info, "served": dict(self.counts)})
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.rule.max_bytes:
            return answer(400, error_body(f"the body is {int(length):,} bytes; the limit is "
                                          f"{self.rule.max_bytes:,} (serve --max-request-mb)"))
        try:
            x, kind = decode_request(await request.body(), request.headers.get("content-type"), self.rule)
        except RequestError as exc:
            return answer(400, error_body(str(exc)))
        if self.batched:
            y = await self._batch(x)
        else:
            y = (await asyncio.to_thread(self.infer_batch, [x]))[0]
        if isinstance(y, RequestError):
            return answer(400, error_body(str(y)))
        body, media = encode_response(y, kind)
        return answer(200, body, media)


# -- the driver ------------------------------------------------------------------------------------------------
FLOAT = 1  # onnx.TensorProto.FLOAT


def model_info(model_path: Path, header: OnnxHeader, options: ServeOptions) -> dict:
    """What every replica is told about the model (and answers on ``/metadata``)."""
    if len(header.inputs) != 1 or len(header.outputs) != 1:
        raise XVDeployError(f"{model_path} has {len(header.inputs)} inputs and {len(header.outputs)} outputs; "
                            "xvdeploy serve runs models with one input and one output (what 'xvdeploy export' writes)")
    (name, dims), = header.inputs.items()
    if header.input_types[name] != FLOAT or len(dims) != 4:
        raise XVDeployError(f"{model_path}: input {name!r} is not a float32 N×C×H×W tensor; xvdeploy serve runs "
                            "models with one float32 N×C×H×W input (what 'xvdeploy export' writes)")
    if header.plugin:
        raise XVDeployError(f"{model_path} holds PSSA plugin nodes ('export --pssa-plugin'); serve the standard-op "
                            "export (without --pssa-plugin)")
    type_name = require("onnx", "Reading ONNX files").TensorProto.DataType.Name
    max_batch = options.max_batch if dims[0] < 0 else dims[0]
    rule = InputRule(name, "float32", dims, max_batch, int(options.max_request_mb * (1 << 20)))
    example = header.example_shape()
    return {
        "model": options.name or model_path.stem,
        "file": model_path.name,
        "sha256": file_sha256(model_path),
        "inputs": [{"name": n, "type": type_name(header.input_types[n]), "dims": list(d)}
                   for n, d in header.inputs.items()],
        "outputs": [{"name": n, "type": type_name(header.output_types[n]), "dims": list(d)}
                    for n, d in header.outputs.items()],
        "example_shape": "x".join(map(str, example)) if example else None,
        "backend": options.runtime,
        "device": options.device,
        "max_batch": max_batch,
        "batch_wait_ms": options.batch_wait_ms,
        "xvdeploy": __version__,
        "rule": asdict(rule),
    }


def deployment_options(options: ServeOptions, cluster_cpus: float, cluster_gpus: float) -> dict:
    """``serve.deployment`` keyword arguments; a clear error where the cluster cannot hold the replicas."""
    actor = {"num_cpus": options.cpus_per_replica}
    if options.device == "cuda":
        actor["num_gpus"] = options.gpus_per_replica
    fits = int(cluster_cpus // options.cpus_per_replica)
    what = f"{cluster_cpus:g} CPUs"
    if options.device == "cuda":
        fits = min(fits, int(cluster_gpus // options.gpus_per_replica))
        what += f" and {cluster_gpus:g} GPUs"
    if fits < 1:
        raise XVDeployError(f"the Ray cluster has {what}; one replica needs {options.cpus_per_replica:g} CPUs"
                            + (f" and {options.gpus_per_replica:g} GPUs" if options.device == "cuda" else "")
                            + ": lower --cpus-per-replica/--gpus-per-replica or add nodes")
    out: dict = {"name": DEPLOYMENT, "ray_actor_options": actor, "max_ongoing_requests": options.max_ongoing_requests,
                 "max_constructor_retry_count": 1, "health_check_period_s": 5}
    if options.replicas is None:
        limit = options.max_replicas or fits
        if limit > fits:
            raise XVDeployError(f"--max-replicas {limit} does not fit the Ray cluster ({what} hold {fits} replicas)")
        out["autoscaling_config"] = {"min_replicas": 1, "initial_replicas": 1, "max_replicas": limit,
                                     "target_ongoing_requests": max(1, options.max_batch),
                                     "upscale_delay_s": 3, "downscale_delay_s": 60}
    else:
        if options.replicas > fits:
            raise XVDeployError(f"--replicas {options.replicas} does not fit the Ray cluster: {what} hold {fits} "
                                "replicas at the requested CPUs/GPUs per replica")
        out["num_replicas"] = options.replicas
    return out


@dataclass
class Server:
    """A running deployment (what :func:`start` returns and :func:`stop` ends)."""

    name: str
    url: str  # the application's base URL, ending in "/"
    started_ray: bool  # a local Ray instance began for it (stop ends it)
    connected: bool  # start() connected this process to Ray (stop disconnects)
    options: ServeOptions
    info: dict

    @property
    def predict_url(self) -> str:
        return self.url + "predict"


def _check_port(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            raise XVDeployError(f"port {port} on {HOST} is in use; choose another --port") from None


def start(model: str | os.PathLike, options: ServeOptions = ServeOptions(), address: str | None = None,
          verbose: bool = False) -> Server:
    """Serve ``model`` (an ONNX file); returns once every replica answers.

    ``address``: a running Ray cluster (``auto``, ``HOST:PORT``); default: a new
    local instance, ended by :func:`stop`. A process already connected to Ray
    (an earlier :func:`start`) adds this application beside the others (same
    port, its own ``route_prefix``).
    """
    model = Path(model)
    options.validate()
    if model.suffix.lower() != ".onnx":
        raise XVDeployError(f"{model}: xvdeploy serve runs ONNX files (onnxruntime or OpenVINO); expected a .onnx file such as "
                            "'xvdeploy export' writes")
    info = model_info(model, read_header(model), options)
    if options.runtime == "openvino":  # before Ray starts: a model OpenVINO cannot read is one line
        ov = require("openvino", "xvdeploy serve --runtime openvino")
        try:
            ov.Core().read_model(str(model))
        except Exception as exc:  # OpenVINO's own RuntimeError subclasses
            raise XVDeployError(f"{model}: OpenVINO cannot read it ({complaint(str(exc))}); serve it with --runtime "
                                "onnxruntime, or export it portable (the default, opset 17)") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
    if address is None and "ray" not in sys.modules:
        # A local instance talks over loopback: Ray otherwise registers the node under its outward address
        # (ray_constants.ENABLE_RAY_CLUSTER, read when ray is imported; on Linux this switch is its only use).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = require("ray", "xvdeploy serve")
    connect = not ray.is_initialized()
    local = connect and address is None
    reason = device_unavailable(options.device)
    if reason and local:  # on a cluster the replicas' nodes decide
        raise XVDeployError(f"--device {options.device}: {reason}")
    if local:
        _check_port(options.port)
    serve = require("ray.serve", "xvdeploy serve")
    level = "INFO" if verbose else "WARNING"
    if not verbose:
        import logging

        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    if local:
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=verbose,
                 logging_level=level.lower(), object_store_memory=max(128 << 20, 4 * model.stat().st_size),
                 _node_ip_address=HOST)
    elif connect:
        ray.init(address=address, log_to_driver=verbose, logging_level=level.lower())
    name = info["model"]
    server = Server(name, f"http://{HOST}:{options.port}{options.route_prefix.rstrip('/')}/", local, connect,
                    options, info)
    try:
        resources = ray.cluster_resources()
        kwargs = deployment_options(options, resources.get("CPU", 0), resources.get("GPU", 0))
        serve.start(http_options={"host": HOST, "port": options.port}, proxy_location=options.proxy_location,
                    logging_config={"log_level": level})
        app = serve.deployment(**kwargs)(ModelServer).bind(model.read_bytes(), info, asdict(options))
        serve.run(app, name=name, route_prefix=options.route_prefix, logging_config={"log_level": level})
    except BaseException as exc:
        stop(server)
        if isinstance(exc, XVDeployError) or not isinstance(exc, Exception):
            raise
        raise XVDeployError(f"Ray Serve could not start {model}: {first_line(exc)}") from exc
    return server


def stop(server: Server) -> None:
    """End the application (and the local Ray instance, or the connection, :func:`start` began for it)."""
    ray = require("ray", "xvdeploy serve")
    serve = require("ray.serve", "xvdeploy serve")
    try:
        if server.started_ray:
            serve.shutdown()
        elif ray.is_initialized():
            serve.delete(server.name)
    finally:
        if server.connected:
            ray.shutdown()
