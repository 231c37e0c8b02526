"""The web export in Node.js: its graphs' sizes, transformers.js's load and query times, and how
close its vectors are to gist-onnx's Python ones.

    python benchmarks/web.py [--model DIR]

DIR is an export made with `gist-onnx export --quantize --web` (default: the stand-in, exported
with --web into benchmarks/.work/web-model). Node runs tests/js/web_parity.mjs (the test tier's
script: transformers.js's feature-extraction pipeline with onnxruntime-node under it, then
onnxruntime-web's WASM backend) on the export's 43 check texts. Writes benchmarks/results/web.json
and the "web" section of benchmarks/results/RESULTS.md.
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
sys.path.insert(0, str(HERE.parent / "tests"))
import sections  # noqa: E402
from common import WORK, stand_in  # noqa: E402
from nodejs import JS, PACKAGES  # noqa: E402


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
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
