"""What one request may hold, for every HTTP way in: one :class:`Limits`, its defaults, and the
status each limit answers with. The server takes every field (set by ``gist-onnx serve``'s
options); the Lambda handler takes the request limits (``max_inputs``, ``max_chars``) with
Lambda's own payload limits on the body and the response (see
:data:`gist_onnx.serverless.function.LIMITS`).

| limit | default | when passed |
|---|---|---|
| ``max_inputs``: texts per request | 2048 (OpenAI's) | 413 |
| ``max_body_bytes``: request body | 8 MiB | 413 |
| ``max_chars``: characters per text | 100,000 | 413, or cut to it with ``truncate_chars`` |
| ``max_queue_texts``: texts waiting for the graph | 4096 | 429 with Retry-After |
| ``max_batch_texts``: texts per graph batch | 256 | (batches are cut there) |
| ``head_timeout_s``: request line and headers must arrive within | 10 s | 408, connection closed |
| ``max_head_bytes``: request line and headers | 32 KiB | 431, connection closed |
| ``body_timeout_s``: the body must arrive within | 30 s | 408, connection closed |
| ``max_response_bytes``: the response, bounded before encoding | none | 413 |

Idle keep-alive connections are closed after 5 s (uvicorn's own timeout). Every limit is checked
when the server starts: a value that would refuse every request, or none, is a usage error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..argtypes import count, flag, milliseconds, seconds
from ..errors import InvalidInputError
from .embeddings import RequestError, max_inputs_within, response_bytes_bound


@dataclass(frozen=True)
class Limits:
    """What one request, and the queue, may hold."""

    # Each field's metadata names the ``gist-onnx serve`` flag that sets it.
    max_inputs: int = field(
        default=2048, metadata=flag("--max-inputs", type=count, help="texts per request (413)")
    )
    max_body_bytes: int = field(
        default=8 * 1024 * 1024,
        metadata=flag("--max-body-bytes", type=count, help="request body (413)"),
    )
    max_chars: int = field(
        default=100_000, metadata=flag("--max-chars", type=count, help="characters per text (413)")
    )
    truncate_chars: bool = field(
        default=False,
        metadata=flag(
            "--truncate-chars", action="store_true", help="cut longer texts to --max-chars, not 413"
        ),
    )
    max_queue_texts: int = field(
        default=4096, metadata=flag("--max-queue", type=count, help="texts waiting (429 past it)")
    )
    max_batch_texts: int = field(
        default=256, metadata=flag("--max-batch", type=count, help="texts per graph batch")
    )
    batch_wait_ms: float = field(
        default=2.0,
        metadata=flag(
            "--batch-wait-ms", type=milliseconds, help="wait for more texts when busy (2 ms)"
        ),
    )
    head_timeout_s: float = field(
        default=10.0,
        metadata=flag(
            "--head-timeout",
            type=seconds,
            help="seconds for a request's line and headers to arrive (408 past it; 10)",
        ),
    )
    max_head_bytes: int = field(
        default=32 * 1024,
        metadata=flag(
            "--max-header-bytes",
            type=count,
            help="bytes of request line and headers (431 past it; 32768)",
        ),
    )
    body_timeout_s: float = field(
        default=30.0,
        metadata=flag(
            "--body-timeout",
            type=seconds,
            help="seconds for a request's body to arrive (408 past it; 30)",
        ),
    )
    max_response_bytes: int | None = None  # the Lambda handler's; no flag

    def __post_init__(self) -> None:
        # The smallest request there is ({"input":"a"}) must fit, and its head.
        least = {
            "max_inputs": 1,
            "max_body_bytes": 64,
            "max_chars": 1,
            "max_queue_texts": 1,
            "max_batch_texts": 1,
            "max_head_bytes": 1024,
        }
        for name, smallest in least.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
                raise InvalidInputError(
                    f"{name} must be an integer of at least {smallest}, got {value!r}."
                )
        if self.max_response_bytes is not None and (
            isinstance(self.max_response_bytes, bool)
            or not isinstance(self.max_response_bytes, int)
            or self.max_response_bytes < 4096
        ):
            raise InvalidInputError(
                "max_response_bytes must be None or an integer of at least 4096, got "
                f"{self.max_response_bytes!r}."
            )
        for name in ("batch_wait_ms", "head_timeout_s", "body_timeout_s"):
            value = getattr(self, name)
            positive = name != "batch_wait_ms"
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
                or (positive and value == 0)
            ):
                raise InvalidInputError(
                    f"{name} must be a finite number {'above' if positive else 'of at least'} "
                    f"0, got {value!r}."
                )

    def check_body_size(self, size: int) -> None:
        """413 for a body larger than ``max_body_bytes``."""
        if size > self.max_body_bytes:
            raise RequestError(
                f"The request body is larger than this server's limit of {self.max_body_bytes} "
                "bytes; send fewer texts per request.",
                status=413,
            )

    def fit_chars(self, texts: list[str]) -> list[str]:
        """``texts``, each within ``max_chars``: cut to it if ``truncate_chars``, else 413.

        The model reads 256 tokens at most (about 1,000-1,500 characters of English), so a cut
        at 100,000 characters does not change a vector; it only bounds the work per text.
        """
        too_long = [i for i, text in enumerate(texts) if len(text) > self.max_chars]
        if not too_long:
            return texts
        if self.truncate_chars:
            return [text[: self.max_chars] for text in texts]
        first = too_long[0]
        raise RequestError(
            f"'input[{first}]' has {len(texts[first])} characters; this server takes at most "
            f"{self.max_chars} per text (the model reads only its first 256 tokens anyway).",
            status=413,
            param=f"input[{first}]",
        )

    def check_response(self, count: int, dimension: int, encoding_format: str, why: str) -> None:
        """413, before any encoding, for a request whose response could pass
        ``max_response_bytes``; ``why`` names that limit to the caller (e.g. "Lambda's 6 MB limit
        on synchronous responses"). The message says how many inputs fit, and how many would
        with base64."""
        limit = self.max_response_bytes
        if limit is None or response_bytes_bound(count, dimension, encoding_format) <= limit:
            return
        # What fits is also bounded by max_inputs: a hint past it would send callers to a 413.
        fit = min(max_inputs_within(limit, dimension, encoding_format), self.max_inputs)
        base64_fit = min(max_inputs_within(limit, dimension, "base64"), self.max_inputs)
        hint = (
            f", or set encoding_format to 'base64' ({base64_fit} fit then)"
            if encoding_format == "float" and base64_fit > fit
            else ""
        )
        raise RequestError(
            f"{count} inputs make a response larger than {why}; send at most {fit} inputs per "
            f"request{hint}.",
            status=413,
            param="input",
        )
