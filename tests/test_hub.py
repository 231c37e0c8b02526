"""Model tier: the hub download path, against a local server standing in for the hub.

huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE when it is imported, so each case runs in a
fresh interpreter with its own environment and an empty (or pre-filled) cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gist_onnx import GistEncoder
from gist_onnx.model import DEFAULT_MODEL, GRAPH_COMPANIONS
from tests.support.fakehub import FakeHub

pytestmark = pytest.mark.model

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TEXTS = ["hello world", "a second, somewhat longer text about the weather"]

SCRIPT = """
import json, sys
from gist_onnx import GistEncoder, GistOnnxError
args = json.loads(sys.argv[1])
try:
    enc = GistEncoder(*args["args"], **args["kwargs"])
except GistOnnxError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    raise SystemExit(0)
print(json.dumps({"source": enc.source, "pooling": enc.pooling,
                  "vectors": enc.encode(args["texts"]).tolist()}))
"""


@pytest.fixture(scope="module")
def hub(
    exported: Path, plain_graph_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FakeHub]:
    root = tmp_path_factory.mktemp("hubrepos")
    # The GIST model repo as published: sentence-transformers files, no ONNX graph.
    gist = root / "gist"
    shutil.copytree(exported, gist, ignore=shutil.ignore_patterns("*.onnx", "*manifest*"))
    # The author's ONNX repo: a plain last_hidden_state graph under onnx/.
    companion = root / "companion"
    (companion / "onnx").mkdir(parents=True)
    shutil.copy(plain_graph_dir / "model.onnx", companion / "onnx" / "model.onnx")
    graph_repo, pinned, _ = GRAPH_COMPANIONS[DEFAULT_MODEL]
    server = FakeHub(
        {
            "acme/minilm-onnx": (exported, COMMIT),
            DEFAULT_MODEL: (gist, COMMIT),
            graph_repo: (companion, pinned),
        }
    )
    yield server
    server.close()


def run(
    hub: FakeHub | None, cache: Path, *args: str, offline: bool = False, **kwargs: object
) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_HUB_CACHE"] = str(cache)
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    env["HF_ENDPOINT"] = hub.url if hub else "http://127.0.0.1:9"  # nothing listens on 9
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    payload = json.dumps({"args": list(args), "kwargs": kwargs, "texts": TEXTS})
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, payload],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["stderr"] = proc.stderr
    return result


def test_repo_id_downloads_then_works_offline_from_the_cache(
    hub: FakeHub, exported: Path, tmp_path: Path
) -> None:
    # The u8 x u8 form asked for, so that the files fetched are the same on every CPU.
    hub.requests.clear()
    local = GistEncoder(exported, variant="int8", int8_form="u8u8").encode(TEXTS)
    first = run(hub, tmp_path, "acme/minilm-onnx", variant="int8", int8_form="u8u8")
    assert first["source"] == "acme/minilm-onnx/model_int8.onnx"
    np.testing.assert_allclose(np.array(first["vectors"]), local, atol=1e-6)
    assert any(r.endswith("model_int8.onnx") for r in hub.requests)
    assert not any(r.endswith("/model.onnx") for r in hub.requests), "only the asked graph"
    assert not any("u8s8" in r for r in hub.requests), "only the asked form"
    assert (tmp_path / "models--acme--minilm-onnx").is_dir()

    # Offline, with the server unreachable: the cache alone serves it.
    again = run(None, tmp_path, "acme/minilm-onnx", offline=True, variant="int8", int8_form="u8u8")
    np.testing.assert_allclose(np.array(again["vectors"]), local, atol=1e-6)
    again = run(
        None,
        tmp_path,
        "acme/minilm-onnx",
        variant="int8",
        local_files_only=True,
        int8_form="u8u8",
    )
    np.testing.assert_allclose(np.array(again["vectors"]), local, atol=1e-6)


def test_the_u8s8_form_is_fetched_with_the_weights_it_shares(
    hub: FakeHub, exported: Path, tmp_path: Path
) -> None:
    """Where the CPU takes u8 x s8 products, the hub's u8 x s8 graph runs, with its own weights
    and the ones it reads from the u8 x u8 graph's file."""
    local = GistEncoder(exported, variant="int8", int8_form="u8s8").encode(TEXTS)
    hub.requests.clear()
    first = run(hub, tmp_path, "acme/minilm-onnx", variant="int8", int8_form="u8s8")
    assert first["source"] == "acme/minilm-onnx/model_int8_u8s8.onnx"
    np.testing.assert_allclose(np.array(first["vectors"]), local, atol=1e-6)
    fetched = {r.rsplit("/", 1)[-1] for r in hub.requests if r.startswith("GET")}
    assert {"model_int8_u8s8.onnx", "model_int8_u8s8.onnx.data", "model_int8.onnx.data"} <= (
        fetched
    )


