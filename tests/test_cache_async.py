"""Unit tier: the exact cache (``GistEncoder(cache=...)``) and the async encoder that batches its
callers (``AsyncGistEncoder``, ``GistEncoder.aencode``), on the tiny model: the vectors are
``encode``'s whatever is cached or batched together, the bounds hold, and one caller's mistake
stays its own."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gist_onnx import (
    AsyncGistEncoder,
    EmbeddingCache,
    GistEncoder,
    GistOnnxError,
    InvalidInputError,
)
from gist_onnx.batching import QueueFull
from tests.support.tiny import write_manifest, write_tiny_model

TEXTS = ["the cat", "hello world", "the cat", "", "the mat " * 40, "hello world", "sat on"]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = write_tiny_model(tmp_path / "tiny")
    write_manifest(folder)
    return folder


# ------------------------------------------------------------------------ the cache
def test_cached_vectors_are_the_vectors_of_encode(model: Path) -> None:
    plain = GistEncoder(model)
    cached = GistEncoder(model, cache=100)
    first = cached.encode(TEXTS)
    again = cached.encode(TEXTS[::-1])
    np.testing.assert_array_equal(first, plain.encode(TEXTS))
    np.testing.assert_array_equal(again, plain.encode(TEXTS[::-1]))
    assert cached.cache is not None
    stats = cached.cache.stats()
    assert stats.entries == len(set(TEXTS))
    # Misses count the texts run (each distinct text once); the second call: all hits.
    assert stats.misses == len(set(TEXTS)) and stats.hits == len(TEXTS)
    for options in (
        {"truncate_dim": 2},
        {"normalize_embeddings": False},
        {"precision": "int8"},
        {"prompt": "query: "},
    ):
        np.testing.assert_array_equal(
            cached.encode(TEXTS, **options), plain.encode(TEXTS, **options)
        )
    vectors, counts = cached.encode_with_token_counts(TEXTS)
    expected_vectors, expected_counts = plain.encode_with_token_counts(TEXTS)
    np.testing.assert_array_equal(vectors, expected_vectors)
    np.testing.assert_array_equal(counts, expected_counts)


def test_a_prompt_is_part_of_the_key(model: Path) -> None:
    cached = GistEncoder(model, cache=True)
    bare = cached.encode(["the cat"])
    prompted = cached.encode(["the cat"], prompt="hello ")
    assert not np.array_equal(bare, prompted)
    np.testing.assert_array_equal(prompted, GistEncoder(model).encode(["hello the cat"]))


def test_one_cache_serves_several_models_without_mixing_them(model: Path, tmp_path: Path) -> None:
    other = shutil.copytree(model, tmp_path / "other")
    write_tiny_model(other, seed=7)  # other weights, same texts
    write_manifest(other)
    shared = EmbeddingCache()
    a, b = GistEncoder(model, cache=shared), GistEncoder(other, cache=shared)
    assert a.identity != b.identity
    va, vb = a.encode(["the cat"]), b.encode(["the cat"])
    assert not np.array_equal(va, vb)
    np.testing.assert_array_equal(b.encode(["the cat"]), GistEncoder(other).encode(["the cat"]))
    assert len(shared) == 2


def test_the_cache_is_bounded_by_entries_and_bytes_least_recent_first() -> None:
    cache = EmbeddingCache(max_entries=3)
    rows = np.eye(4, dtype=np.float32)
    cache.put_many("m", ["a", "b", "c"], rows[:3], np.array([1, 2, 3]))
    cache.get_many("m", ["a"])  # "a" is now the most recent
    cache.put_many("m", ["d"], rows[3:], np.array([4]))
    assert [hit is not None for hit in cache.get_many("m", ["a", "b", "c", "d"])] == [
        True,
        False,
        True,
        True,
    ]
    small = EmbeddingCache(max_entries=1000, max_bytes=3_000)
    vectors = np.ones((10, 384), dtype=np.float32)  # 1,536 bytes each: one fits, not two
    small.put_many("m", [str(i) for i in range(10)], vectors, np.ones(10, dtype=np.int64))
    stats = small.stats()
    assert stats.entries == 1 and stats.bytes <= 3_000
    assert small.get_many("m", ["9"])[0] is not None  # the last one put stays
    held = cache.get_many("m", ["a"])[0]
    assert held is not None and not held[0].flags.writeable  # nobody edits a cached vector


@pytest.mark.parametrize("value", [-1, 1.5, "10", [3]])
def test_a_cache_setting_that_is_not_one_is_refused(model: Path, value: object) -> None:
    with pytest.raises(InvalidInputError):
        GistEncoder(model, cache=value)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        EmbeddingCache(max_entries=0)


def test_a_wrong_text_is_refused_by_index_with_a_cache(model: Path) -> None:
    cached = GistEncoder(model, cache=True)
    with pytest.raises(InvalidInputError, match="Text 1 is of type int"):
        cached.encode(["a", 3])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="Text 2 is not valid Unicode"):
        cached.encode(["a", "b", "bad \udc80"])


def test_a_changed_file_changes_the_identity_without_a_manifest(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "bare")  # no manifest: paths, sizes, times
    before = GistEncoder(folder).identity
    write_tiny_model(folder, seed=3)
    assert GistEncoder(folder).identity != before
    assert GistEncoder(folder).identity == GistEncoder(folder).identity


# ------------------------------------------------------------------------ the async encoder
def test_concurrent_callers_share_runs_and_get_the_vectors_of_encode(model: Path) -> None:
    encoder = GistEncoder(model)
    words = ["hello", "world", "the", "cat", "sat", "on", "mat"]
    texts = [f"{words[i % 7]} {words[i // 7 % 7]} {words[i // 49]}" for i in range(64)]
    expected = encoder.encode(texts)
    batches: list[int] = []

    async def main() -> list[np.ndarray]:
        async with AsyncGistEncoder(encoder, on_batch=lambda n, s: batches.append(n)) as shared:
            return await asyncio.gather(*(shared.encode([t]) for t in texts))

    got = asyncio.run(main())
    np.testing.assert_array_equal(np.vstack(got), expected)
    assert sum(batches) == len(texts) and len(batches) < len(texts)  # callers shared runs


def test_aencode_matches_encode_on_any_event_loop(model: Path) -> None:
    encoder = GistEncoder(model, truncate_dim=3)

    async def main() -> np.ndarray:
        parts = await asyncio.gather(encoder.aencode(TEXTS[:3]), encoder.aencode(TEXTS[3:]))
        return np.vstack(parts)

    for _ in range(2):  # a second asyncio.run is a new loop: a new batcher
        np.testing.assert_array_equal(asyncio.run(main()), encoder.encode(TEXTS))


def test_one_callers_bad_text_fails_that_caller_alone(model: Path) -> None:
    encoder = GistEncoder(model, cache=True)

    async def main() -> list[object]:
        async with AsyncGistEncoder(encoder) as shared:
            await shared.encode(["cached first"])
            calls = [
                shared.encode(["fine", "also fine"]),
                shared.encode(["cached first", "bad \udc80"]),
                shared.encode(["fine too"]),
            ]
            return await asyncio.gather(*calls, return_exceptions=True)

    good, bad, other = asyncio.run(main())
    assert isinstance(bad, InvalidInputError) and "Text 1 " in str(bad)
    np.testing.assert_array_equal(good, encoder.encode(["fine", "also fine"]))
    np.testing.assert_array_equal(other, encoder.encode(["fine too"]))


def test_the_cache_answers_without_queueing(model: Path) -> None:
    encoder = GistEncoder(model, cache=True)
    encoder.encode(["held"])
    batches: list[int] = []

    async def main() -> np.ndarray:
        async with AsyncGistEncoder(encoder, on_batch=lambda n, s: batches.append(n)) as shared:
            job = shared.submit(["held", "held"])
            assert job.future.done() and not job.missing  # settled before any run
            return (await job.future)[0]

    np.testing.assert_array_equal(asyncio.run(main()), encoder.encode(["held", "held"]))
    assert batches == []


def test_a_full_queue_and_a_closed_encoder_are_refused(model: Path) -> None:
    encoder = GistEncoder(model)

    async def main() -> None:
        shared = AsyncGistEncoder(encoder, max_queue_texts=4)
        first = shared.submit(["a", "b", "c"])
        with pytest.raises(QueueFull):
            shared.submit(["d", "e"])
        await first.future
        await shared.aclose()
        with pytest.raises(GistOnnxError, match="closed"):
            await shared.encode(["a"])

    asyncio.run(main())


def test_a_cancelled_caller_is_dropped_from_the_queue(model: Path) -> None:
    encoder = GistEncoder(model)
    batches: list[int] = []

    async def main() -> None:
        async with AsyncGistEncoder(encoder, on_batch=lambda n, s: batches.append(n)) as shared:
            gone = asyncio.ensure_future(shared.encode(["never run"] * 5))
            await asyncio.sleep(0)  # queued, not yet taken
            gone.cancel()
            kept = await shared.encode(["run"])
            assert kept.shape == (1, encoder.dimension)

    asyncio.run(main())
    assert batches == [1]  # the cancelled caller's five texts never ran


def test_one_async_encoder_serves_one_loop(model: Path) -> None:
    shared = AsyncGistEncoder(GistEncoder(model))
    first = asyncio.new_event_loop()  # still open: its worker still runs there
    try:
        first.run_until_complete(shared.encode(["a"]))
        with pytest.raises(GistOnnxError, match="another event loop"):
            asyncio.run(shared.encode(["b"]))
    finally:
        first.close()
    # A loop that ended stopped the batcher with it (asyncio.run cancels what is left).
    ended = AsyncGistEncoder(GistEncoder(model))
    asyncio.run(ended.encode(["a"]))
    with pytest.raises(GistOnnxError, match="closed"):
        asyncio.run(ended.encode(["b"]))


def test_aencode_from_asyncio_run_leaves_no_thread_or_batcher_behind(model: Path) -> None:
    import gc
    import threading

    encoder = GistEncoder(model)
    asyncio.run(encoder.aencode(["warm"]))
    gc.collect()
    before = threading.active_count()
    for i in range(30):
        asyncio.run(encoder.aencode([f"text {i}"]))
    gc.collect()
    time.sleep(0.2)  # the graph threads told to end finish their last step
    assert threading.active_count() <= before
    assert len(encoder._async) == 0


def test_aclose_cancels_the_callers_of_the_batch_running(model: Path) -> None:
    import threading

    encoder = GistEncoder(model)
    release = threading.Event()
    real = encoder.engine.compute

    def slow(*args: Any, **kwargs: Any) -> Any:
        release.wait(5)
        return real(*args, **kwargs)

    encoder.engine.compute = slow  # type: ignore[method-assign]

    async def main() -> bool:
        shared = AsyncGistEncoder(encoder)
        job = shared.submit(["running"])
        await asyncio.sleep(0.05)  # the worker has taken it to the graph thread
        closing = asyncio.ensure_future(shared.aclose())
        await asyncio.sleep(0.1)
        told = job.future.cancelled()  # before the graph thread has finished
        release.set()
        await closing
        return told

    assert asyncio.run(main())


def test_a_failing_on_batch_callback_does_not_stop_the_batcher(model: Path) -> None:
    encoder = GistEncoder(model)

    def broken(texts: int, seconds: float) -> None:
        raise ValueError("metrics are down")

    async def main() -> list[np.ndarray]:
        shared = AsyncGistEncoder(encoder, on_batch=broken)
        with pytest.warns(RuntimeWarning, match="metrics are down"):
            first = await asyncio.wait_for(shared.encode(["one"]), 5)
            second = await asyncio.wait_for(shared.encode(["two"]), 5)
        await shared.aclose()
        return [first, second]

    first, second = asyncio.run(main())
    np.testing.assert_array_equal(first, encoder.encode(["one"]))
    np.testing.assert_array_equal(second, encoder.encode(["two"]))


def test_queue_full_says_why_and_never_refuses_for_callers_gone(model: Path) -> None:
    from gist_onnx import InvalidInputError

    encoder = GistEncoder(model)

    async def main() -> None:
        shared = AsyncGistEncoder(encoder, max_queue_texts=4)
        with pytest.raises(InvalidInputError, match="more than this queue takes at once"):
            shared.submit(["a", "b", "c", "d", "e"])  # can never fit: not a retry
        held = shared.submit(["a", "b", "c"])
        with pytest.raises(QueueFull, match="3 texts waiting, 2 more asked for, limit 4"):
            shared.submit(["d", "e"])
        held.future.cancel()  # its caller has gone: its texts stop counting at once
        await asyncio.sleep(0)
        assert shared.pending_texts == 0
        await shared.encode(["d", "e"])
        await shared.aclose()

    asyncio.run(main())


def test_a_config_edited_in_place_is_not_answered_from_the_old_entries(
    model: Path, tmp_path: Path
) -> None:
    """With the manifest check off, the manifest's sums no longer name the files: what the
    encoder read (here a length limit of 6 cut to 4) decides the key."""
    import json

    folder = shutil.copytree(model, tmp_path / "edited")
    shared = EmbeddingCache()
    text = ["the cat sat on the mat"]
    before = GistEncoder(folder, cache=shared, verify_files=False)
    first = before.encode_with_token_counts(text)
    config = folder / "sentence_bert_config.json"
    settings = json.loads(config.read_text())
    settings["max_seq_length"] = 4
    config.write_text(json.dumps(settings))
    after = GistEncoder(folder, cache=shared, verify_files=False)
    assert after.identity != before.identity
    vectors, counts = after.encode_with_token_counts(text)
    assert counts.tolist() == [4] and first[1].tolist() != [4]
    np.testing.assert_array_equal(vectors, GistEncoder(folder, verify_files=False).encode(text))


def test_an_edit_that_keeps_size_and_time_still_changes_the_identity(tmp_path: Path) -> None:
    import os

    folder = write_tiny_model(tmp_path / "bare")  # no manifest
    before = GistEncoder(folder).identity
    vocab = folder / "tokenizer.json"
    stat = vocab.stat()
    raw = vocab.read_bytes()
    vocab.write_bytes(raw.replace(b'"cat"', b'"tac"', 1))  # same size, other tokens
    os.utime(vocab, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the old modification time
    assert vocab.stat().st_size == stat.st_size
    assert GistEncoder(folder).identity != before


def test_a_text_asked_for_while_it_runs_rides_on_that_run(model: Path) -> None:
    import threading

    encoder = GistEncoder(model, cache=True)
    release = threading.Event()
    ran: list[list[str]] = []
    real = encoder.engine.compute

    def slow(texts: list[str], *args: Any, **kwargs: Any) -> Any:
        ran.append(list(texts))
        release.wait(5)
        return real(texts, *args, **kwargs)

    encoder.engine.compute = slow  # type: ignore[method-assign]

    async def main() -> list[np.ndarray]:
        shared = AsyncGistEncoder(encoder)
        first = asyncio.ensure_future(shared.encode(["the cat"]))
        await asyncio.sleep(0.05)  # "the cat" is on the graph thread now
        second = asyncio.ensure_future(shared.encode(["the cat"]))
        await asyncio.sleep(0.05)
        release.set()
        out = [await first, await second]
        await shared.aclose()
        return out

    first, second = asyncio.run(main())
    assert ran == [["the cat"]]  # once, for both callers
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, GistEncoder(model).encode(["the cat"]))
    assert encoder.cache is not None and encoder.cache.stats().misses == 1
