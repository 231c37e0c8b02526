"""The ASGI app: routes, authentication, errors as JSON, the access log.

Routes: ``POST /v1/embeddings`` (and ``/embeddings``), ``POST /tokenize``, ``GET /v1/models``,
``GET /health``, ``GET /metrics``. With an API key set, every route but ``/health`` and
``/metrics`` needs ``Authorization: Bearer <key>`` (compared in constant time).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import GistEncoder
from ..wire import RequestError, check_bearer, failure, parse_request, response
from .batching import Batcher, Job, QueueFull, Result
from .limits import Limits
from .metrics import Metrics

JSON = "application/json"


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(content, status_code=status, media_type=JSON, headers=headers)


def create_app(
    encoder: GistEncoder,
    *,
    limits: Limits | None = None,
    api_key: str | None = None,
    batching: bool = True,
    model_name: str | None = None,
    access_log: bool = True,
) -> Starlette:
    """The server around ``encoder`` (already loaded: the server answers once it exists)."""
    limits = limits or Limits()
    metrics = Metrics()
    name = model_name or encoder.model_name
    batcher: Batcher | None = None

    def log(route: str, status: int, started: float, **fields: Any) -> None:
        seconds = time.perf_counter() - started
        metrics.observe_request(route, status, seconds)
        if access_log:
            line = {"route": route, "status": status, "ms": round(seconds * 1000, 2), **fields}
            sys.stderr.write(orjson.dumps(line).decode() + "\n")

    def authorize(request: Request) -> None:
        check_bearer(request.headers.get("authorization"), api_key)

    async def read_json(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit():
            limits.check_body_size(int(declared))
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            limits.check_body_size(size)
            chunks.append(chunk)
        try:
            return orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as exc:
            raise RequestError(f"The request body is not valid JSON: {exc}.") from None

    async def until_done(request: Request, job: Job) -> Result:
        """The job's result; if the client disconnects first, the job is dropped from the queue
        (or its result discarded) and :class:`ClientGone` raised."""

        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        watcher = asyncio.ensure_future(disconnected())
        racing: set[asyncio.Future[Any]] = {job.future, watcher}
        try:
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
            if job.future.done():
                return job.future.result()
            job.future.cancel()
            raise ClientGone
        finally:
            watcher.cancel()

    def failed(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
        status, body = failure(exc)
        return status, body, ({"retry-after": "1"} if status == 429 else {})

    async def embeddings(request: Request) -> Response:
        started = time.perf_counter()
        route = request.url.path
        fields: dict[str, Any] = {}
        try:
            authorize(request)
            parsed = parse_request(
                await read_json(request), dimension=encoder.dimension, max_inputs=limits.max_inputs
            )
            texts = limits.fit_chars(parsed.texts)
            fields["inputs"] = len(texts)
            if batcher is None:
                raise RequestError("The server is shutting down.", status=503)
            try:
                job = batcher.submit(texts)
            except QueueFull:
                raise RequestError(
                    f"The queue is full ({batcher.pending_texts} texts waiting, limit "
                    f"{limits.max_queue_texts}); retry shortly.",
                    status=429,
                ) from None
            vectors, counts = await until_done(request, job)
            tokens = int(counts.sum())
            metrics.texts += len(texts)
            metrics.tokens += tokens
            metrics.queue_seconds.observe(job.started - job.enqueued)
            fields |= {
                "tokens": tokens,
                "queue_ms": round((job.started - job.enqueued) * 1000, 2),
                "run_ms": round((job.finished - job.started) * 1000, 2),
            }
            body = response(
                vectors,
                counts,
                model=name,
                encoding_format=parsed.encoding_format,
                numpy_rows=True,
            )
            log(route, 200, started, **fields)
            return _json(body)
        except ClientGone:
            log(route, 499, started, **fields)  # nginx's code for a client that went away
            return Response(status_code=499)
        except Exception as exc:  # noqa: BLE001 -- every failure is a JSON error, never a page
            status, body, headers = failed(exc)
            log(route, status, started, **fields)
            return _json(body, status, headers)

    async def tokenize(request: Request) -> Response:
        started = time.perf_counter()
        try:
            authorize(request)
            parsed = parse_request(
                await read_json(request), dimension=encoder.dimension, max_inputs=limits.max_inputs
            )
            texts = limits.fit_chars(parsed.texts)
            ids = encoder.token_ids(texts)
            cut = encoder.truncated(texts)
            body = {
                "object": "list",
                "model": name,
                "max_seq_length": encoder.max_seq_length,
                "data": [
                    {"index": i, "tokens": t, "count": len(t), "truncated": bool(c)}
                    for i, (t, c) in enumerate(zip(ids, cut, strict=True))
                ],
            }
            log("/tokenize", 200, started, inputs=len(texts))
            return _json(body)
        except Exception as exc:  # noqa: BLE001 -- every failure is a JSON error, never a page
            status, body, headers = failed(exc)
            log("/tokenize", status, started)
            return _json(body, status, headers)

    async def models(request: Request) -> Response:
        started = time.perf_counter()
        try:
            authorize(request)
        except RequestError as exc:
            log("/v1/models", exc.status, started)
            return _json(exc.body(), exc.status)
        log("/v1/models", 200, started)
        return _json(
            {
                "object": "list",
                "data": [{"id": name, "object": "model", "created": 0, "owned_by": "gist-onnx"}],
            }
        )

    async def health(request: Request) -> Response:
        return _json({"status": "ok", "model": name, "provider": encoder.provider})

    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal batcher
        batcher = Batcher(
            encoder,
            max_queue_texts=limits.max_queue_texts,
            max_batch_texts=limits.max_batch_texts,
            batch_wait_ms=limits.batch_wait_ms,
            batching=batching,
            metrics=metrics,
        )
        worker = asyncio.ensure_future(batcher.run())
        try:
            yield
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            batcher.close()
            batcher = None

    return Starlette(
        routes=[
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/embeddings", embeddings, methods=["POST"]),
            Route("/tokenize", tokenize, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
