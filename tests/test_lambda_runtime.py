"""Model tier: the handler's real invocation loop, through the AWS Lambda runtime interface
client (``awslambdaric``, what Lambda's Python images run) against a fake Runtime API on the
loopback interface: init, several invocations, bad input, vectors equal to ``encode``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gist_onnx import GistEncoder
from tests.support.fakelambda import FakeRuntimeApi

pytestmark = pytest.mark.model
pytest.importorskip("awslambdaric", reason="the runtime interface client comes with the dev extra")


@pytest.fixture
def runtime(exported: Path, tmp_path: Path) -> Iterator[FakeRuntimeApi]:
    api = FakeRuntimeApi()
    env = {
        **os.environ,
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "GIST_ONNX_MODEL": str(exported),
        "GIST_ONNX_VARIANT": "int8",
        "LAMBDA_TASK_ROOT": str(tmp_path),
        "AWS_LAMBDA_FUNCTION_NAME": "gist-onnx",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "awslambdaric", "gist_onnx.serverless.handler"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield api
    finally:
        proc.kill()
        output = proc.communicate(timeout=30)[0]
        api.close()
        assert not api.init_errors, output


def function_url(body: object) -> dict[str, object]:
    event = json.loads((Path(__file__).parent / "events" / "function_url.json").read_text())
    event["body"] = json.dumps(body)
    return event


def test_invocation_loop_through_the_runtime_client(
    runtime: FakeRuntimeApi, exported: Path
) -> None:
    texts = ["What is the capital of France?", "Paris is the capital of France.", "bread"]
    encoder = GistEncoder(exported, variant="int8")
    expected = encoder.encode(texts)

    ids = [
        runtime.invoke(function_url({"input": texts})),
        runtime.invoke({"input": texts[0], "encoding_format": "base64"}),
        runtime.invoke(function_url({"input": [1, 2]})),
        runtime.invoke(function_url({"input": texts[1:]})),
    ]
    kinds = [runtime.result(i) for i in ids]
    assert [k for k, _ in kinds] == ["response"] * 4

    first = kinds[0][1]
    assert first["statusCode"] == 200
    body = json.loads(first["body"])
    np.testing.assert_allclose([d["embedding"] for d in body["data"]], expected, atol=1e-6)
    assert body["usage"]["prompt_tokens"] == int(encoder.count_tokens(texts).sum())

    direct = kinds[1][1]
    vector = np.frombuffer(base64.b64decode(direct["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vector, expected[0], atol=1e-6)

    bad = kinds[2][1]
    assert bad["statusCode"] == 400
    assert "'input[0]' must be a string" in json.loads(bad["body"])["error"]["message"]

    last = json.loads(kinds[3][1]["body"])
    np.testing.assert_allclose([d["embedding"] for d in last["data"]], expected[1:], atol=1e-6)
    # One process served them all, polling for the next event after each answer.
    assert runtime.polls >= 4
