"""``xvdeploy bench``: numeric parity and latency of every form on every available backend (docs/design.md#bench).

Reference: the float32 PyTorch training form on CPU, on the same inputs. For
an ONNX file, the model its metadata names (``xvdeploy.arch``, with
``xvdeploy.weights``) when it can be rebuilt — the shipped checkpoint, or the
seeded random weights of a zoo name; otherwise the file itself in onnxruntime
CPU fp32, and the report says plainly that such a row compares the file with
itself.

Timing, as trtexec does it: a short warm-up (0.2 s), then each row is timed
for a fixed duration (3 s, at least 10 iterations) unless ``iters`` is given;
the coefficient of variation of every row is reported and rows above
:data:`~xvdeploy.bench.metrics.UNSTABLE_CV` are flagged.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from xvdeploy import zoo
from xvdeploy._lazy import available
from xvdeploy.bench.backends.base import BackendUnavailable, Runner, RunnerSpec
from xvdeploy.bench.backends.openvino_backend import OpenVINORunner
from xvdeploy.bench.backends.ort_backend import OrtRunner
from xvdeploy.bench.backends.torch_backend import TorchRunner
from xvdeploy.bench.backends.trt_backend import TensorRTRunner
from xvdeploy.bench.environment import environment
from xvdeploy.bench.metrics import TOLERANCES, UNSTABLE_CV, latency_stats, parity, status, variation
from xvdeploy.checkpoint import model_form
from xvdeploy.data import digits_split, load_images, random_input, run_batches
from xvdeploy.errors import XVDeployError, first_line
from xvdeploy.export import export_onnx
from xvdeploy.export.onnxfile import META_ARCH, META_WEIGHTS, PSSA_DOMAIN, ort_session, read_header
from xvdeploy.folding import fold
from xvdeploy.loading import load_model_source, reference_model
from xvdeploy.memory import check_fits, check_forward_fits, tensor_bytes
from xvdeploy.progress import step
from xvdeploy.quant.calibration import load_calibration
from xvdeploy.trt import availability
from xvdeploy.trt.sidecar import EngineRecord, file_sha256, flavour_label, read_sidecar

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt", "tensorrt-rtx")
TRT_BACKENDS = ("tensorrt", "tensorrt-rtx")  # the TensorRT flavours (xvdeploy.trt.flavour), one runner
PRECISIONS = tuple(TOLERANCES)
DATA_KINDS = ("random", "digits", "images")
PLAN_SUFFIXES = (".plan", ".engine", ".trt")

#: timing defaults (trtexec's: --warmUp=200 ms, --duration=3 s, --iterations=10 as the minimum)
DEFAULT_WARMUP_S = 0.2
DEFAULT_DURATION_S = 3.0
MIN_TIMED_ITERS = 10
#: the most one warm-up or one row may ask for: an hour, ten million iterations
MAX_SECONDS = 3600.0
MAX_ITERS = 10_000_000
#: domains whose operators onnxruntime implements itself (the PSSA nodes come with xvdeploy's custom op)
ORT_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "com.microsoft.nchwc", "com.microsoft.experimental",
               "ai.onnx.preview.training", "ai.onnx.training"}
#: ``status`` of a row that runs exactly what the reference runs: it compares the file with itself
SELF = "SELF"


@dataclass
class BenchConfig:
    model: str | None = None
    backends: list[str] | None = None  # None: every backend, unavailable ones listed as skipped
    batches: list[int] | None = None  # None: 1, or the ONNX file's fixed batch
    input_shape: tuple[int, int, int] | None = None  # (C, H, W)
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    devices: list[str] | None = None  # None: cpu, plus cuda when there is one
    warmup: int | None = None  # warm-up iterations; None: warmup_s seconds
    warmup_s: float | None = None  # None (and no warmup): DEFAULT_WARMUP_S
    iters: int | None = None  # timed iterations: exactly these without duration_s, at least these with it
    duration_s: float | None = None  # None (and no iters): DEFAULT_DURATION_S, at least MIN_TIMED_ITERS
    seed: int = 0
    data: str | None = None  # None: digits for the digits model, else random
    images_dir: Path | None = None
    compile: bool = False
    cuda_graphs: bool = False
    threads: int | None = None
    arch: str | None = None
    model_factory: str | None = None
    state_key: str | None = None
    pssa_plugin: bool = False
    engine: Path | None = None  # a prebuilt engine of the model, run by its flavour's backend
    calibration: str | None = None  # int8: calibration data (see xvdeploy.quant.calibration); None: see calibration_data
    reference: str | None = None  # the PyTorch model of an ONNX / engine MODEL (checkpoint or zoo name; --arch etc.)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every check that needs no model: one :class:`XVDeployError` for the first bad field.

        Repeated backends, precisions, devices and batches are dropped (one row each).
        """
        for name in ("backends", "precisions", "devices", "batches"):
            values = getattr(self, name)
            if values is not None:
                setattr(self, name, list(dict.fromkeys(values)))
        for what, value, unit, limit in (("--warmup", self.warmup, "iterations", MAX_ITERS),
                                         ("--warmup", self.warmup_s, "seconds", MAX_SECONDS),
                                         ("--iters", self.iters, "iterations", MAX_ITERS),
                                         ("--duration", self.duration_s, "seconds", MAX_SECONDS)):
            if value is None:
                continue
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or not 0 <= value <= limit:
                shown = f"{value}{'s' if what == '--warmup' and unit == 'seconds' else ''}"
                raise XVDeployError(f"{what} {shown}: expected a finite number of {unit} from 0 to {limit:g}")
        if self.iters is not None and self.iters < 1:
            raise XVDeployError(f"--iters {self.iters}: expected at least 1 timed iteration")
        if self.duration_s is not None and self.duration_s <= 0:
            raise XVDeployError(f"--duration {self.duration_s}: expected more than 0 seconds")
        engine = self.engine_source()  # an engine of the other flavour is the first thing to say
        if engine is not None:
            _check_engine_backends(self.backends, *engine)
        for b in self.backends or []:
            if b not in BACKENDS:
                raise XVDeployError(f"unknown backend {b!r}; expected some of {', '.join(BACKENDS)}")
            reason = backend_reason(b)
            if reason and (b not in TRT_BACKENDS or all(x in TRT_BACKENDS for x in self.backends)):
                raise XVDeployError(f"backend {b!r} was asked for but {reason}")
        for p in self.precisions:
            if p not in PRECISIONS:
                raise XVDeployError(f"unknown precision {p!r}; expected some of {', '.join(PRECISIONS)}")
        if self.batches is not None and (not self.batches or any(b < 1 for b in self.batches)):
            raise XVDeployError(f"--batch sizes must be positive, got {self.batches}")
        for d in self.devices or []:
            if d not in ("cpu", "cuda"):
                raise XVDeployError(f"unknown device {d!r}; expected cpu and/or cuda")
        if self.cuda_graphs and ("cuda" not in self.resolved_devices() or not torch.cuda.is_available()):
            raise XVDeployError("--cuda-graphs needs a CUDA device" + ("" if torch.cuda.is_available() else "; none here"))
        if self.data is not None and self.data not in DATA_KINDS:  # before the model is folded and exported
            raise XVDeployError(f"unknown --data {self.data!r}; expected random, digits or images:DIR")
        if self.data == "images" and (self.images_dir is None or not Path(self.images_dir).is_dir()):
            raise XVDeployError(f"--data images needs an existing folder: --data images:DIR (got {self.images_dir})")
        if self.reference is not None and Path(self.model or "").suffix not in (".onnx", *PLAN_SUFFIXES):
            raise XVDeployError(f"--reference gives the PyTorch model of an ONNX file or engine; MODEL "
                                f"{self.model or '(the shipped digits model)'} is a checkpoint, its own reference")

    def engine_source(self) -> tuple[Path, EngineRecord | None] | None:
        """``(plan, sidecar record or None)`` of ``--engine``, or of MODEL when it is an engine."""
        if self.engine is not None:
            return _engine_source(Path(self.engine))
        if self.model and Path(self.model).suffix in PLAN_SUFFIXES and Path(self.model).is_file():
            return _engine_source(Path(self.model))
        return None

    def resolved_devices(self) -> list[str]:
        """The devices asked for, or the CPU plus CUDA where there is one."""
        return self.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    def timing(self) -> dict:
        """What every row does: ``warmup`` iterations or ``warmup_s`` seconds, then ``iters`` iterations
        (exactly, when ``duration_s`` is None; at least, otherwise) for at least ``duration_s`` seconds."""
        warmup, warmup_s = self.warmup, self.warmup_s
        if warmup is None and warmup_s is None:
            warmup_s = DEFAULT_WARMUP_S
        iters, duration_s = self.iters, self.duration_s
        if iters is None and duration_s is None:
            iters, duration_s = MIN_TIMED_ITERS, DEFAULT_DURATION_S
        return {"warmup": warmup if warmup_s is None else None, "warmup_s": warmup_s, "iters": iters,
                "duration_s": duration_s}


