"""A small stand-in for the AWS Lambda Runtime API, so that the real runtime interface client
(``awslambdaric``) can run a handler's invocation loop on the loopback interface.

It serves ``GET /2018-06-01/runtime/invocation/next`` (blocking until an event is queued, with the
request id, deadline and ARN headers) and takes the ``.../response``, ``.../error`` and
``init/error`` posts. It speaks HTTP/1.1 with Content-Length on every reply: the client's native
HTTP code crashed on HTTP/1.0 replies.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"


class FakeRuntimeApi:
    """Queue events with :meth:`invoke`; read what the function answered with :meth:`result`."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.results: dict[str, tuple[str, Any]] = {}
        self.init_errors: list[Any] = []
        self.polls = 0
        self._done = threading.Condition()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    return self._reply(404, b"{}")
                api.polls += 1
                request_id, event = api.events.get()
                deadline = int((time.time() + 30) * 1000)
                self._reply(
                    200,
                    event,
                    {
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(deadline),
                        "Lambda-Runtime-Invoked-Function-Arn": (
                            "arn:aws:lambda:us-east-1:123456789012:function:gist-onnx"
                        ),
                        "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
                    },
                )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                parts = self.path[len(PREFIX) :].strip("/").split("/")
                if parts[:2] == ["init", "error"]:
                    api.init_errors.append(json.loads(body or b"null"))
                elif parts[0] == "invocation" and len(parts) == 3:
                    with api._done:
                        api.results[parts[1]] = (parts[2], json.loads(body or b"null"))
                        api._done.notify_all()
                self._reply(202, b'{"status":"OK"}')

            def _reply(
                self, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        """``host:port``, as ``AWS_LAMBDA_RUNTIME_API`` takes it."""
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def invoke(self, event: Any) -> str:
        """Queue one invocation; returns its request id."""
        request_id = str(uuid.uuid4())
        self.events.put((request_id, json.dumps(event).encode()))
        return request_id

    def result(self, request_id: str, timeout: float = 60) -> tuple[str, Any]:
        """Wait for the function's answer: ("response" | "error", the posted JSON)."""
        with self._done:
            if not self._done.wait_for(lambda: request_id in self.results, timeout=timeout):
                raise TimeoutError(f"no answer to {request_id} within {timeout} s")
            return self.results[request_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
