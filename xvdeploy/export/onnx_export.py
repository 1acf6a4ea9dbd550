"""ONNX export with standard ops, dynamic batch/height/width, and a built-in parity gate.

``export_onnx`` runs ``torch.onnx.export(dynamo=True)`` (natively at opset
18; older opsets are written by :mod:`xvdeploy.export.opset`), simplifies the
shape arithmetic (:mod:`xvdeploy.export.simplify`), then checks what it wrote
before renaming it into place: ``onnx.checker`` (full check), onnxruntime
parity against PyTorch at two shapes inside the dynamic ranges and
``onnx.reference`` parity at a small one, the op census (and its difference
against the same network with plain convolutions) and a static TensorRT
compatibility check. The cyclic pad of the PSSA step is ``Pad(mode=wrap)``
at opset ≥ 19 or Slice+Concat (``portable``; always below 19): the default,
opset 17 and portable, is what every runtime measured in docs/runtimes.md
takes (docs/design.md, Export).
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xvdeploy._lazy import require
from xvdeploy.errors import ParityError, XVDeployError, first_line
from xvdeploy.export.concat_slots import carry_x_through_product
from xvdeploy.export.census import OpCount, census, census_diff, non_standard, plain_counterpart
from xvdeploy.export.trt_compat import check_trt_compat
from xvdeploy.export.onnxfile import META_INPUT_SHAPE, ort_session
from xvdeploy.export.opset import default_opset, downgrade, max_opset
from xvdeploy.export.runtimes import resolve_runtimes, run_runtimes
from xvdeploy.export.simplify import simplify_shapes
from xvdeploy.fileio import atomic_path, check_output_path
from xvdeploy.progress import step
from xvdeploy.folding import use_pssa_plugin
from xvdeploy.folding.check import rel_l2
from xvdeploy.format import format_table
from xvdeploy.ops.pssa import portable_wrap_pad
from xvdeploy.ops.xvolution import XVolution, XVolutionFolded
from xvdeploy.plugins.onnx_node import custom_translation_table

MIN_OPSET = 13
WRAP_OPSET = 19  # Pad mode="wrap"; below it the cyclic pad is always Slice+Concat
NATIVE_OPSET = 18  # what torch.onnx's dynamo exporter writes; older opsets are converted down from it
#: the default, by measurement (docs/runtimes.md): onnx2torch has no converter for ReduceMean-18 or Split-18
#: (so ≤ 17), the Swins need LayerNormalization-17 (so ≥ 17); in the portable form, which OpenVINO, onnx2torch,
#: MNN and onnx2tf need (they refuse Pad mode=wrap); its cost in onnxruntime: docs/benchmarks.md
DEFAULT_OPSET = 17
IR_VERSION = 10  # onnxruntime rejects newer IR versions than it knows
AXIS_NAMES = {0: "batch", 2: "height", 3: "width"}
INPUT_NAME, OUTPUT_NAME = "input", "output"
PARITY_TOLERANCE = 1e-5
#: the largest H and W the onnx.reference parity check runs at (numpy convolutions: seconds at 224 px)
REFERENCE_MAX_SIZE = 32


@dataclass
class ParityResult:
    shape: tuple[int, ...]
    rel_l2: float
    max_abs: float
    ok: bool
    runtime: str = "onnxruntime"


@dataclass
class ExportReport:
    path: str
    input_shape: tuple[int, ...]
    dynamic_axes: list[str]
    opset: int
    pssa_plugin: bool
    nodes: int
    census: list[OpCount]
    portable: bool | None = None  # the cyclic pad as Slice+Concat (True) or Pad(mode=wrap); None: the graph has none
    plain_census: list[OpCount] | None = None
    extra_ops: list[str] | None = None
    missing_ops: list[str] | None = None
    parity: list[ParityResult] = field(default_factory=list)
    trt: dict | None = None
    trt_lines: list[str] = field(default_factory=list)
    written: bool = False
    forced: bool = False
    notes: list[str] = field(default_factory=list)
    runtimes: list = field(default_factory=list)  # RuntimeResult of each --check-runtimes entry

    @property
    def standard_only(self) -> bool:
        return not non_standard(self.census)

    @property
    def parity_ok(self) -> bool:
        return all(p.ok for p in self.parity)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["census"] = [c.to_dict() for c in self.census]
        d["plain_census"] = [c.to_dict() for c in self.plain_census] if self.plain_census is not None else None
        d["standard_only"] = self.standard_only
        d["parity_ok"] = self.parity_ok
        d["runtimes"] = [r.to_dict() for r in self.runtimes]
        d.pop("trt_lines")
        return d

    def format_lines(self) -> list[str]:
        dyn = ", ".join(self.dynamic_axes) or "none (static)"
        pad = {True: "Slice+Concat (portable)", False: "Pad mode=wrap", None: "none"}[self.portable]
        if self.pssa_plugin:
            pad = "inside the PSSA plugin nodes"
        lines = [f"ONNX opset {self.opset}, {self.nodes} nodes, input {INPUT_NAME} "
                 f"{'x'.join(map(str, self.input_shape))}, dynamic axes: {dyn}, cyclic pad: {pad}"]
        plain = {c.op_type: c.count for c in self.plain_census or []}
        rows = [[c.op_type, c.domain or "ai.onnx", c.count] + ([plain.get(c.op_type, 0)] if self.plain_census else [])
                for c in self.census]
        headers = ["op", "domain", "count"] + (["plain-conv twin"] if self.plain_census else [])
        lines += format_table(headers, rows).splitlines()
        domains = "standard ONNX only (ai.onnx)" if self.standard_only else \
            "custom ops: " + ", ".join(f"{c.domain}::{c.op_type}" for c in non_standard(self.census))
        lines.append(f"operator domains: {domains}")
        if self.extra_ops is not None:
            lines.append(f"vs the same network with plain convolutions: extra op types "
                         f"{{{', '.join(self.extra_ops)}}}, missing {{{', '.join(self.missing_ops or [])}}}")
        lines += self.trt_lines
        for p in self.parity:
            lines.append(f"{p.runtime} parity at {'x'.join(map(str, p.shape))}: rel-L2 {p.rel_l2:.2e} "
                         f"({'ok' if p.ok else 'FAIL'}: rel-L2 limit {PARITY_TOLERANCE:g}), max abs Δ {p.max_abs:.2e}")
        lines += self.notes
        lines += [r.format_line() for r in self.runtimes]
        return lines


def check_input_shape(model: nn.Module, shape: tuple[int, ...]) -> None:
    """Run ``model`` once at ``shape``; raise a clear error if the network cannot take it."""
    if len(shape) != 4:
        raise XVDeployError(f"input shape {shape} must be N×C×H×W")
    small: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, XVolutionFolded):
            def hook(m, args, name=name):
                h, w = args[0].shape[-2:]
                if not m.shift_kernel.fits(h, w):
                    small.append(f"{name} sees {h}×{w} but its shifts need at least "
                                 f"{m.shift_kernel.pad_h}×{m.shift_kernel.pad_w} for wrap padding")
            handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(torch.zeros(shape, dtype=_dtype(model)))
    except XVDeployError:
        raise
    except RuntimeError as exc:
        raise XVDeployError(f"the network cannot take input shape {'x'.join(map(str, shape))}: "
                            f"{first_line(exc)}") from None
    finally:
        for h in handles:
            h.remove()
    if small:
        raise XVDeployError(f"input {'x'.join(map(str, shape))} is smaller than the shift distance: {small[0]}; "
                            "use a larger --input-shape")


def _dtype(model: nn.Module) -> torch.dtype:
    p = next(model.parameters(), None)
    return p.dtype if p is not None else torch.float32


def uses_wrap_padding(model: nn.Module) -> bool:
    return any(isinstance(m, XVolutionFolded) for m in model.modules())


def second_shape(shape: tuple[int, ...], dynamic: dict[int, str]) -> tuple[int, ...]:
    """Another shape inside the dynamic ranges: batch + 1, H and W grown (by 32 if ≥ 64, else by 1)."""
    out = list(shape)
    if 0 in dynamic:
        out[0] += 1
    for axis in (2, 3):
        if axis in dynamic:
            out[axis] += 32 if shape[axis] >= 64 else 1
    return tuple(out)


def resolve_dynamic(dynamic: bool | str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``True`` -> all of batch/height/width, ``False`` -> none, else the named axes (validated)."""
    if dynamic is True:
        return tuple(AXIS_NAMES.values())
    if dynamic is False or dynamic is None:
        return ()
    names = [a.strip() for a in (dynamic.split(",") if isinstance(dynamic, str) else dynamic) if a.strip()]
    bad = [a for a in names if a not in AXIS_NAMES.values()]
    if bad:
        raise XVDeployError(f"unknown dynamic axis {bad[0]!r}; expected a subset of batch,height,width")
    return tuple(a for a in AXIS_NAMES.values() if a in names)


