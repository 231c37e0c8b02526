"""sentence-transformers' habits: ``precision``, ``similarity``,
``get_sentence_embedding_dimension``, the ``convert_to_*`` keywords. Unit tier on the tiny model;
the quantization is compared with sentence-transformers' own (parity tier)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gist_onnx import GistEncoder, InvalidInputError
from gist_onnx.precision import PRECISIONS, quantize_embeddings
from tests.support.tiny import DIM, write_tiny_model

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


QUERIES = ["What is the capital of France?", "how to bake bread", "", "Paris"]


@pytest.fixture(scope="module")
def st_pair(exported: Path, stand_in_dir: Path) -> tuple[GistEncoder, object]:
    from sentence_transformers import SentenceTransformer

    return GistEncoder(exported), SentenceTransformer(str(stand_in_dir), device="cpu")


@pytest.mark.parity
def test_encode_query_and_document_match_sentence_transformers(st_pair: tuple) -> None:
    """GIST's prompts are empty: encode_query / encode_document give encode's vectors, as they
    do in sentence-transformers; an explicit prompt is put before every text, as there."""
    ours, theirs = st_pair
    for method in ("encode_query", "encode_document"):
        np.testing.assert_allclose(
            getattr(ours, method)(QUERIES), getattr(theirs, method)(QUERIES), atol=1e-5
        )
        np.testing.assert_allclose(getattr(ours, method)(QUERIES), ours.encode(QUERIES), atol=0)
    np.testing.assert_allclose(
        ours.encode(QUERIES, prompt="query: "), theirs.encode(QUERIES, prompt="query: "), atol=1e-5
    )
    assert ours.config.prompts == theirs.prompts == {"query": "", "document": ""}
    with pytest.raises(InvalidInputError, match="No prompt named 'passage'"):
        ours.encode(QUERIES, prompt_name="passage")


@pytest.mark.parity
@pytest.mark.parametrize("normalize", [False, True])
def test_truncate_dim_matches_sentence_transformers(st_pair: tuple, normalize: bool) -> None:
    ours, theirs = st_pair
    mine = ours.encode(QUERIES, truncate_dim=128, normalize_embeddings=normalize)
    assert mine.shape == (len(QUERIES), 128) and mine.flags.c_contiguous
    np.testing.assert_allclose(
        mine, theirs.encode(QUERIES, truncate_dim=128, normalize_embeddings=normalize), atol=1e-5
    )
    with pytest.raises(InvalidInputError, match="truncate_dim must be a positive integer"):
        ours.encode(QUERIES, truncate_dim=385)


@pytest.mark.parity
def test_an_encoder_made_with_truncate_dim_reports_and_returns_it(
    exported: Path, stand_in_dir: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    ours = GistEncoder(exported, truncate_dim=64)
    theirs = SentenceTransformer(str(stand_in_dir), device="cpu", truncate_dim=64)
    assert ours.get_embedding_dimension() == theirs.get_embedding_dimension() == 64
    assert ours.get_sentence_embedding_dimension() == 64
    np.testing.assert_allclose(
        ours.encode(QUERIES), theirs.encode(QUERIES, normalize_embeddings=True), atol=1e-5
    )
    vectors, _ = ours.encode_with_token_counts(QUERIES)  # what the servers call
    assert vectors.shape == (len(QUERIES), 64)


@pytest.mark.parity
def test_a_models_own_prompts_apply_as_in_sentence_transformers(
    exported: Path, stand_in_dir: Path, tmp_path: Path
) -> None:
    """A model whose config_sentence_transformers.json names prompts (and a default): the same
    prompt is chosen, by name, by method and by default, as sentence-transformers chooses it."""
    import json
    import shutil

    from sentence_transformers import SentenceTransformer

    config = {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None}
    ours_dir, theirs_dir = tmp_path / "ours", tmp_path / "theirs"
    shutil.copytree(exported, ours_dir)
    shutil.copytree(stand_in_dir, theirs_dir)
    for folder in (ours_dir, theirs_dir):
        (folder / "config_sentence_transformers.json").write_text(json.dumps(config))
    ours = GistEncoder(ours_dir, verify_files=False)  # the config was edited after the export
    theirs = SentenceTransformer(str(theirs_dir), device="cpu")
    for method in ("encode_query", "encode_document"):
        np.testing.assert_allclose(
            getattr(ours, method)(QUERIES), getattr(theirs, method)(QUERIES), atol=1e-5
        )
    np.testing.assert_allclose(
        ours.encode(QUERIES, prompt_name="passage"),
        theirs.encode(QUERIES, prompt_name="passage"),
        atol=1e-5,
    )
    assert not np.allclose(ours.encode_query(QUERIES), ours.encode(QUERIES), atol=1e-3)


# ------------------------------------------------------------------ util: the retrieval snippet
def test_util_refuses_what_it_cannot_score() -> None:
    from gist_onnx import util

    with pytest.raises(InvalidInputError, match="one size"):
        util.cos_sim(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(InvalidInputError, match="top_k must be a positive int"):
        util.semantic_search(np.ones((1, 3)), np.ones((2, 3)), top_k=0)
    with pytest.raises(InvalidInputError, match="2-D array"):
        util.dot_score(np.ones((2, 2, 2)), np.ones((2, 2)))
    assert util.semantic_search(np.ones((2, 3)), np.ones((0, 3))) == [[], []]


@pytest.mark.parity
@pytest.mark.parametrize(
    ("top_k", "query_chunk_size", "corpus_chunk_size"), [(10, 100, 500000), (3, 2, 7), (50, 1, 1)]
)
def test_util_gives_sentence_transformers_results(
    tiny: GistEncoder, top_k: int, query_chunk_size: int, corpus_chunk_size: int
) -> None:
    """cos_sim, dot_score and semantic_search give sentence-transformers' scores and hits (ids,
    order and shape), whatever the chunking; ties aside, which neither orders."""
    st_util = pytest.importorskip("sentence_transformers.util")
    import torch

    from gist_onnx import util

    rng = np.random.default_rng(1)
    queries = rng.normal(size=(5, 16)).astype(np.float32)
    corpus = rng.normal(size=(30, 16)).astype(np.float32)
    for ours, theirs in ((util.cos_sim, st_util.cos_sim), (util.dot_score, st_util.dot_score)):
        expected = theirs(torch.from_numpy(queries), torch.from_numpy(corpus)).numpy()
        np.testing.assert_allclose(ours(queries, corpus), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours(queries[0], corpus), expected[:1], rtol=1e-5, atol=1e-6)
    for function, st_function in ((util.cos_sim, st_util.cos_sim), (util.dot_score, None)):
        hits = util.semantic_search(
            queries, corpus, query_chunk_size, corpus_chunk_size, top_k, function
        )
        expected_hits = st_util.semantic_search(
            torch.from_numpy(queries),
            torch.from_numpy(corpus),
            query_chunk_size=query_chunk_size,
            corpus_chunk_size=corpus_chunk_size,
            top_k=top_k,
            score_function=st_function or st_util.dot_score,
        )
        assert len(hits) == len(expected_hits) == 5
        for got, want in zip(hits, expected_hits, strict=True):
            assert [h["corpus_id"] for h in got] == [h["corpus_id"] for h in want]
            np.testing.assert_allclose(
                [h["score"] for h in got], [h["score"] for h in want], rtol=1e-5, atol=1e-6
            )
            assert all(set(h) == {"corpus_id", "score"} for h in got)
    # The snippet users port: encode, then search, with gist-onnx's vectors.
    vectors = tiny.encode(TEXTS)
    found = util.semantic_search(vectors[:1], vectors, top_k=2)
    assert found[0][0]["corpus_id"] == 0 and found[0][0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_the_tokenizer_takes_one_text_as_one_text_not_its_characters(tiny: GistEncoder) -> None:
    one = tiny.tokenizer("hello world")
    assert one.input_ids.shape[0] == 1
    np.testing.assert_array_equal(one["input_ids"][0], tiny.token_ids(["hello world"])[0])
    assert one["attention_mask"].shape == one["token_type_ids"].shape == one.input_ids.shape
    assert len(tiny.tokenizer(["hello world", "cat"]).input_ids) == 2
    with pytest.raises(KeyError):
        one["pixel_values"]