def test_default_model_with_no_argument_uses_the_authors_onnx_repo(
    hub: FakeHub, exported: Path, tmp_path: Path
) -> None:
    result = run(hub, tmp_path)
    graph_repo, pinned, _ = GRAPH_COMPANIONS[DEFAULT_MODEL]
    assert result["source"] == f"{graph_repo}/onnx/model.onnx"
    assert result["pooling"] == "mean (numpy)"
    assert any(f"{graph_repo}/resolve/{pinned}/onnx/model.onnx" in r for r in hub.requests)
    np.testing.assert_allclose(
        np.array(result["vectors"]), GistEncoder(exported).encode(TEXTS), atol=1e-5
    )


def test_revision_is_passed_to_the_hub(hub: FakeHub, tmp_path: Path) -> None:
    ok = run(hub, tmp_path, "acme/minilm-onnx", revision=COMMIT)
    assert ok["source"] == "acme/minilm-onnx/model.onnx"
    missing = run(hub, tmp_path / "other", "acme/minilm-onnx", revision="v9")
    assert missing["error"] == "ModelFilesError"
    assert "revision v9" in str(missing["message"])


def test_offline_with_an_empty_cache_names_what_was_set(tmp_path: Path) -> None:
    result = run(None, tmp_path, "acme/minilm-onnx", offline=True)
    assert result["error"] == "ModelFilesError"
    assert "local hub cache" in str(result["message"])
    assert "HF_HUB_OFFLINE=1 is set" in str(result["message"])
    result = run(None, tmp_path, "acme/minilm-onnx", local_files_only=True)
    assert "local_files_only=True was passed" in str(result["message"])
    assert "HF_HUB_OFFLINE" not in str(result["message"])


def test_unreachable_hub_fails_fast_with_one_message(tmp_path: Path) -> None:
    import time

    start = time.perf_counter()
    result = run(None, tmp_path, "acme/minilm-onnx")  # HF_ENDPOINT: nothing listens there
    elapsed = time.perf_counter() - start
    assert result["error"] == "ModelFilesError"
    message = str(result["message"])
    assert "Cannot reach the Hugging Face hub at http://127.0.0.1:9" in message
    assert "ConnectionRefusedError" in message
    assert "Retrying" not in str(result["stderr"])
    # A fresh interpreter with imports takes about a second; the hub's retries took minutes.
    assert elapsed < 15, f"{elapsed:.1f} s"


def test_a_mistyped_bare_name_says_no_such_folder_and_what_the_hub_said(tmp_path: Path) -> None:
    """A bare name (no owner/) that is no folder here is more often a folder mistyped than one
    of the few old hub repos without an owner: the error says both."""
    result = run(None, tmp_path, "gist-onnx-modle")
    assert result["error"] == "ModelFilesError"
    message = str(result["message"])
    assert message.startswith("There is no folder 'gist-onnx-modle' in ")
    assert "Cannot reach the Hugging Face hub" in message


def test_unreachable_hub_serves_what_the_cache_has(
    hub: FakeHub, exported: Path, tmp_path: Path
) -> None:
    first = run(hub, tmp_path, "acme/minilm-onnx", variant="int8")
    again = run(None, tmp_path, "acme/minilm-onnx", variant="int8")  # hub gone, not offline
    assert again["source"] == first["source"]
    np.testing.assert_allclose(np.array(again["vectors"]), np.array(first["vectors"]))


def test_unknown_repo_and_missing_variant(hub: FakeHub, tmp_path: Path) -> None:
    result = run(hub, tmp_path, "acme/does-not-exist")
    assert result["error"] == "ModelFilesError"
    assert "acme/does-not-exist" in str(result["message"])
    no_int8 = run(hub, tmp_path, DEFAULT_MODEL, variant="int8")
    assert no_int8["error"] == "ModelFilesError"
    assert "--quantize" in str(no_int8["message"])


def test_an_unwritable_cache_is_named_with_the_fix(hub: FakeHub) -> None:
    from tests.support.unprivileged import (
        run_as_nobody,
        shared_dir,
        skip_unless_possible,
        venv_paths,
    )

    skip_unless_possible()
    locked = shared_dir()  # owned by root, 0755: nobody cannot write the cache there
    proc = run_as_nobody(
        SCRIPT,
        venv_paths(),
        env={"HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(locked / "hub")},
        args=[json.dumps({"args": ["acme/minilm-onnx"], "kwargs": {}, "texts": TEXTS})],
    )
    shutil.rmtree(locked)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["error"] == "ModelFilesError"
    assert "Cannot write the Hugging Face cache" in result["message"]
    assert "HF_HUB_CACHE" in result["message"]
