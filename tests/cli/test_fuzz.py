"""Fuzzing the CLI (issue 12): option values and checkpoint metadata drawn by hypothesis.

Whatever is drawn, a command must end within a time limit (no hang), with exit
code 0, 1 or 2 and no traceback; an exit 2 is one ``error:`` line; and no file
may be left behind: neither in the output folder (a failed command writes
nothing, a good one only what it was asked to) nor in the temporary folder
(``xvdeploy-*`` folders, ``*.tmp`` files).

Every case runs in-process through click's CliRunner under a SIGALRM time
limit, on the tiny digits model. The number of examples is bounded per test
(``XV_FUZZ_EXAMPLES`` scales it) so the whole file stays around a minute in
CI; the CI profile derandomizes, so CI always runs the same cases.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.cli.conftest import time_limit
from xvdeploy.cli import main

#: seconds one command may take before it counts as a hang (a digits bench row takes well under one)
CASE_LIMIT = 120
_SCALE = float(os.environ.get("XV_FUZZ_EXAMPLES", "1"))


def _bounded(n: int):
    """The active profile's settings, with at most ``n`` (× XV_FUZZ_EXAMPLES) examples for this test."""
    return settings(settings.default, max_examples=max(1, min(settings.default.max_examples, int(n * _SCALE))),
                    deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Robustness, not speed, is fuzzed: one torch thread keeps the 449-image digits rows quick on 2 cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, digits_checkpoint):
    """Files the cases may name: the digits checkpoint, its ONNX export, a junk file, a folder."""
    folder = tmp_path_factory.mktemp("fuzz-inputs")
    shutil.copy(digits_checkpoint, folder / "digits.safetensors")
    result = CliRunner().invoke(main, ["export", str(folder / "digits.safetensors"), "-o", str(folder / "digits.onnx"),
                                       "--no-compare", "--quiet"])
    assert result.exit_code == 0, result.output
    (folder / "junk.pt").write_bytes(b"\x80\x04junk")
    (folder / "imgs").mkdir()
    return folder


def _run_case(args: list[str], out: Path, expected_outputs: set[str]) -> None:
    """Run one command and check the issue's promises (see the module docstring)."""
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-tmp-"))
    before_out = {p.name for p in out.iterdir()}
    saved = tempfile.tempdir
    tempfile.tempdir = str(tmp)  # where the commands' TemporaryDirectory and mkstemp go
    try:
        with time_limit(CASE_LIMIT, "xvdeploy " + " ".join(args)):
            result = CliRunner().invoke(main, args)
    finally:
        tempfile.tempdir = saved
    try:
        shown = f"xvdeploy {' '.join(args)}\n{result.output}"
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            f"{shown}\n{type(result.exception).__name__}: {result.exception}"
        assert "Traceback" not in result.output, shown
        assert result.exit_code in (0, 1, 2), shown
        event(f"{args[0]} exit {result.exit_code}")  # pytest --hypothesis-show-statistics: how often each ends how
        if result.exit_code == 2:
            lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("xvdeploy: ")]
            assert len(lines) == 1 and lines[0].startswith("error: "), shown
        new = {p.name for p in out.iterdir()} - before_out
        allowed = expected_outputs if result.exit_code == 0 else set()
        assert new <= allowed, f"{shown}\nleft behind in the output folder: {sorted(new - allowed)}"
        assert not any(name.endswith(".tmp") for name in new), shown
        ours = [p for p in tmp.rglob("*") if p.name.startswith("xvdeploy") or p.suffix in (".tmp", ".onnx")]
        assert not ours, f"{shown}\nleft behind in the temporary folder: {ours}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for name in {p.name for p in out.iterdir()} - before_out:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()


def _option(name: str, valid, invalid=()) -> st.SearchStrategy[list[str]]:
    """``[]`` (option left out, about half the time) or ``[name, value]``, the value drawn from the ``valid``
    ones or from all of them: bad values are the point, but a case with one bad value among good ones
    tests more than a case that fails on its first option."""
    pick = lambda values: st.sampled_from(list(values)).map(lambda v: [name, v])  # noqa: E731
    return st.one_of(st.just([]), st.just([]), pick(valid or invalid), pick([*valid, *invalid]))


