"""Build a TensorRT engine from an ONNX file (what ``xvdeploy build`` runs).

Follows NVIDIA's TensorRT 10/11 Python API (samples/python, Polygraphy's
``backend/trt/loader.py``), which TensorRT-RTX 1.x shares: ``Builder(logger)`` →
``create_network(flags)`` (explicit batch is the only mode since 10.0; 11 and
RTX networks are always strongly typed) → ``OnnxParser.parse_from_file`` →
``IBuilderConfig`` (``set_memory_pool_limit`` with ``MemoryPoolType.WORKSPACE``,
``builder_optimization_level``, optimization profiles, a timing cache, RTX's
target compute capabilities) → ``build_serialized_network``. What differs
between the flavours is in :mod:`xvdeploy.trt.flavour`.

Precision: ``fp32`` clears ``BuilderFlag.TF32`` (on by default), ``tf32`` sets
it. ``fp16`` sets ``BuilderFlag.FP16`` on TensorRT 10; TensorRT 11 and
TensorRT-RTX have no such flag, so there the graph itself is converted to
float16 (:mod:`xvdeploy.export.fp16`). ``int8`` builds a Q/DQ graph (explicit
quantization, e.g. from ``xvdeploy quantize``) strongly typed; TensorRT-RTX
builds it too but its INT8 is weight-only GEMM, which the build says.

Everything the user can get wrong is checked before TensorRT is imported, so
input errors come first and the build is never started for a bad request.
"""
from __future__ import annotations

import dataclasses
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from xvdeploy._lazy import available, require
from xvdeploy._version import __version__
from xvdeploy.errors import XVDeployError
from xvdeploy.export.fp16 import convert_model_to_fp16
from xvdeploy.export.onnxfile import read_header
from xvdeploy.fileio import atomic_path, check_output_path
from xvdeploy.trt import require_flavour
from xvdeploy.trt.flavour import (
    Flavour,
    apply_compute_capabilities,
    check_compute_capabilities,
    network_flags,
    precision_notes,
    strongly_typed_only,
    timing_cache_note,
)
from xvdeploy.trt.report import network_report
from xvdeploy.trt.settings import BuildSettings
from xvdeploy.trt.runtime import current_platform, last_errors, make_logger, register_pssa_plugin
from xvdeploy.trt.shapes import DeclaredShape, ShapeRange, check_profiles, format_shape, profiles_as_json
from xvdeploy.trt.sidecar import EngineRecord, file_sha256, sidecar_path

#: ONNX operators that make a graph explicitly quantized
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})

Progress = Callable[[str], None]


class OnnxParseError(XVDeployError):
    """TensorRT's ONNX parser rejected the model; ``errors`` holds one line per parser error."""

    def __init__(self, onnx_path: Path, errors: list[str], label: str = "TensorRT") -> None:
        shown = errors[0] if errors else "no error was reported"
        more = f" (and {len(errors) - 1} more, above)" if len(errors) > 1 else ""
        super().__init__(f"{label} could not parse {onnx_path}: {shown}{more}")
        self.errors = errors


# -- checks that need no TensorRT ---------------------------------------------------------------------
def read_onnx_inputs(onnx_path: Path) -> dict[str, DeclaredShape]:
    """Graph inputs (initializers excluded) and their dimensions, ``-1`` where dynamic."""
    return dict(read_header(onnx_path).inputs)


