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
