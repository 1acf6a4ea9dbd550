#!/usr/bin/env python
"""Runtime compatibility matrix: zoo networks × export forms × runtimes, written to docs/runtimes.md.

    python benchmarks/runtimes.py                                   # every zoo network (hours on 2 cores)
    python benchmarks/runtimes.py --models xv_digits,xv_resnet50_s3  # a subset; earlier results are kept
    python benchmarks/runtimes.py --forms portable --runtimes openvino,mnn
    python benchmarks/runtimes.py --venv /opt/rt-venv                # where the runtimes are installed
    python benchmarks/runtimes.py --render                          # the document again from stored results
    python benchmarks/runtimes.py --pins ci                         # print what .ci/run installs, nothing else

The runtimes are installed at the versions pinned in :data:`PINS` into a
separate virtual environment (``--venv``, default
``/tmp/xvdeploy-runtimes-venv``), so the project's own dependencies stay
small: the venv sees this environment's packages (torch, onnx, onnxruntime)
through a ``.pth`` file and adds openvino, onnx2torch (``--no-deps``: its
metadata pulls torchvision, which has no CPU build here; see
xvdeploy/export/runtimes.py for how it imports without it), MNN and LiteRT.
onnx2tf pins its own tensorflow, onnx, onnxruntime and numpy, so it gets a
venv of its own inside that one (``<venv>/onnx2tf``), whose ``bin/`` (with
``onnxsim``, which onnx2tf calls through PATH) is put first on PATH.
TensorRT-RTX's parser is used where this environment has it (the ``rtx``
extra; not installed by the script).

Then the script runs itself in that venv (``--worker``): for each network and
each export form (``pad``: opset 19, Pad mode=wrap; ``portable``: the default
export, opset 17, Slice+Concat; ``static``: the default export with
``--static``) it exports with :func:`xvdeploy.export_onnx` and runs the file in
every runtime of :mod:`xvdeploy.export.runtimes` on one seeded input against
PyTorch (float32, the folded form). Dynamic exports run at a small shape
(batch 1, H and W at most 64 where the network allows: onnx.reference
convolves in numpy); the static form is exported at that same shape. Results
are appended to ``<venv>/results.jsonl`` (one line per network, form and
runtime; a later run replaces the lines it measures again), and
docs/runtimes.md is rendered from all stored results, naming every network
not measured in them.

The script's module level imports only the standard library, so ``--pins``
(what .ci/run asks) answers at once.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: import this checkout's benchmarks/ and xvdeploy/
    sys.path.insert(0, str(ROOT))


#: pip requirements per runtime, installed into the runtimes venv (onnx2tf into its own, see the docstring)
PINS = {
    "openvino": ["openvino==2026.4.1"],
    "onnx2torch": ["--no-deps", "onnx2torch==1.5.15"],
    "mnn": ["mnn==3.6.1"],
    # newest for Python 3.10/3.11 (2.x needs 3.12); it pins tensorflow 2.19, onnx 1.19.1, onnxruntime 1.23.0,
    # numpy 1.26.4, onnxsim 0.4.36 and ai-edge-litert 2.1.0 (the LiteRT interpreter the tflite check runs)
    "onnx2tf": ["onnx2tf==1.29.24"],
}
#: what .ci/run installs with --no-deps for the xv_digits matrix test (each is one small wheel; openvino comes
#: from the test extra, onnxruntime and onnx.reference from the onnx extra)
CI_PINS = ["onnx2torch==1.5.15", "mnn==3.6.1"]
FORMS = ("pad", "portable", "static")
DEFAULT_VENV = Path("/tmp/xvdeploy-runtimes-venv")
DOC = ROOT / "docs" / "runtimes.md"
CHECK_MAX_SIZE = 64


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=None, help="comma-separated zoo names [default: every zoo network]")
    p.add_argument("--forms", default=",".join(FORMS), help=f"some of {','.join(FORMS)}")
    p.add_argument("--runtimes", default="all", help="some of the runtimes of xvdeploy/export/runtimes.py, or all")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"the runtimes venv [default: {DEFAULT_VENV}]")
    p.add_argument("--no-install", action="store_true", help="use the runtimes this Python has; install nothing")
    p.add_argument("-o", "--output", type=Path, default=DOC, help="the document to write [default: docs/runtimes.md]")
    p.add_argument("--render", action="store_true", help="only render the document from the stored results")
    p.add_argument("--pins", choices=["ci"], default=None, help="print the pinned requirements .ci/run installs")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- the venvs ----------------------------------------------------------------------------------------------


def _pip(python: Path, args: list[str]) -> float | None:
    """``python -m pip install -q ARGS``; the seconds it took, or None if it found everything installed already."""
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    before = set(site.glob("*.dist-info"))
    start = time.perf_counter()
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip() and "Location" not in ln]
        raise SystemExit(f"pip install {' '.join(args)} failed: {lines[-1] if lines else proc.returncode}")
    took = time.perf_counter() - start
    return took if set(site.glob("*.dist-info")) - before else None


def _venv_python(folder: Path) -> Path:
    return folder / "bin" / "python"


def setup_venvs(venv: Path) -> dict:
    """Create (or reuse) the runtimes venv and the onnx2tf venv; returns install seconds per runtime."""
    seconds = {}
    if not _venv_python(venv).is_file():
        log(f"creating {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = Path(subprocess.run([str(_venv_python(venv)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    here = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "xvdeploy-project-env.pth").write_text("\n".join(here) + "\n")  # torch, onnx, onnxruntime, ... of this env
    for name in ("openvino", "onnx2torch", "mnn"):
        log(f"pip install {' '.join(PINS[name])}")
        seconds[name] = _pip(_venv_python(venv), PINS[name])
    tf = venv / "onnx2tf"
    if not _venv_python(tf).is_file():
        log(f"creating {tf}")
        subprocess.run([sys.executable, "-m", "venv", str(tf)], check=True)
    log(f"pip install {' '.join(PINS['onnx2tf'])} (into its own venv: it pins tensorflow, onnx, numpy)")
    seconds["onnx2tf"] = _pip(_venv_python(tf), PINS["onnx2tf"])
    seconds.update(fresh_install_times())
    return seconds


def fresh_install_times() -> dict:
    """Seconds the CI pins and openvino take to install into an empty venv (what .ci/run pays)."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="xvdeploy-pip-") as tmp:
        subprocess.run([sys.executable, "-m", "venv", tmp], check=True)
        log(f"timing a fresh install of {' '.join(CI_PINS)} and {PINS['openvino'][0]}")
        out["fresh: " + " ".join(CI_PINS) + " (--no-deps)"] = _pip(_venv_python(Path(tmp)), ["--no-deps", *CI_PINS])
        out[f"fresh: {PINS['openvino'][0]} (with its dependencies)"] = _pip(_venv_python(Path(tmp)), PINS["openvino"])
    return out


