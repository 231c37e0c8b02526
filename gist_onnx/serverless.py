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

Configuration, from the environment:

- ``GIST_ONNX_MODEL``: the model folder (default: ``model/`` in the function's code, where
  ``gist-onnx bundle`` puts it, found beside the ``gist_onnx`` package or in ``LAMBDA_TASK_ROOT``);
- ``GIST_ONNX_VARIANT``: ``int8`` or ``fp32`` (default: int8 if the folder has it);
- ``GIST_ONNX_THREADS``: ONNX Runtime threads (default: the encoder's, one per CPU this function
  may use);
- ``GIST_ONNX_MODEL_NAME``: the ``model`` reported in responses (default: the model's name);
- ``GIST_ONNX_VERIFY_FILES``: ``0`` skips checking the model's files against its manifest;
- ``GIST_ONNX_API_KEY``: if set, requests must send ``Authorization: Bearer <key>`` (401 if not).

The encoder is created once per execution environment: during Lambda's init phase when the
module is imported by the Lambda runtime, else on the first call. Nothing is written anywhere
(the file system may be read-only; ONNX Runtime's telemetry store is turned off) and the Hugging
Face cache is never touched for a folder.
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from typing import Any

# ONNX Runtime (1.32) keeps a telemetry database and a device id under ~/.cache/Microsoft when it
# loads, unless told not to: a function must not write outside /tmp (its home may be read-only),
# and a failed write logs a warning at every cold start. Set before onnxruntime is imported (the
# encoder imports it lazily); a deployment that wants the telemetry sets ORT_DISABLE_TELEMETRY=0.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from . import GistEncoder, ModelConfigError
from .wire import (
    RequestError,
    check_bearer,
    dumps,
    failure,
    max_inputs_within,
    parse_json,
    parse_request,
    response,
    response_bytes_bound,
)

# Lambda's limit on a synchronous invocation's response payload. An HTTP event's body travels
# as a JSON string inside the response object, so keep room for that envelope.
RESPONSE_LIMIT_BYTES = 6 * 1024 * 1024
_ENVELOPE_ROOM = 4096
MODEL_DIR_NAME = "model"

_encoder: GistEncoder | None = None


def model_folder() -> Path:
    """Where the model is: ``GIST_ONNX_MODEL``, else the bundle's ``model/`` folder."""
    configured = os.environ.get("GIST_ONNX_MODEL")
    if configured:
        return Path(configured)
    candidates = [Path(__file__).resolve().parent.parent / MODEL_DIR_NAME]
    task_root = os.environ.get("LAMBDA_TASK_ROOT")
    if task_root:
        candidates.insert(0, Path(task_root) / MODEL_DIR_NAME)
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
    """The execution environment's encoder, created on first use."""
    global _encoder  # noqa: PLW0603 -- one encoder per execution environment, by design
    if _encoder is None:
        folder = model_folder()
        variant = os.environ.get("GIST_ONNX_VARIANT") or (
            "int8" if (folder / "model_int8.onnx").is_file() else "fp32"
        )
        threads = _threads()
        verify = os.environ.get("GIST_ONNX_VERIFY_FILES", "1") != "0"
        _encoder = GistEncoder(folder, variant=variant, threads=threads, verify_files=verify)
    return _encoder


def _threads() -> int | None:
    """``GIST_ONNX_THREADS`` as a positive int; None (one per usable CPU) when unset."""
    configured = os.environ.get("GIST_ONNX_THREADS", "").strip()
    if not configured:
        return None
    try:
        threads = int(configured)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ModelConfigError(
            f"GIST_ONNX_THREADS must be a positive integer (ONNX Runtime's CPU threads), got "
            f"{configured!r}; unset it for one thread per CPU the function may use."
        )
    return threads


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
    request = parse_request(payload, dimension=encoder.dimension)
    limit = RESPONSE_LIMIT_BYTES - _ENVELOPE_ROOM
    if response_bytes_bound(len(request.texts), encoder.dimension, request.encoding_format) > limit:
        fit = max_inputs_within(limit, encoder.dimension, request.encoding_format)
        hint = (
            f", or set encoding_format to 'base64' "
            f"({max_inputs_within(limit, encoder.dimension, 'base64')} fit then)"
            if request.encoding_format == "float"
            else ""
        )
        raise RequestError(
            f"{len(request.texts)} inputs make a response larger than Lambda's 6 MB limit on "
            f"synchronous responses; send at most {fit} inputs per request{hint}.",
            status=413,
            param="input",
        )
    vectors, counts = encoder.encode_with_token_counts(request.texts)
    name = os.environ.get("GIST_ONNX_MODEL_NAME") or encoder.model_name
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
    check_bearer(_headers(event).get("authorization"), os.environ.get("GIST_ONNX_API_KEY"))


def _body(event: dict[str, Any]) -> bytes | str:
    body = event.get("body")
    if not isinstance(body, str) or not body:
        raise RequestError("The request has no body: POST a JSON embeddings request.")
    if _part(event, "isBase64Encoded", bool, "true or false"):
        try:
            return base64.b64decode(body, validate=True)
        except ValueError:
            raise RequestError("The body is marked base64-encoded but is not base64.") from None
    return body


if "AWS_LAMBDA_RUNTIME_API" in os.environ and "GIST_ONNX_LAZY" not in os.environ:
    # Imported by the Lambda runtime: load during the init phase, which runs before the first
    # request (and, with SnapStart or provisioned concurrency, before any request).
    try:
        get_encoder()
    except Exception as exc:  # noqa: BLE001 -- reported again, with a status, on each call
        print(f"gist-onnx: could not load the model at init: {exc}", file=sys.stderr)
