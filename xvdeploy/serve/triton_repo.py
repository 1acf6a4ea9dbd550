"""A Triton Inference Server model repository from an exported ONNX file or a built TensorRT engine.

Layout (Triton's "model repository" documentation)::

    DIR/<name>/config.pbtxt
    DIR/<name>/<version>/model.onnx        platform onnxruntime_onnx
    DIR/<name>/<version>/model.plan        platform tensorrt_plan (+ model.plan.json, xvdeploy's build record)

``config.pbtxt`` is built as tritonclient's ``inference.ModelConfig`` protobuf
message (the schema Triton itself parses) and written with protobuf's
``text_format``: the real input/output names, data types and dimensions of the
file (batch dimension excluded, ``-1`` where dynamic), ``max_batch_size`` (the
dynamic batch up to :data:`DEFAULT_MAX_BATCH` for ONNX, the optimization
profiles' largest common batch for an engine), ``dynamic_batching`` with
preferred batch sizes, an ``instance_group`` and, for engines, the
optimization profiles each instance may use. Notes (the TensorRT version an
engine needs, the PSSA plugin) are ``#`` comments at the top.

A new version never touches the versions already there: it is assembled in a
temporary folder and renamed into place; a repository's existing
``config.pbtxt`` is kept (it serves every version), and a model whose inputs
or outputs differ from it is refused.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from xvdeploy._version import __version__
from xvdeploy._lazy import require
from xvdeploy.errors import XVDeployError, first_line
from xvdeploy.fileio import atomic_path, write_text_atomic
from xvdeploy.export.onnxfile import OnnxHeader, read_header
from xvdeploy.trt.builder import DEFAULT_MAX_BATCH
from xvdeploy.trt.shapes import Profile, profiles_from_json
from xvdeploy.trt.sidecar import EngineRecord, file_sha256, read_sidecar, sidecar_path

CONFIG = "config.pbtxt"
#: model kind -> (Triton platform, file name in the version folder)
PLATFORMS = {"onnx": ("onnxruntime_onnx", "model.onnx"), "plan": ("tensorrt_plan", "model.plan")}
PLAN_SUFFIXES = (".plan", ".engine", ".trt")
INSTANCE_KINDS = {"auto": "KIND_AUTO", "cpu": "KIND_CPU", "gpu": "KIND_GPU"}

#: ONNX TensorProto data type name -> Triton DataType name
ONNX_TO_TRITON = {
    "BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16", "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64", "INT8": "TYPE_INT8", "INT16": "TYPE_INT16", "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64", "FLOAT16": "TYPE_FP16", "FLOAT": "TYPE_FP32", "DOUBLE": "TYPE_FP64",
    "STRING": "TYPE_STRING", "BFLOAT16": "TYPE_BF16",
}

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class TritonOptions:
    """What the user may choose; ``None`` means derived from the file."""

    name: str | None = None  # default: the file's stem
    version: int | None = None  # default: one above the highest version present (1 for a new model)
    max_batch_size: int | None = None  # ONNX default DEFAULT_MAX_BATCH; engine default: its profiles' limit
    preferred_batch_sizes: tuple[int, ...] | None = None  # default: max/2 and max
    max_queue_delay_us: int = 100
    instance_kind: str | None = None  # auto | cpu | gpu; default auto for ONNX, gpu for an engine
    instance_count: int = 1


@dataclass
class TritonModel:
    """What was (or would be) written."""

    model_dir: Path
    version: int
    model_file: Path
    config_path: Path
    config_text: str
    config_written: bool  # False: an existing config.pbtxt was kept
    notes: list[str] = field(default_factory=list)


# -- checks that need no file of the model -----------------------------------------------------------------
def parse_instances(text: str) -> tuple[str, int]:
    """``"gpu"`` → ``("gpu", 1)``, ``"cpu:2"`` → ``("cpu", 2)`` (the ``--triton-instances`` syntax)."""
    kind, _, count = text.strip().lower().partition(":")
    if kind not in INSTANCE_KINDS or (count and (not count.isdigit() or int(count) < 1)):
        raise XVDeployError(f"--triton-instances {text!r}: expected KIND[:COUNT] with KIND one of "
                            f"{', '.join(INSTANCE_KINDS)} and COUNT ≥ 1, e.g. gpu:2")
    return kind, int(count) if count else 1


def model_name(model_path: str | os.PathLike, name: str | None = None) -> str:
    """The Triton model name: ``name`` (checked) or the file's stem with other characters as ``_``."""
    if name is not None:
        if not _NAME.match(name):
            raise XVDeployError(f"Triton model name {name!r}: expected letters, digits, '_', '.' or '-' "
                                "(not starting with '.' or '-')")
        return name
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(model_path).stem).lstrip(".-") or "model"
    return stem


