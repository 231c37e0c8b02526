"""The web export in Node.js and in a browser: its graphs' sizes, transformers.js's load and query
times, and how close its vectors are to gist-onnx's Python ones.

    python benchmarks/web.py [--model DIR]

DIR is an export made with `gist-onnx export --quantize --web` (default: the stand-in, exported
with --web into benchmarks/.work/web-model). Node runs tests/js/web_parity.mjs (the test tier's
script: transformers.js's feature-extraction pipeline with onnxruntime-node under it, then
onnxruntime-web's WASM backend) on the export's check texts. Then headless Chromium (Debian's
`chromium` and `chromium-driver`, driven by selenium) opens examples/browser-search from a local
HTTP server, as the browser test does: first load (the int8 graph fetched and its WASM session
made), its 300 sentences embedded, three queries (the median); and a screenshot of the page for
the docs (docs/images/browser-search.png). Writes benchmarks/results/<family>/web.json and the "web"
section of benchmarks/results/<family>/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.append(str(HERE.parent))  # the clone, last: tests.support, export.sts
import sections  # noqa: E402
from common import WORK, stand_in  # noqa: E402
from tests.support.nodejs import JS, PACKAGES  # noqa: E402

SCREENSHOT = HERE.parent / "docs" / "images" / "browser-search.png"


def web_export(given: Path | None) -> Path:
    if given is not None:
        return given
    folder = WORK / "web-model"
    if not (folder / "web" / "onnx" / "model_int8.onnx").is_file():
        from gist_onnx.export.to_onnx import main as export

        args = ["--model", str(stand_in()), "--output", str(folder), "--quantize", "--web"]
        if export(args) != 0:
            raise SystemExit("the export failed")
    return folder


def measure_browser(folder: Path) -> dict[str, Any]:
    """The demo page in headless Chromium: load, corpus and query times; its screenshot."""
    import statistics

    from tests.support.browser import chromium, run_query, served, site

    queries = [
        "a man is playing the guitar",
        "a woman is slicing an onion",
        "the stock market fell",
    ]
    with tempfile.TemporaryDirectory() as tmp, chromium() as driver:
        with served(site(folder, Path(tmp) / "site")) as url:
            runs = [run_query(driver, url, q) for q in queries]
            driver.save_screenshot(str(SCREENSHOT))
        version = driver.capabilities.get("browserVersion", "")
    return {
        "browser": f"Chromium {version}, headless",
        "sentences": len(runs[0]["corpus"]),
        "load_ms": statistics.median(r["load_ms"] for r in runs),
        "corpus_ms": statistics.median(r["corpus_ms"] for r in runs),
        "query_ms": statistics.median(r["query_ms"] for r in runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="an export made with --web")
    args = parser.parse_args()
    if not all((JS / "node_modules" / name).is_dir() for name in PACKAGES):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, check=True)
    folder = web_export(args.model)
    from gist_onnx import GistEncoder
    from gist_onnx.export.texts import PARITY_TEXTS
    from gist_onnx.model.manifest import Manifest, read_manifest

    texts = list(PARITY_TEXTS)
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts), encoding="utf-8")
        node = subprocess.run(
            ["node", str(JS / "web_parity.mjs"), str(folder), str(texts_file)],
            capture_output=True,
            text=True,
            check=True,
        )
    out = json.loads(node.stdout)
    parsed = read_manifest(folder)
    assert isinstance(parsed.value, Manifest)
    variants: dict[str, Any] = {}
    for variant, entry in parsed.value.web.items():
        python = GistEncoder(folder, variant=variant).encode(texts).astype(np.float64)

        def worst(vectors: list[list[float]], python: np.ndarray = python) -> float:
            got = np.asarray(vectors, dtype=np.float64)
            cos = (
                (got * python).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(python, axis=1)
            )
            return float(cos.min())

        pipeline = out["transformers"][variant]
        variants[variant] = {
            "file": entry["file"],
            "megabytes": entry["bytes"] / 1e6,
            "transformers_js_worst_cosine": worst(pipeline["vectors"]),
            "onnxruntime_web_worst_cosine": worst(out["ortweb"][variant]["vectors"]),
            "load_ms": pipeline["load_ms"],
            "query_ms": pipeline["query_ms"],
            "export_check_worst_cosine": entry["check"]["worst_cosine"],
        }
    browser = measure_browser(folder)
    node_version = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=True
    ).stdout
    packages = json.loads((JS / "package.json").read_text())["dependencies"]
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, Node {node_version.strip()}",
        "texts": len(texts),
        "packages": packages,
        "variants": variants,
        "browser": browser,
    }
    sections.publish("web", results, render(results))
    return 0


def render(r: dict[str, Any]) -> str:
    pkgs = ", ".join(f"{k} {v}" for k, v in r["packages"].items() if k != "openai")
    lines = [
        "## The web export in Node.js",
        "",
        f"Written by `python benchmarks/web.py` ({r['date']}, {r['machine']}; {pkgs}): the "
        f"{r['texts']} check texts through transformers.js's feature-extraction pipeline (mean "
        "pooling and normalization in JavaScript, onnxruntime-node under it) and through "
        "onnxruntime-web's WASM backend, against gist-onnx's Python vectors of the same variant. "
        "Load: the pipeline made from the local folder; one query: median of 20 after a first.",
        "",
        "| dtype | graph | size | worst cosine, transformers.js | worst cosine, onnxruntime-web "
        "| load | one query |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, v in r["variants"].items():
        lines.append(
            f"| {variant} | `{v['file']}` | {v['megabytes']:.1f} MB | "
            f"{v['transformers_js_worst_cosine']:.7f} | {v['onnxruntime_web_worst_cosine']:.5f} | "
            f"{v['load_ms']:.0f} ms | {v['query_ms']:.1f} ms |"
        )
    b = r["browser"]
    lines += [
        "",
        f"In {b['browser']} (examples/browser-search served from a local folder; int8, WASM, one "
        f"thread): first load {b['load_ms']:,.0f} ms (the graph fetched, its session made), "
        f"{b['sentences']} sentences embedded in {b['corpus_ms']:,.0f} ms, one query "
        f"{b['query_ms']:.0f} ms (median of the page loaded three times).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
