"""Model tier, property-based: whatever the texts, the batch size and the order, ``encode``
returns one finite unit float32 row of 384 per text, the same row for the same text in any batch,
or raises ``InvalidInputError`` naming the first text it cannot take; never anything else."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gist_onnx import GistEncoder, InvalidInputError

pytestmark = pytest.mark.model

# Any code point but lone surrogates, which `poison` adds on purpose (a JSON body or a
# surrogateescape'd file can carry them; the tokenizer cannot take them).
ANY_CHAR = st.characters(codec=None)
WORDS = st.sampled_from(
    ["the", "unbelievable", "café", "中文", "😀", "x" * 120, "\t", "don't", "!"]
)
TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=40),
    st.text(ANY_CHAR, min_size=300, max_size=3000),  # past 256 tokens, often
    st.lists(WORDS, min_size=200, max_size=3000).map(" ".join),  # far past, real words
    st.builds(lambda w, n: w * n, WORDS, st.integers(1, 20_000)),
)


@pytest.fixture(scope="module")
def encoder(exported: Path) -> GistEncoder:
    return GistEncoder(exported, variant="int8")


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    texts=st.lists(TEXT, min_size=1, max_size=10),
    poison=st.one_of(st.none(), st.none(), st.integers(0, 9)),
    batch_size=st.integers(1, 16),
    other_batch_size=st.integers(1, 16),
    order=st.randoms(use_true_random=False),
)
def test_any_texts_give_unit_rows_independent_of_batch_and_order(
    encoder: GistEncoder,
    *,
    texts: list[str],
    poison: int | None,
    batch_size: int,
    other_batch_size: int,
    order: object,
) -> None:
    if poison is not None and poison < len(texts):
        texts = [t + "\udc80" if i == poison else t for i, t in enumerate(texts)]
    try:
        out = encoder.encode(texts, batch_size=batch_size)
    except InvalidInputError as exc:
        bad = [i for i, t in enumerate(texts) if _has_surrogate(t)]
        assert bad, f"refused texts it should take: {exc}"
        found = re.search(r"Text (\d+)", str(exc))
        assert found is not None and int(found.group(1)) == bad[0], str(exc)
        return
    assert not any(_has_surrogate(t) for t in texts)
    assert out.shape == (len(texts), 384) and out.dtype == np.float32
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)

    permutation = list(range(len(texts)))
    order.shuffle(permutation)  # type: ignore[attr-defined]
    shuffled = encoder.encode([texts[i] for i in permutation], batch_size=other_batch_size)
    np.testing.assert_allclose(shuffled, out[permutation], atol=2e-5)
    assert encoder.count_tokens(texts).max() <= encoder.max_seq_length