def static_axes(model: nn.Module, dynamic: tuple[str, ...]) -> tuple[tuple[str, ...], str | None]:
    """``dynamic`` less the axes the model fixes (its ``xvdeploy_static_axes``: axis → why), and a line saying so."""
    fixed = getattr(model, "xvdeploy_static_axes", None) or {}
    held = [a for a in dynamic if a in fixed]
    if not held:
        return dynamic, None
    kept = tuple(a for a in dynamic if a not in fixed)
    why = "; ".join(dict.fromkeys(fixed[a] for a in held))
    return kept, f"{', '.join(held)} static ({why}); dynamic: {', '.join(kept) or 'none'}"


def _torch_export(model: nn.Module, x: torch.Tensor, path: Path, opset: int, dynamic: tuple[str, ...],
                  translation_table: dict | None) -> None:
    auto = torch.export.Dim.AUTO
    axes = {i: auto for i, name in AXIS_NAMES.items() if name in dynamic}
    dynamic_shapes = (axes,) if axes else None
    sink = io.StringIO()
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)  # e.g. "torchvision is not installed. Skipping torchvision::nms"
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), _restore_level(logger, level):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=opset, dynamic_shapes=dynamic_shapes,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], external_data=False,
                          custom_translation_table=translation_table, verbose=False)


