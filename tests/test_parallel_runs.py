"""Unit and model tiers: calls of several graph runs run them at once, one thread each, with the
same vectors, counts and errors as one at a time."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gist_onnx import GistEncoder
from tests.support.tiny import write_tiny_model

TEXTS = [f"hello {'the cat sat on the mat ' * (i % 5)}world" for i in range(3000)]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_tiny_model(tmp_path / "tiny", max_seq_length=32)


def test_runs_at_once_give_the_same_vectors_and_counts(folder: Path) -> None:
    serial = GistEncoder(folder, parallel_runs=False)
    parallel = GistEncoder(folder)
    parallel.parallel_runs = 3  # whatever this machine's cores, three runs at once
    assert serial.parallel_runs == 1
    expected, expected_counts = serial.encode_with_token_counts(TEXTS, batch_size=16)
    vectors, counts = parallel.encode_with_token_counts(TEXTS, batch_size=16)
    np.testing.assert_array_equal(vectors, expected)
    np.testing.assert_array_equal(counts, expected_counts)
    # A generator (the output grows chunk by chunk while runs are in flight) and one of 2 texts.
    np.testing.assert_array_equal(parallel.encode(t for t in TEXTS), expected)
    np.testing.assert_array_equal(parallel.encode(TEXTS[:2], batch_size=1), expected[:2])


def test_a_call_of_one_run_stays_on_the_main_session(folder: Path) -> None:
    encoder = GistEncoder(folder)
    encoder.parallel_runs = 2
    encoder.encode(TEXTS[:5])
    assert encoder.engine.single is None  # the second session is made only when several runs come
    encoder.encode(TEXTS[:100], batch_size=8)
    assert encoder.engine.single is not None


def test_an_error_in_one_run_is_raised_and_no_thread_outlives_the_call(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = GistEncoder(folder)
    encoder.parallel_runs = 2
    single = encoder.engine.single_session()
    calls = {"n": 0}
    original = single.run

    def flaky(batch: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("run 3 failed")
        return original(batch)

    monkeypatch.setattr(single, "run", flaky)
    before = threading.active_count()
    with pytest.raises(RuntimeError, match="run 3 failed"):
        encoder.encode(TEXTS, batch_size=8)
    assert threading.active_count() == before


def test_a_call_of_one_run_does_not_import_the_thread_pool(folder: Path) -> None:
    # concurrent.futures costs ~5 ms to import: a serverless cold start of one text skips it.
    code = (
        "import sys\n"
        "from gist_onnx import GistEncoder\n"
        f"GistEncoder({str(folder)!r}).encode(['hello world'])\n"
        "print('concurrent.futures' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert proc.stdout.strip() == "False"


def test_one_thread_or_off_means_one_run_at_a_time(folder: Path) -> None:
    assert GistEncoder(folder, threads=1).parallel_runs == 1
    assert GistEncoder(folder, parallel_runs=False).parallel_runs == 1


@pytest.mark.model
def test_the_int8_graph_gives_identical_vectors_at_once(exported: Path) -> None:
    texts = [f"sentence {i}: " + "a long passage about many things " * (i % 40) for i in range(96)]
    serial = GistEncoder(exported, variant="int8", parallel_runs=False)
    parallel = GistEncoder(exported, variant="int8")
    parallel.parallel_runs = 2
    np.testing.assert_array_equal(parallel.encode(texts), serial.encode(texts))
