"""What ``encode`` and its siblings accept, refused with messages that say what to pass instead:
a sequence of str in a defined order (not a lone str, a set, a table), counts within range, and
only valid Unicode.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping, Sized
from typing import Any

from .errors import InvalidInputError


def texts_of(texts: Any, method: str) -> tuple[Iterator[Any], int | None]:
    """An iterator over ``texts`` and their number if known; refuses what is not a sequence of
    texts in a defined order."""
    if isinstance(texts, (str, bytes)):
        raise InvalidInputError(
            f"{method}() takes a list (or iterable) of texts and returns one row per text; for a "
            "single text use encode_one(text), or pass [text]."
        )
    if isinstance(texts, (set, frozenset, Mapping)):
        raise InvalidInputError(
            f"{method}() got a {type(texts).__name__}, whose order is not the caller's; pass a "
            "list (e.g. sorted(texts)) so that row i is the vector of text i."
        )
    shape = getattr(texts, "shape", None)
    if isinstance(shape, tuple) and len(shape) != 1:
        # A table (pandas, polars, pyarrow) iterates over its column names, and a 2-d array over
        # its rows: neither is one text a row. Anything with a shape must be a column.
        kind = type(texts).__name__
        hint = (
            'pass one column of it, e.g. df["text"]'
            if hasattr(texts, "columns") or hasattr(texts, "column_names")
            else "pass a 1-d array or a list of str (e.g. array.ravel().tolist())"
        )
        raise InvalidInputError(
            f"{method}() takes a sequence of texts (one text a row), got a {kind} of shape "
            f"{shape}; {hint}."
        )
    try:
        iterator = iter(texts)
    except TypeError:
        raise InvalidInputError(
            f"{method}() takes a list (or iterable) of str, got {type(texts).__name__}."
        ) from None
    return iterator, len(texts) if isinstance(texts, Sized) else None


def positive_int(value: Any, name: str, most: int) -> int:
    """``value`` as an int if it is an integer from 1 to ``most`` (numpy integers too; not a
    bool)."""
    try:
        number = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        number = None
    if number is None or not 1 <= number <= most:
        raise InvalidInputError(
            f"{name} must be a positive integer of at most {most:,}, got {value!r}."
        )
    return number


def check_texts(texts: list[Any], offset: int) -> None:
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(
                f"Text {offset + index} is of type {type(text).__name__}, not str; convert it "
                "first (None and numbers are not encoded silently)."
            )


def invalid_unicode(texts: list[str], offset: int, positions: list[int] | None) -> None:
    """Raise :class:`InvalidInputError` naming the first text that is not valid Unicode (a lone
    surrogate, as from '\\udc80' in JSON or surrogateescape decoding): ``texts[i]`` is text
    ``offset + i`` of the call, or ``offset + positions[i]``. Returns if every text is valid."""
    for index, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            where = offset + (positions[index] if positions is not None else index)
            raise InvalidInputError(
                f"Text {where} is not valid Unicode ({exc.reason} at character "
                f"{exc.start}); fix or drop it, e.g. text.encode('utf-8', 'replace')"
                ".decode('utf-8')."
            ) from None
