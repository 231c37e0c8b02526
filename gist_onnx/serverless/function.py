"""An AWS Lambda handler serving OpenAI-style embeddings: ``gist_onnx.serverless.handler``.

It takes three kinds of events:

- a Lambda Function URL or API Gateway HTTP API event (payload format 2.0),
- an API Gateway REST API / HTTP API event in payload format 1.0,
- a direct invocation (``aws lambda invoke``, another function, Step Functions): the event is the
  request object itself.

Request and response are OpenAI's embeddings shape (see :mod:`gist_onnx.wire`). HTTP events get
``{"statusCode", "headers", "body"}`` back; a direct invocation gets the response object (or
``{"error": {...}, "status": N}``). Bad input is a 400 saying what was wrong; a request whose
response would pass Lambda's 6 MB limit on synchronous responses is refused up front with 413.

Configuration comes from the environment (``GIST_ONNX_MODEL``, ``GIST_ONNX_VARIANT``,
``GIST_ONNX_THREADS``, ``GIST_ONNX_MODEL_NAME``, ``GIST_ONNX_VERIFY_FILES``, ``GIST_ONNX_API_KEY``,
``GIST_ONNX_LAZY``): see :mod:`gist_onnx.options` for the table. The request limits are the
server's (:class:`gist_onnx.wire.Limits`: 2048 inputs, 100,000 characters a text) within Lambda's
own 6 MB payload limits: :data:`LIMITS`.

The encoder is created once per execution environment: during Lambda's init phase when the
module is imported by the Lambda runtime, else on the first call. Nothing is written anywhere
(the file system may be read-only; ONNX Runtime's telemetry store is turned off) and the Hugging
Face cache is never touched for a folder.
"""

from __future__ import annotations

import base64
import os
import sys
import threading
from pathlib import Path
from typing import Any

# ONNX Runtime (1.32) keeps a telemetry database and a device id under ~/.cache/Microsoft when it
# loads, unless told not to: a function must not write outside /tmp (its home may be read-only),
# and a failed write logs a warning at every cold start. Set before onnxruntime is imported (the
# encoder imports it lazily); a deployment that wants the telemetry sets ORT_DISABLE_TELEMETRY=0.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from .. import GistEncoder, options
from ..wire import (
    Limits,
    RequestError,
    check_bearer,
    dumps,
    failure,
    parse_json,
    parse_request,
    response,
)

# Lambda's limit on a synchronous invocation's request and response payloads. An HTTP event's
# body travels as a JSON string inside the response object, so keep room for that envelope.
RESPONSE_LIMIT_BYTES = 6 * 1024 * 1024
ENVELOPE_ROOM = 4096
# The server's request limits, within Lambda's payload limits.
LIMITS = Limits(
    max_body_bytes=RESPONSE_LIMIT_BYTES, max_response_bytes=RESPONSE_LIMIT_BYTES - ENVELOPE_ROOM
)
MODEL_DIR_NAME = "model"

_encoder: GistEncoder | None = None
_encoder_lock = threading.Lock()


def model_folder() -> Path:
    """Where the model is: ``GIST_ONNX_MODEL``, else the bundle's ``model/`` folder."""
    configured = options.model()
    if configured is not None:
        return configured
    # Beside the gist_onnx package, where the bundle puts it.
    candidates = [Path(__file__).resolve().parents[2] / MODEL_DIR_NAME]
    task_root = options.lambda_task_root()
    if task_root is not None:
        candidates.insert(0, task_root / MODEL_DIR_NAME)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise RequestError(
        "No model folder: set GIST_ONNX_MODEL, or build the function with `gist-onnx bundle`, "
        f"which puts the model in {MODEL_DIR_NAME}/ (looked in "
        f"{', '.join(str(c) for c in candidates)}).",
        status=500,
    )


def get_encoder() -> GistEncoder:
    """The execution environment's encoder, created on first use (once, however many callers
    arrive first at once: a second model load would double the memory and the wait)."""
    if _encoder is not None:
        return _encoder
    with _encoder_lock:
        return _load_encoder()


