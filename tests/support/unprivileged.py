"""Run Python code as an unprivileged user from a bare interpreter, as a function platform does.

``setpriv`` drops to ``nobody``; the interpreter is the system's own (``/usr/bin/python3.X``,
same version as the test run, so compiled extensions load): a Python under /root is not
readable by ``nobody``. ``-I -S`` leaves out site-packages and the environment, so only the
folders passed in ``paths`` are importable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

BARE_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")


def skip_unless_possible() -> None:
    """Skip the calling test where an unprivileged bare interpreter cannot be had."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("dropping to an unprivileged user needs root")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    if not BARE_PYTHON.is_file():
        pytest.skip(f"{BARE_PYTHON} (the system's Python of this version) is not installed")


def shared_dir() -> Path:
    """A fresh folder every user can enter (pytest's own tmp folders are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="gist-onnx-test-"))
    path.chmod(0o755)
    return path


def run_as_nobody(
    code: str,
    paths: list[Path],
    env: dict[str, str] | None = None,
    timeout: float = 120,
    args: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as nobody with only ``paths`` on sys.path (``args`` in sys.argv[1:])."""
    prelude = f"import sys; sys.path[:0] = {[str(p) for p in paths]!r}\n"
    return subprocess.run(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            str(BARE_PYTHON),
            "-I",
            "-S",
            "-c",
            prelude + code,
            *(args or []),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **(env or {})},
        cwd="/",
        check=False,
    )


def venv_paths() -> list[Path]:
    """This checkout and the test venv's site-packages: gist-onnx and its dependencies."""
    import numpy

    return [Path(__file__).resolve().parents[2], Path(numpy.__file__).parent.parent]
