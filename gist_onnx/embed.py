"""``gist-onnx embed``: texts from a file to vectors in a file, streamed, memory bounded.

    gist-onnx embed texts.txt -o vectors.npy
    gist-onnx embed docs.jsonl --field body -o vectors.parquet
    gist-onnx embed table.csv --column text -o - > vectors.jsonl

Inputs: ``.txt`` (one text a line), ``.jsonl`` (``--field``, default ``text``), ``.csv``
(``--column``, default ``text``), ``.parquet`` (``--column``; needs pyarrow: the ``files``
extra), all UTF-8; ``-`` reads stdin (``--input-format``, default txt). Outputs: ``.npy``
(float32, n x dim) with ``<output>.ids.npy`` beside it (int64, each row's id), ``.parquet``
(``id``, ``embedding``), ``.jsonl`` (``{"id", "embedding"}`` a line); ``-`` writes jsonl to
stdout.

A row's ``id`` is the number of the line it starts on, as ``wc -l``, editors and ``csv.reader``
count lines: only ``\n`` ends a line, a quoted CSV record over several lines has the number of
its first line (the header is line 1), and parquet rows count from 1. Rows stay traceable when
bad rows are skipped.

A bad row (an empty text, a missing field, not a string, bytes that are not UTF-8, a line that
is not JSON or is nested too deeply) stops the run with its line number, or with ``--on-bad
skip`` is left out and reported (count and line numbers on stderr): nothing is dropped
silently. The output is checked before any text is encoded, written under a hidden partial name
beside it and renamed only when complete, so a failed or interrupted run (Ctrl-C, or SIGTERM
from ``gist-onnx embed``) leaves no half-written file under its name; a partial left by a killed
run is removed by the next run into the same output.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
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
from .interrupt import partial_name, stale_partials

INPUT_FORMATS = ("txt", "jsonl", "csv", "parquet")
OUTPUT_FORMATS = ("npy", "jsonl", "parquet")
CHUNK = 4096  # texts read, encoded and written at a time: what bounds memory
_CSV_FIELD_LIMIT = 1 << 30
_SURROGATE = re.compile("[\ud800-\udfff]")


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
    undecodable = _not_utf8(value)
    if undecodable is not None:
        return BadRow(line, f"{where}: {undecodable}")
    return value


def _not_utf8(text: str) -> str | None:
    """Why ``text`` is not valid Unicode (bytes that were not UTF-8, or a lone surrogate from a
    JSON escape), or None."""
    found = _SURROGATE.search(text)
    if found is None:
        return None
    char = ord(found.group())
    if 0xDC80 <= char <= 0xDCFF:  # surrogateescape's mark for an undecodable byte
        return f"not UTF-8 (byte 0x{char - 0xDC00:02x} at column {found.start() + 1})"
    return f"not valid Unicode (a lone surrogate U+{char:04X} at column {found.start() + 1})"


def read_rows(source: IO[bytes] | IO[str] | str, fmt: str, key: str) -> Iterator[Row]:
    """(id, text or BadRow) for every row of the input, streamed.

    A row's id is the number of the line it starts on, counting lines as ``wc -l``, editors and
    ``csv.reader`` do: only ``\n`` ends a line (a lone ``\r`` is part of its line), and a
    quoted CSV record over several lines has the number of its first. Parquet rows are numbered
    from 1. A line that is not UTF-8, or a JSON line that cannot be read (malformed, nested too
    deeply), is a bad row with its id, like an empty text.
    """
    if fmt == "parquet":
        yield from _parquet_rows(str(source), key)
        return
    if isinstance(source, str):
        handle: IO[bytes] = open(source, "rb")  # noqa: SIM115
    else:
        handle = _binary(source)
    try:
        lines = _lines(handle)
        if fmt == "txt":
            for number, line in lines:
                yield number, _text(line.removesuffix("\r"), number, "the line")
        elif fmt == "jsonl":
            for number, line in lines:
                yield number, _json_row(line, number, key)
        else:
            yield from _csv_rows(lines, key)
    finally:
        if isinstance(source, str):
            handle.close()


def _binary(source: IO[bytes] | IO[str]) -> IO[bytes]:
    """The byte stream under ``source`` (stdin's buffer); a text stream without one (a StringIO)
    is encoded back, undecodable characters kept as they came (surrogateescape)."""
    buffer = getattr(source, "buffer", None)
    if buffer is not None:
        return buffer  # type: ignore[no-any-return]
    if isinstance(source, io.TextIOBase):
        return io.BytesIO(source.read().encode("utf-8", "surrogateescape"))
    return source  # type: ignore[return-value]


def _lines(handle: IO[bytes]) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line, split at ``\n`` only, without it. Bytes that are not
    UTF-8 come through as lone surrogates (surrogateescape), which :func:`_text` reports."""
    for number, raw in enumerate(handle, start=1):
        line = (
            raw[len(codecs.BOM_UTF8) :] if number == 1 and raw.startswith(codecs.BOM_UTF8) else raw
        )
        yield number, line.removesuffix(b"\n").decode("utf-8", "surrogateescape")


def _json_row(line: str, number: int, key: str) -> str | BadRow:
    undecodable = _not_utf8(line)
    if undecodable is not None:
        return BadRow(number, undecodable)
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return BadRow(number, f"not JSON ({exc.msg} at column {exc.colno})")
    except RecursionError:
        return BadRow(number, "JSON nested too deeply to read")
    value = record.get(key) if isinstance(record, dict) else None
    return _text(value, number, f"field {key!r}")


def _csv_rows(lines: Iterator[tuple[int, str]], key: str) -> Iterator[Row]:
    consumed = 0  # the number of the last line the CSV reader took

    def feed() -> Iterator[str]:
        nonlocal consumed
        for number, line in lines:
            consumed = number
            yield line + "\n"

    # A text may be longer than the csv module's default field limit (128 KiB).
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, _CSV_FIELD_LIMIT))
    try:
        reader = csv.reader(feed())
        header = next(reader, None)
        if header is None or key not in header:
            raise InvalidInputError(
                f"The CSV has no column {key!r} (columns: {header}); pass --column."
            )
        column = header.index(key)
        while True:
            first = consumed + 1
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield first, BadRow(first, f"not valid CSV ({exc})")
                continue
            if not record:
                continue  # a blank line: no record
            value = record[column] if column < len(record) else None
            yield first, _text(value, first, f"column {key!r}")
    finally:
        csv.field_size_limit(limit)


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
    stdin: IO[bytes] | IO[str] | None = None,
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
    outputs = None if output == "-" else _Outputs(Path(output), out_fmt, source)
    rows = read_rows(stdin or sys.stdin if source == "-" else source, in_fmt, key)

    report = Report(output=output)
    out: IO[bytes] | None = None
    bar = None
    kept_ids: list[int] = []
    try:
        if outputs is None:
            writer: Any = _JsonlWriter(stdout or sys.stdout.buffer)
        elif out_fmt == "parquet":
            writer = _ParquetWriter(str(outputs.vectors), encoder.dimension)
        else:
            out = outputs.vectors.open("wb")
            writer = _NpyWriter(out, encoder.dimension) if out_fmt == "npy" else _JsonlWriter(out)
        bar = _bar(progress, source, in_fmt)
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
                if outputs is not None and outputs.ids is not None:
                    kept_ids.extend(ids)
            if bar is not None:
                bar.update(len(chunk))
        writer.close()
        if out is not None:
            out.close()
        if outputs is not None:
            outputs.commit(kept_ids)
            outputs = None
    finally:
        if bar is not None:
            bar.close()
        if outputs is not None:  # failed or interrupted: no half-written file under the name
            if out is not None:
                out.close()
            outputs.discard()
    return report


