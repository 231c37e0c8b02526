"""Unit tier: what the wheel and the source distribution hold, and that the export tool runs
from an installed wheel (``pip install 'gist-onnx[export]'`` then ``gist-onnx export``)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = [
    "__init__.py",
    "encoder.py",
    "planner.py",
    "inputs.py",
    "options.py",
    "errors.py",
    "model/__init__.py",
    "model/layout.py",
    "model/configs.py",
    "model/manifest.py",
    "model/hub.py",
    "pooling.py",
    "session.py",
    "tokenizer.py",
    "wire/__init__.py",
    "wire/embeddings.py",
    "wire/limits.py",
    "serverless/__init__.py",
    "serverless/function.py",
    "serverless/bundle.py",
    "serverless/packages.py",
    "cli.py",
    "py.typed",
    "serve/__init__.py",
    "serve/app.py",
    "batching.py",
    "cache.py",
    "serve/metrics.py",
    "embed/__init__.py",
    "embed/read.py",
    "embed/write.py",
    "precision.py",
    "integrations/ray.py",
    "integrations/pandas.py",
    "integrations/langchain.py",
    "integrations/llama_index.py",
    "integrations/chroma.py",
]
EXPORT = [
    "__init__.py",
    "__main__.py",
    "build.py",
    "check.py",
    "graph.py",
    "quantize.py",
    "rowwise.py",
    "sequence_major.py",
    "texts.py",
    "to_onnx.py",
    "web.py",
]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build", reason="the build frontend comes with the dev extra")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def test_the_wheel_holds_the_runtime_and_the_export_tool_and_nothing_else(dist: Path) -> None:
    (wheel,) = dist.glob("gist_onnx-*-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
        entry = archive.read(next(n for n in names if n.endswith("entry_points.txt")))
    for name in RUNTIME:
        assert f"gist_onnx/{name}" in names
    for name in EXPORT:
        assert f"gist_onnx/export/{name}" in names
    code = [n for n in names if ".dist-info/" not in n]
    assert all(n.startswith("gist_onnx/") for n in code), code
    assert not [n for n in names if n.endswith((".onnx", ".data", ".tsv", ".safetensors"))]
    assert "Requires-Dist: onnxruntime" in meta
    assert "Requires-Dist: torch" in meta and 'extra == "export"' in meta
    assert b"gist-onnx = gist_onnx.cli:main" in entry
    assert any(n.endswith("licenses/LICENSE") or n.endswith("/LICENSE") for n in names)


def test_the_sdist_holds_the_package_not_the_tests_or_data(dist: Path) -> None:
    (sdist,) = dist.glob("gist_onnx-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = [n.split("/", 1)[1] for n in archive.getnames() if "/" in n]
    for name in RUNTIME:
        assert f"gist_onnx/{name}" in names
    assert {"pyproject.toml", "README.md", "LICENSE"} <= set(names)
    assert not [n for n in names if n.startswith(("tests", "benchmarks", "export/"))]


def test_the_export_tool_runs_from_the_installed_wheel(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("gist_onnx-*-py3-none-any.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target, wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # The wheel's gist_onnx first on the path; torch and friends from this environment.
    code = (
        f"import sys; sys.path.insert(0, {str(target)!r}); import gist_onnx, gist_onnx.cli; "
        f"assert gist_onnx.__file__.startswith({str(target)!r}), gist_onnx.__file__; "
        "sys.exit(gist_onnx.cli.main(['export', '--help']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: gist-onnx export")