# -- the worker (runs inside the runtimes venv) -------------------------------------------------------------


def check_shape(model, name: str) -> tuple[int, ...]:
    from xvdeploy import zoo
    from xvdeploy.export.onnx_export import small_shape, static_axes

    shape = (1, *zoo.input_shape(name))
    dynamic, _ = static_axes(model, ("batch", "height", "width"))
    index = {"batch": 0, "height": 2, "width": 3}
    from xvdeploy.export import onnx_export

    saved = onnx_export.REFERENCE_MAX_SIZE
    onnx_export.REFERENCE_MAX_SIZE = CHECK_MAX_SIZE
    try:
        return small_shape(model, shape, {index[a]: a for a in dynamic})
    finally:
        onnx_export.REFERENCE_MAX_SIZE = saved


def worker(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    import xvdeploy
    from xvdeploy import export_onnx, fold, zoo
    from xvdeploy.loading import load_model_source
    from xvdeploy.export.onnx_export import DEFAULT_OPSET
    from xvdeploy.export.runtimes import check_runtimes, resolve_runtimes

    if not Path(xvdeploy.__file__).resolve().is_relative_to(ROOT):
        raise SystemExit(f"the worker imported xvdeploy from {xvdeploy.__file__}, not from {ROOT}")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    names = args.models.split(",") if args.models else zoo.names()
    runtimes = resolve_runtimes(args.runtimes.split(","))
    out = args.venv / "results.jsonl"
    for name in names:
        model, _ = load_model_source(name, None, None)  # what `xvdeploy export NAME` exports
        model = fold(model).float().eval()
        shape = check_shape(model, name)
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        for form in args.forms.split(","):
            opts = dict(opset=19 if form == "pad" else DEFAULT_OPSET, dynamic=form != "static",
                        portable=False if form == "pad" else None)
            rows = []
            with tempfile.TemporaryDirectory(prefix="xvdeploy-matrix-") as tmp:
                path = Path(tmp) / f"{name}-{form}.onnx"
                log(f"{name} {form}: export ({'x'.join(map(str, shape))})")
                start = time.perf_counter()
                try:
                    report = export_onnx(model, path, shape, check=False, compare_plain=False, **opts)
                except Exception as exc:  # an export that fails is a result too
                    from xvdeploy.export.runtimes import complaint

                    rows = [dict(runtime=r, status="not exported", reason=complaint(str(exc))) for r in runtimes]
                    report = None
                export_s = time.perf_counter() - start
                if report is not None:
                    for r in check_runtimes(path, runtimes, x, ref, progress=lambda rt: log(f"{name} {form}: {rt}")):
                        rows.append(r.to_dict())
            for row in rows:
                row.update(model=name, form=form, shape=list(shape), export_s=round(export_s, 1),
                           opset=report.opset if report else opts["opset"], nodes=report.nodes if report else None,
                           portable=report.portable if report else None, date=_dt.date.today().isoformat())
            _store(out, rows)
            for row in rows:
                log(f"  {row['runtime']}: {row['status']} {row.get('rel_l2') or ''} {row.get('reason') or ''}"[:200])


def _store(path: Path, rows: list[dict]) -> None:
    """Append ``rows``, dropping earlier lines for the same (model, form, runtime)."""
    keys = {(r["model"], r["form"], r["runtime"]) for r in rows}
    old = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []
    kept = [r for r in old if (r["model"], r["form"], r["runtime"]) not in keys]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept + rows))


