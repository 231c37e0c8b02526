"""Model tier: the official OpenAI JavaScript SDK (npm ``openai``, pinned in tests/js) against a
real ``gist-onnx serve``, run by Node: the same calls as the Python SDK's test, the same vectors as
``encode``, and OpenAI's errors where OpenAI gives them.

Node and npm come with the machine (``make`` does not install them); ``tests/js/node_modules`` is
installed from its lockfile (``npm ci``) on first use. Without Node the test is skipped, saying so.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gist_onnx import GistEncoder
from tests.support.nodejs import JS, node_modules
from tests.support.serverproc import Server

pytestmark = pytest.mark.model
pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[server]'")


def test_the_openai_javascript_sdk_gets_the_vectors_of_encode(exported: Path) -> None:
    node_modules()
    server = Server(exported, "--variant", "int8", "--served-model-name", "gist", "--quiet")
    server.start()
    try:
        done = subprocess.run(
            ["node", str(JS / "conformance.mjs"), f"{server.url}/v1", "gist"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    encoder = GistEncoder(exported, variant="int8")
    texts = ["What is the capital of France?", "bread"]
    expected = encoder.encode(texts)
    assert out["models"] == ["gist"] and out["model"] == "gist"
    np.testing.assert_allclose(out["float"], expected, atol=1e-6)
    # base64 is little-endian float32: the SDK's decoded numbers are the vector's exact floats.
    np.testing.assert_array_equal(np.asarray(out["base64"], dtype=np.float32), expected[:1])
    tokens = int(encoder.count_tokens(texts).sum())
    assert out["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert out["unknown_model"] == {
        "kind": "NotFoundError",
        "status": 404,
        "code": "model_not_found",
        "param": "model",
        "type": "invalid_request_error",
    }
    assert out["empty_input"]["kind"] == "BadRequestError"
    assert (out["empty_input"]["code"], out["empty_input"]["param"]) == ("empty_input", "input[1]")
