"""sentence-transformers' habits: ``precision``, ``similarity``,
``get_sentence_embedding_dimension``, the ``convert_to_*`` keywords. Unit tier on the tiny model;
the quantization is compared with sentence-transformers' own (parity tier)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gist_onnx import GistEncoder, InvalidInputError
from gist_onnx.precision import PRECISIONS, quantize_embeddings
from tiny import DIM, write_tiny_model

TEXTS = ["hello world", "the cat sat on the mat", "cat", "hello"]


@pytest.fixture
def tiny(tmp_path: Path) -> GistEncoder:
    return GistEncoder(write_tiny_model(tmp_path / "tiny"))


def test_precision_shapes_and_types(tiny: GistEncoder) -> None:
    shapes = {p: tiny.encode(TEXTS, precision=p) for p in PRECISIONS}
    assert shapes["float32"].dtype == np.float32 and shapes["float32"].shape == (4, DIM)
    assert shapes["int8"].dtype == np.int8 and shapes["int8"].shape == (4, DIM)
    assert shapes["uint8"].dtype == np.uint8
    assert shapes["binary"].dtype == np.int8 and shapes["binary"].shape == (4, 1)
    assert shapes["ubinary"].dtype == np.uint8
    np.testing.assert_array_equal(
        shapes["ubinary"][:, 0] >> (8 - DIM), np.packbits(shapes["float32"] > 0, axis=1)[:, 0] >> 4
    )
    with pytest.raises(InvalidInputError, match="precision must be one of"):
        tiny.encode(TEXTS, precision="int4")


def test_ranges_make_codes_independent_of_the_batch(tiny: GistEncoder) -> None:
    vectors = tiny.encode(TEXTS)
    ranges = np.vstack((vectors.min(0), vectors.max(0)))
    alone = quantize_embeddings(vectors[:1], "int8", ranges)
    together = quantize_embeddings(vectors, "int8", ranges)
    np.testing.assert_array_equal(alone[0], together[0])
    with pytest.raises(InvalidInputError, match=r"ranges must have shape \(2, 4\)"):
        quantize_embeddings(vectors, "int8", ranges[:, :2])
    with pytest.raises(InvalidInputError, match="single embedding"):
        tiny.encode(["one text"], precision="uint8")


def test_similarity_and_dimension(tiny: GistEncoder) -> None:
    a, b = tiny.encode(TEXTS[:2]), tiny.encode(TEXTS)
    scores = tiny.similarity(a, b)
    assert scores.shape == (2, 4)
    np.testing.assert_allclose(scores, a @ b.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(tiny.similarity(a, a)), 1.0, atol=1e-6)
    assert tiny.get_sentence_embedding_dimension() == DIM == tiny.dimension


def test_convert_keywords(tiny: GistEncoder) -> None:
    assert tiny.encode(TEXTS, convert_to_numpy=True).shape == (4, DIM)
    with pytest.raises(InvalidInputError, match=r"torch\.from_numpy"):
        tiny.encode(TEXTS, convert_to_tensor=True)


@pytest.mark.parity
@pytest.mark.parametrize("precision", PRECISIONS)
def test_quantization_matches_sentence_transformers(precision: str) -> None:
    from sentence_transformers.util.quantization import quantize_embeddings as theirs

    vectors = np.random.default_rng(0).normal(size=(64, 384)).astype(np.float32)
    np.testing.assert_array_equal(
        quantize_embeddings(vectors, precision), theirs(vectors, precision=precision)
    )
