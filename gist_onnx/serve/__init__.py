"""``gist-onnx serve``: an OpenAI-compatible embeddings server that batches across requests.

    gist-onnx serve --model gist-onnx-model --variant int8 --port 8080

Starlette and uvicorn (ASGI), orjson for the JSON (it writes 32 x 384 floats in ~0.5 ms where
the standard library takes ~12 ms: at small requests that decides the request rate); all from
the ``server`` extra: ``pip install 'gist-onnx[server]'``. Modules: ``app`` (routes, auth,
errors, access log), ``batching`` (the queue and its worker), ``metrics`` (``/metrics``),
``openapi`` (``/openapi.json``), ``protocol`` (the HTTP parser's timeouts); what a request may
hold is :class:`gist_onnx.wire.Limits`, shared with the Lambda handler.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys

from .. import GistEncoder, InvalidInputError, MissingExtraError
from ..wire import Limits

__all__ = ["Limits", "serve"]


def _require() -> None:
    for module in ("starlette", "uvicorn", "orjson", "httptools"):
        try:
            __import__(module)
        except ImportError:
            raise MissingExtraError("gist-onnx serve", "server", module) from None


def serve(
    model: str | os.PathLike[str],
    *,
    variant: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    api_key: str | None = None,
    limits: Limits | None = None,
    batching: bool = True,
    model_name: str | None = None,
    access_log: bool = True,
    graceful_timeout_s: int = 30,
) -> None:
    """Take the port, load the model, then serve it until SIGINT or SIGTERM (which drain the
    requests in flight, up to ``graceful_timeout_s``, then exit).

    The address is bound first, so a port in use fails at once, before the model loads; it
    accepts connections once the model is loaded, so ``/health`` answering means ready. One
    start-up line (JSON, on stderr) gives the address, model, variant, provider, threads and
    limits."""
    _require()
    import uvicorn

    from .app import create_app
    from .protocol import guarded_protocol

    limits = limits or Limits()
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidInputError(f"port must be an integer from 0 to 65535, got {port!r}.")

    sock = _bind(host, port)
    try:
        # The event loop parses and answers requests while the graph runs: ONNX Runtime's
        # threads must not spin on the cores between runs.
        encoder = GistEncoder(
            model, variant=variant, device=device, threads=threads, spinning=False
        )
    except BaseException:
        sock.close()
        raise
    app = create_app(
        encoder,
        limits=limits,
        api_key=api_key,
        batching=batching,
        model_name=model_name,
        access_log=access_log,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,  # the app writes its own: one structured line per request
        log_level="warning",
        timeout_graceful_shutdown=graceful_timeout_s,
        lifespan="on",
        http=guarded_protocol(
            head_timeout_s=limits.head_timeout_s, max_head_bytes=limits.max_head_bytes
        ),
    )
    bound = sock.getsockname()
    line = {
        "event": "listening",
        "url": f"http://{'[' + bound[0] + ']' if ':' in bound[0] else bound[0]}:{bound[1]}",
        "model": model_name or encoder.model_name,
        "source": encoder.source,
        "variant": encoder.variant,
        "provider": encoder.provider,
        "threads": encoder.threads,
        "parallel_runs": encoder.parallel_runs,
        "limits": dataclasses.asdict(limits),
    }
    sys.stderr.write(json.dumps(line) + "\n")
    sys.stderr.flush()
    uvicorn.Server(config).run(sockets=[sock])


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