def _finalise(proto, metadata: dict[str, str]) -> list[str]:
    """Name dynamic dims batch/height/width, pin the IR version, inline functions, add metadata."""
    onnx = require("onnx", "ONNX export")
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    renames = {d.dim_param: AXIS_NAMES.get(i, f"dim{i}") for i, d in enumerate(dims) if d.dim_param}
    for value in list(proto.graph.input) + list(proto.graph.output) + list(proto.graph.value_info):
        for d in value.type.tensor_type.shape.dim:
            if d.dim_param in renames:
                d.dim_param = renames[d.dim_param]
    proto.ir_version = min(proto.ir_version, IR_VERSION)
    if proto.functions:
        proto_inlined = onnx.inliner.inline_local_functions(proto)
        proto.CopyFrom(proto_inlined)
    existing = {p.key for p in proto.metadata_props}
    for key, value in metadata.items():
        if key not in existing:
            proto.metadata_props.add(key=key, value=str(value))
    return [AXIS_NAMES[i] for i, d in enumerate(dims) if d.dim_param and i in AXIS_NAMES]


def parity_check(model: nn.Module, session, shapes: list[tuple[int, ...]], seed: int = 0,
                 runtime: str = "onnxruntime") -> list[ParityResult]:
    """A runtime vs PyTorch (float32) at each shape.

    ``session`` is an onnxruntime session or any callable mapping the input
    array to the output array (``runtime`` names it in the results).
    """
    run = session if callable(session) else (lambda x: session.run(None, {session.get_inputs()[0].name: x})[0])
    results = []
    for i, shape in enumerate(shapes):
        x = np.random.default_rng(seed + i).standard_normal(shape, dtype=np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x).to(_dtype(model))).float()
        y = torch.from_numpy(np.asarray(run(x), dtype=np.float32))
        if y.shape != ref.shape:
            results.append(ParityResult(shape, float("inf"), float("inf"), False, runtime))
            continue
        err = rel_l2(y, ref)
        results.append(ParityResult(shape, err, float((y - ref).abs().max()), err <= PARITY_TOLERANCE, runtime))
    return results


def small_shape(model: nn.Module, shape: tuple[int, ...], dynamic: dict[int, str]) -> tuple[int, ...]:
    """A cheap shape for the ``onnx.reference`` check: batch 1 and H, W at most
    :data:`REFERENCE_MAX_SIZE` where those axes are dynamic (larger where the network needs more)."""
    out = list(shape)
    if 0 in dynamic:
        out[0] = 1
    for axis in (2, 3):
        if axis in dynamic:
            out[axis] = min(out[axis], REFERENCE_MAX_SIZE)
    while tuple(out) != tuple(shape):
        try:
            check_input_shape(model, tuple(out))
            return tuple(out)
        except XVDeployError:  # too small for this network (shift distance, ACmix window, strides): grow
            grown = [min(s, 2 * o) if axis in (2, 3) and axis in dynamic else o for axis, (o, s) in
                     enumerate(zip(out, shape))]
            if grown == out:
                break
            out = grown
    return tuple(shape)