SHAPES = ["1x8x8", "2x1x8x8", "1x1x8x8", "1x8", "0x8x8", "1x1x1x8x8", "axbxc", "1x100000x100000", "3x8x8",
          "1×8×8", "", "1x4x4", "1x1x2x2", "-1x8x8", "1x8x8x", "99999999999999999999x8x8"]
NAMES = ["digits.safetensors", "digits.onnx", "junk.pt", "imgs", "xv_digits", "resnet9", "", "no/such.safetensors",
         "a" * 300, "a" * 300 + ".safetensors"]


@st.composite
def bench_args(draw):
    """``xvdeploy bench`` with a drawn model and option values (valid ones kept small and short)."""
    args = ["bench"]
    model = draw(st.sampled_from([None, *NAMES]))
    if model is not None:
        args.append(model)
    for name, valid, invalid in (
        ("--backends", ["torch", "onnxruntime", "torch,torch", "torch,onnxruntime"],
         ["tvm", "", ",", "TORCH", "tensorrt", "torch,,onnxruntime"]),
        ("--batch", ["1", "2", "1,2", "2,2"], ["0", "-1", "x", "1,,2", "99999999999999999999", "1e3"]),
        ("--input-shape", SHAPES[:3], SHAPES[3:]),
        ("--precision", ["fp32", "bf16", "fp32,fp32"], ["fp16", "tf32", "fp8", ""]),
        ("--device", ["cpu", "cpu,cpu"], ["cuda", "tpu", ""]),
        ("--warmup", ["0", "1", "0.01s", "0s"], ["infs", "nans", "-1", "1e999s", "abc", "s", "99999999999"]),
        ("--duration", ["0.05"], ["0", "inf", "nan", "-1", "1e999", "x", "1e9"]),
        ("--data", ["random", "digits"], ["images:imgs", "images", "foo", "images:", "images:no/such"]),
        ("--seed", ["0", "-1"], ["x", "99999999999999999999999"]),
        ("--threads", ["1"], ["0", "x", "99999999999"]),
        ("--json", ["r.json"], ["r.txt", "no/such/r.json", "a" * 300 + ".json", "digits.onnx"]),
        ("--markdown", ["r.md"], ["r.json"]),
        ("--model", [], ["tests.cli.failing_factory:build", "tests.cli.exiting_factory:build", "nope:x", "x"]),
        ("--arch", ["xv_digits"], ["resnet9"]),
    ):
        args += draw(_option(name, valid, invalid))
    iters = draw(_option("--iters", ["1", "2"], ["0", "-5", "inf", "x"]))
    if not iters and "--duration" not in args:
        iters = ["--iters", "1"]  # the time-based default (3 s a row) is valid but slow for a fuzz case
    args += iters
    args += draw(st.lists(st.sampled_from(["--quiet", "--overwrite", "--cuda-graphs", "--pssa-plugin",
                                           "--debug-nothing"]), max_size=2, unique=True))
    return args


@st.composite
def fold_export_args(draw):
    command = draw(st.sampled_from(["fold", "export"]))
    args = [command, draw(st.sampled_from(["digits.safetensors", "xv_digits", *NAMES[:6]]))]
    suffix = ".safetensors" if command == "fold" else ".onnx"
    args += ["-o", draw(st.sampled_from([f"out{suffix}", f"out{suffix}", "a" * 240 + suffix, "out.txt", "out",
                                         f"no/such/out{suffix}", f"exists{suffix}", "a" * 300 + suffix,
                                         "digits.safetensors", ""]))]
    args += draw(_option("--input-shape", SHAPES[:3], SHAPES[3:]))
    args += draw(_option("--arch", ["xv_digits"], ["resnet9", "resnet50"]))
    args += draw(_option("--model", [], ["tests.cli.failing_factory:build", "tests.cli.exiting_factory:build",
                                         "tests.cli.argv_factory:build", "nope:x"]))
    flags = ["--quiet", "--overwrite"]
    if command == "fold":
        args += draw(_option("--seed", ["0", "3"], ["x", "-3", "99999999999999999999999"]))
        flags.append("--no-check")
    else:
        args += draw(_option("--opset", ["19", "20"], ["18", "7", "100", "x"]))
        args += draw(_option("--dynamic", ["batch", "height,width"], ["foo", ""]))
        args += draw(_option("--report", ["r.json"], ["r.onnx", "a" * 300 + ".json"]))
        args.append("--no-compare")  # the plain-conv census doubles the export time; tested elsewhere
        flags += ["--static", "--no-fold", "--no-check", "--pssa-plugin", "--force", "--simplify"]
    args += draw(st.lists(st.sampled_from(flags), max_size=3, unique=True))
    return args


