"""``xvdeploy loadtest URL``: bounded load on a served model, on loopback only, with parity on every answer.

For each concurrency level (default 1, 4, 16, 32) a fixed number of
requests goes out from that many client threads (one keep-alive connection
each), stopping early at the time limit. Every answer's output is compared
with a local onnxruntime run of the same ONNX file on the same input (the
file's SHA-256 must be the one the server reports), with the fp32 rel-L2
tolerance of ``xvdeploy bench``. Reported per level: throughput, latency
p50/p90/p99, errors and parity failures.

``kill_replica_at=N`` kills one replica (SIGKILL to the pid it reports on
``/metadata``, after checking that pid is a Ray Serve replica on this
machine) once N requests have completed; failures are then split into those
in flight at the kill and any others, and the replacement replica's first
answer is timed.
"""
from __future__ import annotations

import http.client
import ipaddress
import json
import os
import signal
import socket
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from xvdeploy.errors import XVDeployError, first_line
from xvdeploy.export.onnxfile import ort_session
from xvdeploy.metrics import TOLERANCES, latency_stats, parity
from xvdeploy.serve.wire import NPY, decode_npy, encode_npy
from xvdeploy.trt.sidecar import file_sha256

DEFAULT_CONCURRENCY = (1, 4, 16, 32)
TOLERANCE = TOLERANCES["fp32"]


@dataclass(frozen=True)
class Target:
    """Where the served application answers (``http://127.0.0.1:PORT/prefix/``)."""

    host: str
    port: int
    prefix: str  # ends in "/"

    def path(self, route: str) -> str:
        return self.prefix + route


def parse_url(url: str) -> Target:
    """The application's base URL; anything but an ``http`` URL on a loopback address is refused."""
    parts = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme != "http":
        raise XVDeployError(f"URL {url!r}: expected http://127.0.0.1:PORT/ (plain HTTP on loopback)")
    host = parts.hostname or ""
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise XVDeployError(f"URL {url!r} is not on this machine's loopback; xvdeploy loadtest sends load only to "
                            "127.0.0.0/8, ::1 or localhost")
    prefix = parts.path or "/"
    for route in ("predict", "metadata", "healthz"):
        if prefix.rstrip("/").endswith("/" + route):
            prefix = prefix.rstrip("/")[: -len(route)]
    if not prefix.endswith("/"):
        prefix += "/"
    return Target(host, parts.port or 80, prefix)