@dataclass
class BenchResult:
    backend: str
    form: str
    precision: str
    device: str
    batch: int
    input_shape: list[int]
    latency_ms: dict
    throughput: float | None
    parity: dict | None
    accuracy: float | None
    status: str
    options: dict = field(default_factory=dict)
    times_ms: list[float] = field(default_factory=list, repr=False)
    cv: float | None = None  # coefficient of variation of the latencies
    unstable: bool = False  # cv above UNSTABLE_CV
    timing: dict = field(default_factory=dict)  # warmup_iterations, warmup_seconds, iterations, timed_seconds

    @property
    def label(self) -> str:
        extra = "+".join(k for k, v in self.options.items() if v is True)
        return f"{self.backend}/{self.form}{'+' + extra if extra else ''} {self.precision} {self.device} b{self.batch}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("times_ms")
        d["iterations"] = len(self.times_ms)
        return d


@dataclass
class BenchReport:
    environment: dict
    model: str
    reference: str
    data: str
    results: list[BenchResult] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    checkpoint: str | None = None  # how a training script's checkpoint was unwrapped, if it was
    calibration: str = ""  # what int8 rows were calibrated on
    command: list[str] = field(default_factory=list)  # the command line that made the report
    timing: dict = field(default_factory=dict)  # BenchConfig.timing(): what every row was asked to do
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(r.status == "FAIL" for r in self.results)

    def to_dict(self) -> dict:
        return {"environment": self.environment, "command": self.command, "model": self.model,
                "reference": self.reference, "data": self.data, "checkpoint": self.checkpoint,
                "calibration": self.calibration or None, "timing": self.timing, "unstable_cv": UNSTABLE_CV,
                "notes": self.notes, "results": [r.to_dict() for r in self.results], "skipped": self.skipped}


