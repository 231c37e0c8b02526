"""Unit tier: the server at its edges, on the tiny model. One client must not stall the others:
no CPU work on the event loop, deadlines for slow clients, a failing request fails alone; and
every answer, unknown routes too, is JSON. Waits are bounded by the server's own timeouts."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gist_onnx import GistEncoder, InvalidInputError
from gist_onnx.cli import main
from tests.support.serverproc import Server, free_port
from tests.support.tiny import write_tiny_model

pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[server]'")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


class InProcess:
    """The app under uvicorn on a thread of this process, so a test can hold up a stage."""

    def __init__(self, encoder: GistEncoder, **limits: Any) -> None:
        import uvicorn

        from gist_onnx.serve import Limits
        from gist_onnx.serve.app import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(encoder, limits=Limits(**limits), access_log=False)
        config = uvicorn.Config(app, port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> InProcess:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive()
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")


@pytest.fixture
def encoder(model: Path) -> GistEncoder:
    return GistEncoder(model, spinning=False)


# ------------------------------------------------------------- nothing CPU-bound on the loop


def _held(
    monkeypatch: pytest.MonkeyPatch, target: Any, name: str
) -> tuple[threading.Event, threading.Event]:
    """Make ``target.name`` wait for a release; returns (entered, release)."""
    entered, release = threading.Event(), threading.Event()
    original = getattr(target, name)

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, held)
    return entered, release


@pytest.mark.parametrize(
    ("route", "stage"),
    [
        ("/tokenize", "token_ids"),
        ("/tokenize", "truncated"),
        ("/tokenize", "parse_request"),
        ("/v1/embeddings", "parse_request"),
        ("/v1/embeddings", "fit_chars"),
    ],
)
def test_health_answers_while_a_request_is_in_a_cpu_stage(
    encoder: GistEncoder, monkeypatch: pytest.MonkeyPatch, route: str, stage: str
) -> None:
    """Each CPU stage of a request is held; /health must still answer: the stage runs off the
    event loop. (An 8 MB /tokenize request froze /health for 5.3 s when it ran on the loop.) The
    request is larger than what the server parses on the loop (a few KiB, microseconds)."""
    from gist_onnx.serve import handlers as app_module
    from gist_onnx.wire import Limits

    targets = {"token_ids": encoder, "truncated": encoder, "parse_request": app_module}
    target = targets.get(stage, Limits)
    entered, release = _held(monkeypatch, target, stage)
    with InProcess(encoder) as server, ThreadPoolExecutor(1) as pool:
        body = {"input": ["hello world " * 100] * 20}
        assert len(json.dumps(body)) > app_module.INLINE_BODY_BYTES
        pending = pool.submit(server.request, "POST", route, body)
        assert entered.wait(30)
        try:
            assert server.request("GET", "/health", timeout=5)[0] == 200
            assert not pending.done()
        finally:
            release.set()
        assert pending.result(timeout=30)[0] == 200


# ---------------------------------------------------------- a failing request fails alone


def test_a_request_that_fails_in_a_merged_batch_fails_alone_with_its_own_index(
    encoder: GistEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five requests merged into one batch, one with a text encode refuses: that request gets
    the 400, naming its own index; the four others get their vectors."""
    original = encoder.engine.compute
    merged: list[int] = []
    gate = threading.Event()

    def refusing(texts: list[str], *args: Any, **kwargs: Any) -> Any:
        if not gate.is_set():  # the first run: hold it until the others have queued
            assert gate.wait(30)
        merged.append(len(texts))
        if "POISON" in texts:
            raise InvalidInputError(f"Text {texts.index('POISON')} is refused by this test.")
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(encoder.engine, "compute", refusing)
    bodies = [{"input": ["first"]}] + [{"input": [f"text {i}", f"more {i}"]} for i in range(4)]
    bodies[3] = {"input": ["fine", "POISON"]}
    with InProcess(encoder, batch_wait_ms=50.0) as server, ThreadPoolExecutor(5) as pool:
        first = pool.submit(server.request, "POST", "/v1/embeddings", bodies[0])
        time.sleep(0.3)  # the first is running (held); the others queue behind it
        rest = [pool.submit(server.request, "POST", "/v1/embeddings", b) for b in bodies[1:]]
        time.sleep(0.5)
        gate.set()
        answers = [first.result(30)] + [r.result(30) for r in rest]
    assert max(merged) == 8  # the four were merged into one batch
    assert [a[0] for a in answers] == [200, 200, 200, 400, 200]
    assert "Text 1 is refused" in answers[3][1]["error"]["message"]
    for (status, body), sent in zip(answers, bodies, strict=True):
        if status == 200:
            assert len(body["data"]) == len(sent["input"])


