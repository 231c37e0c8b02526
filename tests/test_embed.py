"""Unit tier: ``gist-onnx embed``, files in and out, bad rows, stdin/stdout, interruptions."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gist_onnx import GistEncoder
from gist_onnx import embed as embed_mod
from gist_onnx.cli import main
from gist_onnx.embed import embed_file
from tests.support.tiny import DIM, write_tiny_model

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


# ------------------------------------------------------------------------------------ edges


def _run(model: Path, *args: str) -> int:
    return main(["embed", *args, "--model", str(model), "--quiet"])


def test_vectors_and_ids_are_always_one_pair(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.npy"
    ids = tmp_path / "out.npy.ids.npy"
    source = tmp_path / "in.txt"
    source.write_text("hello\n\ncat\nmat\n")
    assert _run(model, str(source), "-o", str(out), "--on-bad", "skip") == 0
    assert np.load(ids).tolist() == [1, 3, 4] and np.load(out).shape == (3, DIM)
    source.write_text("hello\ncat\n")  # a clean run into the same output
    assert _run(model, str(source), "-o", str(out)) == 0
    assert np.load(ids).tolist() == [1, 2] and np.load(out).shape == (2, DIM)
    source.write_text("hello\n\n")  # a failed run changes neither
    assert _run(model, str(source), "-o", str(out)) == 2
    assert np.load(ids).tolist() == [1, 2] and np.load(out).shape == (2, DIM)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "model", "out.npy", ids.name]


def test_ids_count_lines_as_wc_and_csv_reader_do(encoder: GistEncoder, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes(b"hello\rworld\ncat\r\n\xef\xbb\xbfmat\n")  # a lone \r is inside line 1
    embed_file(encoder, str(source), str(tmp_path / "t.jsonl"))
    rows = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert len(rows) == source.read_bytes().count(b"\n")  # wc -l
    np.testing.assert_allclose(rows[0]["embedding"], encoder.encode(["hello\rworld"])[0], atol=1e-6)
    records = [["a", "the cat\nsat\non the mat"], ["b", "hello"], ["c", 'say "hi",\r\nthen go']]
    with (tmp_path / "in.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "text"])
        writer.writerows(records)
    embed_file(encoder, str(tmp_path / "in.csv"), str(tmp_path / "c.jsonl"))
    rows = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [2, 5, 6]  # the line each record starts on
    np.testing.assert_allclose(
        [r["embedding"] for r in rows], encoder.encode([r[1] for r in records]), atol=1e-6
    )


@pytest.mark.parametrize(
    "case",
    [
        (".txt", b"hello\ncaf\xe9\ncat\n", "line 2: the line: not UTF-8 (byte 0xe9 at column 4)"),
        (".jsonl", b'{"text": "a"}\n{"text": "caf\xe9"}\n{"text": "b"}\n', "line 2: not UTF-8"),
        (".csv", b"text\nhello\ncaf\xff\nmat\n", "line 3: column 'text': not UTF-8 (byte 0xff"),
        (".jsonl", b'{"text": "a"}\n' + b"[" * 100_000 + b"\n{}\n", "line 2: JSON nested too"),
        (".jsonl", b'{"text": "\\ud800x"}\n{"text": "b"}\n', "line 1: field 'text': not valid"),
    ],
)
def test_rows_that_cannot_be_read_are_bad_rows_with_their_line(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: tuple[str, bytes, str]
) -> None:
    suffix, content, why = case
    source = tmp_path / f"in{suffix}"
    source.write_bytes(content)
    out = tmp_path / "out.jsonl"
    assert _run(model, str(source), "-o", str(out)) == 2
    err = capsys.readouterr().err
    assert why in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _run(model, str(source), "-o", str(out), "--on-bad", "skip") in (0, 2)


@pytest.mark.parametrize(
    ("content", "bad", "kept"),
    [
        # A quote never closed: one bad row, the lines after it read again on their own.
        (b'text\nok 1\n"opens and never closes\nok 2\nok 3\n', [3], ["ok 1", "ok 2", "ok 3"]),
        # Text after a closing quote: not read as 'Great value' cut at the comma.
        (b'text\n"Great" value, more\nfine\n', [2], ["fine"]),
        # An unquoted comma: more fields than the header, not a text cut short.
        (b"text\nGreat value, more\nfine\n", [2], ["fine"]),
        # Quotes inside an unquoted text, and a quoted text over two lines, are valid CSV.
        (b'text\nHe said "hi"\n"two\nlines"\n', [], ['He said "hi"', "two\nlines"]),
    ],
)
def test_csv_rows_that_cannot_be_read_as_written_are_bad_rows(
    content: bytes, bad: list[int], kept: list[str]
) -> None:
    from gist_onnx.embed.read import BadRow, read_rows

    rows = list(read_rows(io.BytesIO(content), "csv", "text"))
    assert [n for n, value in rows if isinstance(value, BadRow)] == bad
    assert [value for _, value in rows if not isinstance(value, BadRow)] == kept


def test_an_unclosed_quote_fails_the_run_saying_where(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.csv"
    rows = [f"row {i}" for i in range(1000)]
    rows[300] = '"' + rows[300]  # opens a quote that never closes
    source.write_text("text\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out.jsonl"
    assert _run(model, str(source), "-o", str(out)) == 2
    assert "line 302: not valid CSV" in capsys.readouterr().err
    assert _run(model, str(source), "-o", str(out), "--on-bad", "skip") == 0
    assert len(out.read_text().splitlines()) == 999


def test_undecodable_and_deep_rows_are_skipped_with_the_rest_kept(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"text": "a"}\n{"text": "\xff"}\n' + b"{" * 50_000 + b'\n{"text": "b"}\n')
    out = tmp_path / "out.jsonl"
    assert _run(model, str(source), "-o", str(out), "--on-bad", "skip") == 0
    assert "skipped 2 bad rows: lines 2, 3" in capsys.readouterr().err
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == [1, 4]


def test_the_output_is_checked_before_any_text_is_encoded(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("hello\n")
    encoded: list[int] = []
    original = GistEncoder.encode

    def counting(self: GistEncoder, texts: Any, *args: Any, **kwargs: Any) -> Any:
        encoded.append(len(texts))
        return original(self, texts, *args, **kwargs)

    monkeypatch.setattr(GistEncoder, "encode", counting)
    (tmp_path / "folder.npy").mkdir()
    (tmp_path / "x.npy.ids.npy").mkdir()
    cases = {
        str(tmp_path / "folder.npy"): "is a folder",
        str(tmp_path / "x.npy"): "is a folder",  # its ids file would be
        str(tmp_path / "missing" / "o.npy"): "does not exist; create it",
        "/proc/o.npy": "Cannot write into /proc",
        str(source.with_suffix(".jsonl")): None,
    }
    for output, message in cases.items():
        if message is None:
            continue
        assert _run(model, str(source), "-o", output) == 2, output
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    same = tmp_path / "same.jsonl"
    same.write_text('{"text": "hello"}\n')
    assert _run(model, str(same), "-o", str(same)) == 2
    assert "is the input" in capsys.readouterr().err
    assert encoded == []


def test_embed_without_model_means_the_gist_model(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("hello\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gist_onnx.cli",
            "embed",
            str(source),
            "-o",
            str(tmp_path / "o.npy"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 2  # an empty cache, offline: the GIST model is what was looked for
    assert "avsolatorio/GIST-all-MiniLM-L6-v2" in proc.stderr and "NoneType" not in proc.stderr


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_modes_the_umask_gives(
    model: Path, tmp_path: Path, umask: int, mode: int
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("hello\ncat\n")
    old = os.umask(umask)
    try:
        for name in ("o.npy", "o.jsonl"):
            assert _run(model, str(source), "-o", str(tmp_path / name)) == 0
    finally:
        os.umask(old)
    for name in ("o.npy", "o.npy.ids.npy", "o.jsonl"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_sigterm_leaves_no_partial_and_a_later_run_removes_stale_ones(
    model: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("the cat sat on the mat\n" * 400_000)
    out = tmp_path / "out.npy"
    stale = tmp_path / f".out.npy.partial-{_dead_pid()}-abc.partial"
    stale_ids = tmp_path / f".out.npy.ids.npy.partial-{_dead_pid()}-abc.partial"
    alive = tmp_path / f".out.npy.partial-{os.getpid()}-abc.partial"  # a run still going
    for path in (stale, stale_ids, alive):
        path.write_bytes(b"x")
    command = [sys.executable, "-m", "gist_onnx.cli", "embed", str(source), "-o", str(out)]
    proc = subprocess.Popen([*command, "--model", str(model), "--quiet"])
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(f".out.npy.partial-{proc.pid}-*")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["in.txt", "model", alive.name]), left


def test_a_parquet_that_is_not_parquet_is_one_line_and_exit_2(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pyarrow")
    source = tmp_path / "in.parquet"
    source.write_text("text\nnot parquet at all\n")
    assert _run(model, str(source), "-o", str(tmp_path / "out.npy")) == 2
    err = capsys.readouterr().err
    assert "is not a parquet file" in err and len(err.strip().splitlines()) == 1


def test_a_full_disk_is_one_line_and_exit_2_leaving_nothing(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from gist_onnx.embed import write

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(write.NpyWriter, "write", full)
    source = tmp_path / "in.txt"
    source.write_text("hello\ncat\n")
    out = tmp_path / "out.npy"
    assert _run(model, str(source), "-o", str(out)) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "model"]


def test_a_pipe_is_read_as_a_stream(model: Path, tmp_path: Path) -> None:
    """A named pipe or a process substitution (/dev/fd/63) is not a regular file, but it is an
    input like stdin."""
    import os
    import threading

    fifo = tmp_path / "texts.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "w") as handle:
            handle.write("hello\ncat\n")

    writer = threading.Thread(target=feed)
    writer.start()
    out = tmp_path / "out.jsonl"
    assert _run(model, str(fifo), "--input-format", "txt", "-o", str(out)) == 0
    writer.join()
    assert len(out.read_text().splitlines()) == 2
    assert _run(model, str(tmp_path), "-o", str(out)) == 2  # a folder is not an input


def test_a_partial_with_this_process_id_is_stale_unless_this_process_wrote_it(
    tmp_path: Path,
) -> None:
    """In a container the command is always PID 1: after an OOM kill, the next run has the id of
    the run that left the partial. The start time in the name tells them apart; a partial
    from another host (another container on a shared volume) is left alone."""
    from gist_onnx.interrupt import partial_name, stale_partials

    target = tmp_path / "out.npy"
    ours = partial_name(target)
    pid, start, host = ours[len(".out.npy.partial-") :].rstrip("-").split("-")
    mine = tmp_path / f"{ours}abc.partial"
    earlier = tmp_path / f".out.npy.partial-{pid}-{int(start) + 1}-{host}-abc.partial"
    elsewhere = tmp_path / f".out.npy.partial-{pid}-{int(start) + 1}-0badc0de-abc.partial"
    old_format = tmp_path / f".out.npy.partial-{pid}-abc.partial"
    for path in (mine, earlier, elsewhere, old_format):
        path.write_bytes(b"x")
    assert sorted(p.name for p in stale_partials(target)) == sorted([earlier.name, old_format.name])
