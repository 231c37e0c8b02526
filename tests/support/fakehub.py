"""A small HTTP server that answers huggingface_hub's download requests from local folders.

The hub cannot be reached from the test machines, so the download code path runs against this
instead, through ``HF_ENDPOINT``. It serves ``/{repo}/resolve/{revision}/{path}`` (HEAD and GET)
with the headers huggingface_hub reads (commit, ETag, size) and the hub's error codes for a
missing repo or file.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


class FakeHub:
    """Serves ``repos`` (repo id -> (folder, commit sha)) until :meth:`close`."""

    def __init__(self, repos: dict[str, tuple[Path, str]]) -> None:
        self.repos = repos
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                path = unquote(self.path.split("?", 1)[0]).lstrip("/")
                hub.requests.append(f"{self.command} {path}")
                if "/resolve/" not in path:
                    return self._error(404, "RepoNotFound")
                repo, rest = path.split("/resolve/", 1)
                if repo not in hub.repos:
                    return self._error(404, "RepoNotFound")
                folder, commit = hub.repos[repo]
                revision, _, filename = rest.partition("/")
                if revision not in ("main", commit):
                    return self._error(404, "RevisionNotFound")
                file = folder / filename
                if not file.is_file():
                    return self._error(404, "EntryNotFound", commit)
                data = file.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("X-Repo-Commit", commit)
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def _error(self, status: int, code: str, commit: str | None = None) -> None:
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", code)
                if commit:
                    self.send_header("X-Repo-Commit", commit)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