# -- the document -------------------------------------------------------------------------------------------

FORM_TEXT = {
    "pad": "opset 19, cyclic pad as `Pad(mode=wrap)` (`--opset 19`), dynamic batch/height/width",
    "portable": "the default export: opset 17, cyclic pad as Slice+Concat, dynamic batch/height/width",
    "static": "the default export with `--static` (every shape fixed)",
}


def _cell(r: dict, notes: list[str]) -> str:
    if r["status"] == "ran":
        return f"ran {r['rel_l2']:.1e}"
    if r["status"] == "parsed":
        return "parsed"
    if r["status"] == "skipped":
        return "skipped"
    text = r.get("reason") or r["status"]
    if text not in notes:
        notes.append(text)
    return f"**{r['status']}** ({notes.index(text) + 1})"


def render(results: list[dict], meta: dict) -> str:
    from benchmarks.docblock import md_table
    from xvdeploy import zoo
    from xvdeploy.export.runtimes import ADAPTERS, RUNTIME_TOLERANCE

    runtimes = [r for r in ADAPTERS]
    measured = sorted({r["model"] for r in results}, key=lambda n: zoo.names().index(n) if n in zoo.names() else 99)
    versions = {}
    for r in results:
        if r.get("version"):
            versions[r["runtime"]] = r["version"]
    dates = sorted({r["date"] for r in results})
    lines = [
        "# Runtime compatibility",
        "",
        "<!-- generated by benchmarks/runtimes.py — edit the script, not this file -->",
        "",
        "Which runtimes take the ONNX files `xvdeploy export` writes, and how close their output is to PyTorch's.",
        "Each cell is one exported file run once in that runtime on one seeded random-normal input (batch 1; for the",
        "dynamic forms at a small H×W — at most 64 px where the network allows it, because onnx.reference convolves",
        "in numpy; the static form is exported at that same shape): `ran` with the relative L2 error against the",
        "folded PyTorch model in float32, `parsed` (TensorRT-RTX: its parser ran; its engines need an RTX-class GPU),",
        f"**failed** with the runtime's own first line of complaint (numbered below; a run off by more than "
        f"{RUNTIME_TOLERANCE:g} rel-L2 is a failure too), or `skipped` (not installed here).",
        "",
        "Regenerate with `python benchmarks/runtimes.py` (it installs the pinned runtimes into a venv of its own);",
        "`xvdeploy export --check-runtimes LIST` runs the same check on one file.",
        "",
        "| | |",
        "| --- | --- |",
        f"| machine | {meta.get('cpu', '?')}, {meta.get('cpu_count', '?')} logical CPUs, {meta.get('os', '?')}, no GPU |",
        f"| measured | {', '.join(dates) or '-'} (rendered {meta.get('date', '?')}) |",
        f"| project | xvdeploy {meta.get('xvdeploy', '?')}, torch {meta.get('torch', '?')}, onnx {meta.get('onnx', '?')}, "
        f"python {meta.get('python', '?')} |",
        "",
        "## Runtimes",
        "",
    ]
    rows = []
    installs = meta.get("install_s", {})
    for rt in runtimes:
        how = {"onnxruntime": "project (onnx extra)", "onnx.reference": "project (onnx extra)",
               "openvino": f"`{' '.join(PINS['openvino'])}`", "onnx2torch": f"`pip install {' '.join(PINS['onnx2torch'])}`",
               "mnn": f"`{' '.join(PINS['mnn'])}`",
               "tflite": f"`{' '.join(PINS['onnx2tf'])}` in its own venv (with its LiteRT and onnxsim)",
               "tensorrt_rtx": "the project's `rtx` extra, where installed (not by the script)"}[rt]
        secs = {"openvino": "openvino", "onnx2torch": "onnx2torch", "mnn": "mnn", "tflite": "onnx2tf"}.get(rt)
        secs = secs if secs in installs else None
        took = "-" if secs not in installs else "already present" if installs[secs] is None else \
            f"{installs[secs]:.0f} s"
        rows.append([f"`{rt}`", versions.get(rt, "not installed"), how, took])
    lines += [md_table(["runtime", "version", "installed as", "pip install (the script's last run)"], rows, "llll"),
              ""]
    fresh = "; ".join(f"{k[len('fresh: '):]} {v:.0f} s" for k, v in installs.items()
                      if k.startswith("fresh: ") and v is not None)
    lines += [f"CI (`.ci/run`) runs this matrix for `xv_digits` only (tests/export/test_runtimes.py), on the runtimes that "
              f"install in under a minute: onnxruntime and onnx.reference (onnx extra), openvino (test extra) and "
              f"`pip install --no-deps {' '.join(CI_PINS)}`"
              + (f" (timed into an empty venv by the script's last run, with whatever pip's cache held: {fresh})"
                 if fresh else "")
              + "; TensorRT-RTX's parser runs there too (the test extra's `rtx`); onnx2tf (it pins tensorflow, ~1 GB "
              "of wheels) is left to this script.", ""]
    lines += _summary(results, runtimes)
    for form in FORMS:
        part = [r for r in results if r["form"] == form]
        if not part:
            continue
        notes: list[str] = []
        table = []
        for name in measured:
            cells = {r["runtime"]: r for r in part if r["model"] == name}
            if not cells:
                continue
            any_row = next(iter(cells.values()))
            info = f"{any_row['nodes']} nodes, {'x'.join(map(str, any_row['shape']))}" if any_row.get("nodes") else \
                "x".join(map(str, any_row["shape"]))
            table.append([f"`{name}`", info] + [_cell(cells[rt], notes) if rt in cells else "not run" for rt in runtimes])
        lines += [f"## Form `{form}`: {FORM_TEXT[form]}", "",
                  md_table(["network", "graph, input"] + [f"`{rt}`" for rt in runtimes], table, "ll" + "l" * len(runtimes)),
                  ""]
        lines += [f"{i + 1}. {n.replace('|', '/')}" for i, n in enumerate(notes)] + ([""] if notes else [])
    missing = [n for n in zoo.names() if n not in measured]
    lines += ["## Not measured", ""]
    lines += [("Every zoo network was measured." if not missing else
               "These zoo networks were not run in the stored results (the full matrix takes hours on 2 cores): "
               + ", ".join(f"`{n}`" for n in missing) + ".")]
    not_run = sorted({(r["model"], r["form"]) for r in results} ^
                     {(m, f) for m in measured for f in FORMS})
    if not_run:
        lines += ["", "Forms not run for a measured network: " + ", ".join(f"`{m}` {f}" for m, f in not_run) + "."]
    return "\n".join(lines) + "\n"


