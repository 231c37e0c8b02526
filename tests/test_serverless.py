"""Unit tier: the Lambda handler on recorded event shapes, with the tiny model.

The OpenAI request and response shapes, base64 bodies and vectors, token usage, every error
status, the 6 MB limit, the API key.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gist_onnx import GistEncoder, ModelConfigError, wire
from gist_onnx.serverless import function as serverless
from tests.support.tiny import DIM, write_tiny_model

EVENTS = Path(__file__).resolve().parent / "events"
HTTP_EVENTS = ["function_url.json", "apigw_rest_v1.json", "http_api_v1.json"]
TEXTS = ["hello world", "the cat sat on the mat", "sat"]


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = write_tiny_model(tmp_path / "model")
    monkeypatch.setenv("GIST_ONNX_MODEL", str(folder))
    for name in ("GIST_ONNX_API_KEY", "GIST_ONNX_VARIANT", "GIST_ONNX_MODEL_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(serverless, "_encoder", None)
    yield folder


def http_event(name: str, body: Any, *, base64_body: bool = False) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    text = body if isinstance(body, str) else json.dumps(body)
    if base64_body:
        event["body"] = base64.b64encode(text.encode()).decode()
        event["isBase64Encoded"] = True
    else:
        event["body"] = text
    return event


def call_http(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    result = serverless.handler(event, None)
    assert result["headers"]["content-type"] == "application/json"
    assert isinstance(result["body"], str)
    return result["statusCode"], json.loads(result["body"])


@pytest.mark.parametrize("name", HTTP_EVENTS)
@pytest.mark.parametrize("base64_body", [False, True])
def test_http_events_get_openai_responses(model: Path, name: str, base64_body: bool) -> None:
    status, body = call_http(
        http_event(name, {"input": TEXTS, "model": "x"}, base64_body=base64_body)
    )
    assert status == 200
    expected = GistEncoder(model).encode(TEXTS)
    assert body["object"] == "list"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" for d in body["data"])
    np.testing.assert_allclose([d["embedding"] for d in body["data"]], expected, atol=1e-7)
    # Real token counts: [CLS] hello world [SEP] = 4; the next is cut at max_seq_length 6; 3.
    assert body["usage"] == {"prompt_tokens": 4 + 6 + 3, "total_tokens": 13}
    assert body["model"] == "model"  # the folder's name: a tiny model has no manifest


def test_an_empty_text_is_refused_as_openai_does(model: Path) -> None:
    status, body = call_http(http_event("function_url.json", {"input": ["a", ""]}))
    assert status == 400
    assert (body["error"]["code"], body["error"]["param"]) == ("empty_input", "input[1]")


def test_direct_invocation_and_base64_vectors(model: Path) -> None:
    body = serverless.handler({"input": "hello world", "encoding_format": "base64"}, None)
    expected = GistEncoder(model).encode(["hello world"])[0]
    vector = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(vector, expected)
    assert body["usage"]["prompt_tokens"] == 4


def test_the_encoder_is_made_once_per_environment(model: Path) -> None:
    serverless.handler({"input": "a"}, None)
    first = serverless._encoder
    serverless.handler({"input": "b"}, None)
    assert serverless._encoder is first


@pytest.mark.parametrize(
    ("payload", "param", "message"),
    [
        ({}, "input", "'input' is required"),
        ({"input": []}, "input", "empty list"),
        ({"input": 3}, "input", "got a number"),
        ({"input": ["ok", None]}, "input[1]", "'input[1]' must be a string, got null"),
        ({"input": [[101, 102]]}, "input[0]", "Token ids are not accepted"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format", "'float' or 'base64'"),
        ({"input": "x", "dimensions": 2}, "dimensions", "not a Matryoshka model"),
        ({"input": "x", "model": 5}, "model", "'model' must be a string"),
    ],
)
def test_bad_requests_are_400_naming_the_field(
    model: Path, payload: dict[str, Any], param: str, message: str
) -> None:
    status, body = call_http(http_event("function_url.json", payload))
    assert status == 400
    assert body["error"]["param"] == param
    assert message in body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error"
    direct = serverless.handler(payload, None)
    assert direct["status"] == 400 and direct["error"]["param"] == param


def test_dimensions_equal_to_the_model_is_accepted(model: Path) -> None:
    assert serverless.handler({"input": "x", "dimensions": DIM}, None)["data"][0]["index"] == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("", "has no body"),
    ],
)
def test_malformed_bodies_are_400(model: Path, body: str, message: str) -> None:
    status, answer = call_http(http_event("function_url.json", body))
    assert status == 400
    assert message in answer["error"]["message"]


def test_a_text_that_is_not_unicode_is_400_with_its_index(model: Path) -> None:
    # JSON can carry a lone surrogate; the tokenizer cannot take it.
    status, body = call_http(http_event("function_url.json", '{"input": ["ok", "bad\\udc80"]}'))
    assert status == 400
    assert "Text 1 is not valid Unicode" in body["error"]["message"]


def test_other_methods_are_405(model: Path) -> None:
    event = http_event("function_url.json", {"input": "x"})
    event["requestContext"]["http"]["method"] = "GET"
    result = serverless.handler(event, None)
    assert result["statusCode"] == 405 and result["headers"]["allow"] == "POST"
    rest = http_event("apigw_rest_v1.json", {"input": "x"})
    rest["httpMethod"] = "PUT"
    assert serverless.handler(rest, None)["statusCode"] == 405


def test_a_response_over_the_limit_is_refused_up_front(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = GistEncoder.encode

    def counting(self: GistEncoder, texts: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(texts))
        return original(self, texts, *args, **kwargs)

    monkeypatch.setattr(GistEncoder, "encode", counting)
    with_counts = GistEncoder.encode_with_token_counts

    def counting_both(self: GistEncoder, texts: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(texts))
        return with_counts(self, texts, *args, **kwargs)

    monkeypatch.setattr(GistEncoder, "encode_with_token_counts", counting_both)
    limit = serverless.RESPONSE_LIMIT_BYTES - serverless.ENVELOPE_ROOM
    assert serverless.LIMITS.max_response_bytes == limit
    # The tiny model's vectors are short: a smaller response limit brings the bound below the
    # count limit (2048), as Lambda's 6 MB does for the 384-dimension model.
    limit = 20_000
    monkeypatch.setattr(
        serverless, "LIMITS", wire.Limits(max_body_bytes=limit * 8, max_response_bytes=limit)
    )
    fit = wire.max_inputs_within(limit, DIM, "float")
    assert fit < serverless.LIMITS.max_inputs
    status, body = call_http(http_event("function_url.json", {"input": ["hello"] * (fit + 1)}))
    assert status == 413
    assert f"at most {fit} inputs" in body["error"]["message"]
    assert "base64" in body["error"]["message"]
    assert calls == []  # refused before any encoding
    status, body = call_http(http_event("function_url.json", {"input": ["hello"] * fit}))
    assert status == 200 and len(body["data"]) == fit


def test_the_servers_request_limits_hold_in_lambda_too(model: Path) -> None:
    """One Limits: the count and length limits of ``gist-onnx serve``'s defaults."""
    limits = serverless.LIMITS
    status, body = call_http(
        http_event("function_url.json", {"input": ["a"] * (limits.max_inputs + 1)})
    )
    assert status == 413 and f"at most {limits.max_inputs}" in body["error"]["message"]
    status, body = call_http(
        http_event("function_url.json", {"input": ["ok", "a" * (limits.max_chars + 1)]})
    )
    assert status == 413 and body["error"]["param"] == "input[1]"