def check_repository(repo: str | os.PathLike, name: str, options: TritonOptions = TritonOptions(),
                     header: OnnxHeader | None = None, kind: str | None = None) -> Path:
    """Validate where a model goes before anything is built: the repository folder (created if only it
    is missing), the model folder, an explicitly requested version and, given the model's signature and
    kind, that an existing model there has the same platform, inputs and outputs; returns the model folder."""
    repo = Path(repo)
    if repo.exists() and not repo.is_dir():
        raise XVDeployError(f"--triton-repo {repo} is a file; expected a folder (a Triton model repository)")
    parent = repo.parent if str(repo.parent) else Path(".")
    if not repo.exists() and not parent.is_dir():
        raise XVDeployError(f"the folder of --triton-repo {repo} does not exist; create {parent} first")
    where = repo if repo.exists() else parent
    if not os.access(where, os.W_OK):
        raise XVDeployError(f"--triton-repo {repo}: {where} is not writable; choose another folder")
    model_dir = repo / name
    if model_dir.exists() and not model_dir.is_dir():
        raise XVDeployError(f"{model_dir} is a file; a Triton model is a folder: choose another --triton-name")
    if options.version is not None:
        if options.version < 1:
            raise XVDeployError(f"--triton-version must be at least 1, got {options.version}")
        if (model_dir / str(options.version)).exists():
            raise XVDeployError(f"{model_dir / str(options.version)} exists; earlier versions are never "
                                "overwritten: choose another --triton-version or leave it out for the next one")
    if options.max_batch_size is not None and options.max_batch_size < 0:
        raise XVDeployError(f"--triton-max-batch must be 0 (no batching) or more, got {options.max_batch_size}")
    if options.instance_count < 1:
        raise XVDeployError(f"the instance count must be at least 1, got {options.instance_count}")
    if options.instance_kind is not None and options.instance_kind not in INSTANCE_KINDS:
        raise XVDeployError(f"instance kind {options.instance_kind!r}: expected one of {', '.join(INSTANCE_KINDS)}")
    if (model_dir / CONFIG).is_file():
        existing = read_config((model_dir / CONFIG).read_text(encoding="utf-8"), model_dir / CONFIG)
        if header is not None and kind is not None:
            probe = build_config(header, kind, name,
                                 max_batch_size=existing.max_batch_size if _batch_dynamic(header) else 0)
            if _signature_of(existing) != _signature_of(probe):
                raise XVDeployError(f"{model_dir} already holds a model of another kind or shape "
                                    f"({_describe(existing)}); this one is {_describe(probe)}: choose another "
                                    "--triton-name or repository")
    return model_dir


# -- config.pbtxt ------------------------------------------------------------------------------------------
def _pb():
    return require("tritonclient.grpc.model_config_pb2", "Writing a Triton model configuration")


def _text_format():
    return require("google.protobuf.text_format", "Writing a Triton model configuration")


def read_config(text: str, source: str | os.PathLike = CONFIG):
    """Parse ``config.pbtxt`` text with Triton's schema; a clear error if it does not parse."""
    config = _pb().ModelConfig()
    try:
        _text_format().Parse(text, config)
    except Exception as exc:  # text_format.ParseError
        raise XVDeployError(f"{source} is not a valid Triton model configuration ({first_line(exc)}); "
                            "fix or remove it, or choose another --triton-name") from None
    return config


