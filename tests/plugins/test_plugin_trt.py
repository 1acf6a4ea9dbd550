"""The TensorRT plugin: AOT kernel compile (CPU), plugin definitions against a stub, and a real engine (GPU + TensorRT)."""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from xvdeploy.errors import XVDeployError
from xvdeploy.plugins import trt_plugin
from xvdeploy.plugins.trt_plugin import AOTKernel, TACTIC_BLOCKS, _strip_hidden_params
from xvdeploy.pssa_contract import plugin_id

_PTX = """//
.version 8.4
.target sm_90a
.address_size 64

.visible .entry k(
\t.param .u64 .ptr .global .align 1 k_param_0,
\t.param .u32 k_param_1,
\t.param .u64 .ptr .global .align 1 k_param_2,
\t.param .u64 .ptr .global .align 1 k_param_3
)
{
\tld.param.u64 \t%rd1, [k_param_0];
\tld.param.u32 \t%r1, [k_param_1];
\tld.param.u64 \t%rd2, [k_param_2];
\tret;
}
"""


def test_strip_hidden_params():
    out = _strip_hidden_params(_PTX, "k", 3)
    assert "k_param_3" not in out and "k_param_2" in out and "ld.param.u64 \t%rd2, [k_param_2];" in out
    assert _strip_hidden_params(_PTX, "k", 4) == _PTX
    with pytest.raises(XVDeployError, match="hidden parameter k_param_2"):
        _strip_hidden_params(_PTX, "k", 2)
    with pytest.raises(XVDeployError, match="cannot find the entry"):
        _strip_hidden_params(_PTX, "other", 2)


_AOT_SCRIPT = r"""
import json, re, subprocess, sys, tempfile
from xvdeploy.plugins.trt_plugin import compile_aot
from triton.backends.nvidia.compiler import get_ptxas
report = []
for dtype, concat, cm in (("fp32", False, False), ("fp16", True, False), ("bf16", True, True)):
    k = compile_aot(dtype, [-1, -1, 0, 1, 5, -7], concat, 256, capability=90, channel_major=cm)
    entry = re.search(r"\.entry\s+" + k.name + r"\s*\((.*?)\)", k.ptx, re.S).group(1)
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(k.ptx)
    r = subprocess.run([get_ptxas(90).path, "-arch=sm_90a", f.name, "-o", f.name + ".cubin"],
                       capture_output=True, text=True)
    report.append({"dtype": dtype, "params": entry.count(".param"), "warps": k.num_warps,
                   "ptxas": r.returncode, "err": r.stderr[-300:]})
print(json.dumps(report))
"""


