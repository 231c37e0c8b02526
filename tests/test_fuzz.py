"""Fuzzing tier: generated inputs against the ways in, each hunting a class of fault.

- the server: schemathesis drives a real ``gist-onnx serve`` from the /openapi.json it publishes,
  valid and invalid requests, with every check on (no 5xx, statuses and bodies as documented,
  invalid requests refused, valid ones taken);
- the Lambda handler: event shapes of every kind (HTTP payload 1.0 and 2.0, direct invocation,
  wrong types at every level, bodies of any JSON or none) must get an answer, never a crash, and
  no 500 for the caller's mistakes;
- ``embed``'s readers: generated txt, jsonl and csv files, with quotes, newlines, lone ``\\r``,
  bytes that are not UTF-8 and blank rows; every row comes back with the id of the line it
  starts on, its text as written, or as a bad row: never an exception, never a shifted id;
- scripts in the web tier: texts mixing Greek, Cherokee, Georgian, Turkish I, letters and
  ideographs past U+FFFF, combining marks, controls and emoji get Python's token ids from the
  web folder's tokenizer in transformers.js (one Node.js process answers them all);
- connection timing: SIGTERM at any moment against kept-alive clients at any pace and clients
  halfway through a request head; every request written is answered, none meets a reset.

Example counts are fixed and seeds derandomized, so the tier is bounded (well under a minute on
two cores) and a failure replays.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gist_onnx.embed import BadRow, read_rows
from gist_onnx.serverless import function as serverless
from tests.support.tiny import write_tiny_model

pytestmark = pytest.mark.fuzz

BOUNDED = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("fuzz") / "model")


# ------------------------------------------------------------------------------ the server


def test_the_server_keeps_its_published_schema_under_schemathesis(tiny: Path) -> None:
    pytest.importorskip("schemathesis", reason="the dev extra")
    from tests.support.serverproc import Server

    server = Server(tiny, "--max-inputs", "16", "--quiet").start()
    try:
        proc = subprocess.run(
            [
                sys.executable, "-m", "schemathesis.cli",
                "--config-file", str(Path(__file__).with_name("schemathesis.toml")),
                "run", f"{server.url}/openapi.json",
                "--checks", "all", "--max-examples", "60", "--seed", "7", "--no-color",
            ],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    finally:
        log = server.stop()
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "No issues found" in proc.stdout
    assert "internal error" not in log  # nothing reached the catch-all 500


# ------------------------------------------------------------------------ the Lambda handler

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
ANYTHING = JSON | st.just([]) | st.just({})
REQUEST = st.fixed_dictionaries(
    {"input": st.one_of(st.text(max_size=30), st.lists(st.text(max_size=30), max_size=5), JSON)},
    optional={
        "encoding_format": st.sampled_from(["float", "base64", None, "hex", 1]),
        "dimensions": st.sampled_from([4, 5, None, "4", True]),
        "model": st.one_of(st.text(max_size=5), JSON),
        "user": JSON,
    },
)
BODY = st.one_of(
    REQUEST.map(json.dumps),
    JSON.map(json.dumps),
    st.text(max_size=40),
    st.integers(1, 3000).map(lambda n: "[" * n),
    st.none(),
    ANYTHING,
)
HTTP_EVENT = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from(["2.0", "1.0", None]),
        "routeKey": st.sampled_from(["$default", "POST /", None]),
        "requestContext": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "http": st.one_of(
                        st.fixed_dictionaries(
                            {},
                            optional={"method": st.sampled_from(["POST", "GET", "post", 5, None])},
                        ),
                        ANYTHING,
                    )
                },
            ),
            ANYTHING,
        ),
        "httpMethod": st.one_of(st.sampled_from(["POST", "PUT"]), ANYTHING),
        "headers": st.one_of(
            st.dictionaries(
                st.sampled_from(["authorization", "Content-Type", "x"]), st.text(max_size=12)
            ),
            ANYTHING,
        ),
        "body": BODY,
        "isBase64Encoded": st.one_of(st.booleans(), ANYTHING),
    },
).filter(lambda e: bool({"requestContext", "httpMethod", "routeKey"} & set(e)))


@pytest.fixture
def handler_model(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("GIST_ONNX_MODEL", str(tiny))
    for name in (
        "GIST_ONNX_API_KEY",
        "GIST_ONNX_VARIANT",
        "GIST_ONNX_MODEL_NAME",
        "GIST_ONNX_THREADS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(serverless, "_encoder", None)
    serverless.get_encoder()
    yield tiny


CALLERS_MISTAKES = {400, 405, 413}


@BOUNDED
@given(event=HTTP_EVENT)
def test_any_http_event_gets_an_answer_and_never_a_500(
    handler_model: Path, event: dict[str, Any]
) -> None:
    result = serverless.handler(event, None)
    assert result["statusCode"] in {200} | CALLERS_MISTAKES, result
    body = json.loads(result["body"])
    if result["statusCode"] == 200:
        assert body["object"] == "list" and body["data"]
    else:
        assert body["error"]["message"]


@BOUNDED
@given(event=st.one_of(REQUEST, ANYTHING))
def test_any_direct_invocation_gets_an_answer_and_never_a_500(
    handler_model: Path, event: Any
) -> None:
    result = serverless.handler(event, None)
    assert isinstance(result, dict)
    assert result.get("status", 200) in {200} | CALLERS_MISTAKES, result
    json.dumps(result)  # what the runtime sends back must serialize


# ---------------------------------------------------------------------------- embed's readers

# Texts with what breaks line counting and decoding: quotes, commas, \n, a lone \r, \r\n, tabs,
# BOMs, and lone surrogates (standing in for bytes that are not UTF-8 once written).
PIECES = st.sampled_from(['"', ",", "\n", "\r", "\r\n", "\t", " ", "\ufeff", "é", "中", "\udcff"])
FIELD = st.lists(st.one_of(st.text("abc xyz", min_size=1, max_size=5), PIECES), max_size=6).map(
    "".join
)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")  # \udcff becomes the byte 0xff


def _expected(text: str) -> str | None:
    """The text ``read_rows`` must give back, or None where it must give a bad row."""
    if not text.strip() or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return None
    return text


@BOUNDED
@given(records=st.lists(FIELD, max_size=12))
def test_csv_rows_come_back_with_the_line_they_start_on(records: list[str]) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(["text"])
    starts, line = [], 2
    for record in records:
        starts.append(line)
        before = out.tell()
        writer.writerow([record])
        line += out.getvalue()[before:].count("\n")  # the lines this record spans, as wc -l counts
    rows = list(read_rows(io.BytesIO(_encode(out.getvalue())), "csv", "text"))
    assert [number for number, _ in rows] == starts
    for (number, value), record in zip(rows, records, strict=True):
        expected = _expected(record)
        if expected is None:
            assert isinstance(value, BadRow) and value.line == number
        else:
            assert value == expected


@BOUNDED
@given(lines=st.lists(st.one_of(FIELD, st.just("")), max_size=12))
def test_txt_and_jsonl_rows_are_numbered_as_wc_counts_lines(lines: list[str]) -> None:
    # txt: a text cannot hold \n (it ends the line), so those pieces split it into more lines.
    data = _encode("\n".join(lines) + "\n")
    raw_lines = data.split(b"\n")[:-1]
    rows = list(read_rows(io.BytesIO(data), "txt", "text"))
    assert [n for n, _ in rows] == list(range(1, len(raw_lines) + 1))
    for (number, value), raw in zip(rows, raw_lines, strict=True):
        text = raw.removesuffix(b"\r").decode("utf-8", "surrogateescape")
        if number == 1:
            text = text.removeprefix("\ufeff")
        expected = _expected(text)
        assert value == expected if expected is not None else isinstance(value, BadRow)
    # jsonl: each text in a JSON record of its own line; \n inside is escaped by json.dumps.
    data = b"".join(_encode(json.dumps({"text": t}, ensure_ascii=False)) + b"\n" for t in lines)
    rows = list(read_rows(io.BytesIO(data), "jsonl", "text"))
    assert [n for n, _ in rows] == list(range(1, len(lines) + 1))
    for (_, value), text in zip(rows, lines, strict=True):
        expected = _expected(text)
        assert value == expected if expected is not None else isinstance(value, BadRow)


@BOUNDED
@given(data=st.binary(max_size=400), fmt=st.sampled_from(["txt", "jsonl", "csv"]))
def test_any_bytes_are_rows_or_bad_rows_never_an_exception(data: bytes, fmt: str) -> None:
    source = b"text\n" + data if fmt == "csv" else data
    rows = list(read_rows(io.BytesIO(source), fmt, "text"))
    numbers = [n for n, _ in rows]
    assert numbers == sorted(set(numbers))  # increasing, one row a line at most
    assert all(1 <= n <= source.count(b"\n") + 1 for n in numbers)
    for number, value in rows:
        assert isinstance(value, str) or (isinstance(value, BadRow) and value.line == number)


@BOUNDED
@given(
    records=st.lists(st.from_regex(r"[a-z][a-z ]{0,15}", fullmatch=True), min_size=1, max_size=20),
    broken=st.integers(min_value=0),
    how=st.sampled_from(['"{}', '"{}" tail', "{}, more"]),
)
def test_one_malformed_csv_row_is_bad_and_every_other_row_comes_back(
    records: list[str], broken: int, how: str
) -> None:
    """A quote never closed, text after a closing quote, an unquoted comma: that row is a bad
    row with its line, and every other row comes back as written, at its own line."""
    at = broken % len(records)
    lines = list(records)
    lines[at] = how.format(records[at])
    data = ("text\n" + "\n".join(lines) + "\n").encode()
    rows = list(read_rows(io.BytesIO(data), "csv", "text"))
    bad = [n for n, value in rows if isinstance(value, BadRow)]
    good = [(n, value) for n, value in rows if not isinstance(value, BadRow)]
    assert bad == [at + 2]
    expected = [(i + 2, r) for i, r in enumerate(records) if i != at and r.strip()]
    assert good == expected


# ------------------------------------------------------------------------ /metrics' labels


@BOUNDED
@given(paths=st.lists(st.text(min_size=1, max_size=30), max_size=30))
def test_any_paths_leave_metrics_parsable_and_bounded(paths: list[str]) -> None:
    """Whatever paths clients send, the page stays in Prometheus' text format and holds one
    label for all the unknown ones."""
    import re

    pytest.importorskip("starlette", reason="the server extra")
    from gist_onnx.serve.metrics import Metrics

    metrics = Metrics(routes=frozenset({"/v1/embeddings", "/health"}))
    metrics.observe_request("/health", 200, 0.001)
    for path in paths:
        metrics.observe_request("/" + path, 404, 0.001)
    page = metrics.render()
    labels = set(re.findall(r'route="((?:[^"\\]|\\.)*)"', page))
    assert labels <= {"/v1/embeddings", "/health", "other"}
    sample = r'[a-z_]+(\{([a-z_]+="([^"\\\n]|\\.)*",?)*\})? [0-9.e+-]+'
    for line in page.splitlines():
        assert line.startswith("#") or re.fullmatch(sample, line), line


# ------------------------------------------------------------------ the async lifecycles

STEP = st.sampled_from(["submit", "submit same", "cancel first", "close", "sleep"])


@settings(max_examples=40, deadline=None, derandomize=True)
@given(steps=st.lists(STEP, min_size=1, max_size=12))
def test_any_async_lifecycle_answers_or_cancels_every_caller(tiny: Path, steps: list[str]) -> None:
    """Callers submitting (the same text or new ones), cancelling and closing in any order: every
    caller ends answered with encode's vector, cancelled, or refused as closed; nothing hangs,
    and the queue counts nobody who has gone."""
    import asyncio

    from gist_onnx import AsyncGistEncoder, GistEncoder, GistOnnxError

    encoder = GistEncoder(tiny, cache=True)
    expected = {t: encoder.encode([t])[0] for t in ("hello world", "the cat")}

    async def main() -> None:
        shared = AsyncGistEncoder(encoder, max_queue_texts=64)
        futures: list[asyncio.Future[Any]] = []
        closed = False
        for step in steps:
            if step.startswith("submit"):
                text = "hello world" if step == "submit same" else "the cat"
                # After a close, the call is refused as closed: its future holds the error.
                futures.append(asyncio.ensure_future(shared.encode([text])))
            elif step == "cancel first" and futures:
                futures[0].cancel()
            elif step == "close":
                await shared.aclose()
                closed = True
            await asyncio.sleep(0 if step != "sleep" else 0.01)
        done, pending = await asyncio.wait(futures, timeout=10) if futures else (set(), set())
        assert not pending, "a caller was left waiting"
        for future in done:
            if future.cancelled():
                continue
            error = future.exception()
            if error is not None:
                assert isinstance(error, GistOnnxError) and "closed" in str(error)
                continue
            vector = future.result()[0]
            assert any(np.array_equal(vector, v) for v in expected.values())
        if not closed:
            await shared.aclose()
        assert shared.pending_texts == 0

    asyncio.run(main())


# ------------------------------------------------------------------- connection timing

TIMING = st.fixed_dictionaries(
    {
        "drain_delay": st.sampled_from(["0", "0.3"]),
        "sigterm_after": st.floats(0.0, 0.5),
        # per kept-alive client, the pauses between its requests (each under the server's grace)
        "gaps": st.lists(
            st.lists(st.floats(0.0, 0.3), min_size=1, max_size=8), min_size=1, max_size=5
        ),
        # per client that has begun a request head when SIGTERM comes, when it sends the rest
        "heads": st.lists(st.floats(0.0, 0.5), max_size=3),
    }
)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(timing=TIMING)
def test_any_timing_of_sigterm_answers_every_request_a_client_wrote(
    tiny: Path, timing: dict[str, Any]
) -> None:
    """Kept-alive clients sending at any pace and clients halfway through a request head, while
    SIGTERM comes at any moment (with or without a drain delay): every request written is
    answered, and an answer that closes its connection says so first. No client meets a reset,
    a pipe broken under its request, or a connection closed without an answer."""
    import http.client
    import signal
    import socket
    import threading
    import time

    from tests.support.serverproc import Server

    server = Server(tiny, "--quiet", "--drain-delay", timing["drain_delay"]).start()
    faults: list[str] = []
    body = b'{"input": ["kept alive"]}'

    def kept_alive(gaps: list[float]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
        connection.connect()  # before SIGTERM: a kept connection, not a new one racing the close
        try:
            talk(connection, gaps)
        finally:
            connection.close()

    def talk(connection: http.client.HTTPConnection, gaps: list[float]) -> None:
        for number, gap in enumerate([0.0, *gaps, *[0.3] * 40]):  # on until the server closes it
            time.sleep(gap)
            try:
                connection.request(
                    "POST", "/v1/embeddings", body, {"content-type": "application/json"}
                )
                answer = connection.getresponse()
                answer.read()
            except OSError as exc:
                faults.append(f"request {number}: {type(exc).__name__}: {exc}")
                return
            except http.client.HTTPException as exc:
                faults.append(f"request {number}: {type(exc).__name__}: {exc}")
                return
            if answer.status != 200:
                faults.append(f"request {number}: status {answer.status}")
            if answer.getheader("connection") == "close":
                return  # the server said it closes: a pooled client opens another elsewhere
        faults.append("never told to close")

    def half_a_head(delay: float, begun: socket.socket) -> None:
        with begun:
            finish(delay, begun)

    def finish(delay: float, begun: socket.socket) -> None:
        time.sleep(delay)
        try:
            begun.sendall(
                b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body
            )
            reply = b""
            while chunk := begun.recv(65536):
                reply += chunk
        except OSError as exc:
            faults.append(f"half a head: {type(exc).__name__}: {exc}")
            return
        if not reply.startswith(b"HTTP/1.1 200"):
            faults.append(f"half a head: {reply[:60]!r}")

    try:
        assert server.proc is not None
        threads = [threading.Thread(target=kept_alive, args=(g,)) for g in timing["gaps"]]
        for delay in timing["heads"]:
            begun = socket.create_connection(("127.0.0.1", server.port), timeout=20)
            begun.sendall(b"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\n")
            threads.append(threading.Thread(target=half_a_head, args=(delay, begun)))
        for thread in threads:
            thread.start()
        time.sleep(timing["sigterm_after"])
        if timing["heads"]:
            time.sleep(0.1)  # the heads' first halves are read before SIGTERM
        server.proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=60)
        assert server.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        server.stop()
    assert not faults, faults


# ------------------------------------------------------------------- scripts in the web tier

# Characters where JavaScript's and the Rust tokenizer's Unicode handling can part: case
# mappings with context or to several characters, letters past U+FFFF, ideographs of every CJK
# block, combining marks the normalizer strips, whitespace and controls it cleans, and symbols.
SCRIPT_CHARS = (
    "ΑΒΓΔΣσςΩάΐΰ"  # Greek, sigma in its three forms
    "АБЖЯжяЁё"  # Cyrillic
    "ԱԲՁաբձև"  # Armenian (a ligature)
    "ႠႡᲐᲑაბ"  # Georgian, Mtavruli capitals lowercase to Mkhedruli
    "ᎠᎡᏴꭰꭱ"  # Cherokee, whose small letters are the later ones
    "İıŞşÇç"  # Turkish dotted and dotless I
    "ßẞǅǈǋﬁﬀŉ"  # letters that case-map to several or to titlecase
    "ＡＢａｂ１２"  # fullwidth  # noqa: RUF001
    "ⅫⅻⒶⓐ"  # Roman numerals, circled letters
    "𐐀𐐨𐓀𐓘𞤀𞤢"  # Deseret, Osage, Adlam: cased letters past U+FFFF
    "中文漢字𠀀𠀁𪜀𫝀𬀀𰀀豈兀丽"  # CJK, extensions B to G, compatibility ideographs
    "가나ㄱ"  # Hangul
    "ไทยक्षि"  # Thai, Devanagari with combining signs
    "e\u0301a\u0308\u064e\u05b7\ufe0f\u200d\u200b"  # combining marks, joiners
    " \t\n\u00a0\u2028\u3000\u0085\x00\x1f\ufffd"  # whitespace and controls
    "。、，！？«»“”—…"  # punctuation of other scripts  # noqa: RUF001
    "€£¥©®™±√∞"  # symbols
    "🙂👍🏽🇫🇷"  # emoji
    "aZ09.,'-"
)


@pytest.fixture(scope="module")
def web_tokens(tmp_path_factory: pytest.TempPathFactory, stand_in_dir: Path) -> Iterator[Any]:
    """Ask transformers.js (in one Node.js process) for the web folder tokenizer's ids."""
    from gist_onnx.export.web import tokenizer_files
    from gist_onnx.model.configs import read_config
    from tests.support.nodejs import JS, node_modules

    node_modules()
    folder = tmp_path_factory.mktemp("web-tokens")
    (folder / "web").mkdir()
    tokenizer_files(stand_in_dir, folder / "web", read_config(stand_in_dir))
    node = subprocess.Popen(
        ["node", str(JS / "web_tokens.mjs"), str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    assert node.stdin is not None and node.stdout is not None
    assert node.stdout.readline() == "ready\n"

    def ask(text: str) -> list[int]:
        assert node.stdin is not None and node.stdout is not None
        node.stdin.write(json.dumps(text) + "\n")
        node.stdin.flush()
        return list(json.loads(node.stdout.readline()))

    yield ask
    node.stdin.close()
    node.wait(timeout=30)
    node.stdout.close()


@settings(max_examples=400, deadline=None, derandomize=True)
@given(text=st.text(alphabet=st.sampled_from(SCRIPT_CHARS), max_size=40))
def test_any_script_gets_pythons_tokens_from_the_web_folder(
    web_tokens: Any, stand_in_dir: Path, text: str
) -> None:
    """Whatever mix of scripts, case mappings, marks and whitespace a text holds, transformers.js
    reading the web folder's tokenizer gives the ids gist-onnx gives in Python."""
    from gist_onnx.model.configs import read_config
    from gist_onnx.tokenizer import load_tokenizer

    config = read_config(stand_in_dir)
    python = load_tokenizer(
        stand_in_dir, max_length=config.max_seq_length, do_lower_case=config.do_lower_case
    )
    assert web_tokens(text) == python.tokenize([text])[0].ids, ascii(text)