def _expected(args: list[str]) -> set[str]:
    """Names a successful command may write into the output folder."""
    names = set()
    for flag in ("-o", "--json", "--markdown", "--report"):
        if flag in args:
            names.add(Path(args[args.index(flag) + 1]).name)
    return names


def _prepare(workdir: Path, inputs: Path) -> None:
    for p in inputs.iterdir():
        target = workdir / p.name
        if not target.exists():
            (shutil.copytree if p.is_dir() else shutil.copy)(p, target)
    for name in ("exists.safetensors", "exists.onnx"):
        (workdir / name).write_bytes(b"an earlier result")


def _options_case(kind: str, inputs, args, tmp_path_factory, monkeypatch) -> Path:
    """One example in a folder of its own holding the inputs; returns the folder."""
    workdir = tmp_path_factory.mktemp(kind)
    _prepare(workdir, inputs)
    monkeypatch.chdir(workdir)
    _run_case(args, workdir, _expected(args))
    return workdir


@_bounded(40)
@given(args=bench_args())
def test_fuzz_bench_options(inputs, args, tmp_path_factory, monkeypatch):
    _options_case("bench", inputs, args, tmp_path_factory, monkeypatch)


@_bounded(40)
@given(args=fold_export_args())
def test_fuzz_fold_and_export_options(inputs, args, tmp_path_factory, monkeypatch):
    workdir = _options_case("fold", inputs, args, tmp_path_factory, monkeypatch)
    assert (workdir / "exists.onnx").read_bytes() == b"an earlier result" or "--overwrite" in args


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10, 10 ** 6) | st.floats(allow_nan=True)
                           | st.text(max_size=8),
                           lambda children: st.lists(children, max_size=3)
                           | st.dictionaries(st.sampled_from(["width", "num_classes", "depth", "placement", "x"]),
                                             children, max_size=3),
                           max_leaves=6)
META = st.fixed_dictionaries({}, optional={
    "format": st.sampled_from(["xvdeploy", "other", ""]),
    "arch": st.sampled_from(["xv_digits", "resnet50", "xv_resnet34_s3", "vgg", "", "../../etc/passwd"]) | st.text(max_size=12),
    "arch_kwargs": JSON_VALUES.map(json.dumps) | st.text(max_size=20) | st.sampled_from(["[" * 5000, "9" * 5000]),
    "form": st.sampled_from(["train", "folded", "", "half"]),
    "xvdeploy_version": st.text(max_size=8),
    "note": st.text(max_size=20),
})


@_bounded(80)
@given(meta=META, command=st.sampled_from(["fold", "inspect", "bench"]))
def test_fuzz_checkpoint_metadata(meta, command, tmp_path_factory, monkeypatch, digits_checkpoint):
    """A crafted checkpoint: digits weights under metadata drawn by hypothesis (metadata is untrusted input)."""
    from safetensors.torch import load_file, save_file

    workdir = tmp_path_factory.mktemp("meta")
    monkeypatch.chdir(workdir)
    save_file(load_file(str(digits_checkpoint)), str(workdir / "crafted.safetensors"), metadata=meta)
    args = {"fold": ["fold", "crafted.safetensors", "-o", "out.safetensors", "--quiet"],
            "inspect": ["inspect", "crafted.safetensors"],
            "bench": ["bench", "crafted.safetensors", "--backends", "torch", "--iters", "1", "--data", "random",
                      "--quiet"]}[command]
    _run_case(args, workdir, {"out.safetensors"})