# ---------------------------------------------------------------------- every error is JSON


@pytest.fixture(scope="module")
def guarded(model: Path) -> Iterator[Server]:
    running = Server(
        model,
        "--head-timeout", "1", "--body-timeout", "1", "--max-header-bytes", "4096",
        "--max-queue", "4", "--max-inputs", "8",
    ).start()  # fmt: skip
    yield running
    running.stop()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("POST", "/v1/nope", 404),
        ("GET", "/v1/embeddings", 405),
        ("POST", "/health", 405),
        ("DELETE", "/tokenize", 405),
        # A trailing slash: a 404, not a redirect to a location built from the Host header.
        ("POST", "/v1/embeddings/", 404),
        ("GET", "/health/", 404),
    ],
)
def test_unknown_routes_and_methods_answer_in_the_json_error_shape(
    guarded: Server, method: str, path: str, status: int
) -> None:
    got, headers, body = guarded.request(method, path, b"{}" if method == "POST" else None)
    assert got == status
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if status == 405:
        assert "allow" in {k.lower() for k in headers}


def test_the_openapi_document_is_served(guarded: Server) -> None:
    status, body = guarded.get("/openapi.json")
    assert status == 200
    document = json.loads(body)
    assert document["openapi"].startswith("3.1")
    assert {"/v1/embeddings", "/tokenize", "/health"} <= set(document["paths"])


def test_a_request_larger_than_the_queue_is_413_not_a_429_to_retry(guarded: Server) -> None:
    status, _, body = guarded.post("/v1/embeddings", {"input": ["a"] * 6})
    assert status == 413 and "more than this server queues" in body["error"]["message"]


# ------------------------------------------------------------------------- slow clients


def _connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _answer(sock: socket.socket) -> tuple[int, dict[str, Any], bool]:
    """The status and JSON body the server sent, and whether it then closed the connection."""
    data = b""
    with sock:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body), True


def test_malformed_http_is_answered_in_the_json_error_shape(guarded: Server) -> None:
    sock = _connect(guarded)
    sock.sendall(b"GARBAGE\x00 / HTTP/9\r\n\r\n")
    status, body, closed = _answer(sock)
    assert status == 400 and closed and "not valid HTTP" in body["error"]["message"]


def test_a_compressed_body_is_named_as_such(guarded: Server) -> None:
    import gzip

    raw = gzip.compress(json.dumps({"input": ["hello"]}).encode())
    status, headers, body = guarded.request(
        "POST", "/v1/embeddings", raw, headers={"content-encoding": "gzip"}
    )
    assert status == 400 and headers["content-type"] == "application/json"
    assert "gzip-compressed" in json.loads(body)["error"]["message"]


@pytest.mark.parametrize("path", ["/health/live", "/nope"])
def test_a_body_left_unread_after_the_answer_cannot_hold_the_connection(
    guarded: Server, path: str
) -> None:
    """The server answers without reading the body (a probe, a 404); a client then trickling
    that body a byte at a time finds the connection closed, whatever it sends."""
    sock = _connect(guarded)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nab".encode())
    started = time.monotonic()
    data, closed = b"", False
    sock.settimeout(0.3)
    while time.monotonic() - started < 8:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            chunk = None
        if chunk == b"":
            closed = True
            break
        data += chunk or b""
        try:
            sock.sendall(b"x")  # the trickle
        except OSError:
            closed = True
            break
    sock.close()
    assert data.startswith(b"HTTP/1.1 ") and closed
    assert time.monotonic() - started < 6