# -- sources ------------------------------------------------------------------------------------------------


@dataclass
class Sources:
    name: str
    train: torch.nn.Module | None = None
    folded: torch.nn.Module | None = None
    onnx: Path | None = None
    plan: Path | None = None
    shape: tuple[int, int, int] | None = None
    classifier: bool = True
    is_digits: bool = False
    plugin: bool = False  # the ONNX graph holds custom PSSA nodes
    fixed_batch: int | None = None  # an ONNX file exported with a static batch
    unwrapped: str | None = None  # how a training script's checkpoint was unwrapped
    plan_record: EngineRecord | None = None  # the plan's sidecar, if any
    reference: torch.nn.Module | None = None  # an ONNX file's source model, rebuilt from its metadata
    reference_what: str = ""
    notes: list[str] = field(default_factory=list)


def load_sources(cfg: BenchConfig, workdir: Path, need_onnx: bool) -> Sources:

    source = cfg.model
    if source is None:  # the shipped digits model
        source = str(zoo.pretrained("xv_digits"))
    path = Path(source)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise XVDeployError(f"{path}: no such file; expected an ONNX model")
        with step(f"reading {path.name}"):
            return _onnx_sources(path.name, path, reference=_given_reference(cfg))
    if path.suffix in PLAN_SUFFIXES:
        if not path.is_file():
            raise XVDeployError(f"{path}: no such file; expected a TensorRT engine")
        plan, record = _engine_source(path)
        onnx = _built_from(record)
        if onnx is None:
            return Sources(path.name, plan=plan, plan_record=record)
        with step(f"reading {onnx.name}"):  # the reference: the ONNX file it was built from
            return _onnx_sources(path.name, onnx, plan=plan, plan_record=record, reference=_given_reference(cfg))
    with step(f"loading {cfg.model or 'the shipped digits model'}"):
        model, arch = load_model_source(source, cfg.arch, cfg.model_factory, cfg.state_key)
    sources = Sources(arch or path.name, is_digits=arch == "xv_digits",
                      unwrapped=getattr(model, "xvdeploy_unwrapped", None))
    if model_form(model) == "train":
        with step("folding"):
            sources.train, sources.folded = model, fold(model)
    else:
        sources.folded = model
    if arch:
        sources.shape = zoo.input_shape(arch)
    if need_onnx:
        shape = cfg.input_shape or sources.shape
        if shape is None:
            raise XVDeployError("this model has no default input shape; give --input-shape CxHxW or NxCxHxW")
        check_forward_fits(sources.folded, (1, *shape), f"exporting at 1x{'x'.join(map(str, shape))}",
                           "give a smaller --input-shape")
        sources.onnx = workdir / "model.onnx"
        with step("exporting to ONNX for the onnxruntime and tensorrt rows"):
            export_onnx(sources.folded, sources.onnx, (1, *shape), check=False, compare_plain=False,
                        pssa_plugin=cfg.pssa_plugin)
        sources.plugin = cfg.pssa_plugin
    return sources


