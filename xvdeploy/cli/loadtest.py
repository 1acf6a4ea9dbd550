"""``xvdeploy loadtest URL --model MODEL.onnx``: bounded load on loopback with parity on every answer."""
from __future__ import annotations

import json
from pathlib import Path

import click

from xvdeploy.cli.options import SHAPE_HELP, overwrite_option, parse_input_shape


def _levels(_ctx, _param, text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        levels = ()
    if not levels:
        raise click.BadParameter(f"{text!r}: expected comma-separated positive numbers, e.g. 1,4,16,32")
    return levels


@click.command("loadtest")
@click.argument("url")
@click.option("--model", "model", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="The ONNX file the server serves: every answer is compared with it run locally.")
@click.option("--concurrency", default="1,4,16,32", metavar="N,N,…", callback=_levels,
              help="Concurrency levels, one after another.")
@click.option("--requests", type=click.IntRange(1, 1_000_000), default=200, help="Requests per level.")
@click.option("--time-limit", type=click.FloatRange(0, 3600, min_open=True), default=30.0,
              help="Seconds per level at most (requests not sent by then are left out).")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Samples per request  [default: 1, or the N of "
              "--input-shape]")
@click.option("--input-shape", default=None, metavar=SHAPE_HELP,
              help="One sample's shape (N: the batch)  [default: the model's example shape]")
@click.option("--timeout", type=click.FloatRange(0, 600, min_open=True), default=30.0, help="Seconds per request.")
@click.option("--kill-replica-at", type=click.IntRange(min=0), default=None, metavar="N",
              help="Kill one replica (SIGKILL) once N requests have completed, and report which requests failed "
                   "(those in flight at the kill, and any others) and when its replacement was ready.")
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the report as JSON.")
@overwrite_option
def loadtest(url: str, model: Path, concurrency: tuple[int, ...], requests: int, time_limit: float, batch: int | None,
             input_shape: str | None, timeout: float, kill_replica_at: int | None, json_path: Path | None,
             overwrite: bool) -> None:
    """Send bounded load to URL (an 'xvdeploy serve' application on 127.0.0.1) and check every answer.

    Per concurrency level: a fixed number of requests (stopping at the time
    limit), throughput, latency p50/p90/p99, errors, and parity of every
    output against MODEL run locally in onnxruntime (rel-L2 ≤ 1e-5). Only
    loopback URLs are accepted. Exit 1 on a parity failure or an error that a
    replica kill does not explain.
    """
    from xvdeploy.errors import ParityError, XVDeployError
    from xvdeploy.fileio import check_output_path, write_text_atomic
    from xvdeploy.format import format_table
    from xvdeploy.serve.loadtest import LoadSpec, parse_url, run_loadtest

    parse_url(url)  # refuse other addresses before anything else
    if json_path is not None:
        check_output_path(json_path, model, suffixes=(".json",), exists_ok=overwrite)
    shape_batch, shape = parse_input_shape(input_shape) if input_shape else (None, None)
    if shape_batch is not None and batch is not None and shape_batch != batch:
        raise XVDeployError(f"--input-shape {input_shape} says batch {shape_batch} but --batch says {batch}; "
                            "give the batch in one of them")
    spec = LoadSpec(concurrency=concurrency, requests=requests, time_limit_s=time_limit,
                    batch=batch or shape_batch or 1, input_shape=shape,
                    timeout_s=timeout, kill_replica_at=kill_replica_at)
    report = run_loadtest(url, model, spec, progress=lambda line: click.echo(line, err=True))
    rows = []
    for level in report.levels:
        s = level.summary()
        ms = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        rows.append([s["concurrency"], f"{s['ok']}/{s['requested']}", s["errors"], s["parity_failures"],
                     f"{s['throughput_rps']:.1f}", ms(s["p50_ms"]), ms(s["p90_ms"]), ms(s["p99_ms"]),
                     "-" if s["max_rel_l2"] is None else f"{s['max_rel_l2']:.1e}", s["replicas_seen"]])
    click.echo(f"{report.metadata.get('model')} at {url}: input {'x'.join(map(str, report.input_shape))}, "
               f"server batch ≤ {report.metadata.get('max_batch')}")
    click.echo(format_table(["conc", "ok", "errors", "parity fail", "req/s", "p50 ms", "p90 ms", "p99 ms",
                             "max rel-L2", "replicas"], rows))
    if report.kill is not None:
        k = report.kill
        replaced = (f"replacement {k.replacement} ready {k.replaced_after_s:.1f} s after the kill"
                    if k.replaced_after_s is not None else "no replacement replica answered within 60 s")
        click.echo(f"killed replica {k.replica} (pid {k.pid}) at {k.at_s:.1f} s after {k.after_requests} requests: "
                   f"{k.in_flight_failures} in-flight requests failed, {k.other_failures} other failures; {replaced}")
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
        click.echo(f"wrote {json_path}")
    if report.parity_failures or report.unexplained_errors:
        raise ParityError(f"{report.parity_failures} answers differ from the local onnxruntime run "
                          f"(rel-L2 > 1e-5) and {report.unexplained_errors} requests failed"
                          + (" beyond those in flight at the replica kill" if report.kill else ""))
