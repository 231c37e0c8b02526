"""The Node.js packages the JavaScript tiers run (tests/js, pinned by its lockfile)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parents[1] / "js"
PACKAGES = ("openai", "@huggingface/transformers", "onnxruntime-web")


def node_modules() -> Path:
    """tests/js with its packages installed (``npm ci`` on first use); skips the calling test,
    saying so, where Node.js or npm is not installed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed: the JavaScript tier cannot run here")
    if not all((JS / "node_modules" / name).is_dir() for name in PACKAGES):
        # onnxruntime-node's install script would fetch CUDA binaries from outside the npm
        # registry; its CPU binaries ship in the package.
        env = {**os.environ, "ONNXRUNTIME_NODE_INSTALL_CUDA": "skip"}
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=JS,
            env=env,
            check=True,
            capture_output=True,
        )
    return JS
