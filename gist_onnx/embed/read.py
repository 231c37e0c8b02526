"""Reading ``gist-onnx embed``'s inputs: rows of (line number, text or :class:`BadRow`) from txt,
jsonl, csv and parquet, as the package docstring describes (line numbers as ``wc -l`` counts
them, UTF-8 checked row by row, a bad row reported rather than raised)."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections import deque
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
    """The text column of every record, read strictly: a record the reader cannot read as
    written (a quote never closed, text after a closing quote, more fields than the header) is a
    bad row, never a text merged with the lines after it or cut at a comma. A quote never closed
    would swallow every later line: the lines it took are read again, from the next one."""
    # A text may be longer than the csv module's default field limit (128 KiB).
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, _CSV_FIELD_LIMIT))
    try:
        source = _Replayable(lines)
        reader = csv.reader(source, strict=True)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise InvalidInputError(f"The CSV's header line is not valid CSV ({exc}).") from None
        if header is None or key not in header:
            raise InvalidInputError(
                f"The CSV has no column {key!r} (columns: {header}); pass --column."
            )
        column = header.index(key)
        while True:
            source.start_record()
            first = source.consumed + 1
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                taken = source.record_lines()
                why = f"not valid CSV ({exc})"
                if len(taken) > 1:
                    why += (
                        f"; a quote opened on this line is never closed, so the {len(taken) - 1} "
                        "lines after it are read again on their own"
                    )
                    source.replay(taken[1:])
                yield first, BadRow(first, why)
                reader = csv.reader(source, strict=True)
                continue
            if not record:
                continue  # a blank line: no record
            if len(record) > len(header):
                yield (
                    first,
                    BadRow(
                        first,
                        f"{len(record)} fields where the header has {len(header)}: a comma in "
                        "a text that is not quoted (quote the text, doubling its own quotes)",
                    ),
                )
                continue
            value = record[column] if column < len(record) else None
            yield first, _text(value, first, f"column {key!r}")
    finally:
        csv.field_size_limit(limit)


class _Replayable:
    """Lines for ``csv.reader`` (each with its ``\n``), remembering those of the record being
    read, and able to give lines back to be read again."""

    def __init__(self, lines: Iterator[tuple[int, str]]) -> None:
        self._lines = lines
        self._again: deque[tuple[int, str]] = deque()
        self._record: list[tuple[int, str]] = []
        self.consumed = 0  # the number of the last line taken

    def __iter__(self) -> _Replayable:
        return self

    def __next__(self) -> str:
        number, line = self._again.popleft() if self._again else next(self._lines)
        self.consumed = number
        self._record.append((number, line))
        return line + "\n"

    def start_record(self) -> None:
        self._record = []

    def record_lines(self) -> list[tuple[int, str]]:
        return list(self._record)

    def replay(self, lines: list[tuple[int, str]]) -> None:
        """Read ``lines`` again, before the rest."""
        self._again.extendleft(reversed(lines))
        self.consumed = lines[0][0] - 1


def _parquet_rows(path: str, key: str) -> Iterator[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtraError("Reading parquet", "files", "pyarrow") from None
    import pyarrow as pa

    try:
        table = pq.ParquetFile(path)
    except pa.ArrowException as exc:
        raise InvalidInputError(f"{path} is not a parquet file ({exc}).") from None
    if key not in table.schema_arrow.names:
        raise InvalidInputError(
            f"{path} has no column {key!r} (columns: {table.schema_arrow.names}); pass --column."
        )
    number = 0
    for batch in table.iter_batches(columns=[key], batch_size=BATCH_ROWS):
        for value in batch.column(0).to_pylist():
            number += 1
            yield number, _text(value, number, f"column {key!r}")
