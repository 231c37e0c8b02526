"""Model tier: ``gist-onnx serve`` as a real process on 127.0.0.1, called by the official ``openai``
client and by plain HTTP: vectors equal to ``encode``, every error status, concurrency, overload,
a client that goes away, and a graceful shutdown. Request counts and waits are bounded."""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from gist_onnx import GistEncoder
from tests.support.serverproc import Server

pytestmark = pytest.mark.model
pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[server]'")

TEXTS = ["What is the capital of France?", "Paris is the capital of France.", "bread", " "]
LONG = "The committee met on Tuesday to review the proposal for the new library. " * 40


@pytest.fixture(scope="module")
def encoder(exported: Path) -> GistEncoder:
    return GistEncoder(exported, variant="int8")


@pytest.fixture(scope="module")
def server(exported: Path) -> Iterator[Server]:
    running = Server(
        exported,
        "--variant",
        "int8",
        "--max-inputs",
        "64",
        "--max-chars",
        "20000",
        "--served-model-name",
        "gist",
    ).start()
    yield running
    running.stop()


def test_the_openai_client_gets_the_vectors_of_encode(server: Server, encoder: GistEncoder) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    expected = encoder.encode(TEXTS)
    one = client.embeddings.create(model="gist", input=TEXTS[0], encoding_format="float")
    np.testing.assert_allclose(one.data[0].embedding, expected[0], atol=1e-6)
    many = client.embeddings.create(model="gist", input=TEXTS, encoding_format="float")
    assert [d.index for d in many.data] == [0, 1, 2, 3]
    np.testing.assert_allclose([d.embedding for d in many.data], expected, atol=1e-6)
    assert many.usage.prompt_tokens == int(encoder.count_tokens(TEXTS).sum())
    assert many.usage.total_tokens == many.usage.prompt_tokens
    # Without encoding_format the client asks for base64 and decodes it itself.
    packed = client.embeddings.create(model="gist", input=TEXTS)
    np.testing.assert_allclose([d.embedding for d in packed.data], expected, atol=1e-6)
    assert [m.id for m in client.models.list().data] == ["gist"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        ({"input": 3}, 400, "'input' must be a string or a list"),
        ({"input": ["a", 1]}, 400, "'input[1]' must be a string"),
        ({"input": "a", "dimensions": 128}, 400, "not a Matryoshka model"),
        ({"input": "a", "encoding_format": "hex"}, 400, "'float' or 'base64'"),
        ({"input": ["a"] * 65}, 413, "at most 64 per request"),
        ({"input": ["a", "x" * 20001]}, 413, "'input[1]' has 20001 characters"),
    ],
)
def test_bad_requests_get_their_status_and_a_json_error(
    server: Server, body: object, status: int, message: str
) -> None:
    got, _, answer = server.post("/v1/embeddings", body)
    assert got == status
    assert message in answer["error"]["message"]


def test_tokenize_models_health_metrics(server: Server) -> None:
    status, _, body = server.post("/tokenize", {"input": ["hello world", "word " * 300]})
    assert status == 200
    first, second = body["data"]
    assert first == {"index": 0, "tokens": [101, 7592, 2088, 102], "count": 4, "truncated": False}
    assert second["count"] == 256 and second["truncated"] is True
    assert server.get("/health")[0] == 200
    status, text = server.get("/metrics")
    assert status == 200
    assert b'gist_onnx_requests_total{route="/tokenize",status="200"}' in text
    assert b"gist_onnx_batch_texts_bucket" in text and b"gist_onnx_queue_texts" in text


def test_metrics_count_unknown_paths_as_one_route_and_stay_parsable(server: Server) -> None:
    """A path the server has no route for is labelled "other", whatever it holds: random paths
    cannot grow the page, and a quote or backslash in one cannot break it."""
    before = server.get("/metrics")[1].decode()
    for path in ("/a%22b", "/c%5Cd", *(f"/random/{i}" for i in range(50))):
        assert server.get(path)[0] == 404
    text = server.get("/metrics")[1].decode()
    routes = {
        line.split('route="')[1].split('"')[0] for line in text.splitlines() if 'route="' in line
    }
    assert "other" in routes and not any("random" in r or 'a"b' in r for r in routes)
    assert len(text) < len(before) + 4000  # one more label, not 52
    for line in text.splitlines():  # Prometheus' text format: name{labels} value
        if line and not line.startswith("#"):
            assert re.fullmatch(r'[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? [0-9.e+-]+', line), (
                line
            )


def test_many_clients_at_once_each_get_their_own_answer(
    server: Server, encoder: GistEncoder
) -> None:
    requests = [[f"text number {i}", LONG[: 50 * (i % 7)] + str(i)] for i in range(48)]

    def call(texts: list[str]) -> np.ndarray:
        status, _, body = server.post("/v1/embeddings", {"input": texts})
        assert status == 200, body
        return np.array([d["embedding"] for d in body["data"]])

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(call, requests))
    for texts, got in zip(requests, answers, strict=True):
        np.testing.assert_allclose(got, encoder.encode(texts), atol=1e-6)
    _, text = server.get("/metrics")
    # Batched across requests: some graph runs held more texts than any one request.
    buckets = {
        line.split('le="')[1].split('"')[0]: int(line.rsplit(" ", 1)[1])
        for line in text.decode().splitlines()
        if line.startswith("gist_onnx_batch_texts_bucket")
    }
    assert buckets["+Inf"] > buckets["2"], buckets


