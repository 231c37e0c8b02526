"""sentence-transformers' ``util`` helpers for retrieval, in numpy: ``cos_sim``, ``dot_score`` and
``semantic_search``, so that the common snippet ports with one import changed::

    from gist_onnx import GistEncoder, util

    encoder = GistEncoder()
    corpus = encoder.encode(documents)
    hits = util.semantic_search(encoder.encode(queries), corpus, top_k=5)
    # hits[i]: [{"corpus_id": 3, "score": 0.71}, ...], best first, as sentence-transformers

Scores are float32 numpy arrays (sentence-transformers returns torch tensors); inputs may be
numpy arrays, lists, or anything with a ``numpy()`` method (a CPU tensor).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import InvalidInputError
from .pooling import l2_normalize

__all__ = ["cos_sim", "dot_score", "semantic_search"]

Scores = npt.NDArray[np.float32]


def _matrix(x: Any, name: str) -> npt.NDArray[np.float32]:
    """``x`` as a 2-D float32 array (one vector: one row)."""
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    array = np.asarray(x, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise InvalidInputError(
            f"{name} must be one vector or a 2-D array of vectors, got shape {array.shape}."
        )
    return array


def _pair(a: Any, b: Any) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    a2, b2 = _matrix(a, "a"), _matrix(b, "b")
    if a2.shape[1] != b2.shape[1]:
        raise InvalidInputError(
            f"The vectors must have one size, got {a2.shape[1]} and {b2.shape[1]}."
        )
    return a2, b2


def cos_sim(a: Any, b: Any) -> Scores:
    """Cosine similarity of every row of ``a`` with every row of ``b``: shape (len(a), len(b))."""
    a2, b2 = _pair(a, b)
    scores: Scores = l2_normalize(a2) @ l2_normalize(b2).T
    return scores


def dot_score(a: Any, b: Any) -> Scores:
    """Dot product of every row of ``a`` with every row of ``b``: shape (len(a), len(b)). For
    gist-onnx's vectors (unit length) it is the cosine."""
    a2, b2 = _pair(a, b)
    scores: Scores = a2 @ b2.T
    return scores


def semantic_search(  # noqa: PLR0917 -- sentence-transformers takes these positionally
    query_embeddings: Any,
    corpus_embeddings: Any,
    query_chunk_size: int = 100,
    corpus_chunk_size: int = 500000,
    top_k: int = 10,
    score_function: Callable[[Any, Any], Scores] = cos_sim,
) -> list[list[dict[str, int | float]]]:
    """The ``top_k`` corpus entries closest to each query: one list per query, each of
    ``{"corpus_id": int, "score": float}``, best first (ties: the lower corpus id first), as
    sentence-transformers' ``util.semantic_search``. Scores are computed a block of
    ``query_chunk_size`` queries by ``corpus_chunk_size`` entries at a time, which bounds the
    memory for large corpora."""
    queries = _matrix(query_embeddings, "query_embeddings")
    corpus = _matrix(corpus_embeddings, "corpus_embeddings")
    for name, value in (
        ("top_k", top_k),
        ("query_chunk_size", query_chunk_size),
        ("corpus_chunk_size", corpus_chunk_size),
    ):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise InvalidInputError(f"{name} must be a positive int, got {value!r}.")
    k = min(int(top_k), len(corpus))
    results: list[list[dict[str, int | float]]] = []
    for q0 in range(0, len(queries), query_chunk_size):
        block = queries[q0 : q0 + query_chunk_size]
        best_ids = np.empty((len(block), 0), dtype=np.int64)
        best_scores = np.empty((len(block), 0), dtype=np.float32)
        for c0 in range(0, len(corpus), corpus_chunk_size):
            scores = np.asarray(
                score_function(block, corpus[c0 : c0 + corpus_chunk_size]), dtype=np.float32
            )
            ids = np.broadcast_to(np.arange(c0, c0 + scores.shape[1]), scores.shape)
            best_ids = np.concatenate([best_ids, ids], axis=1)
            best_scores = np.concatenate([best_scores, scores], axis=1)
            if best_scores.shape[1] > k:  # keep the k best seen so far
                keep = np.argpartition(-best_scores, k - 1, axis=1)[:, :k]
                best_ids = np.take_along_axis(best_ids, keep, axis=1)
                best_scores = np.take_along_axis(best_scores, keep, axis=1)
        for ids_row, scores_row in zip(best_ids, best_scores, strict=True):
            order = np.lexsort((ids_row, -scores_row))  # score descending, then id ascending
            results.append(
                [{"corpus_id": int(ids_row[i]), "score": float(scores_row[i])} for i in order]
            )
    return results
