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
        with pytest.raises(XVDeployError, match="xvdeploy\\[gpu\\]"):
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