class Client:
    """One keep-alive HTTP connection (reopened after an error)."""

    def __init__(self, target: Target, timeout: float) -> None:
        self.target, self.timeout = target, timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, route: str, body: bytes | None = None,
                content_type: str = NPY) -> tuple[int, dict, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.target.host, self.target.port, timeout=self.timeout)
        headers = {"Content-Type": content_type} if body is not None else {}
        try:
            self.conn.request(method, self.target.path(route), body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except BaseException:
            self.close()
            raise
        if resp.getheader("connection", "").lower() == "close":
            self.close()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def get_json(self, route: str) -> dict:
        status, _, data = self.request("GET", route)
        if status != 200:
            raise XVDeployError(f"GET {self.target.path(route)} answered HTTP {status}: {data[:200]!r}")
        return json.loads(data)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Sample:
    """One request: when it ran, how it ended."""

    start: float
    end: float
    ok: bool
    parity_ok: bool | None = None
    rel_l2: float | None = None
    replica: str | None = None
    error: str | None = None
    node: str | None = None  # the Ray node of the replica that answered


@dataclass
class Level:
    """The results of one concurrency level."""

    concurrency: int
    requested: int
    samples: list[Sample] = field(default_factory=list)
    wall_s: float = 0.0
    batch: int = 1

    @property
    def completed(self) -> int:
        return len(self.samples)

    @property
    def errors(self) -> int:
        return sum(not s.ok for s in self.samples)

    @property
    def parity_failures(self) -> int:
        return sum(s.ok and not s.parity_ok for s in self.samples)

    def summary(self) -> dict:
        ok = [s for s in self.samples if s.ok]
        lat = latency_stats([(s.end - s.start) * 1e3 for s in ok])
        rel = [s.rel_l2 for s in ok if s.rel_l2 is not None]
        return {
            "concurrency": self.concurrency, "requested": self.requested, "completed": self.completed,
            "ok": len(ok), "errors": self.errors, "parity_failures": self.parity_failures,
            "throughput_rps": len(ok) / self.wall_s if self.wall_s > 0 else 0.0,
            "samples_per_s": len(ok) * self.batch / self.wall_s if self.wall_s > 0 else 0.0,
            "p50_ms": lat["p50"], "p90_ms": lat["p90"], "p99_ms": lat["p99"], "wall_s": self.wall_s,
            "max_rel_l2": max(rel) if rel else None,
            "replicas_seen": len({s.replica for s in ok if s.replica}),
            "nodes_seen": len({s.node for s in ok if s.node}),
            "error_kinds": sorted({s.error for s in self.samples if s.error})[:5],
        }


@dataclass
class KillReport:
    """What happened around a replica kill."""

    replica: str
    pid: int
    at_s: float  # since the run began
    after_requests: int
    in_flight_failures: int = 0
    other_failures: int = 0
    replaced_after_s: float | None = None  # until a replica started after the kill was ready
    replacement: str | None = None
    epoch: float = 0.0  # time.time() at the kill (replicas report their start on this clock)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LoadSpec:
    """A load test's plan."""

    concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY
    requests: int = 200  # per level
    time_limit_s: float = 30.0  # per level
    batch: int = 1  # samples per request
    input_shape: tuple[int, ...] | None = None  # C×H×W per sample; default: the model's example
    distinct_inputs: int = 32
    timeout_s: float = 30.0  # per request
    kill_replica_at: int | None = None  # completed requests (counted over the whole run)
    seed: int = 0

    def validate(self) -> None:
        if not self.concurrency or any(c < 1 or c > 256 for c in self.concurrency):
            raise XVDeployError(f"--concurrency {self.concurrency}: expected levels between 1 and 256")
        if self.requests < 1 or self.requests > 1_000_000:
            raise XVDeployError(f"--requests must be 1 to 1000000 per level, got {self.requests}")
        if not 0 < self.time_limit_s <= 3600:
            raise XVDeployError(f"--time-limit must be more than 0 and at most 3600 s, got {self.time_limit_s}")
        if self.batch < 1:
            raise XVDeployError(f"--batch must be at least 1, got {self.batch}")
        if self.kill_replica_at is not None and self.kill_replica_at < 0:
            raise XVDeployError(f"--kill-replica-at must be 0 or more, got {self.kill_replica_at}")


@dataclass
class LoadReport:
    url: str
    model: str
    sha256: str
    input_shape: tuple[int, ...]
    levels: list[Level]
    kill: KillReport | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(level.errors for level in self.levels)

    @property
    def parity_failures(self) -> int:
        return sum(level.parity_failures for level in self.levels)

    @property
    def unexplained_errors(self) -> int:
        """Errors that a replica kill does not account for (all errors without a kill)."""
        return self.errors - (self.kill.in_flight_failures if self.kill else 0)

    def to_dict(self) -> dict:
        return {"url": self.url, "model": self.model, "sha256": self.sha256, "input_shape": list(self.input_shape),
                "tolerance_rel_l2": TOLERANCE, "levels": [lv.summary() for lv in self.levels],
                "errors": self.errors, "parity_failures": self.parity_failures,
                "kill": self.kill.to_dict() if self.kill else None,
                "server": {k: v for k, v in self.metadata.items() if k != "rule"}}


def _example_shape(meta: dict, given: tuple[int, ...] | None, batch: int) -> tuple[int, ...]:
    if given is not None:
        return (batch, *given)
    example = meta.get("example_shape")
    if example:
        dims = tuple(int(v) for v in example.split("x"))
        return (batch, *dims[1:])
    dims = meta["inputs"][0]["dims"]
    if any(d < 0 for d in dims[1:]):
        raise XVDeployError("the served model has dynamic dimensions and no example shape; give --input-shape CxHxW")
    return (batch, *dims[1:])


def _is_serve_replica(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"ServeReplica" in cmdline


def run_loadtest(url: str, model: str | os.PathLike, spec: LoadSpec = LoadSpec(), progress=None) -> LoadReport:
    """Load ``url`` (an ``xvdeploy serve`` application on loopback) and check every answer against ``model``."""
    spec.validate()
    target = parse_url(url)
    model = Path(model)
    if not model.is_file():
        raise XVDeployError(f"model file {model} does not exist; give the ONNX file the server serves (--model)")
    say = progress or (lambda _line: None)
    probe = Client(target, spec.timeout_s)
    try:
        meta = probe.get_json("metadata")
    except (OSError, http.client.HTTPException) as exc:
        raise XVDeployError(f"nothing answers at {url} ({first_line(exc)}); start the server with: "
                            f"xvdeploy serve {model}") from None
    finally:
        probe.close()
    digest = file_sha256(model)
    if meta.get("sha256") != digest:
        raise XVDeployError(f"the server serves {meta.get('file')} (SHA-256 {str(meta.get('sha256'))[:12]}…), not "
                            f"{model} ({digest[:12]}…); parity needs the same file: give it with --model")
    if spec.batch > int(meta.get("max_batch", spec.batch)):
        raise XVDeployError(f"--batch {spec.batch} is above the server's limit of {meta['max_batch']} per request")
    shape = _example_shape(meta, spec.input_shape, spec.batch)

    rng = np.random.default_rng(spec.seed)
    inputs = [rng.standard_normal(shape).astype(np.float32) for _ in range(spec.distinct_inputs)]
    bodies = [encode_npy(x) for x in inputs]
    local = ort_session(model, threads=1)
    refs = [local.run(None, {local.get_inputs()[0].name: x})[0] for x in inputs]
    del local
    say(f"reference outputs: {len(refs)} inputs of {'x'.join(map(str, shape))} run locally in onnxruntime")

    t0 = time.perf_counter()
    state = {"done": 0, "kill": None}
    lock = threading.Lock()
    kill_event = threading.Event()

    def kill_one() -> None:
        client = Client(target, spec.timeout_s)
        try:
            info = client.get_json("metadata")
        finally:
            client.close()
        pid = int(info["pid"])
        if info.get("host") != socket.gethostname() or not _is_serve_replica(pid):
            raise XVDeployError(f"replica {info.get('replica')} (pid {pid} on {info.get('host')}) is not a Ray Serve "
                                "replica process on this machine; --kill-replica-at works on a local cluster only")
        with lock:
            state["kill"] = KillReport(str(info["replica"]), pid, time.perf_counter() - t0, state["done"],
                                       epoch=time.time())
        os.kill(pid, signal.SIGKILL)
        say(f"killed replica {info['replica']} (pid {pid}) after {state['done']} requests")
        kill_event.set()

    levels: list[Level] = []
    for concurrency in spec.concurrency:
        level = Level(concurrency, spec.requests, batch=spec.batch)
        levels.append(level)
        counter = iter(range(spec.requests))
        start = time.perf_counter()
        deadline = start + spec.time_limit_s

        def worker() -> None:
            client = Client(target, spec.timeout_s)
            try:
                while time.perf_counter() < deadline:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    k = i % len(inputs)
                    begin = time.perf_counter()
                    try:
                        status, headers, data = client.request("POST", "predict", bodies[k])
                    except (OSError, http.client.HTTPException) as exc:
                        sample = Sample(begin, time.perf_counter(), False, error=type(exc).__name__)
                    else:
                        end = time.perf_counter()
                        if status != 200:
                            sample = Sample(begin, end, False, error=f"HTTP {status}")
                        else:
                            y = decode_npy(data)
                            ok = y.shape == refs[k].shape
                            rel = parity(y, refs[k])["rel_l2"] if ok else float("inf")
                            sample = Sample(begin, end, True, bool(ok and rel <= TOLERANCE), rel,
                                            headers.get("x-xvdeploy-replica"), node=headers.get("x-xvdeploy-node"))
                    with lock:
                        level.samples.append(sample)
                        state["done"] += 1
                        trigger = (spec.kill_replica_at is not None and state["done"] >= spec.kill_replica_at
                                   and not state.get("kill_started"))
                        if trigger:
                            state["kill_started"] = True
                    if trigger:
                        threading.Thread(target=_guard(kill_one, state), daemon=True).start()
            finally:
                client.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(spec.time_limit_s + spec.timeout_s + 5)
        level.wall_s = time.perf_counter() - start
        s = level.summary()
        say(f"concurrency {concurrency}: {s['ok']}/{s['requested']} ok, {s['errors']} errors, "
            f"{s['parity_failures']} parity failures, {s['throughput_rps']:.1f} req/s")

    kill = state["kill"]
    if spec.kill_replica_at is not None:
        if state.get("kill_error"):
            raise XVDeployError(f"the replica kill failed: {state['kill_error']}")
        if kill is None:
            say("the run ended before the kill point; no replica was killed")
        else:
            kill_event.wait(5)
            _classify(kill, levels, t0, target, spec.timeout_s)
    return LoadReport(url, str(model), digest, shape, levels, kill, meta)


def _guard(fn, state):
    def run() -> None:
        try:
            fn()
        except Exception as exc:
            state["kill_error"] = first_line(exc)
    return run


def _classify(kill: KillReport, levels: list[Level], t0: float, target: Target, timeout_s: float,
              wait_s: float = 60.0) -> None:
    """Split failures into in flight at the kill and others; find the replacement replica (bounded wait)."""
    at = t0 + kill.at_s
    for s in (s for lv in levels for s in lv.samples):
        if not s.ok:
            if s.start <= at <= s.end:
                kill.in_flight_failures += 1
            else:
                kill.other_failures += 1
    client = Client(target, timeout_s)
    stop = time.perf_counter() + wait_s
    try:
        while time.perf_counter() < stop:
            try:
                info = client.get_json("metadata")
            except (OSError, http.client.HTTPException, XVDeployError, ValueError):
                info = {}
            if info.get("started", 0) > kill.epoch:
                kill.replacement = str(info["replica"])
                kill.replaced_after_s = float(info["ready"]) - kill.epoch
                return
            time.sleep(0.1)
    finally:
        client.close()
