"""``gist-onnx embed``: texts from a file to vectors in a file, streamed, memory bounded.

    gist-onnx embed texts.txt -o vectors.npy
    gist-onnx embed docs.jsonl --field body -o vectors.parquet
    gist-onnx embed table.csv --column text -o - > vectors.jsonl

Inputs: ``.txt`` (one text a line), ``.jsonl`` (``--field``, default ``text``), ``.csv``
(``--column``, default ``text``), ``.parquet`` (``--column``; needs pyarrow: the ``files``
extra); ``-`` reads stdin (``--input-format``, default txt). Outputs: ``.npy`` (float32,
n x dim), ``.parquet`` (``id``, ``embedding``), ``.jsonl`` (``{"id", "embedding"}`` a line);
``-`` writes jsonl to stdout. ``id`` is the text's line number in the input (its row number for
parquet), so rows stay traceable when bad rows are skipped.

A bad row (an empty text, a missing field, not a string, a line that is not JSON) stops the run
with its line number, or with ``--on-bad skip`` is left out and reported (count and line
numbers on stderr; for .npy the kept line numbers go to ``<output>.ids.npy``): nothing is
dropped silently. The output is written under a temporary name beside it and renamed only when
complete, so a failed or interrupted run (Ctrl-C) leaves no half-written file under its name.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from . import GistEncoder, InvalidInputError, MissingExtraError

INPUT_FORMATS = ("txt", "jsonl", "csv", "parquet")
OUTPUT_FORMATS = ("npy", "jsonl", "parquet")
CHUNK = 4096  # texts read, encoded and written at a time: what bounds memory


class BadRow(InvalidInputError):
    """A row of the input that cannot be embedded, with its line number."""

    def __init__(self, line: int, why: str) -> None:
        super().__init__(f"line {line}: {why}")
        self.line = line


Row = tuple[int, "str | BadRow"]


@dataclass
class Report:
    """What a run did."""

    embedded: int = 0
    skipped: list[int] = field(default_factory=list)
    output: str = ""


def _format(path: str, given: str | None, allowed: tuple[str, ...], what: str) -> str:
    if given:
        fmt = given
    elif path == "-":
        fmt = "txt" if what == "input" else "jsonl"
    else:
        fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in allowed:
        raise InvalidInputError(
            f"Cannot tell the {what} format of {path!r}: use a name ending in "
            f"{', '.join('.' + f for f in allowed)} (or --{what}-format)."
        )
    return fmt


def _text(value: Any, line: int, where: str) -> str | BadRow:
    if value is None:
        return BadRow(line, f"no {where}")
    if not isinstance(value, str):
        return BadRow(line, f"{where} is {type(value).__name__}, not a string")
    if not value.strip():
        return BadRow(line, f"{where} is empty")
    return value


def read_rows(source: IO[str] | str, fmt: str, key: str) -> Iterator[Row]:
    """(line number, text or BadRow) for every row of the input, streamed."""
    if fmt == "parquet":
        yield from _parquet_rows(str(source), key)
        return
    if isinstance(source, str):
        handle: IO[str] = open(source, encoding="utf-8", newline="")  # noqa: SIM115
    else:
        handle = source
    try:
        if fmt == "txt":
            for number, line in enumerate(handle, start=1):
                yield number, _text(line.rstrip("\r\n"), number, "the line")
        elif fmt == "jsonl":
            for number, line in enumerate(handle, start=1):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, BadRow(number, f"not JSON ({exc.msg})")
                    continue
                value = record.get(key) if isinstance(record, dict) else None
                yield number, _text(value, number, f"field {key!r}")
        else:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or key not in reader.fieldnames:
                raise InvalidInputError(
                    f"The CSV has no column {key!r} (columns: {reader.fieldnames}); pass --column."
                )
            for record in reader:
                yield reader.line_num, _text(record.get(key), reader.line_num, f"column {key!r}")
    finally:
        if isinstance(source, str):
            handle.close()


def _parquet_rows(path: str, key: str) -> Iterator[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtraError("Reading parquet", "files", "pyarrow") from None
    table = pq.ParquetFile(path)
    if key not in table.schema_arrow.names:
        raise InvalidInputError(
            f"{path} has no column {key!r} (columns: {table.schema_arrow.names}); pass --column."
        )
    number = 0
    for batch in table.iter_batches(columns=[key], batch_size=CHUNK):
        for value in batch.column(0).to_pylist():
            number += 1
            yield number, _text(value, number, f"column {key!r}")


class _NpyWriter:
    """Rows appended to a .npy file whose header is rewritten with the row count at the end."""

    HEADER = 128  # bytes: magic, version, length and the padded dict (room for any row count)

    def __init__(self, handle: IO[bytes], dim: int) -> None:
        self.handle, self.dim, self.rows = handle, dim, 0
        handle.write(b"\0" * self.HEADER)

    def write(self, ids: list[int], vectors: npt.NDArray[np.float32]) -> None:
        self.handle.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
        self.rows += len(vectors)

    def close(self) -> None:
        header = repr({"descr": "<f4", "fortran_order": False, "shape": (self.rows, self.dim)})
        body = header.encode("latin1")
        padding = self.HEADER - 10 - len(body) - 1
        self.handle.seek(0)
        self.handle.write(b"\x93NUMPY\x01\x00" + (self.HEADER - 10).to_bytes(2, "little"))
        self.handle.write(body + b" " * padding + b"\n")


class _JsonlWriter:
    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle

    def write(self, ids: list[int], vectors: npt.NDArray[np.float32]) -> None:
        lines = (
            json.dumps({"id": i, "embedding": v}, separators=(",", ":"))
            for i, v in zip(ids, vectors.tolist(), strict=True)
        )
        self.handle.write(("\n".join(lines) + "\n").encode())

    def close(self) -> None:
        self.handle.flush()


class _ParquetWriter:
    def __init__(self, path: str, dim: int) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise MissingExtraError("Writing parquet", "files", "pyarrow") from None
        self.pa = pa
        self.schema = pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float32(), dim))])
        self.writer = pq.ParquetWriter(path, self.schema)

    def write(self, ids: list[int], vectors: npt.NDArray[np.float32]) -> None:
        pa = self.pa
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
        column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
        self.writer.write_table(pa.table([pa.array(ids, pa.int64()), column], schema=self.schema))

    def close(self) -> None:
        self.writer.close()


def embed_file(
    encoder: GistEncoder,
    source: str,
    output: str,
    *,
    input_format: str | None = None,
    output_format: str | None = None,
    key: str = "text",
    on_bad: str = "fail",
    batch_size: int | None = None,
    progress: bool = False,
    stdin: IO[str] | None = None,
    stdout: IO[bytes] | None = None,
) -> Report:
    """Embed every text of ``source`` into ``output``; see the module docstring."""
    in_fmt = _format(source, input_format, INPUT_FORMATS, "input")
    out_fmt = _format(output, output_format, OUTPUT_FORMATS, "output")
    if output == "-" and out_fmt != "jsonl":
        raise InvalidInputError("Only jsonl can go to stdout (-o -); name a .npy/.parquet file.")
    if on_bad not in ("fail", "skip"):
        raise InvalidInputError(f"--on-bad is fail or skip, got {on_bad!r}.")
    if source != "-" and not Path(source).is_file():
        raise InvalidInputError(f"No input file {source}.")
    if source == "-" and in_fmt == "parquet":
        raise InvalidInputError("Parquet cannot be read from stdin; pass the file.")
    rows = read_rows(stdin or sys.stdin if source == "-" else source, in_fmt, key)

    report = Report(output=output)
    partial: Path | None = None
    out: IO[bytes] | None
    if output == "-":
        out = stdout or sys.stdout.buffer
        writer: Any = _JsonlWriter(out)
    else:
        target = Path(output)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        os.close(fd)
        partial = Path(name)
        if out_fmt == "parquet":
            out = None
            writer = _ParquetWriter(str(partial), encoder.dimension)
        else:
            out = partial.open("wb")
            writer = _NpyWriter(out, encoder.dimension) if out_fmt == "npy" else _JsonlWriter(out)
    bar = _bar(progress, source, in_fmt)
    kept_ids: list[int] = []
    try:
        while chunk := list(islice(rows, CHUNK)):
            ids, texts = [], []
            for number, value in chunk:
                if isinstance(value, BadRow):
                    if on_bad == "fail":
                        raise value
                    report.skipped.append(number)
                    continue
                ids.append(number)
                texts.append(value)
            if texts:
                writer.write(ids, encoder.encode(texts, batch_size=batch_size))
                report.embedded += len(texts)
                if out_fmt == "npy" and on_bad == "skip":
                    kept_ids.extend(ids)
            if bar is not None:
                bar.update(len(chunk))
        writer.close()
        if out is not None and partial is not None:
            out.close()
        if partial is not None:
            if out_fmt == "npy" and report.skipped:
                np.save(f"{output}.ids.npy", np.asarray(kept_ids, dtype=np.int64))
            partial.replace(output)
            partial = None
    finally:
        if bar is not None:
            bar.close()
        if partial is not None:  # failed or interrupted: no half-written file under the name
            if out is not None:
                out.close()
            partial.unlink(missing_ok=True)
    return report


def _bar(show: bool, source: str, fmt: str) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    total = None
    if source != "-" and fmt in ("txt", "jsonl"):
        with open(source, "rb") as handle:  # a count of lines: fast, and gives an ETA
            total = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    return tqdm(total=total, unit="text", desc="Embedding", file=sys.stderr, smoothing=0.1)