def _summary(results: list[dict], runtimes: list[str]) -> list[str]:
    """Per form: the runtimes that ran every network measured in it, and those that failed one."""
    from benchmarks.docblock import md_table

    rows = []
    for form in FORMS:
        part = [r for r in results if r["form"] == form]
        if not part:
            continue
        nets = sorted({r["model"] for r in part})
        everywhere, failing = [], []
        for rt in runtimes:
            mine = [r for r in part if r["runtime"] == rt]
            if not mine or all(r["status"] == "skipped" for r in mine):
                continue
            bad = sorted({r["model"] for r in mine if r["status"] not in ("ran", "parsed", "skipped")})
            tried = len({r["model"] for r in mine if r["status"] != "skipped"})
            of = f" of the {tried} it was run on" if tried < len(nets) else ""
            (failing if bad else everywhere).append(
                f"`{rt}`" + (f" ({len(bad)}/{tried})" if bad else (f" (the {tried} it was run on)" if of else "")))
        rows.append([f"`{form}`", len(nets), ", ".join(everywhere) or "-", ", ".join(failing) or "-"])
    default = next((r for r in rows if r[0] == "`portable`"), None)
    if default is None:
        verdict = "The default form (`portable`) was not measured in the stored results."
    elif default[3] == "-":
        verdict = ("In the default form (`portable`) every installed runtime ran (TensorRT-RTX: parsed) every "
                   "network it was run on (some cells below are `not run`: see the tables).")
    else:
        verdict = f"In the default form (`portable`) some runtimes failed: {default[3]} (see its table)."
    return ["## Summary", "", verdict, "",
            md_table(["form", "networks", "ran (or parsed) every one", "failed some (how many)"], rows, "lrll"), ""]