def _engine_source(path: Path) -> tuple[Path, EngineRecord | None]:
    """``(plan, sidecar record or None)`` of an engine file."""
    if not path.is_file():
        raise XVDeployError(f"--engine {path}: no such file; expected a TensorRT engine written by 'xvdeploy build'")
    return path, read_sidecar(path)


def _built_from(record: EngineRecord | None) -> Path | None:
    """The ONNX file an engine's sidecar names, if it is still there unchanged (the sidecar is untrusted: hashed)."""
    if record is None or not record.onnx_file:
        return None
    onnx = Path(record.onnx_file)
    if onnx.suffix != ".onnx" or not onnx.is_file() or file_sha256(onnx) != record.onnx_sha256:
        return None
    return onnx


def engine_backend(src: Sources) -> str | None:
    """The bench backend that runs ``src.plan``: its sidecar's flavour (``None`` without a plan)."""
    if src.plan is None:
        return None
    return getattr(src.plan_record, "flavour", None) or "tensorrt"


def _check_engine_backends(backends: list[str] | None, plan: Path, record: EngineRecord | None) -> None:
    """An engine of one flavour with ``--backends`` naming only the other: one clear line."""
    plan_backend = getattr(record, "flavour", None) or "tensorrt"
    asked = [b for b in backends or [] if b in TRT_BACKENDS]
    if asked and plan_backend not in asked:
        raise XVDeployError(f"engine {plan} was built with {flavour_label(plan_backend)}; --backends "
                            f"{','.join(asked)} cannot run it: use --backends {plan_backend}")


def _given_reference(cfg: BenchConfig) -> tuple[torch.nn.Module, str, str | None] | None:
    """``(model, description, arch)`` of ``--reference`` (with --arch / --model / --state-key), or None."""
    if cfg.reference is None:
        return None
    with step(f"loading the reference {cfg.reference}"):
        model, arch = load_model_source(cfg.reference, cfg.arch, cfg.model_factory, cfg.state_key)
    form = "training" if model_form(model) == "train" else "folded"
    return model, f"float32 PyTorch {form} form (CPU) of {cfg.reference}, given by --reference", arch


