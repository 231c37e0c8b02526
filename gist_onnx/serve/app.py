"""The ASGI app: routes, authentication, errors as JSON, the access log.

Routes: ``POST /v1/embeddings`` (and ``/embeddings``), ``POST /tokenize``, ``GET /v1/models``,
``GET /health/live``, ``GET /health/ready`` (and ``/health``, the same), ``GET /metrics``,
``GET /openapi.json`` (the request and response schema).
Every error, unknown routes and methods included, is JSON in OpenAI's shape. Parsing, tokenizing
and writing JSON run on worker threads, never on the event loop. With an API key set, every
route but ``/health``, ``/metrics`` and ``/openapi.json`` needs ``Authorization: Bearer <key>``
(compared in constant time). The handlers are :class:`.handlers.Server`'s methods.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import GistEncoder
from .config import ServeConfig
from .handlers import INLINE_BODY_BYTES, INLINE_VECTORS, ClientGone, Server
from .tracing import Tracing

__all__ = ["INLINE_BODY_BYTES", "INLINE_VECTORS", "ClientGone", "create_app"]

EMBEDDINGS_PATHS = ("/v1/embeddings", "/embeddings")


class _App(Starlette):
    """Starlette, with ``POST /v1/embeddings`` (the route that carries the load) dispatched
    straight to its handler: no middleware or router layers, which handle nothing the handler
    does not (it answers every error itself)."""

    embeddings: Callable[[Request], Awaitable[Response]]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.state.server.draining:
            # Draining: every answer closes its connection, so that clients stop sending more
            # requests on it.
            send = _closing(send)
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in EMBEDDINGS_PATHS
        ):
            scope["app"] = self
            answer = await self.embeddings(Request(scope, receive, send))
            await answer(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _closing(send: Any) -> Any:
    """``send``, with ``connection: close`` on the answer's head: uvicorn then closes the
    connection once the answer is written, and the client opens a new one (to another replica)
    for its next request, instead of writing it to a connection about to close."""

    async def closing(message: Any) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return closing


def create_app(
    encoder: GistEncoder,
    *,
    config: ServeConfig | None = None,
    tracing: Tracing | None = None,
    **settings: Any,
) -> Starlette:
    """The server around ``encoder`` (already loaded: the server answers once it exists), with
    the settings of ``config`` (a :class:`~gist_onnx.serve.config.ServeConfig`; its model, host
    and port are :func:`~gist_onnx.serve.serve`'s) and any of its fields as keywords on top.

    ``served_model_names`` are the ``model`` values it answers to (default: ``model_name``, else
    the encoder's model id); another is a 404 ``model_not_found`` unless ``any_model``. The first
    is the one responses report. ``warm_up``: the token lengths :meth:`GistEncoder.warm_up` runs
    at start-up before ``/health/ready`` says ready (``()``: its defaults; None: no warm-up).
    ``tracing``: OpenTelemetry spans for each embeddings request (see :mod:`.tracing`)."""
    config = (config or ServeConfig()).replace(**settings)
    names = list(config.served_model_names or [config.model_name or encoder.model_name])
    server = Server(
        encoder,
        limits=config.limits,
        api_key=config.api_key,
        batching=config.batching,
        names=names,
        any_model=config.any_model,
        access_log=config.access_log,
        warm_up=config.warm_up,
        tracing=tracing,
    )
    app = _App(
        exception_handlers={HTTPException: server.http_error},
        routes=[
            Route("/v1/embeddings", server.embeddings, methods=["POST"]),
            Route("/embeddings", server.embeddings, methods=["POST"]),
            Route("/tokenize", server.tokenize, methods=["POST"]),
            Route("/v1/models", server.models, methods=["GET"]),
            Route("/health", server.ready, methods=["GET"]),
            Route("/health/ready", server.ready, methods=["GET"]),
            Route("/health/live", server.live, methods=["GET"]),
            Route("/metrics", server.prometheus, methods=["GET"]),
            Route("/openapi.json", server.openapi, methods=["GET"]),
        ],
        lifespan=server.lifespan,
    )
    # A path with a trailing slash is a 404 like any other unknown path, not a redirect to a
    # location built from the client's Host header.
    app.router.redirect_slashes = False
    app.state.server = server
    # Each served path is its own label in /metrics; any other is counted as one.
    server.metrics.routes = frozenset(getattr(route, "path", "") for route in app.routes)
    app.embeddings = server.embeddings
    return app
