"""Quality of each exported graph: the export's own check (cosine to sentence-transformers on its
check texts, file sizes) and STS Spearman on every STS set available, for each graph and for
the torch reference.

    python benchmarks/quality.py [--model DIR] [--reference MODEL_DIR]

STS-B ships with the repository; the SemEval STS 2012-2016 sets are scored too when
``GIST_STS_DIR`` names a folder holding ``sts12_test.tsv`` ... ``sts16_test.tsv``.
Writes benchmarks/results/quality.json (the docs' variant and STS tables are generated from it by
``python benchmarks/headline.py --write``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.append(str(HERE.parent))  # the clone, last: tests.support, export.sts
from common import RESULTS, add_model_argument, machine_record, model_folder, stand_in  # noqa: E402
from export.sts import available_sets, load_sts, spearman  # noqa: E402

OUTPUT = RESULTS / "quality.json"


def measure(folder: Path, reference: Path) -> dict[str, Any]:
    from gist_onnx import GistEncoder, __version__
    from gist_onnx.model.manifest import Manifest, read_manifest

    parsed = read_manifest(folder)
    if not isinstance(parsed.value, Manifest):
        raise SystemExit(f"{folder}: no readable gist_onnx_manifest.json ({parsed.error})")
    graphs = parsed.value.graphs
    variants: dict[str, Any] = {}
    for variant, graph in graphs.items():
        variants[variant] = {
            "file": graph["file"],
            "bytes": sum(
                (folder / name).stat().st_size
                for name in (graph["file"], graph.get("data_file"))
                if name
            ),
            "check": graph["check"],
            "thresholds": graph["thresholds"],
        }
    sets = available_sets()
    sts: dict[str, dict[str, float]] = {}
    from sentence_transformers import SentenceTransformer

    torch_model = SentenceTransformer(str(reference), device="cpu")
    sts["sentence-transformers (torch fp32)"] = {
        name: round(spearman(load_sts(name), lambda s: torch_model.encode(list(s))), 2)
        for name in sets
    }
    for variant in ("fp32", "int8"):
        if variant in graphs:
            encoder = GistEncoder(folder, variant=variant)
            sts[f"gist-onnx {variant}"] = {
                name: round(spearman(load_sts(name), encoder.encode), 2) for name in sets
            }
    return {
        "date": datetime.date.today().isoformat(),
        "machine": machine_record(),
        "gist_onnx": __version__,
        "variants": variants,
        "sts_sets": sets,
        "sts": sts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_argument(parser)
    parser.add_argument(
        "--reference", type=Path, default=None, help="the source model folder (default: stand-in)"
    )
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    result = measure(model_folder(args.model), args.reference or stand_in())
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result["sts"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
