"""Unit tier: the encoder's contract (shapes, order, inputs, errors) on the tiny Gather model."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gist_onnx import GistEncoder, InvalidInputError
from gist_onnx import device as device_mod
from gist_onnx.device import ACCELERATOR, CUDA_SETTINGS, ProviderSettings
from gist_onnx.engine import Engine
from tests.support.tiny import DIM, expected, write_tiny_model

IDS = {"hello": 4, "world": 5, "the": 6, "cat": 7, "sat": 8, "on": 9, "mat": 10}


def ids_of(text: str, limit: int = 6) -> list[int]:
    return [2, *[IDS.get(w, 1) for w in text.lower().split()][: limit - 2], 3]


@pytest.fixture
def tiny(tmp_path: Path) -> GistEncoder:
    return GistEncoder(write_tiny_model(tmp_path / "tiny"))


def test_vectors_are_pooled_and_normalized_in_input_order(tiny: GistEncoder) -> None:
    texts = ["the cat sat on the mat", "hello", "hello world", "cat"]
    out = tiny.encode(texts, batch_size=2)
    assert out.shape == (4, DIM)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected([ids_of(t) for t in texts]), rtol=1e-5, atol=1e-6)


def test_truncation_follows_sentence_bert_config(tmp_path: Path) -> None:
    enc = GistEncoder(write_tiny_model(tmp_path / "m", max_seq_length=4))
    assert enc.max_seq_length == 4
    out = enc.encode(["the cat sat on the mat"])
    np.testing.assert_allclose(out, expected([[2, 6, 7, 3]]), rtol=1e-5, atol=1e-6)


def test_many_chunks_keep_order(tiny: GistEncoder) -> None:
    words = list(IDS)
    texts = [" ".join(words[: 1 + (i * 7) % 4]) + f" {words[i % 7]}" for i in range(300)]
    out = tiny.encode(iter(texts), batch_size=3)  # 3 * 32 texts per chunk: four chunks
    np.testing.assert_allclose(out, expected([ids_of(t) for t in texts]), rtol=1e-5, atol=1e-6)


def test_accepts_tuples_and_generators(tiny: GistEncoder) -> None:
    a = tiny.encode(("hello", "cat"))
    b = tiny.encode(t for t in ["hello", "cat"])
    np.testing.assert_array_equal(a, b)


def test_empty_input_gives_empty_matrix(tiny: GistEncoder) -> None:
    out = tiny.encode([])
    assert out.shape == (0, DIM)
    assert out.dtype == np.float32


def test_lone_string_is_refused_and_encode_one_gives_a_vector(tiny: GistEncoder) -> None:
    with pytest.raises(InvalidInputError, match=r"encode_one\(text\)"):
        tiny.encode("hello world")
    one = tiny.encode_one("hello world")
    assert one.shape == (DIM,)
    np.testing.assert_array_equal(one, tiny.encode(["hello world"])[0])


def test_non_string_items_are_refused_with_their_index(tiny: GistEncoder) -> None:
    with pytest.raises(InvalidInputError, match="Text 1 is of type NoneType"):
        tiny.encode(["hello", None])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="batch_size must be a positive integer"):
        tiny.encode(["hello"], batch_size=0)


def test_without_normalize_module_vectors_are_raw_unless_asked(tmp_path: Path) -> None:
    enc = GistEncoder(write_tiny_model(tmp_path / "m", normalize=False))
    raw = enc.encode(["hello world"], normalize_embeddings=False)
    np.testing.assert_allclose(raw, expected([[2, 4, 5, 3]], normalize=False), rtol=1e-5)
    unit = enc.encode(["hello world"])
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), [1.0], rtol=1e-6)


def test_pooling_mode_is_read_from_the_folder(tmp_path: Path) -> None:
    enc = GistEncoder(write_tiny_model(tmp_path / "m", pooling="pooling_mode_cls_token"))
    assert enc.pooling == "cls (numpy)"
    out = enc.encode(["hello world"], normalize_embeddings=False)
    cls = expected([[2]], normalize=True)
    np.testing.assert_allclose(out, cls, rtol=1e-5)


def test_repr_and_attributes_show_what_was_chosen(tiny: GistEncoder) -> None:
    assert tiny.variant == "fp32"
    assert tiny.provider == "CPUExecutionProvider"
    assert tiny.dimension == DIM
    text = repr(tiny)
    for part in (
        "variant='fp32'",
        "provider='CPUExecutionProvider'",
        "max_seq_length=6",
        "dimension=4",
    ):
        assert part in text


@pytest.mark.parametrize("threads", [0, -1, 2.5, "2", True])
def test_threads_must_be_a_positive_integer(tmp_path: Path, threads: object) -> None:
    folder = write_tiny_model(tmp_path / "m")
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        GistEncoder(folder, threads=threads)  # type: ignore[arg-type]


def test_threads_past_the_usable_cpus_are_capped_with_a_warning(tmp_path: Path) -> None:
    import time

    from gist_onnx.session import usable_cpus

    folder = write_tiny_model(tmp_path / "m")
    assert GistEncoder(folder, threads=np.int64(1)).encode(["hello"]).shape == (1, DIM)
    start = time.perf_counter()
    with pytest.warns(RuntimeWarning, match=f"using {usable_cpus()}"):
        enc = GistEncoder(folder, threads=1000)
    assert time.perf_counter() - start < 5  # 1,000 threads took 55 s to start
    assert enc.encode(["hello"]).shape == (1, DIM)


def _tokenize_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "gist-onnx-tokenize"]


def test_overlap_gives_the_same_vectors_in_the_same_order(tmp_path: Path) -> None:
    plain = GistEncoder(write_tiny_model(tmp_path / "m"))
    overlapped = GistEncoder(tmp_path / "m", overlap=True)
    assert (plain.overlap, overlapped.overlap) == (False, True)  # CPU default: off
    words = list(IDS)
    texts = [" ".join(words[: 1 + (i * 5) % 6]) for i in range(500)]
    for source in (texts, iter(texts)):  # several chunks, sized or not
        out = overlapped.encode(source, batch_size=3)
        np.testing.assert_array_equal(out, plain.encode(texts, batch_size=3))
    np.testing.assert_allclose(out, expected([ids_of(t) for t in texts]), rtol=1e-5, atol=1e-6)
    assert _tokenize_threads() == []


def test_overlap_raises_a_bad_text_from_a_later_chunk_and_stops(tmp_path: Path) -> None:
    enc = GistEncoder(write_tiny_model(tmp_path / "m"), overlap=True)
    texts: list[object] = ["hello"] * 200 + [3.5]
    with pytest.raises(InvalidInputError, match="Text 200 is of type float"):
        enc.encode(texts, batch_size=2)  # type: ignore[arg-type]
    assert _tokenize_threads() == []


def test_overlap_stops_the_tokenizer_thread_when_the_graph_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One run at a time: this is about the tokenizer thread (runs at once: test_parallel_runs).
    enc = GistEncoder(write_tiny_model(tmp_path / "m"), overlap=True, parallel_runs=False)
    calls = 0

    def failing(batch: object) -> np.ndarray:
        nonlocal calls
        calls += 1
        raise RuntimeError("graph failed")

    monkeypatch.setattr(enc.session, "run", failing)
    with pytest.raises(RuntimeError, match="graph failed"):
        enc.encode(["the cat sat"] * 2000, batch_size=4)
    assert calls == 1
    assert _tokenize_threads() == []


@pytest.mark.parametrize("spinning", [True, False, None])
def test_spinning_changes_nothing_but_how_threads_wait(
    tmp_path: Path, spinning: bool | None
) -> None:
    folder = write_tiny_model(tmp_path / "m")
    reference = GistEncoder(folder).encode(["hello world", "the cat"])
    out = GistEncoder(folder, spinning=spinning).encode(["hello world", "the cat"])
    np.testing.assert_array_equal(out, reference)


def test_encode_with_token_counts_is_encode_and_count_tokens_in_one_pass(tiny: GistEncoder) -> None:
    texts = [" ".join(["hello", "cat", "the"][: 1 + i % 3]) * (1 + i % 4) for i in range(300)]
    vectors, counts = tiny.encode_with_token_counts(iter(texts), batch_size=4)
    np.testing.assert_array_equal(vectors, tiny.encode(texts))
    np.testing.assert_array_equal(counts, tiny.count_tokens(texts))
    assert counts.dtype == np.int64 and counts.shape == (300,)


def as_if_on(monkeypatch: pytest.MonkeyPatch, settings: ProviderSettings) -> None:
    """Encoders made after this take ``settings`` as their provider's (planning only: the
    session still runs on the CPU)."""
    from gist_onnx import loading as loading_mod

    real = device_mod.profile_for

    def fake(*args: Any, **kwargs: Any) -> device_mod.DeviceProfile:
        return dataclasses.replace(real(*args, **kwargs), settings=settings)

    monkeypatch.setattr(loading_mod, "profile_for", fake)


def test_cpu_runs_hold_at_most_256_tokens_and_cuda_runs_a_whole_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_tiny_model(tmp_path / "m", max_seq_length=100)
    enc = GistEncoder(folder, parallel_runs=False)
    texts = [" ".join(["cat"] * n) for n in (98, 98, 98, 60, 60, 60, 60, 10)]  # 100, 62, 12 tokens

    def run_sizes() -> list[tuple[int, int]]:
        return [r.batch.input_ids.shape for r in enc.engine.plan(iter(texts), batch_size=8)]

    # Longest first, 256 // 100 = 2 rows a run while the longest has 100 tokens, then 256 // 62.
    assert run_sizes() == [(2, 100), (2, 100), (4, 62)]
    # Planning only (no CUDA here): with CUDA, batch_size alone sizes a run.
    as_if_on(monkeypatch, CUDA_SETTINGS)
    enc = GistEncoder(folder, parallel_runs=False)
    assert run_sizes() == [(8, 100)]
    # Any other provider runs as a device beside the CPU, never with the CPU's run cap.
    as_if_on(monkeypatch, ACCELERATOR)
    enc = GistEncoder(folder, parallel_runs=False)
    assert run_sizes() == [(8, 100)]


def test_batch_size_defaults_to_32_on_the_cpu_and_128_with_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_tiny_model(tmp_path / "m")
    seen: list[int] = []
    real_plan = Engine.plan

    def spy(self: Engine, texts: object, batch_size: int) -> object:
        seen.append(batch_size)
        return real_plan(self, texts, batch_size)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "plan", spy)
    enc = GistEncoder(folder)
    assert enc.default_batch_size == 32
    enc.encode(["hello"] * 3)
    enc.encode(["hello"] * 3, batch_size=5)
    enc.encode_with_token_counts(["hello"])
    assert seen == [32, 5, 32]
    # Planning only (no CUDA here): an encoder made with CUDA's profile.
    as_if_on(monkeypatch, CUDA_SETTINGS)
    cuda = GistEncoder(folder)
    assert cuda.default_batch_size == 128
    cuda.encode(["hello"] * 3)
    assert seen[-1] == 128


def test_cuda_pads_runs_to_a_multiple_of_8_and_the_cpu_to_the_longest_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_tiny_model(tmp_path / "m", max_seq_length=32)
    texts = ["hello world", "the cat sat on the mat the cat sat", "hello"]  # 4, 11, 3 tokens
    cpu = GistEncoder(folder)
    assert [run.batch.input_ids.shape[1] for run in cpu.engine.plan(iter(texts), 8)] == [11]
    # Planning only (no CUDA here): an encoder made with CUDA's profile.
    as_if_on(monkeypatch, CUDA_SETTINGS)
    cuda = GistEncoder(folder)
    assert [run.batch.input_ids.shape[1] for run in cuda.engine.plan(iter(texts), 8)] == [16]
    # the padded tokens are masked: the same vectors through the same graph
    np.testing.assert_allclose(cuda.encode(texts), cpu.encode(texts), atol=1e-6)


def test_the_heap_is_given_back_after_large_calls_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gist_onnx import heap

    calls: list[int] = []
    monkeypatch.setattr(heap, "trim", lambda: calls.append(1) or True)
    monkeypatch.setattr(heap, "TRIM_AFTER_TOKENS", 40)
    enc = GistEncoder(write_tiny_model(tmp_path / "m"))
    enc.encode(["hello world"] * 3)  # 3 x 4 tokens: kept
    assert calls == []
    enc.encode(["the cat sat on the mat"] * 8)  # 8 x 6 tokens
    assert calls == [1]


def test_trim_gives_the_heap_back_where_the_c_library_can() -> None:
    import platform
    import sys

    from gist_onnx import heap

    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert heap.trim() is glibc


def test_an_engine_runs_over_a_fake_session_through_its_public_interface(tmp_path: Path) -> None:
    """The engine both encoders drive, built from loaded stages and a fake session (no ONNX
    Runtime): it plans, runs, caches and finishes through its public methods."""
    from gist_onnx import EmbeddingCache
    from gist_onnx.device import profile_for
    from gist_onnx.model import read_config, resolve
    from gist_onnx.session import GraphInfo
    from gist_onnx.tokenizer import Batch, load_tokenizer

    folder = write_tiny_model(tmp_path / "m")
    files = resolve(folder, "fp32")
    config = read_config(folder)
    runs: list[int] = []

    class FakeSession:
        info = GraphInfo(
            inputs=("input_ids",), output="last_hidden_state", pooled=False, dimension=DIM
        )
        provider = "FakeProvider"

        def run(self, batch: Batch) -> np.ndarray:
            runs.append(len(batch.input_ids))
            # One hidden state per token: its id in the first dimension, 1 in the rest.
            hidden = np.ones((*batch.input_ids.shape, DIM), dtype=np.float32)
            hidden[..., 0] = batch.input_ids
            return hidden

    engine = Engine(
        files=files,
        config=config,
        tokenizer=load_tokenizer(folder, max_length=config.max_seq_length, config=config),
        session=FakeSession(),
        profile=profile_for("CPUExecutionProvider", 1),
        providers=["CPUExecutionProvider"],
        cache=EmbeddingCache(16),
    )
    texts = ["hello world", "cat", "hello world"]
    vectors, counts = engine.encode(texts, None, True, None, counts=True)
    assert vectors.shape == (3, DIM) and list(counts) == list(engine.count_tokens(texts))
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    ran = sum(runs)
    again, _ = engine.encode(texts, None, True, None)  # every text from the cache now
    assert sum(runs) == ran
    np.testing.assert_array_equal(again, vectors)
    assert engine.prompt("q: ", None) == "q: " and engine.dimensions(2) == 2
    assert engine.finish(vectors, True, 2).shape == (3, 2)