class _Outputs:
    """The files a run writes, under hidden partial names until :meth:`commit` renames them into
    place: the vectors and, for .npy, ``<output>.ids.npy`` (each row's id), always together.

    Checked before any text is encoded (a folder, a missing or read-only folder, the input
    itself), so that a mistake costs nothing. Partial outputs that a killed run left are
    removed first; committed files get the modes the umask gives, as any new file.
    """

    def __init__(self, target: Path, fmt: str, source: str) -> None:
        self.target = target
        self.ids_target = target.with_name(target.name + ".ids.npy") if fmt == "npy" else None
        for path in (target, self.ids_target):
            if path is not None and path.is_dir():
                raise InvalidInputError(f"The output {path} is a folder; name a file in it.")
        if source != "-" and target.exists() and target.resolve() == Path(source).resolve():
            raise InvalidInputError(f"The output {target} is the input; name another file.")
        folder = target.parent
        if not folder.is_dir():
            raise InvalidInputError(f"The output's folder {folder} does not exist; create it.")
        for path in (target, self.ids_target):
            if path is not None:
                for stale in stale_partials(path):
                    stale.unlink(missing_ok=True)
        self.vectors = self._reserve(target)
        self.ids = self._reserve(self.ids_target) if self.ids_target is not None else None

    def _reserve(self, target: Path) -> Path:
        try:
            fd, name = tempfile.mkstemp(
                prefix=partial_name(target), suffix=".partial", dir=target.parent
            )
        except OSError as exc:
            self.discard()
            raise InvalidInputError(
                f"Cannot write into {target.parent}: {exc.strerror or exc}. Pick an output "
                "folder you can write to."
            ) from None
        os.close(fd)
        return Path(name)

    def commit(self, ids: list[int]) -> None:
        """Rename the finished outputs into place: the ids first, then the vectors, one right
        after the other, so the pair is never left half replaced by a failed run."""
        mode = 0o666 & ~_umask()
        if self.ids is not None and self.ids_target is not None:
            with self.ids.open("wb") as handle:
                np.save(handle, np.asarray(ids, dtype=np.int64))
            self.ids.chmod(mode)
        self.vectors.chmod(mode)
        if self.ids is not None and self.ids_target is not None:
            self.ids.replace(self.ids_target)
        self.vectors.replace(self.target)

    def discard(self) -> None:
        """Remove the partial outputs (a failed or interrupted run)."""
        for path in (getattr(self, "vectors", None), getattr(self, "ids", None)):
            if path is not None:
                path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _bar(show: bool, source: str, fmt: str) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    total = None
    if source != "-" and fmt in ("txt", "jsonl"):
        with open(source, "rb") as handle:  # a count of lines: fast, and gives an ETA
            total = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    return tqdm(total=total, unit="text", desc="Embedding", file=sys.stderr, smoothing=0.1)