def _type_name(elem_type: int) -> str:
    """``1`` → ``"FLOAT"`` (onnx.TensorProto's data type names)."""
    onnx = require("onnx", "Reading ONNX files")
    try:
        return onnx.TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"UNDEFINED({elem_type})"


def _batch_dynamic(header: OnnxHeader) -> bool:
    """Whether every input and output has a dynamic first dimension (a batch Triton may stack)."""
    dims = list(header.inputs.values()) + list(header.outputs.values())
    return bool(dims) and all(d and d[0] < 0 for d in dims)


def _describe_inputs(header: OnnxHeader) -> str:
    return ", ".join(f"{n} {'x'.join(str(d) if d >= 0 else '?' for d in dims)}" for n, dims in header.inputs.items())


def _add_tensor(collection, name: str, elem_type: int, dims: tuple[int, ...], batched: bool) -> None:
    type_name = _type_name(elem_type)
    if type_name not in ONNX_TO_TRITON:
        raise XVDeployError(f"{name!r} has ONNX type {type_name}, which Triton has no data type for")
    dims = list(dims[1:] if batched else dims)
    entry = collection.add()
    entry.name = name
    entry.data_type = _pb().DataType.Value(ONNX_TO_TRITON[type_name])
    if dims:
        entry.dims.extend(dims)
    else:  # a scalar per sample: Triton needs at least one dimension; reshape drops it again
        entry.dims.append(1)
        entry.reshape.SetInParent()


