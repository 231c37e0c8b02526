"""``gist-onnx serve``: an OpenAI-compatible embeddings server that batches across requests.

    gist-onnx serve --model gist-onnx-model --variant int8 --port 8080

Starlette and uvicorn (ASGI), orjson for the JSON (it writes 32 x 384 floats in ~0.5 ms where
the standard library takes ~12 ms: at small requests that decides the request rate); all from
the ``server`` extra: ``pip install 'gist-onnx[server]'``. Modules: ``app`` (routes, auth,
errors), ``handlers`` (each route's work, the access log), ``config`` (:class:`ServeConfig`, the
settings this module, the app and the command share), ``metrics`` (``/metrics``),
``openapi`` (``/openapi.json``), ``protocol`` (the HTTP parser's timeouts); what a request may
hold is :class:`gist_onnx.wire.Limits`, shared with the Lambda handler. Requests are batched
across by :class:`gist_onnx.AsyncGistEncoder`, the library's async encoder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import sys
import threading
from typing import Any

from .. import EmbeddingCache, GistEncoder, InvalidInputError, MissingExtraError, interrupt, options
from ..wire import Limits
from .config import ServeConfig

__all__ = ["Limits", "ServeConfig", "serve"]


def _require() -> None:
    for module in ("starlette", "uvicorn", "orjson", "httptools"):
        try:
            __import__(module)
        except ImportError:
            raise MissingExtraError("gist-onnx serve", "server", module) from None


def serve(
    model: str | os.PathLike[str] | None = None,
    *,
    config: ServeConfig | None = None,
    **settings: Any,
) -> None:
    """Take the port, load the model, then serve it until SIGINT or SIGTERM (which drain the
    requests in flight, up to ``graceful_timeout_s``, then exit).

    The settings are a :class:`~gist_onnx.serve.config.ServeConfig`: ``config``, with ``model``
    and any of its fields given as keywords on top (``serve("folder", port=9000)``). The address
    is bound first, so a port in use fails at once, before the model loads; it accepts
    connections once the model is loaded (``/health/live``), and ``/health/ready`` says ready
    once the warm-up has run, until SIGTERM starts the drain (after ``drain_delay_s``, the port
    closes; a second signal stops at once). ``otel``: OpenTelemetry spans for each embeddings
    request (the ``otel`` extra; see :mod:`gist_onnx.serve.tracing`). One start-up line (JSON,
    on stderr) gives the address, model names, variant, provider, threads, cache and limits."""
    config = (config or ServeConfig()).replace(
        **({"model": model} if model is not None else {}), **settings
    )
    config = config.replace(api_key=options.checked_api_key(config.api_key, "the API key"))
    # ONNX Runtime's telemetry store writes under the home folder (read-only in a hardened
    # container) and its failure is a coloured non-JSON line in the JSON log: off, as in the
    # Lambda handler, unless the deployment sets ORT_DISABLE_TELEMETRY=0.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    _require()
    import uvicorn

    from .app import create_app
    from .protocol import guarded_protocol

    tracing = None
    if config.otel:
        from .tracing import Tracing

        tracing = Tracing.from_provider()  # a missing extra fails before the port is taken
    sock = _bind(config.host, config.port)
    try:
        # The event loop parses and answers requests while the graph runs: ONNX Runtime's
        # threads must not spin on the cores between runs.
        entries = config.cache_entries
        encoder = GistEncoder(
            config.model,
            variant=config.variant,
            device=config.device,
            threads=config.threads,
            spinning=False,
            cache=EmbeddingCache(entries, config.cache_bytes) if entries else None,
        )
    except BaseException:
        sock.close()
        raise
    app = create_app(encoder, config=config, tracing=tracing)
    server = app.state.server
    limits = config.limits
    uvicorn_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        access_log=False,  # the app writes its own: one structured line per request
        proxy_headers=False,  # the app reads no client address: X-Forwarded-* need no parsing
        log_level="warning",
        timeout_graceful_shutdown=config.graceful_timeout_s,
        lifespan="on",
        http=guarded_protocol(
            head_timeout_s=limits.head_timeout_s, max_head_bytes=limits.max_head_bytes
        ),
    )
    _announce(sock, encoder, server.names, config)
    drain_delay_s = config.drain_delay_s

    class Draining(uvicorn.Server):
        """uvicorn's server, telling the app when SIGTERM starts the drain (readiness 503), and
        closing the port only ``drain_delay_s`` later."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            if drain_delay_s > 0 and not server.draining:
                server.drain()
                later = threading.Timer(drain_delay_s, super().handle_exit, (sig, frame))
                later.daemon = True
                later.start()
                return
            server.drain()
            super().handle_exit(sig, frame)

    # The start-up's own SIGTERM handler (gist_onnx.cli) gives way to uvicorn's, which restores
    # and re-raises what it found when the drain is over: the default, as for any server.
    if signal.getsignal(signal.SIGTERM) is interrupt.stop_handler():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    Draining(uvicorn_config).run(sockets=[sock])


def _announce(
    sock: socket.socket, encoder: GistEncoder, names: list[str], config: ServeConfig
) -> None:
    """The start-up line: one JSON object on stderr."""
    bound = sock.getsockname()
    described = encoder.describe()
    entries = config.cache_entries
    line = {
        "event": "listening",
        "url": f"http://{'[' + bound[0] + ']' if ':' in bound[0] else bound[0]}:{bound[1]}",
        "model": names,
        "any_model": config.any_model,
        "source": encoder.source,
        "variant": encoder.variant,
        **{
            key: described[key]
            for key in ("int8_form", "int8_form_reason", "provider", "cpu", "cpu_flags")
        },
        "threads": encoder.threads,
        "parallel_runs": encoder.parallel_runs,
        "cache": {"entries": entries, "bytes": config.cache_bytes} if entries else None,
        "warm_up": config.warm_up,
        "otel": config.otel,
        "limits": dataclasses.asdict(config.limits),
    }
    sys.stderr.write(json.dumps(line) + "\n")
    sys.stderr.flush()


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not yet listening: connections are refused until the
    server starts); a port in use or an address that is not this machine's is a usage error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise InvalidInputError(f"--host {host!r} is not an address to listen on: {exc}.") from None
    sock = socket.socket(family, kind, proto)
    if os.name != "nt":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise InvalidInputError(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}. Pick another --port (or "
            "stop what holds this one)."
        ) from None
    sock.set_inheritable(True)
    return sock