def _onnx_sources(name: str, onnx: Path, reference: tuple[torch.nn.Module, str, str | None] | None = None,
                  **extra) -> Sources:
    """The :class:`Sources` of an ONNX file, with ``reference`` (``--reference``) or else the model its metadata
    names as the reference where it can be rebuilt (``xvdeploy.arch``, ``xvdeploy.weights``; see
    :func:`xvdeploy.loading.reference_model`)."""
    info = _onnx_info(onnx)
    src = Sources(name, onnx=onnx, shape=info["shape"], plugin=info["plugin"], fixed_batch=info["fixed_batch"],
                  **extra)
    arch, weights = info["meta"].get(META_ARCH), info["meta"].get(META_WEIGHTS)
    if reference is not None:
        src.reference, src.reference_what, given_arch = reference
        src.is_digits = (given_arch or arch) == "xv_digits"
        if src.shape is None and (given_arch or arch) in zoo.names():
            src.shape = zoo.input_shape(given_arch or arch)
        return src
    rebuilt = reference_model(arch, weights) if arch else None
    if rebuilt is not None:
        src.reference, what = rebuilt
        src.reference_what = (f"float32 PyTorch training form (CPU) of {what}, named by the file's metadata "
                              f"(xvdeploy.arch={arch})")
        src.is_digits = arch == "xv_digits"
        src.shape = src.shape or zoo.input_shape(arch)
    elif arch:
        src.notes.append(f"the file's xvdeploy.arch={arch!r} "
                         + ("is not a zoo architecture" if arch not in zoo.names() else
                            "came with a user's weights, which bench cannot rebuild: give them with "
                            "--reference CHECKPOINT"))
    return src


def _onnx_info(path: Path) -> dict:
    """``shape`` ((C, H, W) or None), ``plugin`` (holds PSSA nodes), ``fixed_batch`` (or None) and ``meta``
    (its metadata) of an ONNX file, read once. A custom operator no runtime here provides is refused."""
    header = read_header(path)
    if not header.inputs:
        raise XVDeployError(f"{path}: the graph has no tensor input; expected a model that takes an image batch")
    for domain, op_type in header.custom_ops:
        if domain not in ORT_DOMAINS and not (domain == PSSA_DOMAIN and op_type.startswith("PSSA")):
            raise XVDeployError(f"{path}: operator {op_type!r} of domain {domain!r} is a custom operator that no "
                                "installed runtime provides (onnxruntime implements the standard ONNX domains and "
                                "com.microsoft; xvdeploy adds only its PSSA nodes); export the model with standard "
                                "operators")
    dims = next(iter(header.inputs.values()))
    values = [d if d > 0 else None for d in dims]
    info = {"shape": None, "plugin": header.plugin, "fixed_batch": values[0] if values else None,
            "meta": dict(header.metadata)}
    example = header.example_shape()  # written by export; untrusted like all metadata
    if len(values) == 4 and all(v is not None for v in values[1:]):
        info["shape"] = tuple(values[1:])
    elif example and len(example) == 4:
        info["shape"] = tuple(example[1:])
    return info


# -- data -----------------------------------------------------------------------------------------------------


