"""How a model is served (:class:`ServeOptions`, the ``xvdeploy serve`` options): no Ray, onnxruntime or numpy.

``xvdeploy serve --help`` reads its choices from here, so it starts without torch;
:mod:`xvdeploy.serve.app` runs the deployment.
"""
from __future__ import annotations

from dataclasses import dataclass

from xvdeploy.errors import XVDeployError

DEFAULT_PORT = 8000
DEVICES = ("cpu", "cuda")
PROXY_LOCATIONS = ("EveryNode", "HeadOnly")
RUNTIMES = ("onnxruntime", "openvino")  # what runs the model in each replica


@dataclass(frozen=True)
class ServeOptions:
    """How the model is served (the ``xvdeploy serve`` options)."""

    replicas: int | None = 1  # None: autoscaling between 1 and max_replicas ("--replicas auto")
    max_replicas: int | None = None  # autoscaling limit; default: what the cluster's CPUs (GPUs) hold
    max_batch: int = 8  # samples per batch; 1 = no dynamic batching
    batch_wait_ms: float = 5.0
    device: str = "cpu"
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 1.0  # with device="cuda"
    threads: int | None = None  # onnxruntime intra-op threads per replica; default: cpus_per_replica
    max_request_mb: float = 16.0
    port: int = DEFAULT_PORT
    name: str | None = None  # Ray Serve application name; default: the file's stem
    route_prefix: str = "/"  # where the application's routes start (several applications share the port)
    proxy_location: str = "EveryNode"  # Ray Serve HTTP proxies: on every node, or on the head node only
    runtime: str = "onnxruntime"  # or "openvino": OpenVINO's CPU plugin, fp32 (INFERENCE_PRECISION_HINT=f32)

    def validate(self) -> None:
        if self.replicas is not None and self.replicas < 1:
            raise XVDeployError(f"--replicas must be at least 1 or 'auto', got {self.replicas}")
        if self.max_replicas is not None and self.max_replicas < 1:
            raise XVDeployError(f"--max-replicas must be at least 1, got {self.max_replicas}")
        if self.max_batch < 1:
            raise XVDeployError(f"--max-batch must be at least 1 (1: no batching), got {self.max_batch}")
        if not 0 <= self.batch_wait_ms <= 10_000:
            raise XVDeployError(f"--batch-wait-ms must be between 0 and 10000, got {self.batch_wait_ms}")
        if self.device not in DEVICES:
            raise XVDeployError(f"--device {self.device!r}: expected one of {', '.join(DEVICES)}")
        if self.cpus_per_replica <= 0 or (self.device == "cuda" and self.gpus_per_replica <= 0):
            raise XVDeployError("--cpus-per-replica and --gpus-per-replica must be positive")
        if self.threads is not None and self.threads < 1:
            raise XVDeployError(f"--threads must be at least 1, got {self.threads}")
        if self.max_request_mb <= 0:
            raise XVDeployError(f"--max-request-mb must be positive, got {self.max_request_mb}")
        if not 1 <= self.port <= 65535:
            raise XVDeployError(f"--port must be 1 to 65535, got {self.port}")
        if not self.route_prefix.startswith("/"):
            raise XVDeployError(f"--route-prefix must start with '/', got {self.route_prefix!r}")
        if self.runtime not in RUNTIMES:
            raise XVDeployError(f"--runtime {self.runtime!r}: expected one of {', '.join(RUNTIMES)}")
        if self.runtime == "openvino" and self.device != "cpu":
            raise XVDeployError("--runtime openvino runs OpenVINO's CPU plugin; use --device cpu (or onnxruntime's "
                                "CUDA provider with --runtime onnxruntime)")
        if self.proxy_location not in PROXY_LOCATIONS:
            raise XVDeployError(f"--proxy-location {self.proxy_location!r}: expected one of {', '.join(PROXY_LOCATIONS)}")

    @property
    def max_ongoing_requests(self) -> int:
        """Requests a replica holds at once: enough to fill the next batch while one runs."""
        return max(16, 2 * self.max_batch)


def parse_replicas(text: str) -> int | None:
    """``"2"`` → 2, ``"auto"`` → ``None`` (autoscaling)."""
    if text.strip().lower() == "auto":
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise XVDeployError(f"--replicas {text!r}: expected a positive number of replicas or 'auto'")
    return int(text)