def export_onnx(model: nn.Module, path: str | os.PathLike, input_shape: tuple[int, ...],
                dynamic: bool | str | list[str] = True,
                opset: int = DEFAULT_OPSET, check: bool = True, pssa_plugin: bool = False, compare_plain: bool = True,
                simplify: bool = False, force: bool = False, metadata: dict[str, str] | None = None,
                inputs_to_protect: tuple = (), portable: bool | None = None,
                check_runtimes: tuple[str, ...] | list[str] = ()) -> ExportReport:
    """Export ``model`` (as given: fold it first for the inference form) to ``path``.

    Nothing is written unless every check passes (``force=True`` writes anyway
    and says so in the report). Raises :class:`ParityError` (exit code 1) on a
    parity failure and :class:`XVDeployError` for bad input.

    ``portable`` writes the PSSA step's cyclic pad as Slice+Concat instead of
    ``Pad(mode=wrap)``; ``None`` means "below opset 19" (where there is no
    wrap mode). ``check_runtimes`` names runtimes of
    :mod:`xvdeploy.export.runtimes` to run the written file in (results in
    ``report.runtimes``; a failure there does not unwrite the file).

    The phases, in order: validate the arguments, prepare the model (the PSSA
    plugin swap), trace and export, finalise the graph (axis names, IR
    version, metadata, shape simplification, opset down-conversion, optional
    onnxscript optimizer), ``onnx.checker``, the op census (and its
    plain-convolution twin), the static TensorRT check, the parity gate
    (onnxruntime at two shapes, ``onnx.reference`` at a small one); all inside
    one atomic write; then the runtime checks on the written file.
    """
    require("onnx", "ONNX export")
    require("onnxscript", "ONNX export")
    path = check_output_path(path, *inputs_to_protect)
    input_shape = tuple(int(d) for d in input_shape)
    model = model.eval()
    portable = _validate(model, input_shape, opset, portable)
    runtime_names = _runtime_names(check_runtimes)
    export_model, translation_table = _prepare(model, pssa_plugin)
    x = torch.zeros(input_shape, dtype=_dtype(model))
    dynamic = resolve_dynamic(dynamic)
    notes: list[str] = []
    dynamic, held = static_axes(model, dynamic)
    if held:
        notes.append(f"note: {held}")
    with atomic_path(path) as tmp:  # renamed into place only if every phase below passes
        with portable_wrap_pad(portable), step("export: tracing with torch.onnx.export"):  # long phases are shown
            dynamic = _trace(export_model, x, tmp, opset, dynamic, translation_table, notes)
        proto, dynamic_axes = _finalise_file(tmp, input_shape, dynamic, metadata, simplify, notes, opset)
        with step("export: onnx.checker (full check)"):
            _run_checker(tmp)
        report = ExportReport(str(path), input_shape, dynamic_axes, opset, pssa_plugin, len(proto.graph.node),
                              census(proto), portable=portable if uses_wrap_padding(model) else None, notes=notes)
        if compare_plain:
            with step("export: tracing the plain-convolution twin for the op census"):
                _compare_plain(report, model, x)
        _check_trt(report, proto)
        if check:
            with step("export: onnxruntime parity against PyTorch at two shapes"):
                _parity_gate(report, model, tmp, force)
    report.written = True
    if runtime_names:
        with step(f"export: running the file in {', '.join(runtime_names)}"):
            report.runtimes = run_runtimes(path, runtime_names, model, _check_shape(report, model))
    return report


def _validate(model: nn.Module, input_shape: tuple[int, ...], opset: int, portable: bool | None) -> bool:
    """Phase 1: the opset is supported; the network takes ``input_shape``. Returns whether the pad is portable."""
    if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= max_opset():
        raise XVDeployError(f"--opset {opset} is not supported; expected {MIN_OPSET}..{max_opset()} "
                            "(the newest opset onnx and onnxruntime both implement)")
    if portable is False and opset < WRAP_OPSET and uses_wrap_padding(model):
        raise XVDeployError(f"--opset {opset} has no Pad mode=wrap (it needs opset ≥ {WRAP_OPSET}); "
                            "leave the cyclic pad portable (Slice+Concat) or use a newer --opset")
    check_input_shape(model, input_shape)
    return bool(portable) or opset < WRAP_OPSET