def test_the_size_bound_holds_for_real_vectors(model: Path) -> None:
    vectors = np.random.default_rng(0).normal(size=(50, 384)).astype(np.float32) * 1e-5
    for fmt in wire.ENCODING_FORMATS:
        text = wire.dumps(wire.response(vectors, [300] * 50, model="m" * 100, encoding_format=fmt))
        assert len(text.encode()) <= wire.response_bytes_bound(50, 384, fmt)


def test_the_api_key_is_enforced_when_set(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIST_ONNX_API_KEY", "sk-test")
    event = http_event("function_url.json", {"input": "x"})
    assert call_http(event)[0] == 200
    wrong = copy.deepcopy(event)
    wrong["headers"]["authorization"] = "Bearer sk-other"
    status, body = call_http(wrong)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    del wrong["headers"]["authorization"]
    assert call_http(wrong)[0] == 401
    wrong["headers"]["authorization"] = "Bearer clé"  # non-ASCII: still a 401, not a 500
    assert call_http(wrong)[0] == 401


def test_a_missing_model_is_a_500_that_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serverless, "_encoder", None)
    monkeypatch.setenv("GIST_ONNX_MODEL", str(tmp_path / "nowhere"))
    status, body = call_http(http_event("function_url.json", {"input": "x"}))
    assert status == 500
    assert "does not exist" in body["error"]["message"]
    monkeypatch.delenv("GIST_ONNX_MODEL")
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(tmp_path))
    status, body = call_http(http_event("function_url.json", {"input": "x"}))
    assert status == 500 and "GIST_ONNX_MODEL" in body["error"]["message"]


def test_the_bundle_layout_is_found_without_configuration(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GIST_ONNX_MODEL")
    (tmp_path / "task").mkdir()
    model.rename(tmp_path / "task" / "model")
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(tmp_path / "task"))
    assert serverless.model_folder() == tmp_path / "task" / "model"


# ------------------------------------------------------------------------------------ edges


def _malformed(name: str, change: dict[str, Any]) -> dict[str, Any]:
    event = http_event(name, {"input": "hello"})
    event.update(change)
    return event


