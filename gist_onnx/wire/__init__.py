"""The OpenAI embeddings API as every HTTP way in speaks it (the server, the Lambda handler):
:mod:`.embeddings`, the request and response format with its errors, and :mod:`.limits`, what
one request may hold. Only the standard library and numpy: the handler's cold start pays for
nothing more.
"""

from __future__ import annotations

from .embeddings import (
    ENCODING_FORMATS,
    EmbeddingsRequest,
    RequestError,
    check_bearer,
    dumps,
    error_body,
    failure,
    max_inputs_within,
    parse_json,
    parse_request,
    refuse_compressed,
    response,
    response_bytes_bound,
    to_base64,
)
from .limits import Limits

__all__ = [
    "ENCODING_FORMATS",
    "EmbeddingsRequest",
    "Limits",
    "RequestError",
    "check_bearer",
    "dumps",
    "error_body",
    "failure",
    "max_inputs_within",
    "parse_json",
    "parse_request",
    "refuse_compressed",
    "response",
    "response_bytes_bound",
    "to_base64",
]
