"""Model tier: the web export (``gist-onnx export --web``) gives the Python vectors in Node.js.

The export is run as users run it; then Node (tests/js, installed from its lockfile with
``npm ci`` on first use) runs transformers.js's ``feature-extraction`` pipeline on it (fp32 and
int8, onnxruntime-node under it) and onnxruntime-web (WASM) on the same graphs, on the export's
check texts (queries, paragraphs past 256 tokens, accents, CJK, emoji, odd whitespace...), and the
vectors and token counts are compared with gist-onnx's. Without Node the Node test is skipped,
saying so; the graph checks run in Python either way.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gist_onnx import GistEncoder
from gist_onnx.export.check import THRESHOLDS
from gist_onnx.export.texts import PARITY_TEXTS, SCRIPT_TEXTS
from gist_onnx.model.manifest import Manifest, read_manifest
from tests.support.nodejs import JS, node_modules

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def web_export(tmp_path_factory: pytest.TempPathFactory, stand_in_dir: Path) -> Path:
    from gist_onnx.export.to_onnx import main as export

    folder = tmp_path_factory.mktemp("web") / "gist-onnx-model"
    args = ["--model", str(stand_in_dir), "--output", str(folder), "--quantize", "--web"]
    assert export(args) == 0
    return folder


# Scripts JavaScript reads differently from the Rust tokenizer: Greek in capitals (a final capital
# sigma lowercases to another letter in JavaScript) and CJK ideographs past U+FFFF (read as UTF-16
# halves). The web folder's tokenizer gives Python's tokens for them too.


def test_the_web_tokenizer_gives_pythons_tokens_in_python_too(web_export: Path) -> None:
    """What makes JavaScript read these scripts as Python does changes nothing in Python."""
    from tokenizers import Tokenizer

    web = Tokenizer.from_file(str(web_export / "web" / "tokenizer.json"))
    ours = Tokenizer.from_file(str(web_export / "tokenizer.json"))
    for tokenizer in (web, ours):
        tokenizer.no_truncation()
        tokenizer.no_padding()
    assert set(SCRIPT_TEXTS) <= set(PARITY_TEXTS)  # the Greek and astral-CJK texts
    for text in PARITY_TEXTS:
        assert web.encode(text).ids == ours.encode(text).ids, text


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_the_web_folder_is_listed_checked_and_loadable(web_export: Path) -> None:
    parsed = read_manifest(web_export)
    assert isinstance(parsed.value, Manifest)
    web = parsed.value.web
    assert set(web) == {"fp32", "int8"}
    for variant, entry in web.items():
        assert entry["check"]["passed"] and entry["output"] == "last_hidden_state"
        assert entry["file"] in (parsed.value.files or {})  # its sha256, with every file's
        assert (web_export / entry["file"]).is_file()
        assert not (web_export / (entry["file"] + ".data")).exists()  # one file per graph
        assert entry["check"]["worst_cosine"] >= entry["thresholds"]["worst_cosine"]
        # gist-onnx loads the web folder too (pooling its last_hidden_state in numpy).
        vectors = GistEncoder(web_export / "web", variant=variant).encode(["a query"])
        expected = GistEncoder(web_export, variant=variant).encode(["a query"])
        np.testing.assert_allclose(vectors, expected, atol=2e-6)
    settings = json.loads((web_export / "web" / "tokenizer_config.json").read_text())
    assert settings["model_max_length"] == 256
    tokenizer = json.loads((web_export / "web" / "tokenizer.json").read_text())
    assert tokenizer["truncation"]["max_length"] == 256
    # A browser that names no dtype loads int8 (transformers.js's own default there, q8, names
    # a file the folder lacks); the demo page relies on it, and the browser test runs the page.
    config = json.loads((web_export / "web" / "config.json").read_text())
    assert config["transformers.js_config"]["device_config"]["wasm"] == {"dtype": "int8"}


def test_a_text_cut_without_its_sep_reads_as_one_cut_with_it(web_export: Path) -> None:
    """transformers.js truncates after adding special tokens (256 tokens, no [SEP]); the web
    graph puts [SEP] back, so the vector is sentence-transformers' (254 pieces and [SEP])."""
    import onnxruntime as ort

    encoder = GistEncoder(web_export)
    ids = encoder.token_ids(["word " * 400])[0]  # [CLS] 254 x word [SEP]
    assert len(ids) == 256 and ids[-1] == 102
    as_transformers_js = [*ids[:-1], ids[-2]]  # 255 word pieces, no [SEP]
    short = ids[:100]  # fewer tokens than the limit: the last piece is not made a [SEP]
    for name in ("model.onnx", "model_int8.onnx"):
        session = ort.InferenceSession(str(web_export / "web" / "onnx" / name))
        names = {i.name for i in session.get_inputs()}
        np.testing.assert_array_equal(
            _run(session, names, as_transformers_js), _run(session, names, ids)
        )
        assert not np.array_equal(
            _run(session, names, short), _run(session, names, [*short[:-1], 102])
        )


