"""The runtime never imports torch, transformers, optimum or sentence-transformers, nor what the
extras bring (the server's, the adapters' and the files' packages): a plain encode pays for none.

Proved in a fresh interpreter where importing any of them raises, as on a slim deployment where
they are not installed, and by checking sys.modules after encoding.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tiny import write_tiny_model

FORBIDDEN = (
    "torch",
    "transformers",
    "optimum",
    "sentence_transformers",
    "starlette",
    "uvicorn",
    "orjson",
    "pandas",
    "pyarrow",
    "ray",
    "langchain_core",
    "llama_index",
    "chromadb",
)

SCRIPT = """
import importlib.abc, json, sys
FORBIDDEN = {forbidden!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"{{name}} is blocked in this test")
        return None

sys.meta_path.insert(0, Block())
from gist_onnx import GistEncoder
enc = GistEncoder({folder!r}, variant={variant!r})
out = enc.encode(["a first text", "and a second, longer one"])
print(json.dumps({{
    "shape": list(out.shape),
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN),
}}))
"""


def run_blocked(folder: Path, variant: str) -> dict[str, object]:
    code = SCRIPT.format(forbidden=FORBIDDEN, folder=str(folder), variant=variant)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_tiny_model_encodes_with_torch_blocked(tmp_path: Path) -> None:
    result = run_blocked(write_tiny_model(tmp_path / "m"), "fp32")
    assert result == {"shape": [2, 4], "loaded": []}


@pytest.mark.model
@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_exported_model_encodes_with_torch_blocked(exported: Path, variant: str) -> None:
    result = run_blocked(exported, variant)
    assert result == {"shape": [2, 384], "loaded": []}


def test_the_blocker_really_blocks() -> None:
    code = SCRIPT.split("from gist_onnx", maxsplit=1)[0] + "import torch\n"
    proc = subprocess.run(
        [sys.executable, "-c", code.format(forbidden=FORBIDDEN)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "torch is blocked" in proc.stderr
