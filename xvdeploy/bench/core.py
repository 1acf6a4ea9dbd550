"""``xvdeploy bench``: numeric parity and latency of every form on every available backend.

Reference: the float32 PyTorch training form on CPU, on the same inputs (for
an ONNX or engine input without a PyTorch model: onnxruntime CPU fp32 of the
ONNX file, and the report says so).
"""
from __future__ import annotations

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
from xvdeploy.bench.metrics import TOLERANCES, latency_stats, parity, status
from xvdeploy.checkpoint import model_form
from xvdeploy.data import digits_split, load_images, random_input, run_batches
from xvdeploy.errors import XVDeployError, first_line
from xvdeploy.export import export_onnx
from xvdeploy.export.onnxfile import ort_session, read_header
from xvdeploy.folding import fold
from xvdeploy.loading import load_model_source
from xvdeploy.quant.calibration import load_calibration
from xvdeploy.trt import availability
from xvdeploy.trt.sidecar import EngineRecord, file_sha256, flavour_label, read_sidecar

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt", "tensorrt-rtx")
TRT_BACKENDS = ("tensorrt", "tensorrt-rtx")  # the TensorRT flavours (xvdeploy.trt.flavour), one runner
PRECISIONS = tuple(TOLERANCES)
DATA_KINDS = ("random", "digits", "images")
PLAN_SUFFIXES = (".plan", ".engine", ".trt")