def test_a_request_head_that_never_ends_is_closed_with_408(guarded: Server) -> None:
    sock = _connect(guarded)
    sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-")
    started = time.monotonic()
    status, body, closed = _answer(sock)
    assert status == 408 and closed and "did not arrive within 1 s" in body["error"]["message"]
    assert time.monotonic() - started < 8


def test_a_connection_that_sends_nothing_is_closed(guarded: Server) -> None:
    sock = _connect(guarded)
    status, _, closed = _answer(sock)
    assert status == 408 and closed


def test_many_half_sent_heads_are_all_released(guarded: Server) -> None:
    socks = [_connect(guarded) for _ in range(200)]
    for sock in socks:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost")
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(_answer, socks))
    assert {a[0] for a in answers} == {408}
    assert guarded.get("/health")[0] == 200


@pytest.mark.parametrize("pieces", [1, 64])
def test_an_oversized_head_is_431(guarded: Server, pieces: int) -> None:
    sock = _connect(guarded)
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"
    step = len(head) // pieces + 1
    try:
        for start in range(0, len(head), step):
            sock.sendall(head[start : start + step])
    except OSError:
        pass  # the server closed the connection while the head was still coming: what we want
    status, body, closed = _answer(sock)
    assert status == 431 and closed and "4096" in body["error"]["message"]


def test_a_trickled_body_is_cut_off_with_408(guarded: Server) -> None:
    sock = _connect(guarded)
    sock.sendall(
        b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    started = time.monotonic()
    for _ in range(10):
        try:
            sock.sendall(b" ")
        except OSError:
            break
        time.sleep(0.3)
    status, body, closed = _answer(sock)
    assert status == 408 and closed and "body did not arrive within 1 s" in body["error"]["message"]
    assert time.monotonic() - started < 8


def test_a_client_gone_mid_body_is_logged_as_499(guarded: Server) -> None:
    sock = _connect(guarded)
    sock.sendall(b'POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"input"')
    time.sleep(0.2)
    sock.close()
    deadline = time.monotonic() + 10
    while '"status":499' not in guarded.output():
        assert time.monotonic() < deadline, guarded.output()[-2000:]
        time.sleep(0.1)
    assert '"status":500' not in guarded.output()


# ------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    "args",
    [
        ["--max-queue", "0"],
        ["--max-inputs", "-1"],
        ["--max-body-bytes", "0"],
        ["--max-chars", "0"],
        ["--max-batch", "0"],
        ["--port", "70000"],
        ["--port", "0"],
        ["--port", "http"],
        ["--batch-wait-ms", "nan"],
        ["--batch-wait-ms", "-1"],
        ["--head-timeout", "0"],
        ["--body-timeout", "inf"],
        ["--max-header-bytes", "0"],
        ["--threads", "0"],
    ],
)
def test_serve_settings_that_cannot_work_are_exit_2_before_loading(
    model: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["serve", "--model", str(model), *args])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(
        "gist-onnx serve: error"
    )


@pytest.mark.parametrize(
    "limits",
    [
        {"max_queue_texts": 0},
        {"max_body_bytes": 0},
        {"max_inputs": -1},
        {"head_timeout_s": 0.0},
        {"body_timeout_s": float("nan")},
        {"batch_wait_ms": -1.0},
        {"max_head_bytes": 10},
        {"max_inputs": True},
    ],
)
def test_limits_that_cannot_work_are_refused_in_code_too(limits: dict[str, Any]) -> None:
    from gist_onnx.serve import Limits

    with pytest.raises(InvalidInputError, match=next(iter(limits))):
        Limits(**limits)


def test_a_port_past_65535_is_refused_by_serve(model: Path) -> None:
    from gist_onnx.serve import serve

    with pytest.raises(InvalidInputError, match="port must be an integer from 0 to 65535"):
        serve(model, port=70000)