def test_the_api_key_guards_every_route_but_health_and_metrics(exported: Path) -> None:
    secured = Server(exported, "--variant", "int8", "--api-key", "sk-test").start()
    try:
        assert secured.post("/v1/embeddings", {"input": "a"})[0] == 401
        wrong = {"authorization": "Bearer sk-wrong"}
        status, _, body = secured.post("/v1/embeddings", {"input": "a"}, wrong)
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        assert secured.post("/tokenize", {"input": "a"})[0] == 401
        assert secured.request("GET", "/v1/models")[0] == 401
        right = {"authorization": "Bearer sk-test"}
        assert secured.post("/v1/embeddings", {"input": "a"}, right)[0] == 200
        assert secured.get("/health")[0] == 200 and secured.get("/metrics")[0] == 200
    finally:
        secured.stop()


def test_a_body_over_the_limit_is_413(exported: Path) -> None:
    small = Server(exported, "--variant", "int8", "--max-body-bytes", "1000").start()
    try:
        status, _, body = small.post("/v1/embeddings", {"input": ["x" * 2000]})
        assert status == 413 and "larger than this server's limit" in body["error"]["message"]
        assert small.post("/v1/embeddings", {"input": ["ok"]})[0] == 200
    finally:
        small.stop()


def test_a_burst_past_the_queue_gets_429_then_service_resumes(exported: Path) -> None:
    tight = Server(exported, "--variant", "int8", "--max-queue", "8", "--quiet").start()
    try:

        def call(n: int) -> tuple[int, dict[str, str]]:
            texts = [f"{n} {i} {LONG}" for i in range(4)]  # new texts: the cache holds none
            status, headers, _ = tight.post("/v1/embeddings", {"input": texts})
            return status, headers

        with ThreadPoolExecutor(24) as pool:
            results = list(pool.map(call, range(24)))
        statuses = [s for s, _ in results]
        assert statuses.count(429) > 0 and statuses.count(200) > 0, statuses
        assert set(statuses) <= {200, 429}
        assert all(h.get("retry-after") == "1" for s, h in results if s == 429)
        assert tight.post("/v1/embeddings", {"input": ["after the burst"]})[0] == 200
    finally:
        tight.stop()


def test_a_client_that_goes_away_leaves_no_work_behind(exported: Path) -> None:
    lone = Server(exported, "--variant", "int8", "--no-batching").start()
    try:
        # Keep the graph busy, then send a request and hang up while it waits in the queue.
        busy = threading.Thread(
            target=lone.post,
            args=("/v1/embeddings", {"input": [f"{i} {LONG}" for i in range(64)]}),
            daemon=True,
        )
        busy.start()
        time.sleep(0.2)
        body = json.dumps({"input": ["gone"] * 50}).encode()
        with socket.create_connection(("127.0.0.1", lone.port)) as sock:
            sock.sendall(
                b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            time.sleep(0.1)
        busy.join(timeout=60)
        time.sleep(0.3)
        text = lone.get("/metrics")[1].decode()
        assert 'status="499"' in text  # answered as gone, not run
        assert "gist_onnx_texts_total 64\n" in text  # the 50 texts were never embedded
        assert "gist_onnx_queue_texts 0\n" in text
    finally:
        lone.stop()


def test_sigterm_drains_the_requests_in_flight(exported: Path) -> None:
    draining = Server(exported, "--variant", "int8", "--no-batching").start()
    results: list[int] = []

    def call(n: int) -> None:
        texts = [f"{n} {i} {LONG}" for i in range(16)]  # new texts: the cache holds none
        results.append(draining.post("/v1/embeddings", {"input": texts})[0])

    callers = [threading.Thread(target=call, args=(n,)) for n in range(4)]
    for caller in callers:
        caller.start()
    time.sleep(0.3)  # all four sent; the graph works through them one by one
    assert draining.proc is not None
    draining.proc.send_signal(signal.SIGTERM)
    for caller in callers:
        caller.join(timeout=60)
    assert results == [200, 200, 200, 200]
    # Then it exits: uvicorn re-raises the signal once drained, so the status says SIGTERM.
    assert draining.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    with pytest.raises(OSError):
        draining.get("/health")
    log = draining.stop()
    assert log.count('"status":200') == 4  # one access-log line per request


def test_one_start_up_line_says_where_and_what(server: Server) -> None:
    line = next(json.loads(text) for text in server.output().splitlines() if '"listening"' in text)
    assert line["url"] == server.url
    assert (line["variant"], line["provider"]) == ("int8", "CPUExecutionProvider")
    assert line["limits"]["max_inputs"] == 64 and line["threads"] >= 1
    assert line["model"] and line["source"]
    # Which int8 form runs on this CPU, and why.
    from gist_onnx.device import choose_int8_form, cpu_info

    chosen = choose_int8_form(cpu_info())
    assert (line["int8_form"], line["int8_form_reason"]) == (chosen.form, chosen.reason)
    assert line["cpu"] == cpu_info().model and line["cpu_flags"] == cpu_info().features


def test_a_port_in_use_fails_at_once_before_the_model_loads(tmp_path: Path) -> None:
    """The address is taken first: the clash is reported in a second, not after a model load
    (here there is no model at all, and the port is what the error names)."""
    import subprocess
    import sys

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "gist_onnx.cli", "serve", "--model", str(tmp_path / "none"),
             "--port", str(port)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert f"Cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert time.monotonic() - started < 30
