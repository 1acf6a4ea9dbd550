"""The layers point down only (docs/design.md, Layers): parsed from the source with ``ast``.

A module may import modules of a strictly lower layer, or modules of its own
top folder (``xvdeploy.bench.core`` may import ``xvdeploy.bench.backends``); the library never imports ``xvdeploy.cli`` outside ``xvdeploy/cli/``;
no two folders import each other. Imports inside functions count too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: (source folder, import name of that folder)
PACKAGES = (("xvdeploy", "xvdeploy"), ("plugins", "xvdeploy.plugins"), ("models", "xvdeploy.models"))

#: import-name prefix -> layer rank; the longest matching prefix wins
LAYERS = {
    "xvdeploy.errors": 0, "xvdeploy._lazy": 0, "xvdeploy._version": 0, "xvdeploy.fileio": 0, "xvdeploy.format": 0,
    "xvdeploy.pssa_contract": 0, "xvdeploy.data": 0, "xvdeploy.metrics": 0,
    "xvdeploy.signals": 0, "xvdeploy.memory": 0, "xvdeploy.progress": 0,  # SIGTERM, memory estimates, progress
    "xvdeploy.plugins": 1,  # the PSSA kernel and torch op
    "xvdeploy.ops": 2,
    "xvdeploy.models": 3,
    "xvdeploy.folding": 4,
    "xvdeploy.zoo": 5, "xvdeploy.checkpoint": 5, "xvdeploy.loading": 5,
    "xvdeploy.plugins.onnx_node": 6, "xvdeploy.plugins.trt_plugin": 6,  # the plugin's ONNX node / TensorRT plugin
    "xvdeploy.export": 7,
    "xvdeploy.trt": 8, "xvdeploy.quant": 8,
    "xvdeploy.bench": 9, "xvdeploy.inspect_file": 9, "xvdeploy.serve": 9,
    "xvdeploy.cli": 10,
    "xvdeploy.models.train_digits": 11,  # a script
}
NAMES = {0: "core", 1: "kernels", 2: "ops", 3: "models", 4: "folding", 5: "zoo/checkpoints", 6: "plugin nodes",
         7: "export", 8: "trt/quant", 9: "bench/serve", 10: "cli", 11: "scripts"}
NAMES_RANK = {v: k for k, v in NAMES.items()}
#: the public facade re-exports from every layer
EXEMPT = {"xvdeploy"}


def _rank(module: str) -> int | None:
    best = None
    for prefix, rank in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, rank)
    return None if best is None else best[1]


def _folder(module: str) -> str:
    """The folder a module belongs to: its top sub-package (``xvdeploy.bench.backends.base`` ->
    ``xvdeploy.bench``), or ``xvdeploy`` for the modules directly in ``xvdeploy/``."""
    parts = module.split(".")
    if len(parts) >= 2 and (".".join(parts[:2]) in PACKAGE_NAMES or (ROOT / "xvdeploy" / parts[1]).is_dir()):
        return ".".join(parts[:2])
    return parts[0]


PACKAGE_NAMES = {package for _, package in PACKAGES}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    """``(imported xvdeploy module, line)`` for every import of the package, at any depth."""
    found = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("xvdeploy")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("xvdeploy"):
                # ``from xvdeploy import zoo`` imports the module xvdeploy.zoo
                found += [(f"{name}.{a.name}" if f"{name}.{a.name}" in MODULES else name, node.lineno)
                          for a in node.names]
    return found


MODULES = _modules()


def _violations() -> list[str]:
    bad = []
    folder_edges: dict[tuple[str, str], str] = {}
    for module, path in MODULES.items():
        if module in EXEMPT:
            continue
        rank = _rank(module)
        assert rank is not None, f"{module} has no layer in tests/test_layers.py: add it to LAYERS"
        for target, line in _imports(module, path):
            where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}"
            if target.startswith("xvdeploy.cli") and not module.startswith("xvdeploy.cli"):
                bad.append(f"{where}: {module} imports the CLI ({target})")
                continue
            target_rank = _rank(target)
            if target_rank is None or target == "xvdeploy":
                if target == "xvdeploy" and rank < NAMES_RANK["cli"]:
                    bad.append(f"{where}: {module} imports the package facade 'xvdeploy'; import the module itself")
                continue
            same_folder = _folder(module) == _folder(target)
            if target_rank > rank or (target_rank == rank and not same_folder):
                bad.append(f"{where}: {module} ({NAMES[rank]}) imports {target} ({NAMES[target_rank]})")
            # folders proper; the modules directly in xvdeploy/ are ranked one by one
            if "xvdeploy" not in (_folder(module), _folder(target)) and _folder(module) != _folder(target) \
                    and rank < NAMES_RANK["scripts"]:
                folder_edges[(_folder(module), _folder(target))] = where
    for (a, b), where in folder_edges.items():
        if (b, a) in folder_edges and a < b:
            bad.append(f"folders {a} and {b} import each other ({where} and {folder_edges[(b, a)]})")
    return bad


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if m not in EXEMPT and _rank(m) is None]
    assert not missing, f"give these modules a layer in LAYERS: {missing}"


def test_layers_point_down_only():
    bad = _violations()
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


@pytest.mark.parametrize("source, expected", [
    ("import xvdeploy.cli.main\n", "imports the CLI"),
    ("from xvdeploy.bench import core\n", "imports xvdeploy.bench"),
])
def test_the_check_catches_an_upward_import(tmp_path, monkeypatch, source, expected):
    """The checker itself can fail: an ops module importing upward is reported."""
    bad_module = tmp_path / "bad.py"
    bad_module.write_text(source)
    monkeypatch.setitem(MODULES, "xvdeploy.ops.bad_example", bad_module)
    assert any(expected in line and "xvdeploy.ops.bad_example" in line for line in _violations())