def load_data(cfg: BenchConfig, shape: tuple[int, int, int], batch: int, is_digits: bool) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``(inputs, labels or None, description)``."""
    kind = cfg.data or ("digits" if is_digits else "random")
    if kind == "digits":
        if tuple(shape) != (1, 8, 8):
            raise XVDeployError(f"--data digits feeds 1x8x8 images, the model takes {'x'.join(map(str, shape))}")
        _, _, x, y = digits_split()
        return x, y, f"digits held-out split ({len(x)} images)"
    if kind == "images":
        if cfg.images_dir is None:
            raise XVDeployError("--data images needs a folder: --data images:DIR")
        x = load_images(cfg.images_dir, shape)
        return x, None, f"{len(x)} images from {cfg.images_dir}"
    if kind == "random":
        check_fits(2 * tensor_bytes((batch, *shape)), f"a random batch of {batch}x{'x'.join(map(str, shape))} "
                   "(float32, and a copy per runner)", "give a smaller --input-shape or --batch")
        return random_input((batch, *shape), cfg.seed), None, f"random normal (seed {cfg.seed})"
    raise XVDeployError(f"unknown --data {kind!r}; expected random, digits or images:DIR")


#: random calibration inputs for a model bench feeds random data (a different seed from the measured inputs)
RANDOM_CALIBRATION_SAMPLES = 16


def calibration_data(cfg: BenchConfig, shape: tuple[int, int, int], is_digits: bool) -> tuple[np.ndarray, str]:
    """Calibration inputs of the int8 rows: ``cfg.calibration``, else the digits training split (digits model),
    else the benched images themselves, else random normal inputs (another seed than the measured ones)."""
    spec = cfg.calibration or ("digits" if is_digits and (cfg.data or "digits") == "digits" else None)
    if spec is None and cfg.data == "images":
        spec = f"images:{cfg.images_dir}"
    if spec is not None:
        cal = load_calibration(spec, shape)
        in_sample = " (the measured images themselves)" if cfg.calibration is None and cfg.data == "images" else ""
        return cal.x, cal.description + in_sample
    seed = cfg.seed + 1
    x = random_input((RANDOM_CALIBRATION_SAMPLES, *shape), seed)
    return x, f"{RANDOM_CALIBRATION_SAMPLES} random normal inputs (seed {seed}); give --calibration for real data"


# -- runners --------------------------------------------------------------------------------------------------


def backend_reason(backend: str) -> str | None:
    """Why a backend is not installed, or None."""
    if backend == "onnxruntime":
        return None if available("onnxruntime") else "onnxruntime is not installed; install it with: pip install 'xvdeploy[onnx]'"
    if backend == "openvino":
        return None if available("openvino") else "openvino is not installed; install it with: pip install 'xvdeploy[openvino]'"
    if backend in TRT_BACKENDS:
        return availability(backend)
    return None


def make_runners(cfg: BenchConfig, src: Sources, devices: list[str], batches: list[int],
                 calibration: np.ndarray | None = None):
    """Yield ``(spec, factory)`` for every combination asked for (``calibration``: inputs of the int8 rows)."""
    backends = cfg.backends or list(BACKENDS)
    plan_backend = engine_backend(src)
    for backend in backends:
        if backend in TRT_BACKENDS and plan_backend is not None and backend != plan_backend:
            continue  # the engine is the other flavour's (asked for explicitly: refused by BenchConfig.validate)
        precisions = cfg.precisions
        if backend in TRT_BACKENDS and src.plan_record is not None:
            precisions = [src.plan_record.precision]  # an engine has the one precision it was built at
        for device in devices if backend not in TRT_BACKENDS else ["cuda"]:
            for precision in precisions:
                if backend == "torch":
                    for form, model in (("train", src.train), ("folded", src.folded)):
                        if model is None:
                            continue
                        spec = RunnerSpec("torch", form, precision, device)
                        yield spec, lambda spec=spec, model=model: TorchRunner(
                            spec, model, compile=cfg.compile, cuda_graph=cfg.cuda_graphs and spec.device == "cuda")
                elif backend == "onnxruntime" and src.onnx is not None:
                    options = {"u8s8": True} if precision == "int8" else {}  # the layout of the int8 rows
                    spec = RunnerSpec("onnxruntime", "onnx-plugin" if src.plugin else "onnx", precision, device, options)
                    yield spec, lambda spec=spec: OrtRunner(spec, src.onnx, cfg.threads, plugin=src.plugin,
                                                            calibration=calibration)
                elif backend == "openvino" and src.onnx is not None:
                    spec = RunnerSpec("openvino", "onnx-plugin" if src.plugin else "onnx", precision, device)
                    yield spec, lambda spec=spec: OpenVINORunner(spec, src.onnx, cfg.threads, calibration=calibration)
                elif backend in TRT_BACKENDS and (src.onnx is not None or src.plan is not None):
                    spec = RunnerSpec(backend, "engine", precision, "cuda")

                    def factory(spec=spec):
                        reason = backend_reason(spec.backend)
                        if reason:
                            raise BackendUnavailable(spec.backend, reason)
                        if spec.precision == "int8" and src.plan is None:
                            raise BackendUnavailable(spec.backend, "the bench builds its engines from the float export; "
                                                     "for int8 build one from a Q/DQ file ('xvdeploy quantize', then "
                                                     "'xvdeploy build --precision int8') and bench it with --engine")
                        shape = (max(batches), *(cfg.input_shape or src.shape or ()))
                        return TensorRTRunner(spec, src.plan, onnx=src.onnx, input_shape=shape if len(shape) == 4 else None,
                                              cuda_graph=cfg.cuda_graphs, pssa_plugin=cfg.pssa_plugin)

                    yield spec, factory


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None,
              command: list[str] | None = None) -> BenchReport:
    """Run every asked-for combination (``cfg`` was validated when it was made).

    Long steps are reported through :mod:`xvdeploy.progress`; ``progress``, if
    given, also receives the name of each row before it runs. ``command`` is
    recorded in the report (the CLI passes its command line).
    """
    say = progress or (lambda _message: None)
    backends = cfg.backends or list(BACKENDS)
    timing = cfg.timing()
    with tempfile.TemporaryDirectory(prefix="xvdeploy-bench-") as tmp:
        need_onnx = any(b in ("onnxruntime", "openvino", *TRT_BACKENDS) and not backend_reason(b) for b in backends)
        engine = cfg.engine_source()
        src = load_sources(cfg, Path(tmp), need_onnx)
        if engine is not None:
            src.plan, src.plan_record = engine
        shape, batches = _shape_and_batches(cfg, src)
        report = BenchReport(environment(), src.name, "", "", checkpoint=src.unwrapped, command=list(command or []),
                             timing=timing, notes=list(src.notes))
        reference_fn, report.reference, self_spec = _reference(src, shape)
        report.skipped += [_skip(b, backend_reason(b)) for b in backends if backend_reason(b)]
        if "torch" in backends and src.train is None and src.folded is None:
            kind = "an ONNX file" if src.onnx is not None else "an engine"
            report.skipped.append(_skip("torch", f"the torch backend runs PyTorch models and {kind} holds none; "
                                                 "bench the checkpoint or zoo name it came from to time the torch forms"))
        per_batch = {}
        for batch in batches:
            model = src.reference if src.reference is not None else (src.train if src.train is not None else src.folded)
            if model is not None:  # before the data is made: a batch that cannot run is not worth making
                check_forward_fits(model, (batch, *shape), f"a batch of {batch}x{'x'.join(map(str, shape))}",
                                   "give a smaller --input-shape or --batch")
            x, labels, report.data = load_data(cfg, shape, batch, src.is_digits)
            with step(f"reference outputs ({report.reference.split(' (')[0]}) for {len(x)} inputs, batch {batch}"):
                per_batch[batch] = (x, labels, _reference_outputs(reference_fn, x, batch, shape))
        calibration = None
        if "int8" in cfg.precisions:
            with step("int8 calibration data"):
                calibration, report.calibration = calibration_data(cfg, shape, src.is_digits)
        for spec, factory in make_runners(cfg, src, cfg.resolved_devices(), batches, calibration):
            if backend_reason(spec.backend):
                continue
            try:
                with step(f"starting {spec.backend}/{spec.form}/{spec.precision}/{spec.device}"):
                    runner = factory()
                    runner.activate()  # a provider that cannot start says so here: skipped, not a crash
            except BackendUnavailable as exc:
                report.skipped.append(_skip(spec.backend, exc.reason, spec))
                continue
            with runner:
                for batch in batches:
                    say(f"{runner.name} batch {batch}")
                    result = _measure(runner, timing, batch, *per_batch[batch], src.classifier)
                    if self_spec is not None and (spec.backend, spec.form, spec.precision, spec.device) == self_spec:
                        result.status = SELF
                    report.results.append(result)
        if not report.results:
            reasons = "; ".join(f"{s['backend']}" + (f" {s['precision']} {s['device']}" if s["device"] != "*" else "")
                                + f": {s['reason']}" for s in report.skipped)
            raise XVDeployError(f"nothing could run: {reasons or 'no backend among ' + ', '.join(backends) + ' fits'}")
    return report


def _shape_and_batches(cfg: BenchConfig, src: Sources) -> tuple[tuple[int, int, int], list[int]]:
    """The (C, H, W) input and the batch sizes, checked against what the model file fixes."""
    shape = cfg.input_shape or src.shape
    if shape is None:
        raise XVDeployError("cannot tell the model's input size; give --input-shape CxHxW or NxCxHxW")
    batches = cfg.batches or [src.fixed_batch or 1]
    if src.fixed_batch and batches != [src.fixed_batch]:
        raise XVDeployError(f"{src.name} takes a fixed batch of {src.fixed_batch} (exported with --static), got "
                            f"--batch {','.join(map(str, batches))}; use --batch {src.fixed_batch} or export "
                            "with a dynamic batch")
    return shape, batches


def _reference_outputs(reference_fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int,
                       shape: tuple[int, int, int]) -> np.ndarray:
    try:
        return run_batches(reference_fn, x, batch)
    except Exception as exc:  # torch RuntimeError, onnxruntime InvalidArgument/Fail
        raise XVDeployError(f"the model cannot take batch {batch} of {'x'.join(map(str, shape))}: "
                            f"{first_line(exc)}") from None


def _skip(backend: str, reason: str, spec: RunnerSpec | None = None) -> dict:
    """One entry of the report's skipped list (``*`` where a whole backend is skipped)."""
    return {"backend": backend, "form": spec.form if spec else "*", "precision": spec.precision if spec else "*",
            "device": spec.device if spec else "*", "reason": reason}


