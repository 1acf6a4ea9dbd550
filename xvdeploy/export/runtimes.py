"""Run an exported ONNX file in other runtimes: does the target take the graph, and with what error?

``xvdeploy export --check-runtimes LIST`` and ``benchmarks/runtimes.py`` (the
matrix in docs/runtimes.md) use this module: one adapter per runtime, each
converting (where the runtime has its own format) and running the file on a
given input; :func:`check_runtimes` compares each output with a reference
and reports one :class:`RuntimeResult` per runtime — ran (rel-L2), failed
(the runtime's first line of complaint) or skipped (not installed, and how to
install it). Nothing here decides anything about the graph; the export's own
gate is :mod:`xvdeploy.export.onnx_export`.

Facts the adapters encode (docs/runtimes.md has the versions they were measured with):

* OpenVINO runs bf16 by default on CPUs with AMX / AVX-512 BF16; fp32 means
  ``INFERENCE_PRECISION_HINT=f32`` (:data:`OPENVINO_PRECISIONS`).
* onnx2torch imports torchvision at import time (for its NMS / RoiAlign
  converters only); where torchvision is not installed the import sees a
  placeholder that raises if one of those converters is ever used.
* onnx2tf writes over the ONNX file it is given (it gets a copy), calls
  ``onnxsim`` through PATH (its own folder is put first), and for static
  3-channel inputs loads ``calibration_image_sample_data_20x128x128x3_float32.npy``
  from its working directory or downloads it: a local file is written there.
* MNN's Python ``mnnconvert`` wrapper reports to a remote log service and
  ``pip install``s a package when it cannot import it; the converter is
  called through MNN's ``_tools`` extension instead, in a subprocess, and
  its exit code is not trusted (it can exit 0 without writing a model): the
  file is checked.
* TensorRT-RTX's parser runs without a GPU; its engines need an RTX-class
  GPU, so without one the result is "parsed", not "ran".
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import types
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from xvdeploy._lazy import available, require
from xvdeploy.errors import XVDeployError
from xvdeploy.export.onnxfile import ort_session, read_header

#: rel-L2 against the reference above which a run counts as failed (float32 runtimes agree to ~1e-6)
RUNTIME_TOLERANCE = 1e-4
#: INFERENCE_PRECISION_HINT per precision row (``xvdeploy bench --backends openvino``)
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
#: seconds one conversion may take before it counts as failed
CONVERT_TIMEOUT_S = 900
#: the file onnx2tf loads from its working directory instead of downloading it
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"


@dataclass
class RuntimeResult:
    """What one runtime did with the file: ``status`` is ran, parsed, failed or skipped."""

    runtime: str
    status: str
    version: str | None = None
    reason: str = ""
    rel_l2: float | None = None
    max_abs: float | None = None
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        """Ran within :data:`RUNTIME_TOLERANCE` or parsed (skipped is neither ok nor a failure)."""
        return self.status in ("ran", "parsed")

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def format_line(self) -> str:
        name = f"{self.runtime} {self.version}" if self.version else self.runtime
        if self.status == "ran":
            return f"runtime {name}: ran, rel-L2 {self.rel_l2:.2e} vs PyTorch (limit {RUNTIME_TOLERANCE:g})"
        return f"runtime {name}: {self.status}: {self.reason}"

    def to_dict(self) -> dict:
        return asdict(self)


class Adapter:
    """One runtime: ``missing()`` says why it cannot be used here, ``run(path, x, workdir)`` returns its output
    (or None where it can only parse: :attr:`parse_only`)."""

    name = ""
    module = ""  # the import that must work
    install = ""  # how to get it
    parse_only = False

    def missing(self) -> str | None:
        if self.module and not available(self.module):
            return f"not installed ({self.install})"
        return None

    def version(self) -> str | None:
        return _dist_version(self.module)

    def run(self, path: Path, x: np.ndarray, workdir: Path) -> np.ndarray | None:
        raise NotImplementedError


class OnnxRuntime(Adapter):
    name, module, install = "onnxruntime", "onnxruntime", "pip install 'xvdeploy[onnx]'"

    def run(self, path, x, workdir):
        session = ort_session(path)
        return session.run(None, {session.get_inputs()[0].name: x})[0]


class OnnxReference(Adapter):
    name, module, install = "onnx.reference", "onnx", "pip install 'xvdeploy[onnx]'"

    def version(self):
        return _dist_version("onnx")

    def run(self, path, x, workdir):
        from onnx.reference import ReferenceEvaluator

        ref = ReferenceEvaluator(str(path))
        return ref.run(None, {ref.input_names[0]: x})[0]


def openvino_compile(path: str | os.PathLike, precision: str = "fp32", device: str = "CPU",
                     shape: tuple[int, ...] | None = None, config: dict | None = None):
    """``(compiled model, openvino module)`` for an ONNX file: read, optionally reshaped to a static ``shape``,
    compiled with the ``INFERENCE_PRECISION_HINT`` of ``precision`` (:data:`OPENVINO_PRECISIONS`) and any
    other ``config`` keys (e.g. ``INFERENCE_NUM_THREADS``).

    Dynamic axes stay dynamic unless ``shape`` is given (OpenVINO's CPU plugin
    runs dynamic shapes, shape inference per new input shape). Raises
    whatever OpenVINO raises for a model it cannot read.
    """
    ov = require("openvino", "The OpenVINO runtime")
    if precision not in OPENVINO_PRECISIONS:
        raise XVDeployError(f"OpenVINO precision {precision!r} is not supported; expected one of "
                            f"{', '.join(OPENVINO_PRECISIONS)}")
    core = ov.Core()
    model = core.read_model(str(path))
    if shape is not None:
        model.reshape({model.inputs[0].any_name: ov.PartialShape(list(shape))})
    compiled = core.compile_model(model, device, {**(config or {}),
                                                  "INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision]})
    return compiled, ov


class OpenVINO(Adapter):
    name, module, install = "openvino", "openvino", "pip install 'xvdeploy[openvino]'"

    def run(self, path, x, workdir):
        compiled, _ = openvino_compile(path, "fp32")
        return compiled(x)[compiled.outputs[0]]


class Onnx2Torch(Adapter):
    name, module, install = "onnx2torch", "onnx2torch", "pip install --no-deps onnx2torch (its metadata pulls torchvision)"

    def missing(self):
        if importlib.util.find_spec("onnx2torch") is None:
            return f"not installed ({self.install})"
        return None

    def run(self, path, x, workdir):
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its Slice converter's indexing deprecation, once per call
            with _torchvision_placeholder():
                convert = importlib.import_module("onnx2torch").convert
            module = convert(str(path)).eval()
            with torch.no_grad():
                return module(torch.from_numpy(x)).numpy()


class MNN(Adapter):
    """MNNConvert (through MNN's ``_tools`` extension) and MNN's module API, both in a subprocess."""

    name, module, install = "mnn", "MNN", "pip install mnn"

    def missing(self):
        if importlib.util.find_spec("MNN") is None or importlib.util.find_spec("_tools") is None:
            return f"not installed ({self.install})"
        return None

    def run(self, path, x, workdir):
        header = read_header(path)
        return _python_job(sys.executable, _MNN_JOB, x, workdir, "MNN",
                           [str(path), next(iter(header.inputs)), next(iter(header.outputs))])


_MNN_JOB = """
import sys
from pathlib import Path
import numpy as np
import _tools
onnx_path, inp, out, x_path, y_path = sys.argv[1:]
model = Path(y_path).with_name("model.mnn")
_tools.mnnconvert(["MNNConvert", "-f", "ONNX", "--modelFile", onnx_path, "--MNNModel", str(model), "--bizCode", "xvdeploy"])
if not model.is_file() or model.stat().st_size == 0:
    sys.exit("XVDEPLOY-ERROR: MNNConvert wrote no model (exit status 0)")
import MNN
x = np.load(x_path)
net = MNN.nn.load_module_from_file(str(model), [inp], [out])
y = MNN.expr.convert(net.forward(MNN.expr.const(x, list(x.shape), MNN.expr.NCHW)), MNN.expr.NCHW)
np.save(y_path, np.array(y.read(), dtype=np.float32).reshape(y.shape))
"""


class TFLite(Adapter):
    """onnx2tf (a command on PATH or ``XVDEPLOY_ONNX2TF``) converts; the LiteRT interpreter runs
    (the Python beside onnx2tf if it has one, as onnx2tf installs LiteRT; else this one's)."""

    name, module = "tflite", "ai_edge_litert"
    install = "pip install onnx2tf (it pins tensorflow: give it its own venv and put its bin/ on PATH)"

    def missing(self):
        if _onnx2tf() is None:
            return f"onnx2tf is not installed ({self.install})"
        return None

    def version(self):
        tool = _onnx2tf()
        return f"onnx2tf {_tool_version(tool, 'onnx2tf') or '?'} + LiteRT {_tool_version(tool, 'ai_edge_litert') or '?'}"

    def run(self, path, x, workdir):
        tool = _onnx2tf()
        copy = workdir / "model.onnx"  # onnx2tf writes over its input
        shutil.copyfile(path, copy)
        np.save(workdir / ONNX2TF_SAMPLE, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
        name = next(iter(read_header(path).inputs))
        out = workdir / "tf"
        env = {**os.environ, "PATH": f"{Path(tool).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        _run_tool([tool, "-i", str(copy), "-o", str(out), "-ois", f"{name}:{','.join(map(str, x.shape))}",
                   "-k", name, "-n"], workdir, "onnx2tf", env=env)
        models = sorted(out.glob("*_float32.tflite"))
        if not models:
            raise RuntimeError("onnx2tf wrote no .tflite model")
        beside = Path(tool).parent / "python"
        return _python_job(str(beside) if beside.is_file() else sys.executable, _TFLITE_JOB, x, workdir, "LiteRT",
                           [str(models[0])])


_TFLITE_JOB = """
import sys
import numpy as np
model, x_path, y_path = sys.argv[1:]
try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    try:
        from tflite_runtime.interpreter import Interpreter
    except ImportError:
        sys.exit("XVDEPLOY-ERROR: no TFLite interpreter (pip install ai-edge-litert)")
it = Interpreter(model_path=model)
it.allocate_tensors()
it.set_tensor(it.get_input_details()[0]["index"], np.load(x_path))
it.invoke()
np.save(y_path, it.get_tensor(it.get_output_details()[0]["index"]))
"""


class TensorRTRTX(Adapter):
    """TensorRT-RTX's ONNX parser (no engine is built: running one needs an RTX-class GPU)."""

    name, module, install = "tensorrt_rtx", "tensorrt_rtx", "pip install 'xvdeploy[rtx]'"
    parse_only = True

    def version(self):
        return getattr(require("tensorrt_rtx", "TensorRT-RTX's ONNX parser"), "__version__", None)

    def run(self, path, x, workdir):
        trt = require("tensorrt_rtx", "TensorRT-RTX's ONNX parser")
        logger = trt.Logger(trt.Logger.ERROR)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(path)):
            errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
            raise RuntimeError(errors[0] if errors else "the parser failed without reporting an error")
        return None


#: every runtime, in the order of docs/runtimes.md
ADAPTERS: dict[str, Adapter] = {a.name: a for a in (OnnxRuntime(), OnnxReference(), OpenVINO(), Onnx2Torch(), MNN(),
                                                       TFLite(), TensorRTRTX())}


def resolve_runtimes(names) -> tuple[str, ...]:
    """Known runtime names (``all`` = every one); one clear error for an unknown name."""
    out: list[str] = []
    for n in names:
        if n == "all":
            out += list(ADAPTERS)
        elif n in ADAPTERS:
            out.append(n)
        else:
            raise XVDeployError(f"unknown runtime {n!r} for --check-runtimes; expected some of "
                                f"{', '.join(ADAPTERS)} (or all)")
    return tuple(dict.fromkeys(out))


def check_runtimes(path: str | os.PathLike, names, x: np.ndarray, reference: np.ndarray,
                   progress: Callable[[str], None] | None = None) -> list[RuntimeResult]:
    """Run ``path`` on ``x`` in each named runtime and compare with ``reference``: one result each, in order."""
    path = Path(path)
    results = []
    for name in resolve_runtimes(names):
        if progress:
            progress(name)
        results.append(_check_one(ADAPTERS[name], path, x, reference))
    return results


def run_runtimes(path: str | os.PathLike, names, model, shape: tuple[int, ...], seed: int = 11) -> list[RuntimeResult]:
    """:func:`check_runtimes` on a random-normal input of ``shape`` against the PyTorch ``model`` (float32)."""
    import torch

    x = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    with torch.no_grad():
        p = next(model.parameters(), None)
        ref = model(torch.from_numpy(x).to(p.dtype if p is not None else torch.float32)).float().numpy()
    return check_runtimes(path, names, x, ref)


def _check_one(adapter: Adapter, path: Path, x: np.ndarray, reference: np.ndarray) -> RuntimeResult:
    reason = adapter.missing()
    if reason:
        return RuntimeResult(adapter.name, "skipped", reason=reason)
    try:
        version = adapter.version()
    except Exception:  # a version lookup never decides the result
        version = None
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"xvdeploy-{adapter.name}-") as tmp:
        try:
            y = adapter.run(path, np.ascontiguousarray(x, dtype=np.float32), Path(tmp))
        except Exception as exc:  # the runtime's own complaint, whatever its type
            return RuntimeResult(adapter.name, "failed", version, reason=complaint(str(exc)) or type(exc).__name__,
                                 seconds=time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if y is None:
        return RuntimeResult(adapter.name, "parsed", version, reason="parsed; running needs an RTX-class GPU",
                             seconds=seconds)
    y = np.asarray(y, dtype=np.float64)
    if y.shape != reference.shape and y.ndim == 4 and y.transpose(0, 3, 1, 2).shape == reference.shape:
        y = y.transpose(0, 3, 1, 2)  # a channels-last runtime (TFLite)
    if y.shape != reference.shape:
        return RuntimeResult(adapter.name, "failed", version, seconds=seconds,
                             reason=f"output shape {tuple(y.shape)}, expected {tuple(reference.shape)}")
    ref = reference.astype(np.float64)
    norm = float(np.linalg.norm(ref))
    err = float(np.linalg.norm(y - ref) / norm) if norm else float(np.linalg.norm(y - ref))
    max_abs = float(np.abs(y - ref).max()) if y.size else 0.0
    if not err <= RUNTIME_TOLERANCE:  # NaN fails too
        return RuntimeResult(adapter.name, "failed", version, reason=f"ran, but rel-L2 {err:.2e} vs PyTorch is over "
                             f"the {RUNTIME_TOLERANCE:g} limit", rel_l2=err, max_abs=max_abs, seconds=seconds)
    return RuntimeResult(adapter.name, "ran", version, rel_l2=err, max_abs=max_abs, seconds=seconds)


# -- helpers ------------------------------------------------------------------------------------------------


def _dist_version(module: str) -> str | None:
    from importlib import metadata

    names = {"onnxruntime": "onnxruntime", "onnx": "onnx", "openvino": "openvino", "onnx2torch": "onnx2torch",
             "MNN": "mnn", "ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime",
             "tensorflow": "tensorflow", "tensorrt_rtx": "tensorrt-rtx-cu12"}
    try:
        return metadata.version(names.get(module, module))
    except metadata.PackageNotFoundError:
        return None


def _run_tool(cmd: list[str], cwd: Path, what: str, env: dict | None = None) -> None:
    """Run a converter; a non-zero exit raises with its last meaningful line of output."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=CONVERT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} took longer than {CONVERT_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{what} exited {proc.returncode}: {complaint(proc.stdout + proc.stderr)}")


_LOG_PREFIX = re.compile(r"^\[\d\d:\d\d:\d\d\] :\d+: ")  # MNNConvert's "[22:45:01] :220: "
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Failure)): (.+)$")
_UNSUPPORTED = ("unsupported", "not support", "not implemented", "no converter", "cannot", "can't")
_NOISE = ("Check '", "Exception from ", "FrontEnd API failed", "ERROR: The trace log", "Traceback", "File \"",
          "While validating", "Model wasn't fully converted", "Summary:")


def complaint(text: str) -> str:
    """The one line of a runtime's or converter's output that says what went wrong.

    In order: a Python exception's message (with the line after it, where
    onnx2tf puts the reason, and the ONNX node it names); a line saying
    something is unsupported / not implemented (OpenVINO's and MNNConvert's
    per-operator reports, with OpenVINO's list of failed operators); a line
    with "error" or "failed"; the last line.
    """
    lines = [_LOG_PREFIX.sub("", _strip_ansi(ln).strip()) for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        return "no output"
    node = next((ln.split(":", 2)[-1].strip() for ln in lines if ln.startswith("ERROR: onnx_op_name:")), None)
    failed_ops = next((ln.split(":", 1)[-1].strip() for ln in lines if "Conversion is failed for:" in ln), None)
    for i, ln in enumerate(lines):
        m = _EXCEPTION.match(ln)
        if m:
            msg = m.group(2)
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if nxt and not nxt.startswith(("Call arguments", "File ", "Traceback", "ERROR:", "•")):
                msg = f"{msg} {nxt}"
            return _short(msg + (f" (ONNX node {node})" if node else ""))
    useful = [ln for ln in lines if not ln.startswith(_NOISE)]
    for ln in useful:
        if any(k in ln.lower() for k in _UNSUPPORTED):
            return _short(ln + (f" (failed: {failed_ops})" if failed_ops and failed_ops not in ln else ""))
    for ln in useful:
        if "error" in ln.lower() or "failed" in ln.lower():
            return _short(ln)
    return _short(useful[-1] if useful else lines[-1])


def _short(line: str, limit: int = 300) -> str:
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _python_job(python: str, code: str, x: np.ndarray, workdir: Path, what: str, args: list[str]) -> np.ndarray:
    """Run ``code`` in a separate Python (crashes and C-level prints stay there) on ``x``; returns its output."""
    x_path, y_path = workdir / "x.npy", workdir / "y.npy"
    np.save(x_path, x)
    try:
        proc = subprocess.run([python, "-c", code, *args, str(x_path), str(y_path)], cwd=workdir,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} took longer than {CONVERT_TIMEOUT_S} s") from None
    text = proc.stdout + proc.stderr
    for line in text.splitlines():
        if line.startswith("XVDEPLOY-ERROR: "):
            said = complaint(text.replace(line, ""))
            raise RuntimeError(line[len("XVDEPLOY-ERROR: "):] + (f"; it said: {said}" if said != "no output" else ""))
    if proc.returncode != 0 or not y_path.is_file():
        raise RuntimeError(f"{what} exited {proc.returncode}: {complaint(text)}")
    return np.load(y_path)


def _onnx2tf() -> str | None:
    tool = os.environ.get("XVDEPLOY_ONNX2TF") or shutil.which("onnx2tf")
    return tool if tool and Path(tool).is_file() else None


def _tool_version(tool: str, dist: str) -> str | None:
    """The version of package ``dist`` in the environment a console script sits in (its dist-info)."""
    for site in sorted(Path(tool).parent.parent.glob("lib/python*/site-packages")):
        found = sorted(site.glob(f"{dist}-*.dist-info"))
        if found:
            return found[0].name[len(dist) + 1:-len(".dist-info")]
    return None


@contextlib.contextmanager
def _torchvision_placeholder() -> Iterator[None]:
    """A stand-in ``torchvision`` (its ``ops`` raise) while onnx2torch imports, where torchvision is not installed.

    onnx2torch imports ``torchvision.ops`` at import time for its NMS and
    RoiAlign converters only; no graph of this package holds those operators.
    The placeholder is removed from ``sys.modules`` afterwards, so nothing
    else mistakes it for torchvision.
    """
    if importlib.util.find_spec("torchvision") is not None:
        yield
        return

    def unavailable(*_args, **_kwargs):
        raise RuntimeError("torchvision is not installed: onnx2torch's NMS / RoiAlign converters need it")

    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    for fn in ("nms", "batched_nms", "roi_align", "box_convert"):
        setattr(ops, fn, unavailable)
    tv.ops = ops
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, ops
    try:
        yield
    finally:
        sys.modules.pop("torchvision", None)
        sys.modules.pop("torchvision.ops", None)