@dataclass
class BenchConfig:
    model: str | None = None
    backends: list[str] | None = None  # None: every backend, unavailable ones listed as skipped
    batches: list[int] | None = None  # None: 1, or the ONNX file's fixed batch
    input_shape: tuple[int, int, int] | None = None  # (C, H, W)
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    devices: list[str] | None = None  # None: cpu, plus cuda when there is one
    warmup: int = 10
    warmup_s: float | None = None
    iters: int = 50
    duration_s: float | None = None
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

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every check that needs no model: one :class:`XVDeployError` for the first bad field."""
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

    @property
    def failed(self) -> bool:
        return any(r.status == "FAIL" for r in self.results)

    def to_dict(self) -> dict:
        return {"environment": self.environment, "model": self.model, "reference": self.reference, "data": self.data,
                "checkpoint": self.checkpoint, "calibration": self.calibration or None,
                "results": [r.to_dict() for r in self.results], "skipped": self.skipped}


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


def load_sources(cfg: BenchConfig, workdir: Path, need_onnx: bool) -> Sources:

    source = cfg.model
    if source is None:  # the shipped digits model
        source = str(zoo.pretrained("xv_digits"))
    path = Path(source)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise XVDeployError(f"{path}: no such file; expected an ONNX model")
        shape, plugin, fixed_batch = _onnx_info(path)
        return Sources(path.name, onnx=path, shape=shape, plugin=plugin, fixed_batch=fixed_batch)
    if path.suffix in PLAN_SUFFIXES:
        if not path.is_file():
            raise XVDeployError(f"{path}: no such file; expected a TensorRT engine")
        plan, record = _engine_source(path)
        onnx = _built_from(record)
        if onnx is None:
            return Sources(path.name, plan=plan, plan_record=record)
        shape, plugin, fixed_batch = _onnx_info(onnx)  # the reference: the ONNX file it was built from
        return Sources(path.name, onnx=onnx, plan=plan, plan_record=record, shape=shape, plugin=plugin,
                       fixed_batch=fixed_batch)
    model, arch = load_model_source(source, cfg.arch, cfg.model_factory, cfg.state_key)
    sources = Sources(arch or path.name, is_digits=arch == "xv_digits",
                      unwrapped=getattr(model, "xvdeploy_unwrapped", None))
    if model_form(model) == "train":
        sources.train, sources.folded = model, fold(model)
    else:
        sources.folded = model
    if arch:
        sources.shape = zoo.input_shape(arch)
    if need_onnx:
        shape = cfg.input_shape or sources.shape
        if shape is None:
            raise XVDeployError("this model has no default input shape; give --input-shape CxHxW")
        sources.onnx = workdir / "model.onnx"
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


def _onnx_info(path: Path) -> tuple[tuple[int, int, int] | None, bool, int | None]:
    """``((C, H, W) or None, whether it holds PSSA plugin nodes, fixed batch or None)``, reading the file once."""
    header = read_header(path)
    if not header.inputs:
        raise XVDeployError(f"{path}: the graph has no tensor input; expected a model that takes an image batch")
    dims = next(iter(header.inputs.values()))
    values = [d if d > 0 else None for d in dims]
    fixed_batch = values[0] if values else None
    if len(values) == 4 and all(v is not None for v in values[1:]):
        return tuple(values[1:]), header.plugin, fixed_batch  # type: ignore[return-value]
    example = header.example_shape()  # written by export
    if example and len(example) == 4:
        return tuple(example[1:]), header.plugin, fixed_batch  # type: ignore[return-value]
    return None, header.plugin, fixed_batch


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
                    yield spec, lambda spec=spec: OpenVINORunner(spec, src.onnx, cfg.threads)
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


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchReport:
    """Run every asked-for combination (``cfg`` was validated when it was made)."""
    say = progress or (lambda _message: None)
    backends = cfg.backends or list(BACKENDS)
    with tempfile.TemporaryDirectory(prefix="xvdeploy-bench-") as tmp:
        need_onnx = any(b in ("onnxruntime", "openvino", *TRT_BACKENDS) and not backend_reason(b) for b in backends)
        engine = cfg.engine_source()
        src = load_sources(cfg, Path(tmp), need_onnx)
        if engine is not None:
            src.plan, src.plan_record = engine
        shape, batches = _shape_and_batches(cfg, src)
        report = BenchReport(environment(), src.name, "", "", checkpoint=src.unwrapped)
        reference_fn, report.reference = _reference(src)
        report.skipped += [_skip(b, backend_reason(b)) for b in backends if backend_reason(b)]
        per_batch = {}
        for batch in batches:
            x, labels, report.data = load_data(cfg, shape, batch, src.is_digits)
            per_batch[batch] = (x, labels, _reference_outputs(reference_fn, x, batch, shape))
        calibration = None
        if "int8" in cfg.precisions:
            calibration, report.calibration = calibration_data(cfg, shape, src.is_digits)
        for spec, factory in make_runners(cfg, src, cfg.resolved_devices(), batches, calibration):
            if backend_reason(spec.backend):
                continue
            try:
                runner = factory()
                runner.activate()  # a provider that cannot start says so here: skipped, not a crash
            except BackendUnavailable as exc:
                report.skipped.append(_skip(spec.backend, exc.reason, spec))
                continue
            with runner:
                for batch in batches:
                    say(f"{runner.name} batch {batch}")
                    report.results.append(_measure(runner, cfg, batch, *per_batch[batch], src.classifier))
        if not report.results:
            reasons = "; ".join(f"{s['backend']} {s['precision']} {s['device']}: {s['reason']}" for s in report.skipped)
            raise XVDeployError(f"nothing could run: {reasons}")
    return report


def _shape_and_batches(cfg: BenchConfig, src: Sources) -> tuple[tuple[int, int, int], list[int]]:
    """The (C, H, W) input and the batch sizes, checked against what the model file fixes."""
    shape = cfg.input_shape or src.shape
    if shape is None:
        raise XVDeployError("cannot tell the model's input size; give --input-shape CxHxW")
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


def _reference(src: Sources) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    model = src.train if src.train is not None else src.folded
    if model is not None:
        model = model.float().eval()

        def fn(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return model(torch.from_numpy(x)).numpy()

        what = "float32 PyTorch training form (CPU)" if src.train is not None else \
            "float32 PyTorch folded form (CPU; the checkpoint holds no training form)"
        return fn, what
    if src.onnx is not None:
        session = ort_session(src.onnx, plugin=src.plugin)
        name = session.get_inputs()[0].name
        return (lambda x: session.run(None, {name: x})[0]), "onnxruntime CPU fp32 of the ONNX file (no PyTorch model given)"
    raise XVDeployError("an engine alone has no reference (its sidecar names no ONNX file that is still there "
                        "unchanged); bench the ONNX file or checkpoint it came from with --engine ENGINE")


def _measure(runner: Runner, cfg: BenchConfig, batch: int, x: np.ndarray, labels, ref: np.ndarray,
             classifier: bool) -> BenchResult:
    y = run_batches(runner.infer, x, batch)
    par = parity(y, ref, classifier)
    accuracy = ref_accuracy = None
    if labels is not None:
        accuracy = float(np.mean(y.argmax(1) == labels))
        ref_accuracy = float(np.mean(ref.argmax(1) == labels))
    timing_input = x[:batch] if len(x) >= batch else np.resize(x, (batch, *x.shape[1:]))
    times = runner.time(timing_input, warmup=cfg.warmup, iters=cfg.iters, warmup_s=cfg.warmup_s,
                        duration_s=cfg.duration_s)
    stats = latency_stats(times)
    spec = runner.spec
    return BenchResult(spec.backend, spec.form, spec.precision, spec.device, batch, [batch, *x.shape[1:]], stats,
                       batch / (stats["p50"] / 1e3) if stats["p50"] else None, par, accuracy,
                       status(par, spec.precision, accuracy, ref_accuracy), dict(spec.options), times)