def _preferred(max_batch: int, given: tuple[int, ...] | None) -> list[int]:
    if given is not None:
        bad = [b for b in given if not 1 <= b <= max_batch]
        if bad:
            raise XVDeployError(f"preferred batch sizes {', '.join(map(str, bad))} are outside 1..{max_batch} "
                                "(max_batch_size)")
        return sorted(set(given))
    return sorted({max(1, max_batch // 2), max_batch})


def build_config(header: OnnxHeader, kind: str, name: str, *, max_batch_size: int,
                 options: TritonOptions = TritonOptions(), profiles: int = 0):
    """The ``ModelConfig`` message for a model of ``kind`` (``onnx`` or ``plan``)."""
    pb = _pb()
    platform, filename = PLATFORMS[kind]
    config = pb.ModelConfig(name=name, platform=platform, max_batch_size=max_batch_size,
                            default_model_filename=filename)
    batched = max_batch_size > 0
    for name, dims in header.inputs.items():
        _add_tensor(config.input, name, header.input_types[name], dims, batched)
    for name, dims in header.outputs.items():
        _add_tensor(config.output, name, header.output_types[name], dims, batched)
    if batched:
        config.dynamic_batching.preferred_batch_size.extend(_preferred(max_batch_size, options.preferred_batch_sizes))
        config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
    kind_name = options.instance_kind or ("gpu" if kind == "plan" else "auto")
    if kind == "plan" and kind_name != "gpu":
        raise XVDeployError(f"a TensorRT engine runs on a GPU only; got instance kind {kind_name!r} (use gpu)")
    group = config.instance_group.add()
    group.kind = pb.ModelInstanceGroup.Kind.Value(INSTANCE_KINDS[kind_name])
    group.count = options.instance_count
    if profiles:
        group.profile.extend(str(i) for i in range(profiles))
    return config


def config_text(config, notes: list[str] = ()) -> str:
    header = [f"# Triton model configuration written by xvdeploy {__version__}"]
    header += [f"# note: {n}" for n in notes]
    return "\n".join(header) + "\n" + _text_format().MessageToString(config, use_short_repeated_primitives=True)


def _signature_of(config) -> tuple:
    """What must agree between versions of one model: platform, batching, inputs and outputs."""
    def tensors(items):
        return tuple((t.name, t.data_type, tuple(t.dims)) for t in items)
    return config.platform, config.max_batch_size, tensors(config.input), tensors(config.output)


def _describe(config) -> str:
    pb = _pb()

    def tensors(items):
        return ", ".join(f"{t.name} {pb.DataType.Name(t.data_type)} [{', '.join(map(str, t.dims))}]" for t in items)
    return (f"{config.platform}, max_batch_size {config.max_batch_size}, inputs {tensors(config.input)}, "
            f"outputs {tensors(config.output)}")


# -- onnx / plan ---------------------------------------------------------------------------------------------
def _onnx_batch(header: OnnxHeader, options: TritonOptions) -> int:
    if not _batch_dynamic(header):
        if options.max_batch_size:
            raise XVDeployError(f"the model's batch dimension is fixed ({_describe_inputs(header)}); "
                                "Triton can batch only a model exported with a dynamic batch "
                                "(export without --static), so max_batch_size must be 0")
        return 0
    return DEFAULT_MAX_BATCH if options.max_batch_size is None else options.max_batch_size


def _plan_batch(header: OnnxHeader, profiles: list[Profile], options: TritonOptions, notes: list[str]) -> int:
    """The largest batch every profile accepts (and a note where a profile's smallest batch is above 1)."""
    if not _batch_dynamic(header) or not profiles:
        if options.max_batch_size:
            raise XVDeployError("the engine has a fixed batch dimension; its max_batch_size must be 0")
        return 0
    names = list(header.inputs)
    limit = min(p[n].max[0] for p in profiles for n in names if n in p)
    smallest = max(p[n].min[0] for p in profiles for n in names if n in p)
    if smallest > 1:
        notes.append(f"the engine's optimization profiles start at batch {smallest}: Triton must not send it "
                     "smaller batches (rebuild with --min-shape at batch 1)")
    if options.max_batch_size is not None:
        if options.max_batch_size > limit:
            raise XVDeployError(f"--triton-max-batch {options.max_batch_size} is larger than the engine's "
                                f"optimization profiles allow ({limit}); rebuild with a larger --max-shape batch")
        return options.max_batch_size
    return limit


def plan_notes(record: EngineRecord) -> list[str]:
    """What a Triton server needs to load this engine."""
    notes = [f"model.plan was built with TensorRT {record.tensorrt_version} for {record.gpu_name} "
             f"(compute capability {record.compute_capability}), {record.precision}: the Triton server must run "
             "that TensorRT version (see Triton's release notes) on a GPU of that compute capability"]
    if record.pssa_plugin:
        notes.append("this engine needs the PSSA plugin library (xvdeploy::PSSA / xvdeploy::PSSAConcat). "
                     "xvdeploy's plugin is a Python tensorrt.plugin, registered in-process by xvdeploy; "
                     "Triton's tensorrt_plan backend loads plugins only from shared libraries "
                     "(LD_PRELOAD or --backend-config=tensorrt,plugins=...), so this engine will not load "
                     "there as it is: build the engine without --pssa-plugin for Triton, or serve model.onnx "
                     "with onnxruntime_onnx")
    return notes


def onnx_model_config(header: OnnxHeader, name: str, options: TritonOptions = TritonOptions()):
    """The ``ModelConfig`` of an ONNX model (platform ``onnxruntime_onnx``) and its notes."""
    return build_config(header, "onnx", name, max_batch_size=_onnx_batch(header, options), options=options), []


def plan_model_config(header: OnnxHeader, record: EngineRecord, name: str, options: TritonOptions = TritonOptions()):
    """The ``ModelConfig`` of a TensorRT engine (``tensorrt_plan``) built from the ONNX model of ``header``, as
    its build record describes it (profiles, TensorRT version, plugin), and its notes."""
    profiles = profiles_from_json(record.profiles)
    notes = plan_notes(record)
    max_batch = _plan_batch(header, profiles, options, notes)
    return build_config(header, "plan", name, max_batch_size=max_batch, options=options,
                        profiles=len(profiles)), notes


def write_triton_model(repo: str | os.PathLike, model: str | os.PathLike, options: TritonOptions = TritonOptions(),
                       onnx_path: str | os.PathLike | None = None) -> TritonModel:
    """Add ``model`` (an ONNX file, or a TensorRT plan with its sidecar) to the repository ``repo``.

    For a plan, ``onnx_path`` is the ONNX file it was built from (default: the
    one its sidecar names); the inputs and outputs are read from it and its
    hash must match the sidecar's.
    """
    model = Path(model)
    if not model.is_file():
        raise XVDeployError(f"model file {model} does not exist")
    kind = "plan" if model.suffix.lower() in PLAN_SUFFIXES else "onnx"
    name = model_name(model, options.name)
    model_dir = check_repository(repo, name, options)
    if kind == "plan":
        record = read_sidecar(model)
        if record is None:
            raise XVDeployError(f"engine {model} has no build record {sidecar_path(model).name} beside it; "
                                "Triton's config needs its profiles: rebuild it with 'xvdeploy build'")
        source = Path(onnx_path) if onnx_path is not None else Path(record.onnx_file)
        if not source.is_file():
            raise XVDeployError(f"the ONNX file {source} the engine was built from is not there; "
                                "its inputs and outputs go into config.pbtxt: give the ONNX file")
        if record.onnx_sha256 and file_sha256(source) != record.onnx_sha256:
            raise XVDeployError(f"{source} is not the ONNX file engine {model} was built from (its SHA-256 differs "
                                "from the build record); give the file it was built from, or rebuild")
        config, notes = plan_model_config(read_header(source), record, name, options)
    else:
        header = read_header(model)
        custom = sorted({domain for domain, _ in header.custom_ops} - {"ai.onnx.ml"})
        if custom:
            raise XVDeployError(f"{model} uses operators of the domain(s) {', '.join(custom)} (e.g. the "
                                "PSSA plugin node of 'export --pssa-plugin'), which Triton's onnxruntime backend "
                                "does not have; export without --pssa-plugin for Triton")
        if header.external_data:
            raise XVDeployError(f"{model} keeps its weights in external data files; Triton's repository needs "
                                "one self-contained model.onnx: export it without external data")
        config, notes = onnx_model_config(header, name, options)
    text = config_text(config, notes)
    read_config(text, "the generated configuration")  # it must parse with the schema it was built from

    config_path = model_dir / CONFIG
    existing = read_config(config_path.read_text(encoding="utf-8"), config_path) if config_path.is_file() else None
    if existing is not None and _signature_of(existing) != _signature_of(config):
        raise XVDeployError(f"{model_dir} already holds a model of another kind or shape ({_describe(existing)}); "
                            f"{model.name} is {_describe(config)}: choose another --triton-name or repository")
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()] if model_dir.is_dir() else []
    version = options.version if options.version is not None else max(versions, default=0) + 1
    filename = PLATFORMS[kind][1]
    files = [(model, filename)] + ([(sidecar_path(model), filename + ".json")] if kind == "plan" else [])
    Path(repo).mkdir(exist_ok=True)
    if existing is None and not model_dir.exists():
        _publish_dir(model_dir, files, version, text)  # a new model: config and version appear together
    else:
        model_dir.mkdir(exist_ok=True)
        _publish_dir(model_dir / str(version), files)
        if existing is None:
            write_text_atomic(config_path, text)
    return TritonModel(model_dir, version, model_dir / str(version) / filename, config_path,
                       text if existing is None else config_path.read_text(encoding="utf-8"),
                       existing is None, notes)


def _publish_dir(target: Path, files: list[tuple[Path, str]], version: int | None = None,
                 config: str | None = None) -> None:
    """Assemble ``target`` in a temporary folder beside it, then rename it into place (all or nothing).

    With ``version``, ``target`` is a model folder: ``config.pbtxt`` plus the version folder.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        inner = tmp / str(version) if version is not None else tmp
        inner.mkdir(exist_ok=True)
        for src, dest_name in files:
            with atomic_path(inner / dest_name) as part:
                shutil.copyfile(src, part)
        if config is not None:
            write_text_atomic(tmp / CONFIG, config)
        os.chmod(tmp, 0o777 & ~_umask())
        if target.exists():  # appeared meanwhile
            raise XVDeployError(f"{target} appeared while it was being written; run again")
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