def check_build_request(onnx_path: Path, plan_path: Path, settings: BuildSettings,
                        timing_cache: Path | None = None) -> dict[str, DeclaredShape] | None:
    """Validate a build without TensorRT; returns the model's inputs (``None`` if onnx is not installed)."""
    if not onnx_path.exists():
        raise XVDeployError(f"model file {onnx_path} does not exist; "
                            "expected an .onnx file such as 'xvdeploy export' writes")
    if not onnx_path.is_file():
        raise XVDeployError(f"model path {onnx_path} is not a file; expected an .onnx file")
    settings.validate()
    check_output_path(plan_path, onnx_path, suffixes=(".plan", ".engine", ".trt"))
    if sidecar_path(plan_path).resolve() == onnx_path.resolve():
        raise XVDeployError(f"the engine's sidecar {sidecar_path(plan_path)} would overwrite the model; "
                            "choose another -o")
    if timing_cache is not None:
        if timing_cache.is_dir():
            raise XVDeployError(f"--timing-cache {timing_cache} is a directory; expected a file path")
        if not timing_cache.parent.is_dir():
            raise XVDeployError(f"the folder of --timing-cache {timing_cache} does not exist; create it first")
        if timing_cache.resolve() in (onnx_path.resolve(), plan_path.resolve()):
            raise XVDeployError(f"--timing-cache {timing_cache} is the model or the engine; choose another file")
    if not available("onnx"):
        if onnx_path.suffix.lower() != ".onnx":
            raise XVDeployError(f"{onnx_path} does not end in .onnx; expected an ONNX model")
        return None
    inputs = read_onnx_inputs(onnx_path)
    check_profiles(settings.profiles or default_profiles(onnx_path, inputs), inputs)
    op_types = read_header(onnx_path).op_types
    if settings.precision == "int8" and not op_types & QDQ_OPS:
        raise XVDeployError(f"--precision int8 builds an explicitly quantized graph, and {onnx_path} has no "
                            "QuantizeLinear/DequantizeLinear nodes; expected a Q/DQ ONNX file such as "
                            "'xvdeploy quantize' writes")
    if settings.precision == "int8" and 2 in read_header(onnx_path).quantized_types:  # TensorProto.UINT8
        raise XVDeployError(f"{onnx_path} quantizes activations to uint8 (onnxruntime's CPU layout), which TensorRT's "
                            "explicit quantization does not read; expected signed int8 with zero point 0, e.g. "
                            "'xvdeploy quantize --activations int8' (the default)")
    if settings.precision == "fp16" and op_types & QDQ_OPS:
        raise XVDeployError(f"{onnx_path} is a Q/DQ (quantized) graph; build it with --precision int8")
    return inputs


#: the largest batch of the default profile of an 'xvdeploy export' graph
DEFAULT_MAX_BATCH = 8


def default_profiles(onnx_path: Path, inputs: dict[str, DeclaredShape]) -> tuple:
    """One profile for a graph written by ``xvdeploy export`` when no shapes are given.

    Its example shape (metadata ``xvdeploy.input_shape``) is the opt shape, the
    batch ranges over 1..max(8, N), height and width stay at the example's
    (like trtexec, give --min/--opt/--max-shape for other ranges). Other graphs
    get no default: their dynamic inputs need explicit shapes.
    """
    opt = read_header(onnx_path).example_shape()
    if not opt or len(inputs) != 1:
        return ()
    name, declared = next(iter(inputs.items()))
    if len(opt) != len(declared):
        return ()
    lo = tuple(1 if (axis == 0 and d < 0) else o for axis, (d, o) in enumerate(zip(declared, opt)))
    hi = tuple(max(DEFAULT_MAX_BATCH, o) if (axis == 0 and d < 0) else o for axis, (d, o) in enumerate(zip(declared, opt)))
    return ({name: ShapeRange(lo, opt, hi)},)


# -- TensorRT -----------------------------------------------------------------------------------------
def parser_errors(parser: Any) -> list[str]:
    """One line per ``OnnxParser`` error: node name, operator, description, error code."""
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        name = _optional(err, "node_name")
        op = _optional(err, "node_operator")
        index = err.node()
        where = f"node {name!r}" if name else (f"node #{index}" if index >= 0 else "model")
        if op:
            where += f" ({op})"
        code = err.code()
        desc = " ".join(str(err.desc()).split())
        lines.append(f"{where}: {desc} [{getattr(code, 'name', code)}]")
    return lines


def _optional(obj: Any, method: str) -> str:
    fn = getattr(obj, method, None)  # node_name()/node_operator() exist from TensorRT 10
    try:
        return str(fn() or "") if fn is not None else ""
    except Exception:
        return ""