def _meta(install_s: dict) -> dict:
    import importlib.metadata as md

    from xvdeploy.bench.environment import environment

    env = environment()
    out = {k: env[k] for k in ("cpu", "cpu_count", "os", "python", "date")}
    for pkg in ("xvdeploy", "torch", "onnx"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    out["install_s"] = install_s
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.pins == "ci":
        print(" ".join(CI_PINS))
        return
    if args.worker:
        worker(args)
        return
    meta_path = args.venv / "install.json"
    install_s = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if not args.render:
        python = Path(sys.executable)
        env = dict(os.environ)
        if not args.no_install:
            args.venv.mkdir(parents=True, exist_ok=True)
            install_s = setup_venvs(args.venv)
            meta_path.write_text(json.dumps(install_s))
            python = _venv_python(args.venv)
            tf_bin = args.venv / "onnx2tf" / "bin"
            env["PATH"] = f"{tf_bin}{os.pathsep}{env.get('PATH', '')}"
            env["XVDEPLOY_ONNX2TF"] = str(tf_bin / "onnx2tf")
        args.venv.mkdir(parents=True, exist_ok=True)
        env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
        cmd = [str(python), str(Path(__file__).resolve()), "--worker", "--forms", args.forms, "--runtimes",
               args.runtimes, "--venv", str(args.venv)] + (["--models", args.models] if args.models else [])
        subprocess.run(cmd, env=env, check=True)
    results_path = args.venv / "results.jsonl"
    results = [json.loads(ln) for ln in results_path.read_text().splitlines() if ln.strip()] if results_path.exists() else []
    from benchmarks.docblock import write_text  # (imports xvdeploy and torch: not for --pins)

    write_text(args.output, render(results, _meta(install_s)))
    log(f"wrote {args.output} ({len(results)} results)")


if __name__ == "__main__":
    main()
