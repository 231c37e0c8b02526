"""Model tier: the OpenVINO engine (``backend="openvino"``, the ``openvino`` extra) runs the fp32
graph held to the same parity gates as ONNX Runtime's graphs: fp32 to fp32's thresholds, bf16
(bfloat16 where the CPU computes it) to int8's."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from gist_onnx import GistEncoder, MissingExtraError, ModelConfigError
from gist_onnx.export.check import check_graph
from gist_onnx.export.texts import PARITY_TEXTS

pytestmark = pytest.mark.model
pytest.importorskip("openvino", reason="the openvino extra is not installed")


@pytest.fixture(scope="module")
def reference(stand_in_dir: Path) -> np.ndarray:
    from gist_onnx.export.check import reference_vectors

    return reference_vectors(stand_in_dir, PARITY_TEXTS)


@pytest.mark.parametrize("variant", ["fp32", "bf16"])
def test_openvino_keeps_the_parity_gates_of_its_precision(
    exported: Path, reference: np.ndarray, variant: str
) -> None:
    check = check_graph(exported, variant, PARITY_TEXTS, reference, backend="openvino")
    assert check.passed, check
    assert check.provider == "OpenVINO"


def test_openvino_fp32_gives_onnx_runtimes_vectors(exported: Path) -> None:
    texts = list(PARITY_TEXTS)
    ours = GistEncoder(exported).encode(texts)
    theirs = GistEncoder(exported, backend="openvino").encode(texts)
    assert np.abs(ours - theirs).max() < 1e-5


def test_openvino_says_what_runs(exported: Path) -> None:
    encoder = GistEncoder(exported, backend="openvino", variant="bf16", threads=1)
    described = encoder.describe()
    assert (described["backend"], described["provider"]) == ("openvino", "OpenVINO")
    assert described["precision"] in ("bf16", "fp32")  # bf16 only where the CPU computes it
    assert described["threads"] == 1 and described["tokens_per_run"] == 256
    assert encoder.parallel_runs == 1  # OpenVINO's own threads run each batch
    # Vectors from another engine are never served from the other's cache entries.
    assert GistEncoder(exported, backend="openvino").identity != GistEncoder(exported).identity


def test_what_openvino_does_not_run_is_refused_with_the_way_out(exported: Path) -> None:
    with pytest.raises(ModelConfigError, match="int8 and fp16 graphs run on ONNX Runtime"):
        GistEncoder(exported, backend="openvino", variant="int8")
    with pytest.raises(ModelConfigError, match="backend='openvino'"):
        GistEncoder(exported, variant="bf16")
    with pytest.raises(ModelConfigError, match="runs on the CPU"):
        GistEncoder(exported, backend="openvino", device="cuda")
    with pytest.raises(ModelConfigError, match="Unknown backend 'tensorflow'"):
        GistEncoder(exported, backend="tensorflow")


def test_without_the_extra_the_error_names_it(
    exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'gist-onnx\[openvino\]'"):
        GistEncoder(exported, backend="openvino")