def _runtime_names(names) -> tuple[str, ...]:
    """``check_runtimes`` as a tuple of known runtime names (a string is split at commas)."""
    if isinstance(names, str):
        names = names.split(",")
    names = tuple(dict.fromkeys(n.strip() for n in names or () if n.strip()))
    return resolve_runtimes(names) if names else ()


def _check_shape(report: ExportReport, model: nn.Module) -> tuple[int, ...]:
    """The shape the runtime checks run at: the reference check's small shape (the input shape if static)."""
    index = {v: k for k, v in AXIS_NAMES.items()}
    return small_shape(model, report.input_shape, {index[a]: a for a in report.dynamic_axes})


def _prepare(model: nn.Module, pssa_plugin: bool) -> tuple[nn.Module, dict | None]:
    """Phase 2: the model to trace and the translation table; with ``pssa_plugin`` a copy whose PSSA steps are custom ops."""
    if not pssa_plugin:
        return model, None
    export_model = copy.deepcopy(model)
    if not use_pssa_plugin(export_model):
        why = ("the training form is exported (--no-fold): fold it to get PSSA steps"
               if any(isinstance(m, XVolution) for m in model.modules()) else "the network has no X-volution block")
        raise XVDeployError(f"--pssa-plugin: no PSSA step to replace ({why})")
    return export_model, custom_translation_table()


def _trace(export_model: nn.Module, x: torch.Tensor, tmp: Path, opset: int, dynamic: tuple[str, ...],
           translation_table: dict | None, notes: list[str]) -> tuple[str, ...]:
    """Phase 3: ``torch.onnx.export`` to ``tmp``; if dynamic shapes fail, once more static (said in ``notes``).

    Returns the dynamic axes asked of the exporter (``()`` after the fallback).
    """
    # torch.export specialises sizes 0 and 1: a batch-1 example would fix the batch wherever the graph
    # reshapes by it (the output then reads 1×K while the input says batch). Trace a dynamic batch at ≥ 2.
    x_trace = x
    if "batch" in dynamic and x.shape[0] < 2:
        x_trace = torch.zeros((2, *x.shape[1:]), dtype=x.dtype)
    opset = max(opset, NATIVE_OPSET)  # older opsets: converted down in _finalise_file
    try:
        _torch_export(export_model, x_trace, tmp, opset, dynamic, translation_table)
    except Exception as exc:
        if not dynamic:
            raise XVDeployError(f"torch.onnx.export failed: {_summary(exc)}", exit_code=1) from None
        notes.append(f"dynamic shapes failed ({_summary(exc)}); exported with a static shape")
        dynamic = ()
        try:
            _torch_export(export_model, x, tmp, opset, dynamic, translation_table)
        except Exception as exc2:
            raise XVDeployError(f"torch.onnx.export failed: {_summary(exc2)}", exit_code=1) from None
    return dynamic


def _finalise_file(tmp: Path, input_shape: tuple[int, ...], dynamic: tuple[str, ...], metadata: dict[str, str] | None,
                   simplify: bool, notes: list[str], opset: int) -> tuple[object, list[str]]:
    """Phase 4: name the dynamic axes, pin the IR version, add metadata, simplify the shape arithmetic, convert
    down to ``opset``, optionally run onnxscript's optimizer; save back to ``tmp``.

    Returns the model proto and the axes that came out dynamic; axes the
    network fixed are said in ``notes``.
    """
    onnx = require("onnx", "ONNX export")
    proto = onnx.load(str(tmp))
    meta = {META_INPUT_SHAPE: "x".join(map(str, input_shape)), **(metadata or {})}
    dynamic_axes = _finalise(proto, meta)
    static = [a for a in dynamic if a not in dynamic_axes]
    out_dims = proto.graph.output[0].type.tensor_type.shape.dim
    if "batch" in dynamic_axes and out_dims and not out_dims[0].dim_param:
        notes.append("note: the output's batch axis came out fixed although the input's is dynamic")
    if static:
        notes.append(f"note: the network fixes {', '.join(static)} (torch.export specialised it); "
                     "those axes are static in the graph")
    simplify_shapes(proto)
    carry_x_through_product(proto)
    if simplify:
        proto = _simplify(proto)
    if opset < default_opset(proto):
        downgrade(proto, opset)
    if default_opset(proto) != opset:  # torch.onnx leaves the model at its own opset when it cannot convert
        raise XVDeployError(f"torch.onnx.export wrote opset {default_opset(proto)}, not the --opset {opset} asked for",
                            exit_code=1)
    onnx.save(proto, str(tmp))
    return proto, dynamic_axes