@pytest.mark.parametrize(
    ("name", "change", "field"),
    [
        ("function_url.json", {"requestContext": "x"}, "'requestContext' must be an object"),
        ("function_url.json", {"requestContext": {"http": "x"}}, "'http' must be an object"),
        ("function_url.json", {"requestContext": {"http": {"method": 5}}}, "method must be"),
        ("function_url.json", {"headers": ["a", "b"]}, "'headers' must be an object"),
        ("function_url.json", {"headers": "authorization"}, "'headers' must be an object"),
        ("function_url.json", {"isBase64Encoded": "yes"}, "'isBase64Encoded' must be true"),
        ("apigw_rest_v1.json", {"httpMethod": ["POST"]}, "'httpMethod' must be a string"),
        ("function_url.json", {"requestContext": [1]}, "'requestContext' must be an object"),
    ],
)
def test_malformed_events_are_the_callers_400(
    model: Path, name: str, change: dict[str, Any], field: str
) -> None:
    status, body = call_http(_malformed(name, change))
    assert status == 400, body
    assert field in body["error"]["message"]


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_a_deeply_nested_body_is_a_400_as_the_server_answers_it(model: Path, depth: int) -> None:
    status, body = call_http(http_event("function_url.json", "[" * depth + "]" * depth))
    assert status == 400
    assert "must be a JSON object" in body["error"]["message"] or "too deeply" in str(body)
    status, body = call_http(http_event("function_url.json", '{"input": ' + "[" * depth))
    assert status == 400


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5", "1e3"])
def test_a_bad_thread_count_fails_at_init_with_one_clear_message(
    model: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("GIST_ONNX_THREADS", value)
    with pytest.raises(
        ModelConfigError, match=f"GIST_ONNX_THREADS must be a positive integer .* got '{value}'"
    ):
        serverless.get_encoder()
    status, body = call_http(http_event("function_url.json", {"input": "hello"}))
    assert status == 500 and "GIST_ONNX_THREADS" in body["error"]["message"]
    monkeypatch.setenv("GIST_ONNX_THREADS", "1")
    assert call_http(http_event("function_url.json", {"input": "hello"}))[0] == 200


def test_the_handler_runs_here_from_the_command_line(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m gist_onnx.serverless --event FILE`` answers as Lambda would, exit 0 on 200."""
    from gist_onnx.serverless.__main__ import main

    event = tmp_path / "event.json"
    event.write_text(json.dumps({"input": ["a text", "another"]}))
    assert main(["--model", str(model), "--event", str(event)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert len(answer["data"]) == 2
    event.write_text(json.dumps({"input": []}))
    assert main(["--model", str(model), "--event", str(event)]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == 400
    assert main(["--event", str(tmp_path / "missing.json")]) == 2


def test_a_key_read_from_a_file_with_its_newline_still_opens(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key from a secret file ends in a newline no client sends: it is dropped at start. A key
    no request could ever match (whitespace inside, only whitespace) is refused, saying why."""
    monkeypatch.setenv("GIST_ONNX_API_KEY", "sk-test\n")
    event = http_event("function_url.json", {"input": "x"})
    event["headers"]["authorization"] = "Bearer sk-test"
    assert call_http(event)[0] == 200
    for broken, why in (("sk test", "' ' at character 3"), ("  \n", "only whitespace")):
        monkeypatch.setenv("GIST_ONNX_API_KEY", broken)
        status, body = call_http(event)
        assert status == 500 and why in body["error"]["message"], body


def test_the_413_hint_never_points_past_the_count_limit() -> None:
    """With Lambda's 6 MB and 384 dimensions, base64 would fit more inputs than max_inputs
    takes: the hint says what the whole request may hold, never a count refused in turn."""
    limits = serverless.LIMITS
    float_fit = wire.max_inputs_within(limits.max_response_bytes or 0, 384, "float")
    assert wire.max_inputs_within(limits.max_response_bytes or 0, 384, "base64") > limits.max_inputs
    with pytest.raises(wire.RequestError) as refused:
        limits.check_response(float_fit + 1, 384, "float", "Lambda's limit")
    message = str(refused.value)
    numbers = [int(n) for n in re.findall(r"\d+", message.replace(",", ""))]
    assert max(numbers) <= max(limits.max_inputs, float_fit + 1), message
    assert f"({limits.max_inputs} fit then)" in message


def test_callers_arriving_at_once_share_one_model_load(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    monkeypatch.setattr(serverless, "_encoder", None)
    made: list[int] = []
    real_init = GistEncoder.__init__

    def counting(self: GistEncoder, *args: Any, **kwargs: Any) -> None:
        made.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(GistEncoder, "__init__", counting)
    start = threading.Barrier(8)

    def first_call() -> None:
        start.wait()
        serverless.get_encoder()

    threads = [threading.Thread(target=first_call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert made == [1]
