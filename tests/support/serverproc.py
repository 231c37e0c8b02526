"""Start ``gist-onnx serve`` as a real process on 127.0.0.1 for a test, and stop it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A ``gist-onnx serve`` process; ``url`` once :meth:`start` returned."""

    def __init__(self, model: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            sys.executable,
            "-m",
            "gist_onnx.cli",
            "serve",
            "--model",
            str(model),
            "--port",
            str(self.port),
            *args,
        ]
        self.proc: subprocess.Popen[str] | None = None
        # The access log goes to a file: a pipe nobody reads would fill and stall the server.
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 -- closed by stop()

    def start(self, timeout: float = 60) -> Server:
        self.proc = subprocess.Popen(
            self.command, stdout=self.log, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.output()[-2000:]}")
            try:
                if self.get("/health")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("the server did not answer /health")

    def output(self) -> str:
        """What the server wrote so far (its access log, its errors)."""
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> str:
        """Stop the server (SIGTERM, then SIGKILL); returns what it wrote."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        text = self.output()
        self.log.close()
        return text

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(
            self.url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as answer:
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def get(self, path: str) -> tuple[int, bytes]:
        status, _, body = self.request("GET", path, timeout=5)
        return status, body

    def post(
        self, path: str, payload: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        status, answer_headers, raw = self.request(
            "POST", path, body, {"content-type": "application/json", **(headers or {})}
        )
        return status, answer_headers, json.loads(raw) if raw else None