def _reference(src: Sources, shape: tuple[int, int, int]) -> tuple[Callable[[np.ndarray], np.ndarray], str,
                                                                    tuple | None]:
    """``(reference function, what it is, the row spec that would compare the reference with itself or None)``."""
    model = src.reference
    if model is None:
        model = src.train if src.train is not None else src.folded
    if model is not None:
        model = model.float().eval()

        def fn(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return model(torch.from_numpy(x)).numpy()

        if src.reference is not None:
            what = src.reference_what
        elif src.train is not None:
            what = "float32 PyTorch training form (CPU)"
        else:
            what = "float32 PyTorch folded form (CPU; the checkpoint holds no training form)"
        return fn, what, None
    if src.onnx is not None:
        try:
            session = ort_session(src.onnx, plugin=src.plugin)
        except XVDeployError:
            raise
        except Exception as exc:  # onnxruntime's Fail / InvalidGraph / NotImplemented
            raise XVDeployError(f"{src.onnx}: onnxruntime cannot load it ({first_line(exc)})") from None
        name = session.get_inputs()[0].name
        what = ("the ONNX file itself in onnxruntime CPU fp32: no PyTorch model is known for it (its metadata names "
                "none bench can rebuild), so the onnxruntime CPU fp32 row compares the file with itself and proves "
                "nothing (status SELF); give the checkpoint it came from with --reference for a real parity check")
        return (lambda x: session.run(None, {name: x})[0]), what, \
            ("onnxruntime", "onnx-plugin" if src.plugin else "onnx", "fp32", "cpu")
    raise XVDeployError("an engine alone has no reference (its sidecar names no ONNX file that is still there "
                        "unchanged); bench the ONNX file or checkpoint it came from with --engine ENGINE")


def _measure(runner: Runner, timing: dict, batch: int, x: np.ndarray, labels, ref: np.ndarray,
             classifier: bool) -> BenchResult:
    with step(f"checking {runner.name} on {len(x)} inputs (batch {batch})"):
        y = run_batches(runner.infer, x, batch)
    if y.shape != ref.shape:  # e.g. an ONNX file whose metadata names a model it is not
        raise XVDeployError(f"{runner.name} gives outputs of shape {'x'.join(map(str, y.shape[1:]))} per input, the "
                            f"reference {'x'.join(map(str, ref.shape[1:]))}: they are not the same network "
                            "(an ONNX file's xvdeploy.arch metadata must name the model it was exported from)")
    par = parity(y, ref, classifier)
    accuracy = ref_accuracy = None
    if labels is not None:
        accuracy = float(np.mean(y.argmax(1) == labels))
        ref_accuracy = float(np.mean(ref.argmax(1) == labels))
    timing_input = x[:batch] if len(x) >= batch else np.resize(x, (batch, *x.shape[1:]))
    with step(f"timing {runner.name} batch {batch}") as task:
        times = runner.time(timing_input, warmup=timing["warmup"] or 0, iters=timing["iters"],
                            warmup_s=timing["warmup_s"], duration_s=timing["duration_s"],
                            progress=lambda done, eta: task.update(done=done, eta_s=eta))
    stats = latency_stats(times)
    cv = variation(times)
    spec = runner.spec
    return BenchResult(spec.backend, spec.form, spec.precision, spec.device, batch, [batch, *x.shape[1:]], stats,
                       batch / (stats["p50"] / 1e3) if stats["p50"] else None, par, accuracy,
                       status(par, spec.precision, accuracy, ref_accuracy), dict(spec.options), times,
                       cv=cv, unstable=cv is not None and cv > UNSTABLE_CV, timing=dict(runner.timing))
