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

import sys
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

from .. import GistEncoder, GistOnnxError, InvalidInputError
from .read import BadRow, Row, read_rows
from .write import JsonlWriter, NpyWriter, Outputs, ParquetWriter

__all__ = [
    "CHUNK",
    "INPUT_FORMATS",
    "OUTPUT_FORMATS",
    "BadRow",
    "FileError",
    "Report",
    "Row",
    "embed_file",
    "read_rows",
]

INPUT_FORMATS = ("txt", "jsonl", "csv", "parquet")
OUTPUT_FORMATS = ("npy", "jsonl", "parquet")
CHUNK = 4096  # texts read, encoded and written at a time: what bounds memory


class FileError(GistOnnxError, OSError):
    """An input or output file could not be read or written (a full disk, a quota, no
    permission): the message names the file and the system's reason."""


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
    if source != "-":
        # Not only regular files: a pipe or a process substitution (/dev/fd/63) is read as a
        # stream, as stdin is.
        path = Path(source)
        if not path.exists():
            raise InvalidInputError(f"No input file {source}.")
        if path.is_dir():
            raise InvalidInputError(f"{source} is a folder; pass a file.")
        if in_fmt == "parquet" and not path.is_file():
            raise InvalidInputError(
                f"Parquet cannot be read from a pipe ({source}); pass the file."
            )
    if source == "-" and in_fmt == "parquet":
        raise InvalidInputError("Parquet cannot be read from stdin; pass the file.")
    outputs = None if output == "-" else Outputs(Path(output), out_fmt, source)
    rows = read_rows(stdin or sys.stdin if source == "-" else source, in_fmt, key)

    report = Report(output=output)
    out: IO[bytes] | None = None
    bar = None
    kept_ids: list[int] = []
    try:
        if outputs is None:
            writer: Any = JsonlWriter(stdout or sys.stdout.buffer)
        elif out_fmt == "parquet":
            writer = ParquetWriter(str(outputs.vectors), encoder.dimension)
        else:
            out = outputs.vectors.open("wb")
            writer = NpyWriter(out, encoder.dimension) if out_fmt == "npy" else JsonlWriter(out)
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
    except OSError as exc:
        # A full disk, a quota, a folder made read-only, an input that fails to read: one line,
        # as other mistakes (the partial output is removed below).
        where = exc.filename or output
        reason = exc.strerror or str(exc)
        raise FileError(f"{where}: {reason}; nothing was written to {output}.") from exc
    finally:
        if bar is not None:
            bar.close()
        if outputs is not None:  # failed or interrupted: no half-written file under the name
            if out is not None:
                out.close()
            outputs.discard()
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