def test_aot_compile_gives_trt_abi_ptx():
    """Compile for sm_90 on this machine (no GPU needed): entry = (x, C, H, W, NBLK, out), ptxas accepts it."""
    pytest.importorskip("triton.backends.nvidia.compiler")
    env = dict(os.environ, TRITON_INTERPRET="0")
    proc = subprocess.run([sys.executable, "-c", _AOT_SCRIPT], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        pytest.fail(proc.stderr[-2000:])
    for item in json.loads(proc.stdout.strip().splitlines()[-1]):
        assert item["params"] == 6, item
        assert item["ptxas"] == 0, item


def test_aot_compile_refuses_interpreter_mode():
    pytest.importorskip("triton")
    from xvdeploy.plugins.pssa_triton import interpreting

    if not interpreting():
        pytest.skip("only meaningful under TRITON_INTERPRET=1")
    with pytest.raises(XVDeployError, match="TRITON_INTERPRET"):
        trt_plugin.compile_aot("fp32", [1, 1], capability=90)
    with pytest.raises(XVDeployError, match="fp32, fp16 and bf16"):
        trt_plugin.compile_aot("fp64", [1, 1], capability=90)


# --------------------------------------------------------------------------- a stub of tensorrt.plugin


def _stub_trtp():
    """Just enough of ``tensorrt.plugin`` to record the definitions and evaluate them on integers."""
    reg: dict[str, dict] = {}

    def deco(kind):
        def outer(pid):
            def inner(fn):
                reg.setdefault(pid, {})[kind] = fn
                return fn
            return inner
        return outer

    class TensorDesc:
        def __init__(self, shape_expr=(), dtype="FP32"):
            self.shape_expr, self.dtype = list(shape_expr), dtype

        def like(self):
            return TensorDesc(self.shape_expr, self.dtype)

    class AutoTuneCombination:
        def __init__(self, types, layouts, tactics):
            self.types, self.layouts, self.tactics = types, layouts, tactics

    class SymExprs(list):
        pass

    class SymIntExprs(SymExprs):
        @classmethod
        def from_tuple(cls, items):
            return cls(items)

    class KernelLaunchParams:
        grid_x = block_x = shared_mem = None

    trtp = types.SimpleNamespace(
        register=deco("register"), autotune=deco("autotune"), impl=deco("impl"), aot_impl=deco("aot_impl"),
        TensorDesc=TensorDesc, Tensor=type("Tensor", (), {}), AutoTuneCombination=AutoTuneCombination,
        SymExprs=SymExprs, SymIntExprs=SymIntExprs, SymInt32=int, KernelLaunchParams=KernelLaunchParams,
        from_shape_expr=lambda shape, dtype: TensorDesc(shape, dtype), cdiv=lambda a, b: -(-a // b),
    )
    return trtp, reg


@pytest.mark.parametrize("mode", ["sum", "concat"])
def test_plugin_definitions_follow_the_qdp_schemas(monkeypatch, mode):
    trtp, reg = _stub_trtp()
    parts = trt_plugin._make_defs(trtp, mode)
    assert set(parts) == {"register", "autotune", "impl", "aot_impl"}
    defs = reg[plugin_id(mode)]
    attrs = ["shifts", "channel_major"] if mode == "concat" else ["shifts"]
    expected = {
        "register": ["inp0", *attrs],
        "autotune": ["inp0", "outputs"],
        "impl": ["inp0", *attrs, "outputs", "stream", "tactic"],
        "aot_impl": ["inp0", *attrs, "outputs", "tactic"],
    }
    for kind, names in expected.items():
        sig = inspect.signature(defs[kind])
        assert list(sig.parameters) == names, kind
        # tensorrt.plugin checks annotations with issubclass: they must be objects, not strings
        assert not any(isinstance(p.annotation, str) for p in sig.parameters.values()), kind
        assert not isinstance(sig.return_annotation, str), kind
    params = inspect.signature(defs["register"]).parameters
    assert params["inp0"].annotation is trtp.TensorDesc
    for kind in ("impl", "aot_impl"):  # attribute annotations must equal the registered ones
        other = inspect.signature(defs[kind]).parameters
        assert all(other[a].annotation == params[a].annotation for a in attrs)
    if mode == "concat":  # INT attributes arrive as one-element int32 arrays (int(array) fails on NumPy 2)
        assert params["channel_major"].annotation == params["shifts"].annotation

    shifts = np.array([1, 1, -1, 0, 0, 9], dtype=np.int32)
    extra_attrs = (np.array([1], dtype=np.int32),) if mode == "concat" else ()
    inp = trtp.TensorDesc([2, 3, 5, 7], "HALF")
    out = defs["register"](inp, shifts, *extra_attrs)
    assert out.shape_expr == ([2, 9, 5, 7] if mode == "concat" else [2, 3, 5, 7]) and out.dtype == "HALF"
    (comb,) = defs["autotune"](inp, (out,))
    assert comb.tactics == list(TACTIC_BLOCKS)

    seen = {}

    def fake_compile(dtype, flat, concat, block, channel_major):
        seen.update(dtype=dtype, flat=flat, concat=concat, block=block, channel_major=channel_major)
        return AOTKernel("pssa_kernel", ".entry pssa_kernel()", 2, 0, block)

    monkeypatch.setattr(trt_plugin, "_aot_cached", fake_compile)
    inp.dtype = "DataType.BF16"
    name, ptx, launch, extra = defs["aot_impl"](inp, shifts, *extra_attrs, (out,), 1)
    assert seen == {"dtype": "bf16", "flat": (1, 1, -1, 0, 0, 9), "concat": mode == "concat", "block": 256,
                    "channel_major": mode == "concat"}
    assert name == b"pssa_kernel" and ptx.startswith(b".entry")
    nblk = -(-(5 * 7) // 256)
    assert launch.grid_x == 2 * 3 * nblk and launch.block_x == 64 and launch.shared_mem == 0
    assert list(extra) == [3, 5, 7, nblk]
    inp.dtype = "DataType.INT8"
    with pytest.raises(XVDeployError, match="FP32, FP16 and BF16"):
        defs["aot_impl"](inp, shifts, *extra_attrs, (out,), 1)


def test_missing_tensorrt_is_a_clear_error():
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(XVDeployError, match="pip install tensorrt --extra-index-url https://pypi.nvidia.com"):
            trt_plugin.register_trt_plugin()
        assert trt_plugin.has_aot() is False
    else:
        pytest.skip("tensorrt is installed")


# --------------------------------------------------------------------------- a real engine


def _engine_output(model, x: torch.Tensor, out_shape, aot: bool) -> torch.Tensor:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(trt_plugin.network_creation_flags(prefer_aot=aot))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        pytest.fail("; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("x", tuple(x.shape), tuple(x.shape), tuple(x.shape))
    config.add_optimization_profile(profile)
    blob = builder.build_serialized_network(network, config)
    assert blob is not None, "engine build failed"
    engine = trt.Runtime(logger).deserialize_cuda_engine(blob)
    ctx = engine.create_execution_context()
    ctx.set_input_shape("x", tuple(x.shape))
    y = torch.empty(out_shape, device="cuda", dtype=x.dtype)
    ctx.set_tensor_address("x", x.data_ptr())
    ctx.set_tensor_address("y", y.data_ptr())
    stream = torch.cuda.current_stream()
    assert ctx.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return y


@pytest.mark.parametrize("aot", [False, True], ids=["jit", "aot"])
@pytest.mark.parametrize("mode", ["sum", "concat", "concat-cm"])
def test_tensorrt_engine_with_the_plugin(mode, aot):
    pytest.importorskip("tensorrt", reason="tensorrt is not installed (NVIDIA's index is unreachable here)")
    onnx = pytest.importorskip("onnx")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA device")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        pytest.skip("the TensorRT plugin launches the compiled kernel; run without TRITON_INTERPRET")
    if aot and not trt_plugin.has_aot():
        pytest.skip("tensorrt.plugin.aot_impl needs TensorRT >= 10.9")
    from xvdeploy.plugins.onnx_node import make_node
    from xvdeploy.pssa_contract import ONNX_DOMAIN as DOMAIN
    from xvdeploy.pssa_contract import pssa_transform

    trt_plugin.register_trt_plugin()
    shifts = [(-1, -1), (0, 1), (7, -9)]
    c, s = 4, len(shifts)
    cm = mode == "concat-cm"
    mode = "concat" if cm else mode
    out_c = c * s if mode == "concat" else c
    graph = onnx.helper.make_graph(
        [make_node("x", "y", shifts, mode, channel_major=cm)], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", c, "h", "w"])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", out_c, "h", "w"])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18),
                                                         onnx.helper.make_opsetid(DOMAIN, 1)], ir_version=10)
    x = torch.randn(2, c, 9, 13, device="cuda")
    y = _engine_output(model, x, (2, out_c, 9, 13), aot)
    ref = pssa_transform(x, shifts=shifts, mode=mode)
    if cm:
        ref = ref.reshape(2, s, c, 9, 13).transpose(1, 2).reshape(2, out_c, 9, 13)
    torch.testing.assert_close(y, ref)


