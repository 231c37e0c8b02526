"""Reading ``gist-onnx embed``'s inputs: rows of (line number, text or :class:`BadRow`) from txt,
jsonl, csv and parquet, as the package docstring describes (line numbers as ``wc -l`` counts
them, UTF-8 checked row by row, a bad row reported rather than raised)."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterator
from typing import IO, Any

from ..errors import InvalidInputError, MissingExtraError

_CSV_FIELD_LIMIT = 1 << 30
_SURROGATE = re.compile("[\ud800-\udfff]")
# Parquet rows read at a time (the driver reads in chunks of the same size).
BATCH_ROWS = 4096


class BadRow(InvalidInputError):
    """A row of the input that cannot be embedded, with its line number."""

    def __init__(self, line: int, why: str) -> None:
        super().__init__(f"line {line}: {why}")
        self.line = line


Row = tuple[int, "str | BadRow"]


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
    for batch in table.iter_batches(columns=[key], batch_size=BATCH_ROWS):
        for value in batch.column(0).to_pylist():
            number += 1
            yield number, _text(value, number, f"column {key!r}")
