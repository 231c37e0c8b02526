"""The OpenAI embeddings wire format, written once for every HTTP way in (the serverless handler,
the server): request parsing with errors that name the field, the response shape, base64 of
little-endian float32, token usage, and how large a response will be before it is made.

Request::

    {"input": str | [str, ...], "model"?: str, "encoding_format"?: "float" | "base64",
     "dimensions"?: int, "user"?: str}

Response::

    {"object": "list",
     "data": [{"object": "embedding", "index": i, "embedding": [float, ...] | "<base64>"}],
     "model": str, "usage": {"prompt_tokens": N, "total_tokens": N}}

Errors use OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``, with ``code``
always set (:data:`CODES` by status where no more precise one applies).

Only the standard library and numpy: the handler's cold start pays for nothing more.
"""

from __future__ import annotations

import base64
import hmac
import json
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import GistOnnxError, InvalidInputError

ENCODING_FORMATS = ("float", "base64")

# The most characters one float32 takes in the JSON the response uses: a float32 widened to a
# Python float prints up to 17 significant digits, a sign, a point and an exponent
# ("-1.2345678901234567e-05" is 23), plus the ", " between items.
_FLOAT_CHARS = 25
# Per embedding, beyond its numbers: '{"object": "embedding", "index": 1234567, "embedding": }, '
_ITEM_CHARS = 64
# The response's envelope (object, model, usage) with room for a long model name.
_ENVELOPE_CHARS = 512


# Every error carries a code: the status's, unless the error names a more precise one
# (model_not_found, invalid_api_key, empty_input...).
CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "request_too_large",
    429: "rate_limit_exceeded",
    431: "request_header_fields_too_large",
    500: "internal_error",
    503: "service_unavailable",
}


