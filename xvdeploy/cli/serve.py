"""``xvdeploy serve MODEL.onnx``: the model behind Ray Serve on 127.0.0.1 until Ctrl-C."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import click

from xvdeploy.serve.options import DEFAULT_PORT, DEVICES, PROXY_LOCATIONS, RUNTIMES, ServeOptions, parse_replicas


@click.command("serve")
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--port", type=int, default=DEFAULT_PORT, help="HTTP port on 127.0.0.1.")
@click.option("--replicas", default="1", metavar="N|auto",
              help="Replicas, or 'auto' (autoscaling from 1 to --max-replicas on the requests in flight).")
@click.option("--max-replicas", type=click.IntRange(min=1), default=None,
              help="Autoscaling limit  [default: what the cluster's CPUs (GPUs) hold]")
@click.option("--max-batch", type=click.IntRange(min=1), default=8,
              help="Most samples per dynamic batch and per request (1: no batching).")
@click.option("--batch-wait-ms", type=click.FloatRange(0, 10_000), default=5.0,
              help="How long a batch waits to fill up (milliseconds).")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="onnxruntime",
              help="What runs the model in every replica: onnxruntime, or OpenVINO's CPU plugin (fp32; the openvino "
                   "extra).")
@click.option("--device", type=click.Choice(DEVICES), default="cpu",
              help="onnxruntime's CPU or CUDA provider in every replica (OpenVINO: cpu).")
@click.option("--cpus-per-replica", type=click.FloatRange(min=0, min_open=True), default=1.0)
@click.option("--gpus-per-replica", type=click.FloatRange(min=0, min_open=True), default=1.0,
              help="With --device cuda (fractions share a GPU).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="onnxruntime intra-op threads per replica  [default: --cpus-per-replica]")
@click.option("--max-request-mb", type=click.FloatRange(min=0, min_open=True), default=16.0,
              help="Largest request body.")
@click.option("--name", default=None, help="Ray Serve application name  [default: the file's stem]")
@click.option("--route-prefix", default="/", help="Where the routes start (/healthz, /metadata, /predict below it).")
@click.option("--proxy-location", type=click.Choice(PROXY_LOCATIONS), default="EveryNode",
              help="Ray Serve's HTTP proxies (127.0.0.1 on each node): on every node of the cluster or the head only.")
@click.option("--address", default=None, metavar="ADDR",
              help="Join a running Ray cluster ('auto' or HOST:PORT from 'ray start --head') instead of "
                   "starting a local one.")
@click.option("--verbose", is_flag=True, help="Show Ray's and the replicas' logs.")
def serve(model: Path, port: int, replicas: str, max_replicas: int | None, max_batch: int, batch_wait_ms: float,
          runtime: str, device: str, cpus_per_replica: float, gpus_per_replica: float, threads: int | None,
          max_request_mb: float, name: str | None, route_prefix: str, proxy_location: str, address: str | None,
          verbose: bool) -> None:
    """Serve MODEL (an ONNX file) over HTTP with Ray Serve: dynamic batching, replicas, a health route.

    Routes: GET /healthz, GET /metadata, POST /predict (an application/x-npy
    body — numpy.save output — or JSON {"inputs": [...]} for small inputs;
    the answer comes in the same form). A wrong shape, dtype or size gets
    HTTP 400 with the reason. Listens on 127.0.0.1 only; Ctrl-C stops.
    """
    from xvdeploy.serve.app import start, stop

    options = ServeOptions(replicas=parse_replicas(replicas), max_replicas=max_replicas, max_batch=max_batch,
                           batch_wait_ms=batch_wait_ms, device=device, cpus_per_replica=cpus_per_replica,
                           gpus_per_replica=gpus_per_replica, threads=threads, max_request_mb=max_request_mb,
                           port=port, name=name, route_prefix=route_prefix, proxy_location=proxy_location,
                           runtime=runtime)
    click.echo(f"starting Ray Serve for {model} ({'a local Ray instance' if address is None else address}) …",
               err=True)
    server = start(model, options, address=address, verbose=verbose)

    def _terminate(_signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        count = "autoscaling 1.." + str(max_replicas or "cluster") if options.replicas is None else str(options.replicas)
        click.echo(f"serving {model} as '{server.name}': {count} replica(s), {runtime} on {device}, max batch "
                   f"{server.info['max_batch']}, batch wait {batch_wait_ms:g} ms")
        click.echo(f"  POST {server.predict_url}   (application/x-npy or application/json)")
        click.echo(f"  GET  {server.url}healthz   GET  {server.url}metadata")
        click.echo("Ctrl-C stops", err=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop(server)
        click.echo("stopped", err=True)
