"""Unit tier: ``gist-onnx embed``, files in and out, bad rows, stdin/stdout, interruptions."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gist_onnx import GistEncoder
from gist_onnx import embed as embed_mod
from gist_onnx.cli import main
from gist_onnx.embed import embed_file
from tiny import write_tiny_model

TEXTS = ["hello world", "the cat sat on the mat", "cat", "hello"]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_tiny_model(tmp_path / "model")


@pytest.fixture
def encoder(model: Path) -> GistEncoder:
    return GistEncoder(model)


def test_txt_to_npy(encoder: GistEncoder, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    report = embed_file(encoder, str(source), str(tmp_path / "out.npy"))
    assert report.embedded == 4
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), encoder.encode(TEXTS), atol=1e-7)


def test_jsonl_field_to_jsonl_with_line_numbers(encoder: GistEncoder, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"body": t, "n": i}) + "\n" for i, t in enumerate(TEXTS)))
    embed_file(encoder, str(source), str(tmp_path / "out.jsonl"), key="body")
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3, 4]
    np.testing.assert_allclose([r["embedding"] for r in rows], encoder.encode(TEXTS), atol=1e-6)


def test_csv_and_parquet(encoder: GistEncoder, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="the files extra")
    source = tmp_path / "in.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows([i, t] for i, t in enumerate(TEXTS))
    embed_file(encoder, str(source), str(tmp_path / "out.parquet"), key="text")
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column("id").to_pylist() == [2, 3, 4, 5]  # CSV line numbers, header is line 1
    np.testing.assert_allclose(
        np.array(table.column("embedding").to_pylist()), encoder.encode(TEXTS), atol=1e-7
    )
    # Parquet in.
    import pyarrow as pa

    pq.write_table(pa.table({"doc": TEXTS}), tmp_path / "in.parquet")
    embed_file(encoder, str(tmp_path / "in.parquet"), str(tmp_path / "p.npy"), key="doc")
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), encoder.encode(TEXTS), atol=1e-7)


def test_bad_rows_fail_with_their_line_or_are_skipped_and_reported(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    lines = [
        '{"text": "hello"}',
        "not json",
        '{"text": ""}',
        '{"other": 1}',
        '{"text": 5}',
        '{"text": "cat"}',
    ]
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.npy"
    assert main(["embed", str(source), "-o", str(out), "--model", str(model)]) == 2
    assert "line 2: not JSON" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out.npy.*"))
    code = main(["embed", str(source), "-o", str(out), "--model", str(model), "--on-bad", "skip"])
    assert code == 0
    assert "skipped 4 bad rows: lines 2, 3, 4, 5" in capsys.readouterr().err
    assert np.load(out).shape == (2, 4)
    assert np.load(f"{out}.ids.npy").tolist() == [1, 6]


def test_stdin_to_stdout(model: Path, encoder: GistEncoder) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gist_onnx.cli", "embed", "-", "-o", "-", "--model", str(model)],
        input="\n".join(TEXTS) + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    np.testing.assert_allclose([r["embedding"] for r in rows], encoder.encode(TEXTS), atol=1e-6)


def test_an_interrupted_run_leaves_no_file(
    encoder: GistEncoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("hello\n" * 10_000)
    out = tmp_path / "out.npy"
    out.write_bytes(b"an earlier result")
    calls = []
    original = encoder.encode

    def interrupted(texts: list[str], **kwargs: object) -> np.ndarray:
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(texts)

    monkeypatch.setattr(encoder, "encode", interrupted)
    monkeypatch.setattr(embed_mod, "CHUNK", 4096)
    with pytest.raises(KeyboardInterrupt):
        embed_file(encoder, str(source), str(out))
    assert out.read_bytes() == b"an earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "model", "out.npy"]


def test_unknown_formats_and_missing_files_are_one_line(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["embed", str(tmp_path / "x.doc"), "-o", "o.npy", "--model", str(model)]) == 2
    assert "Cannot tell the input format" in capsys.readouterr().err
    (tmp_path / "x.txt").write_text("a\n")
    assert main(["embed", str(tmp_path / "x.txt"), "-o", "o.bin", "--model", str(model)]) == 2
    assert "Cannot tell the output format" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "none.txt"), "-o", "o.npy", "--model", str(model)]) == 2
    assert "No input file" in capsys.readouterr().err