def _run_checker(tmp: Path) -> None:
    """Phase 5: ``onnx.checker`` with ``full_check`` (shape inference included)."""
    onnx = require("onnx", "ONNX export")
    try:
        onnx.checker.check_model(str(tmp), full_check=True)
    except Exception as exc:
        raise XVDeployError(f"exported graph fails onnx.checker: {_summary(exc)}", exit_code=1) from None


def _compare_plain(report: ExportReport, model: nn.Module, x: torch.Tensor) -> None:
    """Phase 6: the census of the same network with plain convolutions, and the op types that differ."""
    report.plain_census = _plain_census(model, x, report.opset)
    diff = census_diff(report.census, report.plain_census)
    report.extra_ops, report.missing_ops = diff["extra"], diff["missing"]


def _check_trt(report: ExportReport, proto) -> None:
    """Phase 7: the static TensorRT ONNX-parser check (:mod:`xvdeploy.export.trt_compat`)."""
    trt = check_trt_compat(proto)
    report.trt, report.trt_lines = trt.to_dict(), trt.format_lines(show_ok=False)


def _parity_gate(report: ExportReport, model: nn.Module, tmp: Path, force: bool) -> None:
    """Phase 8: onnxruntime vs PyTorch at the input shape and one more inside the dynamic ranges, and
    ``onnx.reference`` (an interpreter independent of onnxruntime) at a small shape (:func:`small_shape`).

    A failure raises :class:`ParityError` (nothing is written) unless ``force``,
    which writes anyway and marks the report ``forced``. Graphs with PSSA
    plugin nodes skip the ``onnx.reference`` check (it has no PSSA op), and say so.
    """
    index = {v: k for k, v in AXIS_NAMES.items()}
    dyn = {index[a]: a for a in report.dynamic_axes}
    session = ort_session(tmp, plugin=report.pssa_plugin)
    report.parity = parity_check(model, session, [report.input_shape, second_shape(report.input_shape, dyn)])
    if report.pssa_plugin:
        report.notes.append("onnx.reference parity: skipped (it has no implementation of the custom PSSA node)")
    else:
        reference = require("onnx.reference", "ONNX export").ReferenceEvaluator(str(tmp))
        report.parity += parity_check(model, lambda x: reference.run(None, {INPUT_NAME: x})[0],
                                      [small_shape(model, report.input_shape, dyn)], seed=7, runtime="onnx.reference")
    if not report.parity_ok and not force:
        raise ParityError("the exported graph's output differs from PyTorch: " + "; ".join(
            f"{p.runtime} at {'x'.join(map(str, p.shape))} rel-L2 {p.rel_l2:.2e}" for p in report.parity if not p.ok)
            + f" (limit {PARITY_TOLERANCE:g}); nothing written (use --force to write anyway)")
    report.forced = not report.parity_ok


def _plain_census(model: nn.Module, x: torch.Tensor, opset: int) -> list[OpCount]:
    onnx = require("onnx", "ONNX export")
    twin = plain_counterpart(model, x)
    with tempfile.TemporaryDirectory(prefix="xvdeploy-") as tmp:
        twin_path = Path(tmp) / "plain.onnx"
        _torch_export(twin, x, twin_path, max(opset, NATIVE_OPSET), (), None)
        return census(onnx.load(str(twin_path)))


def _simplify(proto):
    optimizer = require("onnxscript.optimizer", "ONNX simplification")
    return optimizer.optimize(proto)


@contextlib.contextmanager
def _restore_level(logger: logging.Logger, level: int):
    try:
        yield
    finally:
        logger.setLevel(level)


def _summary(exc: BaseException) -> str:
    for line in str(exc).splitlines():  # torch.onnx's report: the "<class '…'>: message" line
        if line.startswith("<class"):
            return line.split(">:", 1)[-1].strip()
    return first_line(exc)
