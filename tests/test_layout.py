"""Unit tier: the house rules the layout relies on, checked on the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = [ROOT / "benchmarks", ROOT / "export"]


def _sources() -> list[Path]:
    return [p for folder in OUTSIDE for p in sorted(folder.rglob("*.py")) if ".work" not in p.parts]


def test_nothing_outside_the_package_reaches_for_its_private_names() -> None:
    """Benchmarks and the clone's scripts use the package's interface: no ``from gist_onnx... import
    _x``, no ``gist_onnx._x`` module, and no ``obj._x`` on anything but ``self``."""
    found = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gist_onnx"):
                names = [node.module or "", *(a.name for a in node.names)]
                found += [f"{path.name}:{node.lineno} {n}" for n in names if _private(n)]
            elif isinstance(node, ast.Import):
                found += [
                    f"{path.name}:{node.lineno} {a.name}"
                    for a in node.names
                    if a.name.startswith("gist_onnx") and _private(a.name)
                ]
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                owner = node.value
                if not (isinstance(owner, ast.Name) and owner.id in {"self", "cls", "sys", "os"}):
                    found.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert not found, found


def _private(name: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in name.split("."))


def test_the_environment_is_read_in_options_only() -> None:
    """No module but ``gist_onnx/options.py`` reads a ``GIST_ONNX_*`` variable, and every name it
    reads is in its table."""
    from gist_onnx import options

    package = ROOT / "gist_onnx"
    readers = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.startswith("GIST_ONNX_")
                and " " not in node.value
            ):
                readers.append((path.relative_to(package).as_posix(), node.value))
    assert {where for where, _ in readers} == {"options.py"}, readers
    assert {name for _, name in readers} == set(options.VARIABLES)


def test_one_limits_serves_the_server_and_the_lambda_handler() -> None:
    from gist_onnx.serve import Limits as ServerLimits
    from gist_onnx.serverless.function import LIMITS
    from gist_onnx.wire import Limits

    assert ServerLimits is Limits and isinstance(LIMITS, Limits)
    assert (LIMITS.max_inputs, LIMITS.max_chars) == (Limits().max_inputs, Limits().max_chars)


# ----------------------------------------------------------------- the package's import graph

PACKAGE = ROOT / "gist_onnx"
# Lowest first: a module imports from its own layer or below, never above (an upward arrow).
LAYERS = (
    ("errors", "options", "heap", "interrupt", "argtypes"),
    ("inputs", "pooling", "precision", "device", "cache", "util"),
    ("model", "model.*"),  # stage 1: the files
    ("tokenizer",),  # stage 2
    ("session", "engine_openvino"),  # stage 3
    ("planner",),
    ("engine",),  # the run machinery both encoders drive
    ("loading", "batching"),
    ("encoder",),  # the facade
    ("",),  # the package's own names
    ("wire", "wire.*"),
    tuple(
        f"{way}{tail}"
        for way in ("embed", "serve", "serverless", "integrations", "export")
        for tail in ("", ".*")
    ),  # the ways in
    ("cli",),
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports() -> dict[str, set[str]]:
    """Each module's imports of the package's modules, lazy and type-checking ones included."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - max(node.level - 1, 0)]
                target = (
                    ".".join([*base, node.module])
                    if node.level and node.module
                    else (".".join(base) if node.level else node.module or "")
                )
                subs = {f"{target}.{a.name}" for a in node.names} & modules.keys()
                found |= subs
                if target in modules and len(subs) < len(node.names):
                    found.add(target)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names} & modules.keys()
        graph[name] = found - {name}
    return graph


def _layer(module: str) -> int:
    import fnmatch

    short = module.removeprefix("gist_onnx").removeprefix(".")
    for rank, patterns in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(short, p) if p else not short for p in patterns):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def test_no_module_imports_one_above_it() -> None:
    """Stages import the stages below them; the ways in sit on top."""
    up = [
        f"{a} -> {b}"
        for a, imported in _imports().items()
        for b in imported
        if _layer(b) > _layer(a)
    ]
    assert up == [], up


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    circles: list[list[str]] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            circles.append(path[path.index(node) :])
            return
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, [*path, node])
        done.add(node)

    for start in sorted(graph):
        visit(start, [])
    return circles


def test_no_modules_import_each_other_in_a_circle() -> None:
    assert _circles(_imports()) == []


def test_the_graph_check_sees_lazy_imports_and_circles() -> None:
    graph = _imports()
    assert "gist_onnx.batching" in graph["gist_onnx.encoder"]  # imported inside aencode
    assert "gist_onnx.model.manifest" in graph["gist_onnx.model.local"]
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_over_450_lines_and_no_function_over_120() -> None:
    """Room to read: a module that grows past this is two modules, a function two functions."""
    long_modules, long_functions = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 450:
            long_modules.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > 120:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.name}: {size}")
    assert long_modules == [] and long_functions == [], (long_modules, long_functions)
