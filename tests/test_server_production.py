"""Unit tier: what production asks of ``gist-onnx serve``, on real server processes over the tiny
model: OpenAI-strict requests (served model names, empty inputs, a code in every error), the
exact cache and its metrics, readiness after warm-up and during the drain."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gist_onnx import GistEncoder
from tests.support.serverproc import Server
from tests.support.tiny import write_manifest, write_tiny_model

pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[server]'")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = write_tiny_model(tmp_path_factory.mktemp("prod") / "tiny-model")
    write_manifest(folder)
    return folder


@pytest.fixture(scope="module")
def server(model: Path) -> Iterator[Server]:
    running = Server(
        model, "--served-model-name", "gist", "--served-model-name", "gist-onnx", "--quiet"
    ).start()
    yield running
    running.stop()


def _metric(server: Server, name: str) -> float:
    text = server.get("/metrics")[1].decode()
    found = re.search(rf"^{name} (\S+)$", text, flags=re.M)
    assert found, f"{name} not in /metrics"
    return float(found[1])


# ------------------------------------------------------------------ OpenAI-strict
def test_only_the_served_model_names_are_answered(server: Server) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list().data] == ["gist", "gist-onnx"]
    for name in ("gist", "gist-onnx"):
        answer = client.embeddings.create(model=name, input=["hello"], encoding_format="float")
        assert answer.model == "gist"  # the first name is the one reported
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="text-embedding-3-small", input=["hello"])
    error = caught.value.body
    assert isinstance(error, dict)
    assert (error["code"], error["param"], error["type"]) == (
        "model_not_found",
        "model",
        "invalid_request_error",
    )
    assert "gist" in error["message"]
    # No model at all is the served one (OpenAI's clients always send one; curl users may not).
    assert server.post("/v1/embeddings", {"input": "hello"})[0] == 200


def test_by_default_the_export_s_model_id_is_served(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "my-export")
    running = Server(folder, "--quiet").start()
    try:
        expected = GistEncoder(folder).model_name
        models = json.loads(running.get("/v1/models")[1])
        assert [m["id"] for m in models["data"]] == [expected] == ["my-export"]
        assert running.post("/v1/embeddings", {"input": "a", "model": "my-export"})[0] == 200
        assert running.post("/v1/embeddings", {"input": "a", "model": "other"})[0] == 404
    finally:
        running.stop()


def test_any_model_accepts_every_name(model: Path) -> None:
    running = Server(model, "--any-model", "--quiet").start()
    try:
        status, _, body = running.post("/v1/embeddings", {"input": "a", "model": "whatever"})
        assert status == 200 and body["model"] == "tiny-model"
        spec = json.loads(running.get("/openapi.json")[1])
        model_schema = spec["components"]["schemas"]["EmbeddingsRequest"]["properties"]["model"]
        assert "enum" not in model_schema
    finally:
        running.stop()


@pytest.mark.parametrize(
    ("payload", "status", "code", "param"),
    [
        ({"input": ""}, 400, "empty_input", "input"),
        ({"input": ["a", ""]}, 400, "empty_input", "input[1]"),
        ({"input": ["a"], "user": 3}, 400, "invalid_request", "user"),
        ({"input": ["a"], "user": {"id": 1}}, 400, "invalid_request", "user"),
        ({"input": [1, 2]}, 400, "invalid_request", "input[0]"),
        ({"input": ["a"], "model": "nope"}, 404, "model_not_found", "model"),
        ({"input": ["a"] * 3000}, 413, "request_too_large", "input"),
        (b"{not json", 400, "invalid_request", None),
    ],
)
def test_every_error_has_a_code(
    server: Server, payload: object, status: int, code: str, param: str | None
) -> None:
    answer_status, _, body = server.post("/v1/embeddings", payload)
    assert answer_status == status
    assert body["error"]["code"] == code and body["error"]["param"] == param


def test_errors_outside_the_embeddings_route_have_codes_too(server: Server, model: Path) -> None:
    for method, path, status, code in (
        ("GET", "/nowhere", 404, "not_found"),
        ("DELETE", "/v1/embeddings", 405, "method_not_allowed"),
    ):
        answer, _, raw = server.request(method, path)
        assert answer == status and json.loads(raw)["error"]["code"] == code
    secured = Server(model, "--api-key", "k", "--quiet").start()
    try:
        answer, _, raw = secured.request("GET", "/v1/models")
        assert answer == 401 and json.loads(raw)["error"]["code"] == "invalid_api_key"
    finally:
        secured.stop()


# ------------------------------------------------------------------ the cache
def test_repeated_texts_come_from_the_cache_with_the_same_vectors(
    server: Server, model: Path
) -> None:
    hits, misses = (
        _metric(server, "gist_onnx_cache_hits_total"),
        _metric(server, "gist_onnx_cache_misses_total"),
    )
    texts = ["the cat sat", "on the mat", "the cat sat"]
    first = server.post("/v1/embeddings", {"input": texts, "encoding_format": "float"})[2]
    again = server.post("/v1/embeddings", {"input": texts, "encoding_format": "float"})[2]
    assert first == again
    expected = GistEncoder(model).encode(texts)
    got = np.array([d["embedding"] for d in again["data"]], dtype=np.float32)
    np.testing.assert_array_equal(got, expected)
    assert again["usage"] == first["usage"]  # token counts are cached with the vectors
    # Misses count texts run: the repeated text ran once.
    assert _metric(server, "gist_onnx_cache_misses_total") - misses == 2
    assert _metric(server, "gist_onnx_cache_hits_total") - hits == 3  # the second call: all hit
    assert _metric(server, "gist_onnx_cache_entries") >= 2


def test_cache_size_zero_turns_it_off(model: Path) -> None:
    running = Server(model, "--cache-size", "0", "--quiet").start()
    try:
        running.post("/v1/embeddings", {"input": ["a", "a"]})
        assert "gist_onnx_cache_hits_total" not in running.get("/metrics")[1].decode()
        line = next(json.loads(t) for t in running.output().splitlines() if '"listening"' in t)
        assert line["cache"] is None
    finally:
        running.stop()


# ------------------------------------------------------------------ ready when it says so
def test_ready_after_the_warm_up_then_not_ready_while_draining(model: Path) -> None:
    running = Server(model, "--drain-delay", "3", "--warm-up-lengths", "2,4,6").start()
    try:
        assert running.get("/health/live") == (200, b'{"status":"ok"}')
        status, body = running.get("/health/ready")
        assert status == 200 and json.loads(body)["status"] == "ok"
        events = [json.loads(t)["event"] for t in running.output().splitlines() if '"event"' in t]
        assert events[:2] == ["listening", "ready"]
        assert running.proc is not None
        running.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        status, body = running.get("/health/ready")
        assert status == 503 and json.loads(body)["status"] == "draining"
        assert running.get("/health")[0] == 503  # /health is /health/ready
        assert running.get("/health/live")[0] == 200
        assert running.post("/v1/embeddings", {"input": ["still served"]})[0] == 200
        # Every answer during the drain closes its connection: a client does not write its
        # next request to a connection about to close.
        # (http.client keeps connections alive, as pooled clients do; urllib asks to close.)
        import http.client

        for method, path in (("POST", "/v1/embeddings"), ("GET", "/health/live")):
            body = b'{"input": ["kept alive"]}' if method == "POST" else None
            connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
            connection.request(method, path, body, {"content-type": "application/json"})
            answer = connection.getresponse()
            answer.read()
            assert answer.getheader("connection") == "close", path
            connection.close()
        assert running.proc.wait(timeout=30) in (0, -signal.SIGTERM)  # then it drains and exits
    finally:
        running.stop()


def _wait_until_the_port_closes(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.005)
    raise TimeoutError("the server kept its port open")


def test_a_request_written_as_the_port_closes_is_answered_not_reset(model: Path) -> None:
    """Drain, kept-alive connections: once the port has closed, a request a client writes on a
    connection it kept (it could not know yet), or whose head it had begun, is answered and the
    connection then closed; neither meets a reset."""
    import http.client
    import socket

    running = Server(model).start()
    try:
        assert running.proc is not None
        idle = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
        idle.request("GET", "/health/live")
        assert idle.getresponse().read() == b'{"status":"ok"}'  # kept alive, now idle
        begun = socket.create_connection(("127.0.0.1", running.port), timeout=10)
        body = b'{"input": ["half a head"]}'
        begun.sendall(b"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\n")  # the rest comes later
        time.sleep(0.2)

        running.proc.send_signal(signal.SIGTERM)  # no drain delay: the port closes at once
        _wait_until_the_port_closes(running.port)

        idle.request(
            "POST",
            "/v1/embeddings",
            b'{"input": ["kept alive"]}',
            {"content-type": "application/json"},
        )
        answer = idle.getresponse()
        assert answer.status == 200 and len(json.loads(answer.read())["data"]) == 1
        assert answer.getheader("connection") == "close"

        begun.sendall(
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body
        )
        reply = b""
        while chunk := begun.recv(65536):  # read to the end: the server closes after answering
            reply += chunk
        head, _, rest = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"connection: close" in head.lower()
        assert len(json.loads(rest)["data"]) == 1
        begun.close()
        idle.close()
        assert running.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        running.stop()


def test_ctrl_c_drains_and_exits_without_a_traceback(model: Path) -> None:
    running = Server(model).start()
    try:
        assert running.proc is not None
        running.proc.send_signal(signal.SIGINT)
        assert running.proc.wait(timeout=30) == 130
    finally:
        log = running.stop()
    assert "Traceback" not in log, log[-2000:]
    assert log.rstrip().endswith("gist-onnx serve: interrupted")


def test_not_ready_until_the_warm_up_has_run(model: Path) -> None:
    """An in-process server whose warm-up is held: /health/live answers, /health/ready is 503
    until the warm-up returns."""
    import threading
    import urllib.error
    import urllib.request

    import uvicorn

    from gist_onnx.serve.app import create_app
    from tests.support.serverproc import free_port

    encoder = GistEncoder(model)
    release = threading.Event()
    warmed: list[tuple[int, ...]] = []

    def held(lengths: tuple[int, ...]) -> float:
        release.wait(30)
        warmed.append(tuple(lengths))
        return 0.0

    encoder.warm_up = held  # type: ignore[method-assign]
    port = free_port()
    app = create_app(encoder, access_log=False, warm_up=(5, 6))
    config = uvicorn.Config(app, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert status("/health/live") == 200
        assert status("/health/ready") == 503
        release.set()
        deadline = time.monotonic() + 10
        while status("/health/ready") != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert warmed == [(5, 6)]
    finally:
        release.set()
        server.should_exit = True
        thread.join(timeout=30)


def test_warm_up_runs_every_length_up_to_the_model_s_limit(model: Path) -> None:
    encoder = GistEncoder(model, cache=True)
    assert encoder.warm_up((1, 3, 500)) >= 0
    assert encoder.cache is not None and len(encoder.cache) == 0  # the cache is not touched


# ------------------------------------------------------------------ tracing
def test_each_request_is_traced_with_its_stages(model: Path) -> None:
    """OpenTelemetry's SDK with its in-memory exporter: one server span per request, with queue,
    graph and response stages under it (a cached request has no graph stage)."""
    pytest.importorskip("opentelemetry.sdk", reason="the otel extra: pip install -e '.[otel]'")
    import threading
    import urllib.request

    import uvicorn
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from gist_onnx.serve.app import create_app
    from gist_onnx.serve.tracing import Tracing
    from tests.support.serverproc import free_port

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    encoder = GistEncoder(model, cache=True)
    app = create_app(encoder, access_log=False, tracing=Tracing.from_provider(provider))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        for _ in range(2):  # the second time, from the cache
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/embeddings",
                data=b'{"input": ["the cat", "sat on"]}',
                headers={"content-type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert answer.status == 200
        # A caller's trace: the server's span joins it. And /tokenize has its span too.
        caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/tokenize",
            data=b'{"input": ["the cat"]}',
            headers={
                "content-type": "application/json",
                "traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    spans = exporter.get_finished_spans()
    joined = [s for s in spans if s.name == "POST /tokenize"]
    assert len(joined) == 1 and joined[0].parent is not None
    assert f"{joined[0].context.trace_id:032x}" == caller_trace
    assert joined[0].parent.span_id == 0x00F067AA0BA902B7
    roots = [s for s in spans if s.parent is None]
    assert [s.name for s in roots] == ["POST /v1/embeddings"] * 2
    stages = (["queue", "graph", "response"], ["queue", "response"])
    for root, expected in zip(roots, stages, strict=True):
        children = sorted(
            (s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id),
            key=lambda s: s.start_time or 0,
        )
        assert [c.name for c in children] == expected
        assert all(
            (root.start_time or 0)
            <= (c.start_time or 0)
            <= (c.end_time or 0)
            <= (root.end_time or 0)
            for c in children
        )
        assert root.attributes is not None
        assert root.attributes["http.response.status_code"] == 200
        assert root.attributes["gist_onnx.inputs"] == 2
    assert roots[1].attributes is not None and roots[1].attributes["gist_onnx.cache_hits"] == 2


def test_otel_without_the_extra_says_which_extra(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    from gist_onnx import MissingExtraError
    from gist_onnx.serve.tracing import Tracing

    real_import = builtins.__import__

    def no_otel(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("opentelemetry"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_otel)
    with pytest.raises(MissingExtraError, match="otel"):
        Tracing.from_provider()