def _run(session: object, names: set[str], row: list[int]) -> np.ndarray:
    feeds = {
        "input_ids": np.array([row], dtype=np.int64),
        "attention_mask": np.ones((1, len(row)), dtype=np.int64),
        "token_type_ids": np.zeros((1, len(row)), dtype=np.int64),
    }
    run = session.run  # type: ignore[attr-defined]
    return np.asarray(run(None, {k: v for k, v in feeds.items() if k in names})[0])


# Between two runtimes' int8 vectors of the same texts (another CPU's kernels, WASM's): a float
# difference of 1e-7 moves a value across an int8 level now and then, so a text's two int8
# vectors differ by more than their floats do (0.9979 on an Intel AMX machine, where AMD machines
# gave 0.9995). What int8 promises is its distance to fp32: the export's int8 thresholds. On top,
# the two agree on average: flips touch a few values of a few texts.
INT8_AGREEMENT_MEAN = 0.999


def assert_keeps_int8s_promise(theirs: Any, python_int8: np.ndarray, fp32: np.ndarray) -> None:
    """``theirs`` (int8 vectors from another runtime) are within int8's promise of the fp32
    vectors, as Python's int8 are, and agree with Python's int8 on average."""
    limits = THRESHOLDS["int8"]
    to_fp32 = _cosines(theirs, fp32)
    assert to_fp32.min() >= limits["worst_cosine"], to_fp32.min()
    if len(to_fp32) >= 10:  # a mean over a few texts says little
        assert to_fp32.mean() >= limits["mean_cosine"], to_fp32.mean()
    assert _cosines(theirs, python_int8).mean() >= INT8_AGREEMENT_MEAN


def test_transformers_js_and_onnxruntime_web_give_the_python_vectors(
    web_export: Path, tmp_path: Path
) -> None:
    node_modules()
    texts = list(PARITY_TEXTS)  # Greek capitals and astral CJK among them
    assert any(len(GistEncoder(web_export).token_ids([t])[0]) == 256 for t in texts)  # cut ones
    texts_file = tmp_path / "texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    done = subprocess.run(
        ["node", str(JS / "web_parity.mjs"), str(web_export), str(texts_file)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    for variant in ("fp32", "int8"):
        encoder = GistEncoder(web_export, variant=variant)
        python = encoder.encode(texts)
        pipeline = out["transformers"][variant]
        assert pipeline["counts"] == encoder.count_tokens(texts).tolist()
        if variant == "fp32":
            assert _cosines(pipeline["vectors"], python).min() >= 0.99999
            assert _cosines(out["ortweb"][variant]["vectors"], python).min() >= 0.99999
            continue
        # int8: onnxruntime-web's WASM kernels (under both) put a few values on the other side of
        # an int8 level than this CPU's do; bounded by what int8 promises, not by one machine.
        fp32 = GistEncoder(web_export).encode(texts)
        for runtime in (pipeline["vectors"], out["ortweb"][variant]["vectors"]):
            assert_keeps_int8s_promise(runtime, python, fp32)


def test_the_demo_page_computes_the_python_vectors_in_chromium(
    web_export: Path, tmp_path: Path
) -> None:
    """examples/browser-search in headless Chromium, served from a local folder: the page embeds
    its 300 sentences and a query with the int8 web graph (WASM); the vectors it computed are
    Python's, and so is the ranking."""
    from tests.support.browser import chromium, run_query, served, site

    node_modules()
    query = "a man is playing the guitar"
    with chromium() as driver, served(site(web_export, tmp_path / "site")) as url:
        page = run_query(driver, url, query)
    encoder = GistEncoder(web_export, variant="int8")
    sentences = json.loads((tmp_path / "site" / "sentences.json").read_text(encoding="utf-8"))
    python_query = encoder.encode([query])
    python_corpus = encoder.encode(sentences)
    # onnxruntime-web's WASM int8 kernels: int8's promise, as in the Node tier above.
    fp32 = GistEncoder(web_export)
    assert_keeps_int8s_promise([page["vector"]], python_query, fp32.encode([query]))
    assert_keeps_int8s_promise(page["corpus"], python_corpus, fp32.encode(sentences))
    ranked = np.argsort(-(python_corpus @ python_query[0]))[:5].tolist()
    assert page["top"][0][0] == ranked[0]
    assert page["load_ms"] > 0 and page["query_ms"] > 0


def test_a_flipped_web_graph_is_found_by_verify(
    web_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No encoder reads the web folder, so no load checks it: `gist-onnx verify` checks every
    file the manifest lists against its sha256, the web graphs included."""
    import shutil

    from gist_onnx.cli import main

    assert main(["verify", str(web_export)]) == 0
    folder = shutil.copytree(web_export, tmp_path / "copy")
    graph = folder / "web" / "onnx" / "model_int8.onnx"
    raw = bytearray(graph.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    graph.write_bytes(bytes(raw))
    capsys.readouterr()
    assert main(["verify", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "problem: web/onnx/model_int8.onnx: changed"