def make_progress_monitor(trt: ModuleType, report: Progress):
    """A ``trt.IProgressMonitor`` that reports the top two levels of build phases; Ctrl-C cancels the build."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class Monitor(base):
        def __init__(self) -> None:
            base.__init__(self)
            self.depth: dict[str, int] = {}
            self.cancelled = False

        def phase_start(self, phase_name, parent_phase, num_steps):
            try:
                depth = 0 if parent_phase is None else self.depth.get(parent_phase, 0) + 1
                self.depth[phase_name] = depth
                if depth <= 1:
                    steps = f" ({num_steps} steps)" if num_steps > 1 else ""
                    report(f"{'  ' * (depth + 1)}{phase_name}{steps}")
            except KeyboardInterrupt:  # phase_start cannot cancel; step_complete will
                self.cancelled = True

        def phase_finish(self, phase_name):
            self.depth.pop(phase_name, None)

        def step_complete(self, phase_name, step):
            try:
                return not self.cancelled
            except KeyboardInterrupt:  # Ctrl-C arrives in a callback: ask TensorRT to stop
                self.cancelled = True
                return False

    return Monitor()


def _configure(trt: ModuleType, builder: Any, network: Any, settings: BuildSettings, strongly_typed: bool):
    config = builder.create_builder_config()
    if settings.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mib << 20)
    if settings.builder_optimization_level is not None:
        config.builder_optimization_level = settings.builder_optimization_level
    tf32 = getattr(trt.BuilderFlag, "TF32", None)  # not on 11.x's removal list; guarded all the same
    if settings.precision in ("fp32", "int8") and tf32 is not None:  # int8: the float layers stay fp32
        config.clear_flag(tf32)
    elif settings.precision == "tf32":
        if tf32 is None:
            raise XVDeployError(f"TensorRT {trt.__version__} has no BuilderFlag.TF32; build with --precision fp32")
        config.set_flag(tf32)
    elif settings.precision == "fp16" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    network_inputs = {network.get_input(i).name: tuple(network.get_input(i).shape) for i in range(network.num_inputs)}
    check_profiles(settings.profiles, network_inputs)
    for i, profile in enumerate(settings.profiles):
        opt_profile = builder.create_optimization_profile()
        for name, rng in profile.items():
            opt_profile.set_shape(name, rng.min, rng.opt, rng.max)
        if config.add_optimization_profile(opt_profile) < 0:
            raise XVDeployError(f"TensorRT rejected optimization profile {i} "
                                f"({', '.join(f'{n}: {format_shape(r.opt)}' for n, r in profile.items())})")
    return config


def _attach_timing_cache(flavour: Flavour, config: Any, logger: Any, path: Path | None, say: Progress):
    if path is None:
        return None
    note = timing_cache_note(flavour)
    if note:  # TensorRT-RTX: nothing to gain, and reading one back needs a GPU
        say(f"  {note}; {path} is neither read nor written")
        return None
    blob = path.read_bytes() if path.is_file() else b""
    seen = len(logger.warnings)
    cache = config.create_timing_cache(blob)
    unreadable = bool(blob) and any("timing cache" in w.lower() for w in logger.warnings[seen:])
    if cache is None or unreadable or not config.set_timing_cache(cache, ignore_mismatch=False):
        say(f"  timing cache {path} could not be used (corrupt, or written by another TensorRT version or GPU); "
            "starting a new one, saved there after the build")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    elif blob:
        say(f"  using timing cache {path}")
    return cache


def _save_timing_cache(config: Any, path: Path, say: Progress) -> None:
    try:
        serialized = config.get_timing_cache().serialize()
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(serialized)
    except (OSError, AttributeError) as exc:
        say(f"  could not save the timing cache to {path}: {exc}")


def _parse(parser: Any, logger: Any, onnx_path: Path, fp16_graph: bool, say: Progress, label: str) -> None:
    if fp16_graph:
        onnx = require("onnx", "FP16 conversion")
        say(f"converting the ONNX graph to float16 ({label} networks are strongly typed)")
        model = convert_model_to_fp16(onnx.load(str(onnx_path)))
        # the path lets the parser resolve external weights relative to the original file
        ok = parser.parse(model.SerializeToString(), str(onnx_path))
    else:
        ok = parser.parse_from_file(str(onnx_path))
    errors = parser_errors(parser)
    if not ok and not errors:
        errors = [last_errors(logger) or "the parser failed without reporting an error"]
    if not ok or errors:
        for line in errors:
            say(f"  {line}")
        raise OnnxParseError(onnx_path, errors, label)


def _where(flavour: Flavour, here, targets: tuple[str, ...]) -> str:
    if flavour.is_rtx:
        gpu = "without a GPU (CPU-only build)" if not here.compute_capability else f"on {here.gpu_name}"
        return f"{gpu}, for compute capability {', '.join(targets)}"
    return f"for {here.gpu_name} (compute {here.compute_capability})"


def build_engine(
    onnx_path: str | os.PathLike,
    plan_path: str | os.PathLike,
    settings: BuildSettings = BuildSettings(),
    *,
    timing_cache: str | os.PathLike | None = None,
    verbose: bool = False,
    progress: Progress | None = None,
) -> EngineRecord:
    """Build ``onnx_path`` into the TensorRT plan ``plan_path`` and its sidecar ``<plan>.json``.

    ``settings.flavour`` picks TensorRT or TensorRT-RTX (default: the installed
    one, TensorRT first). The plan and the sidecar are written atomically
    (temporary files, then ``os.replace``); nothing is written if any step
    fails. ``progress`` receives one line per build stage and TensorRT
    warnings (all log lines with ``verbose``). The returned record (also the
    sidecar) holds what the parser made of the graph (``network_report``:
    layer census, PSSA steps, plugin layers; see :mod:`xvdeploy.trt.report`).
    """
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    cache_path = Path(timing_cache) if timing_cache is not None else None
    settings = dataclasses.replace(settings, profiles=tuple(settings.profiles),
                                   compute_capabilities=tuple(settings.compute_capabilities))
    inputs = check_build_request(onnx_path, plan_path, settings, cache_path)
    if not settings.profiles and inputs is not None:
        settings = dataclasses.replace(settings, profiles=default_profiles(onnx_path, inputs))
    say: Progress = progress or (lambda _line: None)

    flavour, trt = require_flavour(settings.flavour, build=True)
    settings = dataclasses.replace(settings, flavour=flavour.name)
    targets = check_compute_capabilities(flavour, trt, settings.compute_capabilities)
    here = current_platform(flavour, trt)
    strongly_typed = strongly_typed_only(flavour, trt)
    flags = network_flags(flavour, trt, settings.precision)
    if settings.pssa_plugin:
        flags |= register_pssa_plugin(flavour, trt)
    logger = make_logger(trt, verbose, progress)
    if hasattr(trt, "init_libnvinfer_plugins"):
        trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)

    say(f"parsing {onnx_path} with {here.label} {_where(flavour, here, targets or (here.compute_capability,))}")
    parse_start = time.perf_counter()
    _parse(parser, logger, onnx_path, settings.precision == "fp16" and strongly_typed, say, flavour.label)
    parse_seconds = time.perf_counter() - parse_start
    report = network_report(trt, network, list(read_header(onnx_path).pssa_steps) if inputs is not None else [])
    notes = precision_notes(flavour, settings.precision)
    for note in notes:
        say(f"note: {note}")
    config = _configure(trt, builder, network, settings, strongly_typed)
    apply_compute_capabilities(trt, config, targets, explicit=bool(settings.compute_capabilities))
    cache = _attach_timing_cache(flavour, config, logger, cache_path, say)
    monitor = make_progress_monitor(trt, say) if progress is not None else None
    if monitor is not None:
        config.progress_monitor = monitor

    say(f"building the {settings.precision} engine; this can take minutes")
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if monitor is not None and monitor.cancelled:
        raise KeyboardInterrupt
    if serialized is None:
        why = last_errors(logger) or "no reason was logged; rerun with --verbose"
        raise XVDeployError(f"{flavour.label} could not build an engine from {onnx_path}: {why}")

    record = EngineRecord(
        tensorrt_version=here.tensorrt_version,
        gpu_name=here.gpu_name,
        compute_capability=here.compute_capability,
        precision=settings.precision,
        profiles=profiles_as_json(settings.profiles),
        onnx_sha256=file_sha256(onnx_path),
        onnx_file=str(onnx_path),
        build_time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        build_seconds=round(seconds, 3),
        parse_seconds=round(parse_seconds, 3),
        builder_optimization_level=settings.builder_optimization_level,
        workspace_mib=settings.workspace_mib,
        pssa_plugin=settings.pssa_plugin,
        strongly_typed=strongly_typed or network_flags(flavour, trt, settings.precision) != 0,
        xvdeploy_version=__version__,
        flavour=flavour.name,
        compute_capabilities=list(targets or (here.compute_capability,)),
        built_without_gpu=not here.compute_capability,
        network_report=report,
        notes=notes,
    )
    # both files or neither: the plan and its sidecar are renamed into place only after both are written
    with atomic_path(sidecar_path(plan_path)) as side_tmp, atomic_path(plan_path) as plan_tmp:
        with open(plan_tmp, "wb") as f:
            f.write(serialized)
        side_tmp.write_text(record.to_json(), encoding="utf-8")
    if cache is not None and cache_path is not None:
        _save_timing_cache(config, cache_path, say)
    return record
