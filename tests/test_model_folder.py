"""Model tier: an exported folder survives the trip to where it runs.

Exported by root (the test run), loaded by an unprivileged user; a corrupted weights file is
refused with its name; every file readable by all.
"""

from __future__ import annotations

import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gist_onnx import GistEncoder, ModelFilesError
from tests.support.unprivileged import run_as_nobody, shared_dir, skip_unless_possible, venv_paths

pytestmark = pytest.mark.model

LOAD = """
import json
from gist_onnx import GistEncoder, GistOnnxError
try:
    out = GistEncoder({folder!r}, variant="int8").encode(["hello world"])
    print(json.dumps({{"vector": out[0].tolist()}}))
except GistOnnxError as exc:
    print(json.dumps({{"error": type(exc).__name__, "message": str(exc)}}))
"""


@pytest.fixture
def copied(exported: Path) -> Iterator[Path]:
    """A copy of the export, modes kept, in a folder every user can enter."""
    root = shared_dir()
    folder = root / "model"
    shutil.copytree(exported, folder)  # copy2 keeps the modes the export wrote
    yield folder
    shutil.rmtree(root)


def test_every_exported_file_is_readable_by_all(exported: Path) -> None:
    for path in [exported, *exported.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), f"{path}: {mode:04o}"


def test_a_folder_exported_by_root_loads_as_an_unprivileged_user(copied: Path) -> None:
    import json

    skip_unless_possible()
    proc = run_as_nobody(LOAD.format(folder=str(copied)), venv_paths())
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = GistEncoder(copied, variant="int8").encode(["hello world"])[0]
    np.testing.assert_allclose(result["vector"], expected, atol=1e-6)

    # The failure the export used to cause (weights 0600): named, with the fix.
    (copied / "model_int8.onnx.data").chmod(0o600)
    proc = run_as_nobody(LOAD.format(folder=str(copied)), venv_paths())
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["error"] == "ModelFilesError"
    assert "Permission denied" in result["message"] and "model_int8.onnx.data" in result["message"]
    assert "chmod -R a+rX" in result["message"]


def test_one_flipped_byte_in_the_weights_is_refused(copied: Path) -> None:
    data = copied / "model_int8.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x40  # same size, one byte different
    data.write_bytes(bytes(raw))
    with pytest.raises(ModelFilesError, match=r"model_int8\.onnx\.data in .* does not match"):
        GistEncoder(copied, variant="int8")
    # The other graph's files are intact and still load.
    assert GistEncoder(copied).encode(["hello"]).shape == (1, 384)