# --------------------------------------------------------------------------- Python IPluginV3 on TensorRT-RTX


def test_v3_creator_makes_and_serializes_the_plugin(rtx):
    """The creator reads the ONNX node's fields as the parser hands them (int32 arrays) and the plugin writes
    them back for the engine; real tensorrt_rtx objects."""
    plugin_cls, creator_cls = trt_plugin._v3_classes(rtx)
    creator = creator_cls("concat")
    assert (creator.name, creator.plugin_namespace, creator.plugin_version) == ("PSSAConcat", "xvdeploy", "1")
    assert [f.name for f in creator.field_names] == ["shifts", "channel_major"]
    fields = rtx.PluginFieldCollection([
        rtx.PluginField("shifts", np.array([1, -1, 0, 2], np.int32), rtx.PluginFieldType.INT32),
        rtx.PluginField("channel_major", np.array([1], np.int32), rtx.PluginFieldType.INT32)])
    plugin = creator.create_plugin("pssa0", fields, rtx.TensorRTPhase.BUILD)
    assert isinstance(plugin, plugin_cls) and plugin.mode == "concat" and plugin.channel_major
    assert plugin.shifts.tolist() == [1, -1, 0, 2] and plugin.plugin_name == "PSSAConcat"
    twin = plugin.clone()
    assert twin is not plugin and twin.shifts.tolist() == [1, -1, 0, 2] and twin.channel_major
    written = {f.name: np.asarray(f.data).tolist() for f in plugin.get_fields_to_serialize()}
    assert written == {"shifts": [1, -1, 0, 2], "channel_major": [1]}
    summed = creator_cls("sum").create_plugin("p", rtx.PluginFieldCollection(
        [rtx.PluginField("shifts", np.array([0, 1], np.int32), rtx.PluginFieldType.INT32)]), rtx.TensorRTPhase.RUNTIME)
    assert summed.mode == "sum" and [f.name for f in summed.get_fields_to_serialize()] == ["shifts"]
    assert plugin.get_capability_interface(rtx.PluginCapabilityType.BUILD) is plugin
    assert plugin.get_output_data_types([rtx.DataType.HALF]) == [rtx.DataType.HALF]