def _load_encoder() -> GistEncoder:
    global _encoder  # noqa: PLW0603 -- one encoder per execution environment, by design
    if _encoder is None:
        folder = model_folder()
        variant = options.variant() or (
            "int8" if (folder / "model_int8.onnx").is_file() else "fp32"
        )
        _encoder = GistEncoder(
            folder,
            variant=variant,
            threads=options.threads(),
            verify_files=options.verify_files(),
        )
    return _encoder


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """The Lambda entry point: configure ``gist_onnx.serverless.handler`` as the handler."""
    http = _is_http(event)
    try:
        if http:
            _check_method(event)
            _check_api_key(event)
            payload = parse_json(_body(event))
        else:
            payload = event
        status, body = 200, _embed(payload)
    except Exception as exc:  # noqa: BLE001 -- every failure is a JSON error, never a traceback
        status, body = failure(exc)
    if not http:
        return body if status == 200 else {**body, "status": status}
    headers = {"content-type": "application/json"}
    if status == 405:
        headers["allow"] = "POST"
    return {"statusCode": status, "headers": headers, "body": dumps(body), "isBase64Encoded": False}


def _embed(payload: Any) -> dict[str, Any]:
    encoder = get_encoder()
    request = parse_request(payload, dimension=encoder.dimension, max_inputs=LIMITS.max_inputs)
    LIMITS.check_response(
        len(request.texts),
        encoder.dimension,
        request.encoding_format,
        "Lambda's 6 MB limit on synchronous responses",
    )
    texts = LIMITS.fit_chars(request.texts)
    vectors, counts = encoder.encode_with_token_counts(texts)
    name = options.model_name() or encoder.model_name
    return response(vectors, counts, model=name, encoding_format=request.encoding_format)


def _is_http(event: Any) -> bool:
    return isinstance(event, dict) and (
        "requestContext" in event or "httpMethod" in event or "routeKey" in event
    )


def _part(event: dict[str, Any], key: str, kind: type, what: str) -> Any:
    """``event[key]`` if it is a ``kind`` (None if absent); a malformed event is the caller's
    mistake: 400, naming the field."""
    value = event.get(key)
    if value is not None and not isinstance(value, kind):
        raise RequestError(f"The event's {key!r} must be {what}, got {type(value).__name__}.")
    return value


def _method(event: dict[str, Any]) -> str:
    context = _part(event, "requestContext", dict, "an object") or {}
    http = _part(context, "http", dict, "an object") or {}
    method = http.get("method") or _part(event, "httpMethod", str, "a string") or "POST"
    if not isinstance(method, str):
        raise RequestError(f"The event's method must be a string, got {type(method).__name__}.")
    return method.upper()


def _check_method(event: dict[str, Any]) -> None:
    method = _method(event)
    if method != "POST":
        raise RequestError(
            f"{method} is not served: POST an embeddings request (OpenAI's shape).", status=405
        )


def _headers(event: dict[str, Any]) -> dict[str, str]:
    headers = _part(event, "headers", dict, "an object of header names and values") or {}
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _check_api_key(event: dict[str, Any]) -> None:
    check_bearer(_headers(event).get("authorization"), options.api_key())


def _body(event: dict[str, Any]) -> bytes | str:
    body = event.get("body")
    if not isinstance(body, str) or not body:
        raise RequestError("The request has no body: POST a JSON embeddings request.")
    LIMITS.check_body_size(len(body))
    if _part(event, "isBase64Encoded", bool, "true or false"):
        try:
            return base64.b64decode(body, validate=True)
        except ValueError:
            raise RequestError("The body is marked base64-encoded but is not base64.") from None
    return body


if options.in_lambda() and not options.lazy():
    # Imported by the Lambda runtime: load during the init phase, which runs before the first
    # request (and, with SnapStart or provisioned concurrency, before any request).
    try:
        options.api_key()  # a key no request could match is named here, and on each call
        get_encoder()
    except Exception as exc:  # noqa: BLE001 -- reported again, with a status, on each call
        print(f"gist-onnx: could not start at init: {exc}", file=sys.stderr)