class RequestError(InvalidInputError):
    """A request that cannot be served, with the HTTP status and the field it concerns."""

    def __init__(
        self, message: str, *, status: int = 400, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The error as OpenAI's API returns it."""
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        if self.status == 401:
            kind = "authentication_error"
        return error_body(
            str(self), kind=kind, param=self.param, code=self.code, status=self.status
        )


def error_body(
    message: str,
    *,
    kind: str,
    param: str | None = None,
    code: str | None = None,
    status: int = 400,
) -> dict[str, Any]:
    """``{"error": {...}}`` in OpenAI's shape; ``code`` defaults to the status's."""
    code = code or CODES.get(status, "error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def check_bearer(authorization: str | None, key: str | None) -> None:
    """401 unless ``authorization`` (the header) is ``Bearer <key>``; nothing to check without a
    key. Compared as bytes in constant time (``compare_digest`` refuses non-ASCII str)."""
    if not key:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode("utf-8", "replace"), key.encode("utf-8")
    ):
        raise RequestError(
            "Missing or wrong API key: send 'Authorization: Bearer <key>'.",
            status=401,
            code="invalid_api_key",
        )


def failure(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and JSON error for a request that raised ``exc``: the request's own status;
    400 for a text the encoder refused; 500, logged, for a model that could not load (its
    message says what to fix) or anything else (only its class is shown)."""
    if isinstance(exc, RequestError):
        return exc.status, exc.body()
    if isinstance(exc, InvalidInputError):
        return 400, error_body(str(exc), kind="invalid_request_error")
    if isinstance(exc, GistOnnxError):
        print(f"gist-onnx: {exc}", file=sys.stderr)
        return 500, error_body(str(exc), kind="server_error", status=500)
    print(f"gist-onnx: internal error: {exc!r}", file=sys.stderr)
    message = f"Internal error: {exc.__class__.__name__}."
    return 500, error_body(message, kind="server_error", status=500)


@dataclass(frozen=True)
class EmbeddingsRequest:
    """A parsed, checked embeddings request."""

    texts: list[str]
    encoding_format: str
    model: str | None


def parse_json(body: bytes | str) -> Any:
    """Decode a request body; malformed JSON or UTF-8 is a 400 that says where (a compressed
    body is named as such: nothing here decompresses)."""
    if isinstance(body, bytes):
        refuse_compressed(body)
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise RequestError(f"The request body is not UTF-8: {exc.reason}.") from None
    except json.JSONDecodeError as exc:
        raise RequestError(
            f"The request body is not valid JSON: {exc.msg} at line {exc.lineno} column "
            f"{exc.colno}."
        ) from None
    except RecursionError:
        raise RequestError(
            "The request body nests JSON too deeply to read; send "
            '{"input": [...]} with a list of strings.'
        ) from None


# The first bytes of compressed bodies (gzip, zlib's deflate, zstd, brotli has none), which JSON
# never starts with.
_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x78\x9c", "deflate"),
    (b"\x78\x01", "deflate"),
    (b"\x78\xda", "deflate"),
)


def refuse_compressed(body: bytes) -> None:
    """A 400 naming the compression when ``body`` starts as a compressed stream does (JSON never
    does): clearer than the UTF-8 or JSON error its bytes would otherwise give."""
    for magic, name in _COMPRESSED:
        if body.startswith(magic):
            raise RequestError(
                f"The request body is {name}-compressed; send it as uncompressed JSON (this "
                "server reads no Content-Encoding)."
            )


def parse_request(
    payload: Any, *, dimension: int, max_inputs: int | None = None
) -> EmbeddingsRequest:
    """Check an embeddings request (already decoded from JSON) and return what to encode.

    ``dimensions`` is accepted only when it equals ``dimension``: MiniLM is not a Matryoshka
    model, so a shorter prefix of its vector is not a good embedding. ``user`` and keys this
    server does not know are ignored, as OpenAI-compatible servers do (``user`` must still be a
    string, as OpenAI checks).
    """
    if not isinstance(payload, dict):
        raise RequestError(
            f"The request body must be a JSON object with an 'input' field, got "
            f"{_json_type(payload)}."
        )
    if "input" not in payload:
        raise RequestError("'input' is required: a string or a list of strings.", param="input")
    raw = payload["input"]
    if isinstance(raw, str):
        texts = [raw]
    elif isinstance(raw, list):
        if not raw:
            raise RequestError("'input' is an empty list; send at least one text.", param="input")
        for index, item in enumerate(raw):
            if not isinstance(item, str):
                hint = (
                    " Token ids are not accepted; send the text."
                    if isinstance(item, (int, list))
                    else ""
                )
                raise RequestError(
                    f"'input[{index}]' must be a string, got {_json_type(item)}.{hint}",
                    param=f"input[{index}]",
                )
        texts = raw
    else:
        raise RequestError(
            f"'input' must be a string or a list of strings, got {_json_type(raw)}.",
            param="input",
        )
    empty = next((i for i, text in enumerate(texts) if not text), None)
    if empty is not None:
        where = "input" if isinstance(raw, str) else f"input[{empty}]"
        raise RequestError(
            f"'{where}' is an empty string; OpenAI's API refuses empty inputs, and so does "
            "this server: drop it, or send a text.",
            param=where,
            code="empty_input",
        )
    if max_inputs is not None and len(texts) > max_inputs:
        raise RequestError(
            f"'input' has {len(texts)} texts; this server takes at most {max_inputs} per "
            "request. Split it into several requests.",
            status=413,
            param="input",
        )
    fmt = payload.get("encoding_format", "float")
    if fmt is None:
        fmt = "float"
    if fmt not in ENCODING_FORMATS:
        raise RequestError(
            f"'encoding_format' must be 'float' or 'base64', got {fmt!r}.",
            param="encoding_format",
        )
    if "dimensions" in payload and payload["dimensions"] is not None:
        asked = payload["dimensions"]
        if isinstance(asked, bool) or not isinstance(asked, int):
            raise RequestError(
                f"'dimensions' must be an integer, got {_json_type(asked)}.", param="dimensions"
            )
        if asked != dimension:
            raise RequestError(
                f"'dimensions' is {asked}, but this model only returns {dimension}: it was not "
                "trained to be cut shorter (it is not a Matryoshka model). Leave 'dimensions' "
                f"out or set it to {dimension}.",
                param="dimensions",
            )
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError(f"'model' must be a string, got {_json_type(model)}.", param="model")
    user = payload.get("user")
    if user is not None and not isinstance(user, str):
        raise RequestError(f"'user' must be a string, got {_json_type(user)}.", param="user")
    return EmbeddingsRequest(texts=texts, encoding_format=fmt, model=model)


def to_base64(vector: npt.NDArray[np.float32]) -> str:
    """A vector as OpenAI's ``encoding_format="base64"`` sends it: little-endian float32 bytes."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def response(
    vectors: npt.NDArray[np.float32],
    token_counts: npt.NDArray[np.int64] | list[int],
    *,
    model: str,
    encoding_format: str = "float",
    numpy_rows: bool = False,
) -> dict[str, Any]:
    """The OpenAI embeddings response for ``vectors`` (one row per input, in input order).

    ``numpy_rows`` leaves float embeddings as numpy rows, for a JSON encoder that writes them
    itself (orjson's OPT_SERIALIZE_NUMPY: 25x faster than the standard library's on lists).
    """
    if encoding_format == "base64":
        embeddings: list[Any] = [to_base64(row) for row in vectors]
    else:
        embeddings = list(vectors) if numpy_rows else vectors.tolist()
    tokens = int(np.sum(token_counts))
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(embeddings)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def dumps(body: dict[str, Any]) -> str:
    """Compact JSON, as sent on the wire."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def response_bytes_bound(count: int, dimension: int, encoding_format: str) -> int:
    """An upper bound on the size of the JSON response for ``count`` embeddings, known before
    encoding: with it a request whose answer would pass a size limit is refused up front."""
    if encoding_format == "base64":
        per_item = 4 * ((4 * dimension + 2) // 3) + _ITEM_CHARS
    else:
        per_item = _FLOAT_CHARS * dimension + _ITEM_CHARS
    return _ENVELOPE_CHARS + count * per_item


def max_inputs_within(limit_bytes: int, dimension: int, encoding_format: str) -> int:
    """How many embeddings surely fit in a response of ``limit_bytes``."""
    one = response_bytes_bound(1, dimension, encoding_format) - _ENVELOPE_CHARS
    return max(0, (limit_bytes - _ENVELOPE_CHARS) // one)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)