def _plugin_graph(path):
    """One PSSA node ("sum") and one PSSAConcat node (channel-major), then a 1×1 conv; dynamic batch."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from xvdeploy.plugins.onnx_node import make_node
    from xvdeploy.pssa_contract import ONNX_DOMAIN as DOMAIN

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 12, 1, 1)).astype(np.float32), "w")
    graph = helper.make_graph(
        [make_node("x", "t", [(-1, -1), (0, 1)], "sum", name="pssa_sum"),
         make_node("t", "c", [(-1, -1), (0, 1), (1, 0)], "concat", name="pssa_cat", channel_major=True),
         helper.make_node("Conv", ["c", "w"], ["y"], name="conv")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid(DOMAIN, 1)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return path


_BUILD_SCRIPT = r"""
import json, sys
from click.testing import CliRunner
from xvdeploy.cli import main
out = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(main, args)
    out.append({"code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr})
print(json.dumps(out))
"""


def test_rtx_builds_pssa_plugin_engines(rtx, tmp_path):
    """A Python IPluginV3 registers with TensorRT-RTX 1.7 and its parser builds the plugin nodes into an engine
    without a GPU, once libtensorrt_rtx.so is on the library path (the workaround the build names, done here as a
    user would: a link in a folder on LD_LIBRARY_PATH, set before the process starts)."""
    import tensorrt_rtx_libs

    from xvdeploy import fold, load_checkpoint, zoo
    from xvdeploy.export import export_onnx

    libs = sorted(os.path.join(os.path.dirname(tensorrt_rtx_libs.__file__), n)
                  for n in os.listdir(os.path.dirname(tensorrt_rtx_libs.__file__)) if n.startswith("libtensorrt_rtx.so."))
    link_dir = tmp_path / "lib"
    link_dir.mkdir()
    (link_dir / "libtensorrt_rtx.so").symlink_to(libs[0])
    tiny = _plugin_graph(tmp_path / "tiny_plugin.onnx")
    digits = tmp_path / "digits_plugin.onnx"  # the real exported form: export --pssa-plugin
    export_onnx(fold(load_checkpoint(zoo.pretrained("xv_digits"))), digits, (2, 1, 8, 8), check=False,
                compare_plain=False, pssa_plugin=True)
    jobs = [["build", str(tiny), "-o", str(tmp_path / "tiny.plan"), "--runtime", "tensorrt-rtx", "--pssa-plugin",
             "--opt-shape", "x:2x4x8x8", "--report"],
            ["build", str(digits), "-o", str(tmp_path / "digits.plan"), "--runtime", "tensorrt-rtx", "--pssa-plugin",
             "--precision", "fp16", "--report"]]
    env = dict(os.environ, LD_LIBRARY_PATH=f"{link_dir}:{os.environ.get('LD_LIBRARY_PATH', '')}")
    proc = subprocess.run([sys.executable, "-c", _BUILD_SCRIPT, json.dumps(jobs)], capture_output=True, text=True,
                          env=env, cwd=os.getcwd())
    assert proc.returncode == 0, proc.stderr[-3000:]
    tiny_run, digits_run = json.loads(proc.stdout.strip().splitlines()[-1])
    assert tiny_run["code"] == 0, tiny_run
    assert "parsed 3 layers: PLUGIN_V3 2, CONVOLUTION 1" in tiny_run["stdout"]
    assert "plugin layers: 2 (pssa_sum, pssa_cat)" in tiny_run["stdout"]
    assert digits_run["code"] == 0, digits_run
    assert "PLUGIN_V3 2" in digits_run["stdout"]
    from xvdeploy.trt.sidecar import read_sidecar

    for name in ("tiny.plan", "digits.plan"):
        record = read_sidecar(tmp_path / name)
        assert record.pssa_plugin and record.flavour == "tensorrt-rtx" and (tmp_path / name).stat().st_size > 0


def test_rtx_plugin_without_the_library_link_is_one_line(rtx, tmp_path):
    """Without the link the parser would abort the whole process; the build stops first, with the fix."""
    from click.testing import CliRunner

    from xvdeploy.cli import main
    from xvdeploy.trt.flavour import TENSORRT_RTX, plugin_import_problem

    if plugin_import_problem(TENSORRT_RTX, rtx) is None:
        pytest.skip("libtensorrt_rtx.so is on the library path here")
    tiny = _plugin_graph(tmp_path / "tiny_plugin.onnx")
    result = CliRunner().invoke(main, ["build", str(tiny), "-o", str(tmp_path / "t.plan"), "--runtime",
                                       "tensorrt-rtx", "--pssa-plugin", "--opt-shape", "x:2x4x8x8"])
    assert result.exit_code == 2
    (line,) = [l for l in result.stderr.splitlines() if l.strip()]
    assert line.startswith("error: TensorRT-RTX ") and "loads 'libtensorrt_rtx.so' to import a plugin node" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny_plugin.onnx"]


def test_rtx_plugin_engine_runs(rtx, tmp_path):
    """Running the plugin engine needs an RTX-class GPU (and the library link)."""
    from xvdeploy.trt import availability

    reason = availability("tensorrt-rtx")
    if reason is not None:
        pytest.skip(f"tensorrt-rtx: {reason}")
    from xvdeploy.trt.flavour import TENSORRT_RTX, plugin_import_problem

    if plugin_import_problem(TENSORRT_RTX, rtx) is not None:
        pytest.skip("libtensorrt_rtx.so is not on the library path (see test_rtx_builds_pssa_plugin_engines)")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        pytest.skip("the plugin launches the compiled kernel; run without TRITON_INTERPRET")
    from xvdeploy.bench.backends.base import RunnerSpec
    from xvdeploy.bench.backends.trt_backend import TensorRTRunner
    from xvdeploy.plugins.onnx_node import pssa_numpy
    from xvdeploy.trt.builder import BuildSettings, build_engine
    from xvdeploy.trt.shapes import static_profile

    tiny = _plugin_graph(tmp_path / "tiny_plugin.onnx")
    plan = tmp_path / "tiny.plan"
    build_engine(tiny, plan, BuildSettings("fp32", (static_profile({"x": (2, 4, 8, 8)}),), pssa_plugin=True,
                                           flavour="tensorrt-rtx"))
    x = np.random.default_rng(1).standard_normal((2, 4, 8, 8)).astype(np.float32)
    import onnx
    w = onnx.numpy_helper.to_array(onnx.load(str(tiny)).graph.initializer[0])
    t = pssa_numpy(x, [-1, -1, 0, 1])
    c = pssa_numpy(t, [-1, -1, 0, 1, 1, 0], concat=True, channel_major=True)
    ref = np.einsum("oc,nchw->nohw", w[:, :, 0, 0], c)
    with TensorRTRunner(RunnerSpec("tensorrt-rtx", "engine", "fp32", "cuda"), plan) as runner:
        y = runner.infer(x)
    assert float(np.linalg.norm(y - ref) / np.linalg.norm(ref)) < 1e-4
