"""The server's request handlers: one :class:`Server` per app holds its state (the encoder,
limits, metrics, the batcher while it runs) and answers each route with a method; the helpers
they share (reading bodies, parsing, waiting for a job, the access log) sit beside them.
:mod:`.app` routes requests to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from .. import GistEncoder, GistOnnxError
from ..batching import AsyncGistEncoder, Job, QueueFull, Result
from ..encoder import WARM_UP_LENGTHS
from ..wire import (
    Limits,
    RequestError,
    check_bearer,
    error_body,
    failure,
    parse_request,
    refuse_compressed,
    response,
)
from .metrics import Metrics
from .openapi import openapi_schema
from .tracing import RequestSpan, Tracing

JSON = "application/json"
T = TypeVar("T")


class ClientGone(GistOnnxError, ConnectionError):
    """The client disconnected before its answer was ready (logged as 499, never sent)."""


# A request body up to this size is parsed on the event loop, and a response of up to this many
# vectors is written there: a thread hop costs more than the work (tens of microseconds), and the
# loop is never held longer than about as much. Larger ones go to a worker thread.
INLINE_BODY_BYTES = 16 * 1024
INLINE_VECTORS = 8
# A request still waiting for the graph after this long starts watching for its client to go
# away (a task per request would cost every request; most are answered sooner).
WATCH_AFTER_S = 0.05


async def off_loop(function: Callable[..., T], *args: Any) -> T:
    """Run CPU work (JSON, tokenizing) on a worker thread: the event loop keeps answering other
    clients (/health, small requests) while one large request is parsed."""
    return await run_in_threadpool(function, *args)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(content, status_code=status, media_type=JSON, headers=headers)


class Server:
    """One server's state (the encoder, limits, metrics, the batcher while it runs) and its
    routes, each a method; the helpers they share (body reading, parsing, waiting for a job, the
    access log) beside them."""

    def __init__(
        self,
        encoder: GistEncoder,
        *,
        limits: Limits,
        api_key: str | None,
        batching: bool,
        names: list[str],
        any_model: bool,
        access_log: bool,
        warm_up: tuple[int, ...] | None,
        tracing: Tracing | None = None,
    ) -> None:
        self.tracing = tracing
        self.encoder = encoder
        self.limits = limits
        self.api_key = api_key
        self.batching = batching
        self.names = names
        self.name = names[0]
        self.any_model = any_model
        self.access_log = access_log
        self.warm_up_lengths = warm_up
        self.metrics = Metrics(cache=encoder.cache)
        self.batcher: AsyncGistEncoder | None = None
        # /health/ready: after the warm-up, until SIGTERM starts the drain.
        self.warm = False
        self.draining = False
        self.schema = openapi_schema(
            model=self.name,
            dimension=encoder.dimension,
            max_inputs=limits.max_inputs,
            names=None if any_model else names,
        )

    def log(
        self,
        route: str,
        status: int,
        started: float,
        trace: RequestSpan | None = None,
        **fields: Any,
    ) -> None:
        if trace is not None:
            trace.end(status, **{k: v for k, v in fields.items() if not k.endswith("_ms")})
        seconds = time.perf_counter() - started
        self.metrics.observe_request(route, status, seconds)
        if self.access_log:
            line = {"route": route, "status": status, "ms": round(seconds * 1000, 2), **fields}
            sys.stderr.write(orjson.dumps(line).decode() + "\n")

    def authorize(self, request: Request) -> None:
        check_bearer(request.headers.get("authorization"), self.api_key)

    async def read_body(self, request: Request) -> bytes:
        """The body, within ``max_body_bytes`` (413) and ``body_timeout_s`` (408); a client that
        disconnects while sending it raises :class:`ClientGone`."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit():
            self.limits.check_body_size(int(declared))
        chunks, size = [], 0
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        # A timer that cancels this task, not a task per request (asyncio.wait_for makes one).
        deadline = asyncio.get_running_loop().call_later(self.limits.body_timeout_s, expire)
        try:
            async for chunk in request.stream():
                size += len(chunk)
                self.limits.check_body_size(size)
                chunks.append(chunk)
        except ClientDisconnect:
            raise ClientGone from None
        except asyncio.CancelledError:
            if not expired:
                raise
            uncancel = getattr(task, "uncancel", None)  # Python 3.11+: the cancel is handled
            if uncancel is not None:
                uncancel()
            raise RequestError(
                f"The request body did not arrive within {self.limits.body_timeout_s:g} s "
                f"({size} bytes came).",
                status=408,
            ) from None
        finally:
            deadline.cancel()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def parse(self, body: bytes) -> tuple[list[str], str]:
        """The texts of an embeddings or tokenize request and its encoding format; a ``model``
        this server does not serve is a 404 (run off the event loop for large bodies)."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            refuse_compressed(body)  # names gzip and the like, on this failing path only
            raise RequestError(f"The request body is not valid JSON: {exc}.") from None
        parsed = parse_request(
            payload, dimension=self.encoder.dimension, max_inputs=self.limits.max_inputs
        )
        if parsed.model is not None and not self.any_model and parsed.model not in self.names:
            raise RequestError(
                f"The model '{parsed.model}' does not exist: this server serves "
                f"{', '.join(repr(n) for n in self.names)} (GET /v1/models lists them).",
                status=404,
                param="model",
                code="model_not_found",
            )
        return self.limits.fit_chars(parsed.texts), parsed.encoding_format

    async def until_done(self, request: Request, job: Job) -> Result:
        """The job's result; if the client disconnects first, the job is dropped from the queue
        (or its result discarded) and :class:`ClientGone` raised. The client is watched only
        once the job has waited :data:`WATCH_AFTER_S` (a timer, not a task, until then)."""
        if job.future.done():
            return job.future.result()
        gone = False
        watcher: asyncio.Task[None] | None = None

        async def disconnected() -> None:
            nonlocal gone
            while (await request.receive())["type"] != "http.disconnect":
                pass
            gone = True
            job.future.cancel()  # dropped from the queue, or its result discarded

        def watch() -> None:
            nonlocal watcher
            if not job.future.done():
                watcher = asyncio.ensure_future(disconnected())

        timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, watch)
        try:
            return await job.future
        except asyncio.CancelledError:
            if gone:
                raise ClientGone from None
            raise
        finally:
            timer.cancel()
            if watcher is not None:
                watcher.cancel()

    def failed(self, exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
        status, body = failure(exc)
        headers = {429: {"retry-after": "1"}, 408: {"connection": "close"}}.get(status, {})
        return status, body, headers

    async def embeddings(self, request: Request) -> Response:
        started = time.perf_counter()
        route = request.scope["path"]  # not request.url: building a URL costs every request
        fields: dict[str, Any] = {}
        trace = self.tracing.request(route, request.headers) if self.tracing is not None else None
        try:
            self.authorize(request)
            raw = await self.read_body(request)
            if len(raw) <= INLINE_BODY_BYTES:
                texts, encoding_format = self.parse(raw)
            else:
                texts, encoding_format = await off_loop(self.parse, raw)
            fields["inputs"] = len(texts)
            if self.batcher is None:
                raise RequestError("The server is shutting down.", status=503)
            if len(texts) > self.limits.max_queue_texts:
                raise RequestError(
                    f"'input' has {len(texts)} texts, more than this server queues at once "
                    f"({self.limits.max_queue_texts}); split it into smaller requests.",
                    status=413,
                    param="input",
                )
            try:
                job = self.batcher.submit(texts)
            except QueueFull:
                raise RequestError(
                    f"The queue is full ({self.batcher.pending_texts} texts waiting, limit "
                    f"{self.limits.max_queue_texts}); retry shortly.",
                    status=429,
                ) from None
            vectors, counts = await self.until_done(request, job)
            tokens = int(counts.sum())
            self.metrics.texts += len(texts)
            self.metrics.tokens += tokens
            if job.missing:
                self.metrics.queue_seconds.observe(job.started - job.enqueued)
            fields |= {
                "tokens": tokens,
                "queue_ms": round((job.started - job.enqueued) * 1000, 2),
                "run_ms": round((job.finished - job.started) * 1000, 2),
            }
            body = response(
                vectors, counts, model=self.name, encoding_format=encoding_format, numpy_rows=True
            )
            answering = time.perf_counter()
            reply = (
                json_response(body)
                if len(texts) <= INLINE_VECTORS
                else await off_loop(json_response, body)
            )
            if trace is not None:
                trace.stage("queue", job.enqueued, job.started)
                if job.missing:
                    trace.stage("graph", job.started, job.finished, texts=len(job.missing))
                trace.stage("response", answering, time.perf_counter(), bytes=len(reply.body))
                fields["cache_hits"] = len(texts) - len(job.missing)
            self.log(route, 200, started, trace=trace, **fields)
            return reply
        except ClientGone:
            # nginx's code for a client that went away
            self.log(route, 499, started, trace=trace, **fields)
            return Response(status_code=499)
        except Exception as exc:  # noqa: BLE001 -- every failure is a JSON error, never a page
            status, body, headers = self.failed(exc)
            self.log(route, status, started, trace=trace, **fields)
            return json_response(body, status, headers)

    def tokenized(self, body: bytes) -> tuple[Response, int]:
        """The /tokenize answer and its number of texts (CPU work: run off the event loop)."""
        texts, _ = self.parse(body)
        ids = self.encoder.token_ids(texts)
        cut = self.encoder.truncated(texts)
        answer = {
            "object": "list",
            "model": self.name,
            "max_seq_length": self.encoder.max_seq_length,
            "data": [
                {"index": i, "tokens": t, "count": len(t), "truncated": bool(c)}
                for i, (t, c) in enumerate(zip(ids, cut, strict=True))
            ],
        }
        return json_response(answer), len(texts)

    async def tokenize(self, request: Request) -> Response:
        started = time.perf_counter()
        trace = (
            self.tracing.request("/tokenize", request.headers) if self.tracing is not None else None
        )
        try:
            self.authorize(request)
            reply, count = await off_loop(self.tokenized, await self.read_body(request))
            self.log("/tokenize", 200, started, trace=trace, inputs=count)
            return reply
        except ClientGone:
            self.log("/tokenize", 499, started, trace=trace)
            return Response(status_code=499)
        except Exception as exc:  # noqa: BLE001 -- every failure is a JSON error, never a page
            status, body, headers = self.failed(exc)
            self.log("/tokenize", status, started, trace=trace)
            return json_response(body, status, headers)

    async def models(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            self.authorize(request)
        except RequestError as exc:
            self.log("/v1/models", exc.status, started)
            return json_response(exc.body(), exc.status)
        self.log("/v1/models", 200, started)
        return json_response(
            {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": 0, "owned_by": "gist-onnx"}
                    for name in self.names
                ],
            }
        )

    async def live(self, request: Request) -> Response:
        """200 while the process serves (Kubernetes' liveness probe)."""
        return json_response({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        """200 once warmed up, 503 while warming up or draining (the readiness probe)."""
        state = "draining" if self.draining else "ok" if self.warm else "warming up"
        body = {"status": state, "model": self.name, "provider": self.encoder.provider}
        return json_response(body, 200 if state == "ok" else 503)

    def drain(self) -> None:
        """SIGTERM: from now on /health/ready answers 503 while the requests in flight finish."""
        self.draining = True

    async def prometheus(self, request: Request) -> Response:
        if self.batcher is not None:
            self.metrics.queue_depth = self.batcher.pending_texts
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def _warm(self) -> None:
        seconds = 0.0
        if self.warm_up_lengths is not None:
            lengths = self.warm_up_lengths or WARM_UP_LENGTHS
            try:
                seconds = await off_loop(self.encoder.warm_up, lengths)
            except Exception as exc:  # noqa: BLE001 -- reported; the server stays not ready
                failed = {"event": "warm-up failed", "error": f"{type(exc).__name__}: {exc}"}
                sys.stderr.write(orjson.dumps(failed).decode() + "\n")
                return
        ready = {"event": "ready", "warm_up_ms": round(seconds * 1000, 1)}
        sys.stderr.write(orjson.dumps(ready).decode() + "\n")
        self.warm = True

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.batcher = AsyncGistEncoder(
            self.encoder,
            max_queue_texts=self.limits.max_queue_texts,
            max_batch_texts=self.limits.max_batch_texts,
            batch_wait_ms=self.limits.batch_wait_ms,
            batching=self.batching,
            on_batch=self.metrics.observe_batch,
        )
        warming = asyncio.ensure_future(self._warm())
        try:
            yield
        finally:
            warming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warming
            await self.batcher.aclose()
            self.batcher = None

    async def openapi(self, request: Request) -> Response:
        return json_response(self.schema)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        """Unknown routes (404) and methods (405) in the same JSON shape as every other error."""
        status = getattr(exc, "status_code", 500)
        message = {
            404: f"No route {request.url.path}; see /openapi.json for the routes served.",
            405: f"{request.method} is not served at {request.url.path}.",
        }.get(status, str(getattr(exc, "detail", exc)))
        self.log(request.url.path, status, time.perf_counter())
        body = error_body(message, kind="invalid_request_error", status=status)
        return json_response(body, status, dict(getattr(exc, "headers", None) or {}))
